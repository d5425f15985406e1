"""Human-readable tables and details, and the --json printer."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any


class ResponseShapeError(Exception):
    """The server's JSON did not have the documented shape."""


def to_json(value: Any) -> str:
    """Pretty JSON with sorted keys: the data unchanged (the API's response or a command's result)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def clean(value: object) -> str:
    """Render a value for the terminal; control characters are escaped, never emitted raw."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def format_time(value: object) -> str:
    """Unix seconds -> ``2026-11-23 14:05:00Z`` (UTC)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else clean(value)
    try:
        moment = dt.datetime.fromtimestamp(value, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return clean(value)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def format_duration(value: object, zero: str = "never") -> str:
    """Seconds -> compact ``90s`` / ``15m`` / ``2h`` / ``1d``; 0 -> *zero*."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "-" if value is None else clean(value)
    if value == 0:
        return zero
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}s"


def yes_no(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value is None else clean(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; no trailing blanks."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (list(headers), *rows):
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
        lines.append(line.rstrip())
    return "\n".join(lines)


def details(pairs: Sequence[tuple[str, str]]) -> str:
    """``label:  value`` lines with aligned values."""
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(f"{(label + ':').ljust(width)}  {value}" for label, value in pairs)


def _objects(doc: object, key: str) -> list[Mapping[str, Any]]:
    if not isinstance(doc, Mapping) or not isinstance(doc.get(key), list):
        raise ResponseShapeError(f"expected an object with a {key!r} list")
    items = doc[key]
    if not all(isinstance(item, Mapping) for item in items):
        raise ResponseShapeError(f"expected {key!r} to be a list of objects")
    return list(items)


def _object(doc: object, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ResponseShapeError(f"expected a {what} object")
    return doc


def _text(value: object) -> str:
    return "-" if value is None else clean(value)


def room_table(doc: object) -> str:
    rooms = _objects(doc, "rooms")
    if not rooms:
        return "No rooms."
    rows = [
        [
            _text(r.get("name")),
            _text(r.get("num_participants")),
            _text(r.get("max_participants")),
            yes_no(r.get("locked")),
            yes_no(r.get("e2ee")),
            format_duration(r.get("empty_timeout")),
            format_time(r.get("created_at")),
        ]
        for r in sorted(rooms, key=lambda r: str(r.get("name", "")))
    ]
    return table(["NAME", "PARTICIPANTS", "MAX", "LOCKED", "E2EE", "EMPTY_TIMEOUT", "CREATED"], rows)


def room_details(doc: object) -> str:
    room = _object(doc, "room")
    metadata = room.get("metadata")
    meta_text = "-" if metadata is None else clean(json.dumps(metadata, sort_keys=True, ensure_ascii=False))
    return details(
        [
            ("Name", _text(room.get("name"))),
            ("Participants", _text(room.get("num_participants"))),
            ("Max participants", _text(room.get("max_participants"))),
            ("Locked", yes_no(room.get("locked"))),
            ("Lobby", yes_no(room.get("lobby"))),
            ("Password", yes_no(room.get("password_protected"))),
            ("End-to-end encrypted", yes_no(room.get("e2ee"))),
            (
                "Sign-in policy",
                "-" if not room.get("allow") else clean(json.dumps(room.get("allow"), sort_keys=True)),
            ),
            ("Auto-created", yes_no(room.get("auto_created"))),
            ("Empty timeout", format_duration(room.get("empty_timeout"))),
            ("Metadata", meta_text),
            ("Created", format_time(room.get("created_at"))),
            ("Updated", format_time(room.get("updated_at"))),
        ]
    )


def _muted(state: Mapping[str, Any], key: str) -> str:
    value = state.get(key)
    if isinstance(value, bool):
        return "muted" if value else "on"
    return "-"


def participant_table(doc: object) -> str:
    participants = _objects(doc, "participants")
    if not participants:
        return "No participants."
    rows = []
    for p in sorted(participants, key=lambda p: str(p.get("identity", ""))):
        state = p.get("state")
        state = state if isinstance(state, Mapping) else {}
        rows.append(
            [
                _text(p.get("identity")),
                _text(p.get("name")) if p.get("name") else "-",
                _text(p.get("role")),
                _muted(state, "audio_muted"),
                _muted(state, "video_muted"),
                format_time(p.get("joined_at")),
            ]
        )
    return table(["IDENTITY", "NAME", "ROLE", "AUDIO", "VIDEO", "JOINED"], rows)


def participant_details(doc: object) -> str:
    p = _object(doc, "participant")
    state = p.get("state")
    state = state if isinstance(state, Mapping) else {}
    perms = p.get("permissions")
    perms_text = ", ".join(clean(x) for x in perms) if isinstance(perms, list) and perms else "-"
    return details(
        [
            ("Identity", _text(p.get("identity"))),
            ("Name", _text(p.get("name")) if p.get("name") else "-"),
            ("Role", _text(p.get("role"))),
            ("Session", _text(p.get("sid"))),
            ("Audio", _muted(state, "audio_muted")),
            ("Video", _muted(state, "video_muted")),
            ("Hand raised", yes_no(state.get("hand_raised"))),
            ("Permissions", perms_text),
            ("Joined", format_time(p.get("joined_at"))),
        ]
    )


def token_details(doc: object) -> str:
    tok = _object(doc, "token")
    if not isinstance(tok.get("token"), str) or not isinstance(tok.get("join_url"), str):
        raise ResponseShapeError("expected 'token' and 'join_url' strings")
    return details(
        [
            ("Token", clean(tok["token"])),
            ("Join link", clean(tok["join_url"])),
            ("JTI", _text(tok.get("jti"))),
            ("Expires", format_time(tok.get("expires_at"))),
        ]
    )


def revoke_details(doc: object) -> str:
    res = _object(doc, "revocation")
    return f"Revoked token {_text(res.get('jti'))} (rejected until {format_time(res.get('revoked_until'))})"


def _scopes(value: object) -> str:
    if isinstance(value, list) and value:
        return ",".join(clean(s) for s in value)
    return "-"


def api_key_created(doc: object) -> str:
    key = _object(doc, "API key")
    if not isinstance(key.get("id"), str) or not isinstance(key.get("secret"), str):
        raise ResponseShapeError("expected 'id' and 'secret' strings")
    return "\n".join(
        [
            details(
                [
                    ("API key", clean(key["id"])),
                    ("API secret", clean(key["secret"])),
                    ("Name", _text(key.get("name"))),
                    ("Scopes", _scopes(key.get("scopes"))),
                    ("Created", format_time(key.get("created_at"))),
                ]
            ),
            "",
            "The secret is shown this once; the server does not keep it. Use the key with:",
            f"  CONF_API_KEY={clean(key['id'])} CONF_API_SECRET=... confctl ...",
        ]
    )


def api_key_table(doc: object) -> str:
    keys = _objects(doc, "keys")
    if not keys:
        return "No API keys."
    rows = [
        [
            _text(k.get("id")),
            _text(k.get("name")),
            _scopes(k.get("scopes")),
            format_time(k.get("created_at")),
            format_time(k.get("revoked_at")) if k.get("revoked") else "no",
        ]
        for k in keys
    ]
    return table(["ID", "NAME", "SCOPES", "CREATED", "REVOKED"], rows)
