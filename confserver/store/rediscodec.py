"""How the Redis store writes rooms, seats and admin keys: JSON text per field (rooms, in a hash),
JSON per seat, presence state as key -> JSON text (so Lua merges it without reparsing values)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from confserver.store.base import AdminKey, Participant, Room

ROOM_FIELDS = (
    "name",
    "max_participants",
    "empty_timeout",
    "metadata",
    "created_at",
    "updated_at",
    "auto_created",
    "locked",
    "lobby",
    "password_hash",
    "allow",
    "e2ee",
)
SEAT_FIELDS = ("room", "sid", "identity", "name", "role", "permissions", "joined_at", "node")


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"unexpected reply from redis: {value!r}")


def num(value: float) -> str:
    return repr(float(value))


def room_pairs(room: Room) -> list[str]:
    fields = {key: getattr(room, key) for key in ROOM_FIELDS}
    fields.update(
        metadata=dict(room.metadata),
        allow=dict(room.allow),
        created_at=float(room.created_at),
        updated_at=float(room.updated_at),
    )
    return [item for key in ROOM_FIELDS for item in (key, json.dumps(fields[key]))]


def decode_room(raw: Any) -> Room | None:
    """Build a ``Room`` from an HGETALL reply (a dict, or a flat list from a script)."""
    if isinstance(raw, list):
        raw = dict(zip(raw[::2], raw[1::2], strict=True))
    if not raw:
        return None
    fields = {text(k): text(v) for k, v in raw.items()}
    # A room written before a field existed has its default.
    return Room(**{key: json.loads(fields[key]) for key in ROOM_FIELDS if key in fields})


def encode_participant(p: Participant) -> tuple[str, str]:
    info = {key: getattr(p, key) for key in SEAT_FIELDS}
    info.update(permissions=list(p.permissions), joined_at=float(p.joined_at))
    return json.dumps(info), encode_state(p.state)


def encode_state(state: Mapping[str, Any]) -> str:
    """Presence state as an object of key -> JSON text, so Lua can merge it without reparsing values."""
    return json.dumps({str(k): json.dumps(v) for k, v in state.items()}, ensure_ascii=False)


def decode_participant(info: Any, state: Any) -> Participant:
    data = json.loads(text(info))
    raw_state = json.loads(text(state)) if state is not None else {}
    data.update(
        permissions=tuple(data["permissions"]), state={str(k): json.loads(v) for k, v in raw_state.items()}
    )
    return Participant(**data)


def decode_admin_key(raw: Any, revoked_at: Any) -> AdminKey:
    data = json.loads(text(raw))
    return AdminKey(
        id=data["id"],
        name=data["name"],
        scopes=tuple(data["scopes"]),
        created_at=float(data["created_at"]),
        revoked_at=None if revoked_at is None else float(text(revoked_at)),
    )
