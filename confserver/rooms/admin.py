"""Room administration: rooms in the store, checked on the way in.

``RoomAdmin`` creates, reads, lists, counts and deletes rooms and lists their seats, with the
validation of every field an admin (or a moderator) may set. It also remembers the rooms this node
has seen, so that a store that lost its state does not get them re-created with default settings.
It knows nothing of connections: what must reach connected peers is ``RoomService``'s to do.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import text
from ..errors import ServiceError, not_found
from ..store import ROOM_CAP, ClaimResult, Participant, Room, RoomExistsError, RoomUpdate, Store

log = logging.getLogger("confserver.rooms")

ROOM_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_METADATA_BYTES = 4096
MAX_EMPTY_TIMEOUT = 7 * 86400
MAX_KNOWN_ROOMS = 10_000
"""Room names this node remembers having seen in the store (to refuse re-creating them with default
settings after the store lost its state); the oldest are forgotten first."""


def check_room_name(name: object) -> str:
    if not isinstance(name, str) or not ROOM_NAME_RE.fullmatch(name):
        raise ServiceError("invalid_room_name", "room names are 1-64 characters of A-Z a-z 0-9 _ -")
    return name


def check_max_participants(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= ROOM_CAP:
        raise ServiceError("invalid_field", f"max_participants must be an integer from 1 to {ROOM_CAP}")
    return value


def check_empty_timeout(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EMPTY_TIMEOUT:
        raise ServiceError(
            "invalid_field", f"empty_timeout must be an integer from 0 to {MAX_EMPTY_TIMEOUT} seconds"
        )
    return value


def check_metadata(value: object) -> dict[str, Any]:
    """Room metadata is sent to every participant in ``joined``: it must encode as UTF-8 JSON
    (no lone surrogate, only finite numbers, nesting within ``text.MAX_DEPTH``)."""
    if not isinstance(value, dict):
        raise ServiceError("invalid_field", "metadata must be a JSON object")
    try:
        text.check(value)
    except text.UnsafeJson as e:
        raise ServiceError("invalid_field", f"metadata: {e.message}") from None
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ServiceError("invalid_field", f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return value


def room_info(room: Room) -> dict[str, Any]:
    """A room as clients see it in signaling."""
    return {
        "name": room.name,
        "max_participants": room.max_participants,
        "metadata": dict(room.metadata),
        "locked": room.locked,
        "lobby": room.lobby,
        "password": bool(room.password_hash),
        "e2ee": room.e2ee,
    }


_CLAIM_REFUSALS: Mapping[ClaimResult, tuple[str, str, int]] = {
    ClaimResult.ROOM_FULL: ("room_full", "the room is full", 409),
    ClaimResult.ROOM_NOT_FOUND: ("room_not_found", "the room does not exist", 404),
    ClaimResult.ROOM_LOCKED: ("room_locked", "the room is locked", 403),
    ClaimResult.DUPLICATE: ("duplicate_session", "this session already holds a seat", 409),
}


def claim_error(result: ClaimResult) -> ServiceError:
    """A new error for a refused claim. Never keep and re-raise one instance: each raise adds its
    frames to the instance's traceback, which would keep every refused session alive."""
    code, message, status = _CLAIM_REFUSALS[result]
    return ServiceError(code, message, status)


class RoomAdmin:
    """Rooms in the store, as the admin API and moderators change them."""

    def __init__(
        self,
        store: Store,
        *,
        default_max_participants: int,
        default_e2ee: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._default_max = default_max_participants
        self.default_e2ee = default_e2ee
        """Whether a room created without saying is end-to-end encrypted (``rooms.e2ee_default``)."""
        self._clock = clock
        self._known: dict[str, None] = {}
        """Rooms seen in the store (oldest first, at most ``MAX_KNOWN_ROOMS``). If the store loses
        its state, a join for one of them is refused instead of re-creating it with defaults."""
        self._store_lost = False

    # --- the store's state ---------------------------------------------------------------------

    async def store_intact(self) -> bool:
        """``False`` once the store lost its state (see ``Store.state_intact``); checked every
        heartbeat and before auto-creating a room this node has seen."""
        intact = await self._store.state_intact(self._clock())
        if not intact and not self._store_lost:
            self._store_lost = True
            log.error(
                "the store lost its state: rooms this node knew are not re-created automatically",
                extra={"known_rooms": len(self._known)},
            )
        return intact

    def known(self, name: str) -> bool:
        """Whether this node has seen the room ``name`` in the store."""
        return name in self._known

    def remember(self, *names: str) -> None:
        for name in names:
            self._known.pop(name, None)
            self._known[name] = None
        while len(self._known) > MAX_KNOWN_ROOMS:
            del self._known[next(iter(self._known))]

    def forget(self, name: str) -> None:
        self._known.pop(name, None)

    # --- rooms ---------------------------------------------------------------------------------

    async def create_room(
        self,
        name: str,
        *,
        max_participants: int | None,
        empty_timeout: int,
        metadata: Mapping[str, Any],
        lobby: bool = False,
        password_hash: str = "",
        allow: Mapping[str, Any] | None = None,
        e2ee: bool | None = None,
    ) -> Room:
        now = self._clock()
        room = Room(
            name=check_room_name(name),
            max_participants=self._default_max if max_participants is None else max_participants,
            empty_timeout=empty_timeout,
            metadata=check_metadata(dict(metadata)),
            created_at=now,
            updated_at=now,
            lobby=lobby,
            password_hash=password_hash,
            allow=dict(allow or {}),
            e2ee=self.default_e2ee if e2ee is None else e2ee,
        )
        try:
            await self._store.rooms.create(room)
        except RoomExistsError:
            raise ServiceError("room_exists", f"a room named {name} exists already", 409) from None
        self.remember(room.name)
        log.info("room created", extra={"room": name})
        return room

    async def find(self, name: str) -> Room | None:
        """The room, or ``None`` (a join may create it)."""
        return await self._store.rooms.get(name)

    async def get_room(self, name: str) -> Room:
        room = await self._store.rooms.get(check_room_name(name))
        if room is None:
            raise not_found("room_not_found", f"no room named {name}")
        self.remember(room.name)
        return room

    async def list_rooms(self) -> list[Room]:
        rooms = await self._store.rooms.list()
        self.remember(*(r.name for r in rooms[-MAX_KNOWN_ROOMS:]))
        return rooms

    async def count(self, name: str) -> int:
        return await self._store.seats.count(name, self._clock())

    async def update_room(self, name: str, changes: RoomUpdate) -> Room:
        if changes.metadata is not None:
            check_metadata(dict(changes.metadata))
        if changes.e2ee is not None:
            current = await self.get_room(name)
            if current.e2ee != changes.e2ee and await self.count(current.name) > 0:
                raise ServiceError(
                    "room_in_use",
                    "end-to-end encryption can only be switched while the room is empty",
                    409,
                )
        room = await self._store.rooms.update(check_room_name(name), changes, self._clock())
        if room is None:
            raise not_found("room_not_found", f"no room named {name}")
        self.remember(room.name)
        return room

    async def delete_room(self, name: str) -> None:
        if not await self._store.rooms.delete(check_room_name(name)):
            raise not_found("room_not_found", f"no room named {name}")
        self.forget(name)

    async def close_expired_rooms(self) -> list[str]:
        """Delete the rooms whose empty timeout has run out; returns their names."""
        closed = await self._store.rooms.close_expired(self._clock())
        for name in closed:
            self.forget(name)
        return closed

    async def participants(self, room: str) -> list[Participant]:
        await self.get_room(room)
        return await self._store.seats.list(room, self._clock())

    async def find_participant(self, room: str, identity: str) -> Participant:
        for p in await self.participants(room):
            if p.identity == identity:
                return p
        raise not_found("participant_not_found", f"no participant {identity} in room {room}")
