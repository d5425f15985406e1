"""Media message bodies from clients, checked and turned into small frozen values.

Signaling has already checked the message shape and the size of the SDP strings; this module
checks the fields the media service reads, and refuses anything else with a stable code
(``bad_field``, ``missing_field``) before any state changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confserver.errors import ServiceError

SOURCES: Mapping[str, tuple[str, str]] = {
    # source: (kind, permission)
    "camera": ("video", "publish_video"),
    "microphone": ("audio", "publish_audio"),
    "screen": ("video", "publish_screen"),
    "screen_audio": ("audio", "publish_screen"),
}
MAX_TRACK_ENTRIES = 16
MAX_SUBSCRIPTION_ENTRIES = 200
MAX_ID_CHARS = 64
MAX_DIMENSION = 16384


@dataclass(frozen=True)
class PublishedTrack:
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


@dataclass(frozen=True)
class SubscriptionChange:
    track: str
    subscribe: bool
    max_width: int | None = None
    max_height: int | None = None
    paused: bool = False


@dataclass(frozen=True)
class Candidate:
    target: str
    candidate: str | None  # None: end of candidates
    sdp_mid: str | None
    sdp_mline_index: int | None


def _bad(message: str) -> ServiceError:
    return ServiceError("bad_field", message)


def _string(obj: Mapping[str, Any], key: str, where: str, max_chars: int = MAX_ID_CHARS) -> str:
    if key not in obj:
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


def _list(body: Mapping[str, Any], key: str, max_items: int) -> list[Mapping[str, Any]]:
    items = body.get(key)
    if items is None:
        raise ServiceError("missing_field", f"{key} is required")
    if not isinstance(items, list) or len(items) > max_items:
        raise _bad(f"{key} must be a list of at most {max_items} entries")
    if not all(isinstance(i, Mapping) for i in items):
        raise _bad(f"every entry of {key} must be an object")
    return items


def published_tracks(body: Mapping[str, Any]) -> list[PublishedTrack]:
    out: list[PublishedTrack] = []
    for i, entry in enumerate(_list(body, "tracks", MAX_TRACK_ENTRIES)):
        where = f"tracks[{i}]"
        mid = _string(entry, "mid", where)
        source = _string(entry, "source", where)
        if source not in SOURCES:
            raise _bad(f"{where}: source must be one of {', '.join(SOURCES)}")
        out.append(
            PublishedTrack(mid, source, _dimension(entry, "width", where), _dimension(entry, "height", where))
        )
    mids = [t.mid for t in out]
    if len(set(mids)) != len(mids):
        raise _bad("tracks: two entries name the same mid")
    return out


def subscription_changes(body: Mapping[str, Any]) -> list[SubscriptionChange]:
    out: list[SubscriptionChange] = []
    for i, entry in enumerate(_list(body, "tracks", MAX_SUBSCRIPTION_ENTRIES)):
        where = f"tracks[{i}]"
        track = _string(entry, "id", where)
        subscribe = entry.get("subscribe", True)
        paused = entry.get("paused", False)
        if not isinstance(subscribe, bool) or not isinstance(paused, bool):
            raise _bad(f"{where}: subscribe and paused must be true or false")
        out.append(
            SubscriptionChange(
                track,
                subscribe,
                _dimension(entry, "max_width", where),
                _dimension(entry, "max_height", where),
                paused,
            )
        )
    ids = [c.track for c in out]
    if len(set(ids)) != len(ids):
        raise _bad("tracks: two entries name the same track")
    return out


def unpublished_track(body: Mapping[str, Any]) -> str:
    return _string(body, "track", "unpublish")


def ice_candidate(body: Mapping[str, Any]) -> Candidate:
    target = body.get("target")
    if target not in ("publish", "subscribe"):
        raise _bad("target must be publish or subscribe")
    raw = body.get("candidate")
    if raw is None:
        return Candidate(str(target), None, None, None)
    if isinstance(raw, str):
        raw = {"candidate": raw}
    if not isinstance(raw, Mapping):
        raise _bad("candidate must be an RTCIceCandidateInit object or null")
    text = raw.get("candidate")
    if not isinstance(text, str) or len(text) > 1024:
        raise _bad("candidate.candidate must be a string")
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    mid = raw.get("sdpMid")
    index = raw.get("sdpMLineIndex")
    if mid is not None and (not isinstance(mid, str) or len(mid) > MAX_ID_CHARS):
        raise _bad("candidate.sdpMid must be a string")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 256):
        raise _bad("candidate.sdpMLineIndex must be a small integer")
    return Candidate(str(target), text or None, mid, index)
