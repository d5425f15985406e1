"""The signaling wire protocol, version 1: typed client messages and one parser.

Every client message is a JSON object with a ``type``. ``parse_client_message`` turns text into one
of the frozen dataclasses below (media messages: those of ``confserver.contract``) or raises
``ProtocolError`` with a stable code; nothing else escapes. Server messages are plain dicts built by
the helpers at the end (their shapes are in docs/PROTOCOL.md). ``CloseCode`` is every close code.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import contract
from .. import text as untrusted
from ..access import MAX_PASSWORD_CHARS

PROTOCOL_VERSION = 1

ROOM_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TOKEN_CHARS = 8192
MAX_NAME_CHARS = untrusted.MAX_NAME_CHARS
MAX_IDENTITY_CHARS = 128
MAX_SUBSCRIPTIONS = 100
STATE_KEYS = ("audio_muted", "video_muted", "hand_raised")
E2EE_TEXT_RE = re.compile(r"[A-Za-z0-9_-]+")
"""base64url without padding: the characters of E2EE identity keys, key messages and session ids."""
MAX_E2EE_KEY_CHARS = 256
MAX_E2EE_DATA_CHARS = 1024
MAX_E2EE_ENTRIES = 100
MAX_SID_CHARS = 64
MEDIA_KINDS = ("audio", "video")


class CloseCode(enum.IntEnum):
    """Every WebSocket close code of the protocol (docs/PROTOCOL.md, "Close codes"; web/protocol.js
    ``CLOSE`` has the same names and numbers)."""

    NORMAL = 1000
    """After ``left``."""
    GOING_AWAY = 1001
    """The server is shutting down."""
    ABNORMAL = 1006
    """Never sent: what a client sees when the connection dropped without a close frame."""
    TOO_LARGE = 1009
    """A frame beyond the size cap (closed by the WebSocket layer before it is read)."""
    TRY_AGAIN = 1013
    """After ``error try_again``, or when the node that served this session through another one
    is gone: the meeting is moving to another node; the client reconnects."""
    SERVER_ERROR = 1011
    """The server failed to send to this connection; the session ends and its seat is freed."""
    JOIN_REFUSED = 4000
    """After an ``error`` answering ``join``."""
    REMOVED = 4001
    """After ``kicked``."""
    ROOM_CLOSED = 4002
    """After ``room_closed``."""
    SLOW_CONSUMER = 4008
    RATE_LIMITED = 4009
    JOIN_TIMEOUT = 4010
    SEAT_LOST = 4011
    """After ``error seat_lost``: the seat lapsed (a store outage longer than the seat lease) and
    could not be taken again. The client may reconnect; its join is then admitted or refused."""
    MEDIA_TIMEOUT = 4012
    """After ``error media_timeout``."""


class ProtocolError(Exception):
    """An untrusted message was refused; ``code`` is stable, ``message`` readable."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


# --- client messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Join:
    token: str
    room: str | None = None
    """The room the page is for; when given, a token for another room is refused (wrong_room)."""
    version: int = PROTOCOL_VERSION
    name: str | None = None
    state: Mapping[str, bool] | None = None
    password: str | None = None
    """The room's password, where it has one (moderators are not asked)."""


@dataclass(frozen=True)
class Ping:
    t: float | None = None


@dataclass(frozen=True)
class Leave:
    pass


@dataclass(frozen=True)
class Chat:
    text: str
    to: str | None = None
    """An identity for a private message; ``None`` for the whole room."""


@dataclass(frozen=True)
class UpdateSelf:
    state: Mapping[str, bool]
    name: str | None = None


@dataclass(frozen=True)
class MuteParticipant:
    identity: str
    kind: str
    muted: bool = True


@dataclass(frozen=True)
class KickParticipant:
    identity: str


@dataclass(frozen=True)
class LockRoom:
    locked: bool


@dataclass(frozen=True)
class EndRoom:
    pass


@dataclass(frozen=True)
class Admit:
    """A moderator lets someone in from the lobby."""

    identity: str


@dataclass(frozen=True)
class Deny:
    """A moderator turns away someone waiting in the lobby."""

    identity: str


@dataclass(frozen=True)
class E2eeIdentity:
    """This participant's identity public key (opaque base64url), announced to the room."""

    key: str


@dataclass(frozen=True)
class E2eeKey:
    to: str
    """The recipient's session id."""
    data: str
    """Opaque base64url the server cannot read; never logged or stored."""


@dataclass(frozen=True)
class E2eeKeys:
    """Key messages, each for one other participant (at most one per recipient)."""

    keys: tuple[E2eeKey, ...]


ClientMessage = (
    Join
    | Ping
    | Leave
    | Chat
    | UpdateSelf
    | MuteParticipant
    | KickParticipant
    | LockRoom
    | EndRoom
    | Admit
    | Deny
    | E2eeIdentity
    | E2eeKeys
    | contract.MediaMessage
)
"""Every client message: the signaling ones above and the media ones of ``confserver.contract``
(parsed here once; the media side receives the frozen value)."""


# --- field readers -------------------------------------------------------------------------------


def _str(
    obj: Mapping[str, Any], key: str, ref: str, *, max_len: int, required: bool = True, min_len: int = 1
) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise ProtocolError("missing_field", f"{key} is required", ref)
        return None
    v = obj[key]
    if not isinstance(v, str):
        raise ProtocolError("bad_field", f"{key} must be a string", ref)
    if not min_len <= len(v) <= max_len:
        raise ProtocolError("bad_field", f"{key} must be {min_len}-{max_len} characters", ref)
    return v


def _req_str(obj: Mapping[str, Any], key: str, ref: str, *, max_len: int) -> str:
    v = _str(obj, key, ref, max_len=max_len)
    if v is None:  # pragma: no cover - _str raises for required fields
        raise ProtocolError("missing_field", f"{key} is required", ref)
    return v


def _bool(obj: Mapping[str, Any], key: str, ref: str, default: bool | None = None) -> bool:
    if key not in obj:
        if default is None:
            raise ProtocolError("missing_field", f"{key} is required", ref)
        return default
    v = obj[key]
    if not isinstance(v, bool):
        raise ProtocolError("bad_field", f"{key} must be true or false", ref)
    return v


def clean_display_name(raw: str, ref: str) -> str:
    """The same rule as a token's ``name`` claim (``confserver.text.display_name``)."""
    try:
        return untrusted.display_name(raw)
    except ValueError as e:
        raise ProtocolError("bad_field", str(e), ref) from None


def _state(obj: Mapping[str, Any], ref: str, required: bool) -> dict[str, bool] | None:
    if "state" not in obj:
        if required:
            raise ProtocolError("missing_field", "state is required", ref)
        return None
    st = obj["state"]
    if not isinstance(st, dict):
        raise ProtocolError("bad_field", "state must be an object", ref)
    out: dict[str, bool] = {}
    for k, v in st.items():
        if k not in STATE_KEYS:
            raise ProtocolError("bad_field", f"state.{k} is not one of {', '.join(STATE_KEYS)}", ref)
        if not isinstance(v, bool):
            raise ProtocolError("bad_field", f"state.{k} must be true or false", ref)
        out[k] = v
    return out


# --- parsers per type ----------------------------------------------------------------------------


def _join(o: Mapping[str, Any]) -> Join:
    v = o.get("v", PROTOCOL_VERSION)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError("bad_field", "v must be an integer", "join")
    if v != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported_version", f"this server speaks protocol version {PROTOCOL_VERSION}", "join"
        )
    name = _str(o, "name", "join", max_len=256, required=False)
    room = _str(o, "room", "join", max_len=64, required=False)
    if room is not None and not ROOM_NAME_RE.fullmatch(room):
        raise ProtocolError("invalid_room_name", "room names are 1-64 characters of A-Z a-z 0-9 _ -", "join")
    return Join(
        token=_req_str(o, "token", "join", max_len=MAX_TOKEN_CHARS),
        room=room,
        version=v,
        name=clean_display_name(name, "join") if name is not None else None,
        state=_state(o, "join", required=False),
        password=_password(o),
    )


def _password(o: Mapping[str, Any]) -> str | None:
    password = _str(o, "password", "join", max_len=MAX_PASSWORD_CHARS, required=False)
    if password is not None and not password.isprintable():
        raise ProtocolError("bad_field", "password must be printable characters", "join")
    return password


def _ping(o: Mapping[str, Any]) -> Ping:
    t = o.get("t")
    if t is not None and (not isinstance(t, int | float) or isinstance(t, bool)):
        raise ProtocolError("bad_field", "t must be a number", "ping")
    return Ping(t=float(t) if t is not None else None)


def _chat(o: Mapping[str, Any]) -> Chat:
    # The room's own limit (signaling.chat_max_chars) is applied by the session; this is a sanity cap.
    return Chat(
        text=_req_str(o, "text", "chat", max_len=100_000),
        to=_str(o, "to", "chat", max_len=MAX_IDENTITY_CHARS, required=False),
    )


def _update(o: Mapping[str, Any]) -> UpdateSelf:
    name = _str(o, "name", "update", max_len=256, required=False)
    st = _state(o, "update", required=name is None)
    return UpdateSelf(state=st or {}, name=clean_display_name(name, "update") if name is not None else None)


def _kind(o: Mapping[str, Any], ref: str) -> str:
    kind = o.get("kind", "audio")
    if kind not in MEDIA_KINDS:
        raise ProtocolError("bad_field", "kind must be audio or video", ref)
    return str(kind)


def _mute(o: Mapping[str, Any]) -> MuteParticipant:
    return MuteParticipant(
        identity=_req_str(o, "identity", "mute", max_len=MAX_IDENTITY_CHARS),
        kind=_kind(o, "mute"),
        muted=_bool(o, "muted", "mute", default=True),
    )


def _kick(o: Mapping[str, Any]) -> KickParticipant:
    return KickParticipant(identity=_req_str(o, "identity", "kick", max_len=MAX_IDENTITY_CHARS))


def _lock(o: Mapping[str, Any]) -> LockRoom:
    return LockRoom(locked=_bool(o, "locked", "lock_room", default=True))


def _e2ee_text(obj: Mapping[str, Any], key: str, ref: str, *, max_len: int) -> str:
    value = _req_str(obj, key, ref, max_len=max_len)
    if not E2EE_TEXT_RE.fullmatch(value):
        raise ProtocolError("bad_field", f"{key} must be characters of A-Z a-z 0-9 _ -", ref)
    return value


def _e2ee_identity(o: Mapping[str, Any]) -> E2eeIdentity:
    return E2eeIdentity(key=_e2ee_text(o, "key", "e2ee_identity", max_len=MAX_E2EE_KEY_CHARS))


def _e2ee_keys(o: Mapping[str, Any]) -> E2eeKeys:
    ref = "e2ee_keys"
    entries = o.get("keys")
    if entries is None:
        raise ProtocolError("missing_field", "keys is required", ref)
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_E2EE_ENTRIES:
        raise ProtocolError("bad_field", f"keys must be a list of 1-{MAX_E2EE_ENTRIES} entries", ref)
    out: list[E2eeKey] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ProtocolError("bad_field", "each key entry must be an object with to and data", ref)
        out.append(
            E2eeKey(
                to=_e2ee_text(entry, "to", ref, max_len=MAX_SID_CHARS),
                data=_e2ee_text(entry, "data", ref, max_len=MAX_E2EE_DATA_CHARS),
            )
        )
    if len({k.to for k in out}) != len(out):
        raise ProtocolError("bad_field", "at most one key entry per recipient", ref)
    return E2eeKeys(keys=tuple(out))


def _media(kind: str) -> Callable[[Mapping[str, Any]], contract.MediaMessage]:
    def parse(o: Mapping[str, Any]) -> contract.MediaMessage:
        if kind == contract.IceCandidate.type:
            # Clients send the candidate's text; the contract also takes RTCIceCandidateInit.
            _req_str(o, "candidate", kind, max_len=contract.MAX_CANDIDATE_CHARS)
        try:
            return contract.parse_media(o)
        except contract.ServiceError as e:
            raise ProtocolError(e.code, e.message, kind) from None

    return parse


_PARSERS: dict[str, Callable[[Mapping[str, Any]], ClientMessage]] = {
    "join": _join,
    "ping": _ping,
    "leave": lambda o: Leave(),
    "chat": _chat,
    "update": _update,
    "mute": _mute,
    "kick": _kick,
    "lock_room": _lock,
    "end_room": lambda o: EndRoom(),
    "admit": lambda o: Admit(identity=_req_str(o, "identity", "admit", max_len=MAX_IDENTITY_CHARS)),
    "deny": lambda o: Deny(identity=_req_str(o, "identity", "deny", max_len=MAX_IDENTITY_CHARS)),
    "e2ee_identity": _e2ee_identity,
    "e2ee_keys": _e2ee_keys,
    **{k: _media(k) for k in contract.MEDIA_TYPES},
}
CLIENT_TYPES = tuple(sorted(_PARSERS))


def parse_client_message(text: str | bytes, *, max_bytes: int) -> ClientMessage:
    """Parse one client frame. Raises ``ProtocolError`` (``too_large``, ``bad_json``,
    ``bad_message``, ``unknown_type``, ``missing_field``, ``bad_field``, ``unsupported_version``).

    Every value is checked before any field is read (``confserver.text.check``): a lone UTF-16
    surrogate, a number that is not finite or beyond 2^53 is ``bad_field``; nesting deeper than
    ``text.MAX_DEPTH`` is ``bad_json``. Nothing refused here can reach another participant."""
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > max_bytes:
        raise ProtocolError("too_large", f"message is {size} bytes; the limit is {max_bytes}")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_json", "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_message", "message must be a JSON object")
    mtype = obj.get("type")
    ref = mtype if isinstance(mtype, str) and mtype in _PARSERS else None
    try:
        untrusted.check(obj)
    except untrusted.UnsafeJson as e:
        raise ProtocolError("bad_json" if e.syntax else "bad_field", e.message, ref) from None
    if not isinstance(mtype, str):
        raise ProtocolError("bad_message", "message needs a string type")
    parser = _PARSERS.get(mtype)
    if parser is None:
        raise ProtocolError("unknown_type", f"unknown message type {mtype[:40]!r}", mtype[:40])
    return parser(obj)


# --- server messages -----------------------------------------------------------------------------


def error(code: str, message: str, ref: str | None = None, **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        msg["ref"] = ref
    msg.update(extra)
    return msg


def encode(msg: Mapping[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False)
