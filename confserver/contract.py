"""The contract between signaling and media: typed media messages and the one error type.

Both sides import this module and nothing else of each other's: confserver parses a client's media
message here once (``parse_media``), the SFU receives the frozen value and dispatches on its class.
Every message is plain JSON both ways (``to_json`` / ``from_json``, which checks everything again),
so the same values can cross a process boundary unchanged.

The checks are the wire rules of docs/PROTOCOL.md ("Media"): fields, types and sizes, refused with
``ServiceError`` codes ``missing_field`` and ``bad_field``. What depends on media state (an SDP that
negotiates, a candidate's address, a track that exists) is the SFU's to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, TypeAlias

# --- errors ----------------------------------------------------------------------------------------


class ServiceError(Exception):
    """A refused operation: ``code`` is stable and documented, ``message`` is for people,
    ``status`` is the HTTP status the admin API answers with."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# --- limits ----------------------------------------------------------------------------------------

SOURCES: Final[Mapping[str, tuple[str, str]]] = {
    # source: (kind, permission)
    "camera": ("video", "publish_video"),
    "microphone": ("audio", "publish_audio"),
    "screen": ("video", "publish_screen"),
    "screen_audio": ("audio", "publish_screen"),
}
TARGETS: Final = ("publish", "subscribe")
MAX_SDP_CHARS: Final = 64 * 1024
MAX_CANDIDATE_CHARS: Final = 1024
MAX_ID_CHARS: Final = 64
"""Track ids, mids and ``sdpMid``."""
MAX_TRACK_ENTRIES: Final = 16
MAX_SUBSCRIPTION_ENTRIES: Final = 200
MAX_DIMENSION: Final = 16384
CANDIDATE_PREFIX: Final = "candidate:"

Target: TypeAlias = Literal["publish", "subscribe"]


# --- field readers ---------------------------------------------------------------------------------


def _bad(message: str) -> ServiceError:
    return ServiceError("bad_field", message)


def _string(obj: Mapping[str, Any], key: str, where: str, max_chars: int = MAX_ID_CHARS) -> str:
    if key not in obj or obj[key] is None:
        raise ServiceError("missing_field", f"{where}: {key} is required")
    value = obj[key]
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        raise _bad(f"{where}: {key} must be a string of 1 to {max_chars} characters")
    return value


def _dimension(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIMENSION:
        raise _bad(f"{where}: {key} must be an integer from 1 to {MAX_DIMENSION}")
    return value


def _flag(obj: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise _bad(f"{where}: {key} must be true or false")
    return value


def _entries(obj: Mapping[str, Any], key: str, max_items: int) -> list[Mapping[str, Any]]:
    items = obj.get(key)
    if items is None:
        raise ServiceError("missing_field", f"{key} is required")
    if not isinstance(items, list) or len(items) > max_items:
        raise _bad(f"{key} must be a list of at most {max_items} entries")
    if not all(isinstance(i, Mapping) for i in items):
        raise _bad(f"every entry of {key} must be an object")
    return items


def _unique(keys: list[str], what: str) -> None:
    if len(set(keys)) != len(keys):
        raise _bad(f"tracks: two entries name the same {what}")


def _without_none(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


# --- media messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedTrack:
    """One sending m-line of a publish offer and what it carries."""

    mid: str
    source: str
    width: int | None = None
    height: int | None = None

    @property
    def kind(self) -> str:
        return SOURCES[self.source][0]

    @property
    def permission(self) -> str:
        return SOURCES[self.source][1]

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "track") -> PublishedTrack:
        mid = _string(obj, "mid", where)
        source = _string(obj, "source", where)
        if source not in SOURCES:
            raise _bad(f"{where}: source must be one of {', '.join(SOURCES)}")
        return cls(mid, source, _dimension(obj, "width", where), _dimension(obj, "height", where))

    def to_json(self) -> dict[str, Any]:
        return _without_none(
            {"mid": self.mid, "source": self.source, "width": self.width, "height": self.height}
        )


@dataclass(frozen=True)
class SubscriptionChange:
    """One entry of ``update_subscription``: a video track to receive (within a size) or to drop."""

    track: str
    subscribe: bool = True
    max_width: int | None = None
    max_height: int | None = None
    paused: bool = False

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "track") -> SubscriptionChange:
        return cls(
            track=_string(obj, "id", where),
            subscribe=_flag(obj, "subscribe", where, True),
            max_width=_dimension(obj, "max_width", where),
            max_height=_dimension(obj, "max_height", where),
            paused=_flag(obj, "paused", where, False),
        )

    def to_json(self) -> dict[str, Any]:
        return _without_none(
            {
                "id": self.track,
                "subscribe": self.subscribe,
                "max_width": self.max_width,
                "max_height": self.max_height,
                "paused": self.paused,
            }
        )


@dataclass(frozen=True)
class PublishOffer:
    type: ClassVar[str] = "publish_offer"
    sdp: str
    tracks: tuple[PublishedTrack, ...]

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PublishOffer:
        sdp = _string(obj, "sdp", cls.type, MAX_SDP_CHARS)
        tracks = tuple(
            PublishedTrack.from_json(entry, f"tracks[{i}]")
            for i, entry in enumerate(_entries(obj, "tracks", MAX_TRACK_ENTRIES))
        )
        _unique([t.mid for t in tracks], "mid")
        return cls(sdp, tracks)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "sdp": self.sdp, "tracks": [t.to_json() for t in self.tracks]}


@dataclass(frozen=True)
class SubscribeAnswer:
    type: ClassVar[str] = "subscribe_answer"
    sdp: str

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SubscribeAnswer:
        return cls(_string(obj, "sdp", cls.type, MAX_SDP_CHARS))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "sdp": self.sdp}


@dataclass(frozen=True)
class IceCandidate:
    """A remote candidate for one of the participant's connections; ``candidate`` is the text of
    the ``a=candidate`` attribute without its ``candidate:`` prefix, ``None`` for end of candidates.
    Its grammar and address are checked by the SFU (``sfu.core.candidate``, ``bad_candidate``)
    once the connection it is for exists."""

    type: ClassVar[str] = "ice_candidate"
    target: Target
    candidate: str | None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> IceCandidate:
        target = obj.get("target")
        if target not in TARGETS:
            raise _bad("target must be publish or subscribe")
        checked: Target = "publish" if target == "publish" else "subscribe"
        raw = obj.get("candidate")
        if raw is None:
            return cls(checked, None)
        if isinstance(raw, str):
            raw = {"candidate": raw}
        if not isinstance(raw, Mapping):
            raise _bad("candidate must be an RTCIceCandidateInit object or null")
        text = raw.get("candidate")
        if not isinstance(text, str) or len(text) > MAX_CANDIDATE_CHARS:
            raise _bad("candidate.candidate must be a string")
        text = text.removeprefix(CANDIDATE_PREFIX)
        mid = raw.get("sdpMid")
        index = raw.get("sdpMLineIndex")
        if mid is not None and (not isinstance(mid, str) or len(mid) > MAX_ID_CHARS):
            raise _bad("candidate.sdpMid must be a string")
        small = isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 256
        if index is not None and not small:
            raise _bad("candidate.sdpMLineIndex must be a small integer")
        return cls(checked, text or None, mid, index)

    def to_json(self) -> dict[str, Any]:
        candidate = None
        if self.candidate is not None:
            candidate = _without_none(
                {
                    "candidate": CANDIDATE_PREFIX + self.candidate,
                    "sdpMid": self.sdp_mid,
                    "sdpMLineIndex": self.sdp_mline_index,
                }
            )
        return {"type": self.type, "target": self.target, "candidate": candidate}


@dataclass(frozen=True)
class UpdateSubscription:
    type: ClassVar[str] = "update_subscription"
    tracks: tuple[SubscriptionChange, ...]

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> UpdateSubscription:
        tracks = tuple(
            SubscriptionChange.from_json(entry, f"tracks[{i}]")
            for i, entry in enumerate(_entries(obj, "tracks", MAX_SUBSCRIPTION_ENTRIES))
        )
        _unique([c.track for c in tracks], "track")
        return cls(tracks)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "tracks": [c.to_json() for c in self.tracks]}


@dataclass(frozen=True)
class Unpublish:
    type: ClassVar[str] = "unpublish"
    track: str

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Unpublish:
        return cls(_string(obj, "track", cls.type))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "track": self.track}


MediaMessage: TypeAlias = PublishOffer | SubscribeAnswer | IceCandidate | UpdateSubscription | Unpublish
"""Every media message. Both sides dispatch on it with ``match`` ending in ``assert_never``: a type
added here and not handled there fails mypy (and at run time, loudly)."""

MEDIA_CLASSES: Final = (PublishOffer, SubscribeAnswer, IceCandidate, UpdateSubscription, Unpublish)
MEDIA_TYPES: Final[Mapping[str, type[MediaMessage]]] = {cls.type: cls for cls in MEDIA_CLASSES}
"""Wire type name -> message class."""


def parse_media(obj: Mapping[str, Any]) -> MediaMessage:
    """Check a media message (a JSON object with its ``type``) and return its frozen value. Raises
    ``ServiceError`` (``unknown_type``, ``missing_field``, ``bad_field``); nothing else escapes."""
    mtype = obj.get("type")
    cls = MEDIA_TYPES.get(mtype) if isinstance(mtype, str) else None
    if cls is None:
        raise ServiceError("unknown_type", f"{str(mtype)[:40]!r} is not a media message")
    return cls.from_json(obj)
