"""The local channel between the signaling process and a media worker: typed JSON messages in
length-prefixed frames over a Unix stream socket. Never pickle: a worker is less trusted than
the signaling process, and every frame it sends is bounded and checked field by field here before
anything acts on it (``ChannelError`` otherwise, which closes that worker's channel).

Frame: a 4-byte big-endian length, then that many bytes of UTF-8 JSON holding one object with a
``type``. Requests (``join``, ``handle``, ``mute``, ``leave``) carry an ``id``; the worker answers
each with a ``reply`` of the same ``id``, with ``error`` {``code``, ``message``} when refused.
The worker also sends ``ready`` once started, ``send`` (a server message for one participant),
``load`` (its CPU time) and ``metrics`` (its Prometheus exposition). The signaling process closes
the channel to stop a worker.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeAlias

from confserver.contract import MAX_ID_CHARS, MEDIA_TYPES, MediaMessage, ServiceError, parse_media

MAX_FRAME: Final = 1024 * 1024
"""Bytes one frame may hold (an SDP is at most 64 KiB; a worker's metrics text is the largest)."""
MAX_NAME_CHARS: Final = 256
MAX_CODE_CHARS: Final = 64
MAX_TEXT_CHARS: Final = 4096
MAX_PERMISSIONS: Final = 16
MAX_CALL_ID: Final = 2**53
SERVER_MEDIA_TYPES: Final = frozenset(
    {
        "publish_answer",
        "publish_layers",
        "subscribe_offer",
        "ice_candidate",
        "track_published",
        "track_unpublished",
        "track_muted",
        "track_map",
        "speakers",
        "error",
    }
)
"""The server messages a worker may send to a participant (docs/PROTOCOL.md, "Media")."""
_CODE_RE = re.compile(r"^[a-z_]{1,64}$")
_HEADER = struct.Struct(">I")


class ChannelError(Exception):
    """A frame that breaks the channel's rules; the channel it came from is closed."""


# --- frames ----------------------------------------------------------------------------------------


def encode(message: Mapping[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()
    if len(body) > MAX_FRAME:
        raise ChannelError(f"a {message.get('type')} frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame's object, or None at the end of the stream (the other side is gone)."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ChannelError("the stream ended inside a frame header") from None
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ChannelError(f"a frame of {size} bytes announced; at most {MAX_FRAME}")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ChannelError("the stream ended inside a frame") from None
    return decode(body)


def decode(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ChannelError(f"a frame is not JSON: {str(exc)[:80]}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ChannelError("a frame is not an object with a type")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# --- field readers ---------------------------------------------------------------------------------


def _str(obj: Mapping[str, Any], key: str, max_chars: int = MAX_NAME_CHARS, *, empty: bool = False) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or len(value) > max_chars or (not value and not empty):
        raise ChannelError(f"{obj.get('type')}: {key} must be a string of at most {max_chars} characters")
    return value


def _int(obj: Mapping[str, Any], key: str, low: int = 0, high: int = MAX_CALL_ID) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ChannelError(f"{obj.get('type')}: {key} must be an integer from {low} to {high}")
    return value


def _number(obj: Mapping[str, Any], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e12:
        raise ChannelError(f"{obj.get('type')}: {key} must be a non-negative number")
    return float(value)


def _bool(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise ChannelError(f"{obj.get('type')}: {key} must be true or false")
    return value


# --- signaling process -> worker -------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The first frame to a worker: its index and the ``[sfu]`` and ``[log]`` settings (its UDP
    port already set)."""

    type: ClassVar[str] = "start"
    index: int
    sfu: Mapping[str, Any]
    log_level: str = "info"
    log_format: str = "text"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "index": self.index,
            "sfu": dict(self.sfu),
            "log_level": self.log_level,
            "log_format": self.log_format,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Start:
        sfu = obj.get("sfu")
        if not isinstance(sfu, dict):
            raise ChannelError("start: sfu must be an object")
        return cls(_int(obj, "index", 0, 1024), sfu, _str(obj, "log_level", 16), _str(obj, "log_format", 16))


@dataclass(frozen=True)
class Join:
    type: ClassVar[str] = "join"
    id: int
    room: str
    sid: str
    permissions: frozenset[str]
    identity: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "room": self.room,
            "sid": self.sid,
            "permissions": sorted(self.permissions),
            "identity": self.identity,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Join:
        perms = obj.get("permissions")
        if not isinstance(perms, list) or len(perms) > MAX_PERMISSIONS:
            raise ChannelError(f"join: permissions must be a list of at most {MAX_PERMISSIONS}")
        if not all(isinstance(p, str) and 0 < len(p) <= MAX_ID_CHARS for p in perms):
            raise ChannelError("join: every permission must be a short string")
        return cls(
            _int(obj, "id"), _str(obj, "room"), _str(obj, "sid"), frozenset(perms),
            _str(obj, "identity", empty=True),
        )  # fmt: skip


@dataclass(frozen=True)
class Handle:
    type: ClassVar[str] = "handle"
    id: int
    room: str
    sid: str
    message: MediaMessage

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "room": self.room,
            "sid": self.sid,
            "message": self.message.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Handle:
        message = obj.get("message")
        if not isinstance(message, dict) or message.get("type") not in MEDIA_TYPES:
            raise ChannelError("handle: message must be a media message")
        try:
            parsed = parse_media(message)
        except ServiceError as exc:
            raise ChannelError(f"handle: {exc.message}") from None
        return cls(_int(obj, "id"), _str(obj, "room"), _str(obj, "sid"), parsed)


@dataclass(frozen=True)
class Mute:
    type: ClassVar[str] = "mute"
    id: int
    room: str
    sid: str
    kind: str
    muted: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "room": self.room,
            "sid": self.sid,
            "kind": self.kind,
            "muted": self.muted,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Mute:
        kind = _str(obj, "kind", 8)
        if kind not in ("audio", "video"):
            raise ChannelError("mute: kind must be audio or video")
        return cls(_int(obj, "id"), _str(obj, "room"), _str(obj, "sid"), kind, _bool(obj, "muted"))


@dataclass(frozen=True)
class Leave:
    type: ClassVar[str] = "leave"
    id: int
    room: str
    sid: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "room": self.room, "sid": self.sid}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Leave:
        return cls(_int(obj, "id"), _str(obj, "room"), _str(obj, "sid"))


Request: TypeAlias = Join | Handle | Mute | Leave
REQUESTS: Final[Mapping[str, Any]] = {c.type: c for c in (Join, Handle, Mute, Leave)}


def parse_request(obj: Mapping[str, Any]) -> Request:
    cls = REQUESTS.get(obj.get("type", ""))
    if cls is None:
        raise ChannelError(f"{str(obj.get('type'))[:40]!r} is not a request")
    request: Request = cls.from_json(obj)
    return request


# --- worker -> signaling process -------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    type: ClassVar[str] = "ready"
    pid: int

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "pid": self.pid}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Ready:
        return cls(_int(obj, "pid", 1, 2**31))


@dataclass(frozen=True)
class Reply:
    type: ClassVar[str] = "reply"
    id: int
    code: str | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "id": self.id}
        if self.code is not None:
            out["error"] = {"code": self.code, "message": self.message}
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Reply:
        error = obj.get("error")
        if error is None:
            return cls(_int(obj, "id"))
        if not isinstance(error, dict):
            raise ChannelError("reply: error must be an object")
        code = _str(error, "code", MAX_CODE_CHARS)
        if not _CODE_RE.match(code):
            raise ChannelError("reply: error code must be lowercase letters and _")
        return cls(_int(obj, "id"), code, _str(error, "message", MAX_TEXT_CHARS, empty=True))


@dataclass(frozen=True)
class Send:
    """A server message for one participant of a room on this worker."""

    type: ClassVar[str] = "send"
    room: str
    sid: str
    message: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "room": self.room, "sid": self.sid, "message": dict(self.message)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Send:
        message = obj.get("message")
        if not isinstance(message, dict) or message.get("type") not in SERVER_MEDIA_TYPES:
            raise ChannelError("send: message must be a media message of the server")
        return cls(_str(obj, "room"), _str(obj, "sid"), message)


@dataclass(frozen=True)
class Load:
    """The worker's CPU time so far (seconds, user and system)."""

    type: ClassVar[str] = "load"
    cpu_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "cpu_seconds": self.cpu_seconds}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Load:
        return cls(_number(obj, "cpu_seconds"))


@dataclass(frozen=True)
class Metrics:
    """The worker's own metrics, in the Prometheus text format."""

    type: ClassVar[str] = "metrics"
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "text": self.text}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Metrics:
        return cls(_str(obj, "text", MAX_FRAME - 64, empty=True))


Event: TypeAlias = Ready | Reply | Send | Load | Metrics
EVENTS: Final[Mapping[str, Any]] = {c.type: c for c in (Ready, Reply, Send, Load, Metrics)}


def parse_event(obj: Mapping[str, Any]) -> Event:
    cls = EVENTS.get(obj.get("type", ""))
    if cls is None:
        raise ChannelError(f"{str(obj.get('type'))[:40]!r} is not a worker message")
    event: Event = cls.from_json(obj)
    return event
