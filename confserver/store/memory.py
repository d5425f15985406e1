"""In-process store for a single node and for tests.

Every operation runs without awaiting inside, so under asyncio each one is atomic.
"""

from __future__ import annotations

import builtins
import copy
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from confserver.store.base import (
    ROOM_CAP,
    AdminKey,
    AdminKeyExistsError,
    AdminKeyStore,
    ClaimResult,
    Participant,
    RevocationStore,
    Room,
    RoomExistsError,
    RoomStore,
    RoomUpdate,
    SeatStore,
)


@dataclass
class _Seat:
    participant: Participant
    expires_at: float


@dataclass
class _RoomEntry:
    room: Room
    seats: dict[str, _Seat] = field(default_factory=dict)
    empty_since: float | None = None
    """When the last seat went; ``None`` while seats are held or if nobody ever joined."""

    def prune(self, now: float) -> None:
        """Drop lapsed seats; if that empties the room, its clock starts at the last lapse."""
        lapsed = [sid for sid, seat in self.seats.items() if seat.expires_at <= now]
        if not lapsed:
            return
        last = max(self.seats[sid].expires_at for sid in lapsed)
        for sid in lapsed:
            del self.seats[sid]
        if not self.seats:
            self.empty_since = last


def _copy_room(room: Room) -> Room:
    return replace(room, metadata=copy.deepcopy(dict(room.metadata)), allow=copy.deepcopy(dict(room.allow)))


def _copy_participant(participant: Participant) -> Participant:
    return replace(
        participant,
        permissions=tuple(participant.permissions),
        state=copy.deepcopy(dict(participant.state)),
    )


class _MemoryData:
    """The shared state behind the three memory stores."""

    def __init__(self) -> None:
        self.rooms: dict[str, _RoomEntry] = {}


class MemoryRoomStore:
    def __init__(self, data: _MemoryData) -> None:
        self._data = data

    async def create(self, room: Room) -> None:
        if room.name in self._data.rooms:
            raise RoomExistsError(room.name)
        self._data.rooms[room.name] = _RoomEntry(_copy_room(room))

    async def get(self, name: str) -> Room | None:
        entry = self._data.rooms.get(name)
        return None if entry is None else _copy_room(entry.room)

    async def list(self) -> list[Room]:
        return [_copy_room(self._data.rooms[name].room) for name in sorted(self._data.rooms)]

    async def update(self, name: str, changes: RoomUpdate, now: float) -> Room | None:
        entry = self._data.rooms.get(name)
        if entry is None:
            return None
        room = entry.room
        entry.room = replace(
            room,
            max_participants=(
                room.max_participants if changes.max_participants is None else changes.max_participants
            ),
            empty_timeout=room.empty_timeout if changes.empty_timeout is None else changes.empty_timeout,
            metadata=(room.metadata if changes.metadata is None else copy.deepcopy(dict(changes.metadata))),
            locked=room.locked if changes.locked is None else changes.locked,
            lobby=room.lobby if changes.lobby is None else changes.lobby,
            password_hash=room.password_hash if changes.password_hash is None else changes.password_hash,
            allow=room.allow if changes.allow is None else copy.deepcopy(dict(changes.allow)),
            e2ee=room.e2ee if changes.e2ee is None else changes.e2ee,
            updated_at=now,
        )
        return _copy_room(entry.room)

    async def delete(self, name: str) -> bool:
        return self._data.rooms.pop(name, None) is not None

    async def close_expired(self, now: float) -> builtins.list[str]:
        closed: list[str] = []
        for name, entry in list(self._data.rooms.items()):
            timeout = entry.room.empty_timeout
            if timeout <= 0:
                continue
            entry.prune(now)
            if entry.seats or entry.empty_since is None:
                continue
            if entry.empty_since + timeout <= now:
                del self._data.rooms[name]
                closed.append(name)
        return sorted(closed)


class MemorySeatStore:
    def __init__(self, data: _MemoryData) -> None:
        self._data = data

    async def claim(
        self,
        participant: Participant,
        *,
        now: float,
        lease: float,
        auto_create: Room | None = None,
        bypass_lock: bool = False,
    ) -> ClaimResult:
        if auto_create is not None and auto_create.name != participant.room:
            raise ValueError("auto_create.name must equal participant.room")
        entry = self._data.rooms.get(participant.room)
        if entry is None:
            if auto_create is None:
                return ClaimResult.ROOM_NOT_FOUND
            entry = _RoomEntry(_copy_room(auto_create))
            self._data.rooms[participant.room] = entry
        entry.prune(now)
        if participant.sid in entry.seats:
            return ClaimResult.DUPLICATE
        if entry.room.locked and not bypass_lock:
            return ClaimResult.ROOM_LOCKED
        if len(entry.seats) >= min(entry.room.max_participants, ROOM_CAP):
            return ClaimResult.ROOM_FULL
        entry.seats[participant.sid] = _Seat(_copy_participant(participant), now + lease)
        entry.empty_since = None
        return ClaimResult.ADMITTED

    async def release(self, room: str, sid: str, now: float) -> bool:
        entry = self._data.rooms.get(room)
        if entry is None:
            return False
        entry.prune(now)
        if entry.seats.pop(sid, None) is None:
            return False
        if not entry.seats:
            entry.empty_since = now
        return True

    async def refresh(
        self, room: str, sids: Sequence[str], *, now: float, lease: float
    ) -> builtins.list[str]:
        unique = list(dict.fromkeys(sids))
        entry = self._data.rooms.get(room)
        if entry is None:
            return unique
        entry.prune(now)
        lost: list[str] = []
        for sid in unique:
            seat = entry.seats.get(sid)
            if seat is None:
                lost.append(sid)
            else:
                seat.expires_at = max(seat.expires_at, now + lease)
        return lost

    async def update_state(self, room: str, sid: str, state: Mapping[str, Any]) -> Participant | None:
        entry = self._data.rooms.get(room)
        seat = None if entry is None else entry.seats.get(sid)
        if seat is None:
            return None
        merged = {**seat.participant.state, **copy.deepcopy(dict(state))}
        seat.participant = replace(seat.participant, state=merged)
        return _copy_participant(seat.participant)

    async def get(self, room: str, sid: str, now: float) -> Participant | None:
        entry = self._data.rooms.get(room)
        seat = None if entry is None else entry.seats.get(sid)
        if seat is None or seat.expires_at <= now:
            return None
        return _copy_participant(seat.participant)

    async def list(self, room: str, now: float) -> list[Participant]:
        entry = self._data.rooms.get(room)
        if entry is None:
            return []
        live = [seat.participant for seat in entry.seats.values() if seat.expires_at > now]
        live.sort(key=lambda p: (p.joined_at, p.sid))
        return [_copy_participant(p) for p in live]

    async def count(self, room: str, now: float) -> int:
        entry = self._data.rooms.get(room)
        if entry is None:
            return 0
        return sum(1 for seat in entry.seats.values() if seat.expires_at > now)


class MemoryRevocationStore:
    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def _sweep(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            expires_at, jti = heapq.heappop(self._heap)
            if self._expiry.get(jti) == expires_at:
                del self._expiry[jti]

    async def revoke(self, jti: str, *, expires_at: float, now: float) -> None:
        self._sweep(now)
        if expires_at <= now or self._expiry.get(jti, float("-inf")) >= expires_at:
            return
        self._expiry[jti] = expires_at
        heapq.heappush(self._heap, (expires_at, jti))

    async def is_revoked(self, jti: str, now: float) -> bool:
        return self._expiry.get(jti, float("-inf")) > now


class MemoryAdminKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, AdminKey] = {}

    async def add(self, key: AdminKey) -> None:
        if key.id in self._keys:
            raise AdminKeyExistsError(key.id)
        self._keys[key.id] = replace(key, scopes=tuple(key.scopes))

    async def get(self, key_id: str) -> AdminKey | None:
        return self._keys.get(key_id)

    async def list(self) -> list[AdminKey]:
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.id))

    async def revoke(self, key_id: str, now: float) -> AdminKey | None:
        key = self._keys.get(key_id)
        if key is not None and key.revoked_at is None:
            key = self._keys[key_id] = replace(key, revoked_at=now)
        return key


class MemoryStore:
    """Rooms, seats, revocations and admin keys kept in this process."""

    def __init__(self) -> None:
        data = _MemoryData()
        self.rooms: RoomStore = MemoryRoomStore(data)
        self.seats: SeatStore = MemorySeatStore(data)
        self.revocations: RevocationStore = MemoryRevocationStore()
        self.admin_keys: AdminKeyStore = MemoryAdminKeyStore()

    async def ping(self) -> bool:
        return True

    async def state_intact(self, now: float) -> bool:
        return True  # the state lives and dies with this process

    async def close(self) -> None:
        return None
