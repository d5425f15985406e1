"""The storage boundary: narrow Protocols and the records they hold.

Implementations are named by mechanism (``MemoryStore``, ``RedisStore``) and chosen in one place
(``confserver.store.open_store``). Every time-dependent operation takes ``now`` (Unix seconds, float)
from the caller, so the same contract tests drive both implementations without sleeping.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

ROOM_CAP = 100
"""The hard cap on participants in one room; no configuration can raise it."""


@dataclass(frozen=True)
class Room:
    name: str
    max_participants: int
    empty_timeout: int
    """Seconds after the last participant leaves before the room closes; 0 keeps it until deleted."""
    metadata: Mapping[str, Any]
    created_at: float
    updated_at: float
    auto_created: bool = False
    locked: bool = False
    """A locked room admits no new participant; those inside stay."""
    lobby: bool = False
    """Joins without the moderator role (or the ``skip_lobby`` grant) wait for a moderator."""
    password_hash: str = ""
    """The room password's scrypt hash (``confserver.access``); empty: no password."""
    allow: Mapping[str, Any] = field(default_factory=dict)
    """Who may join by single sign-on, and who of them moderates (``confserver.access``)."""
    e2ee: bool = False
    """Media is encrypted end to end in the browsers; the server relays keys it cannot read."""


@dataclass(frozen=True)
class RoomUpdate:
    """Fields to change; ``None`` leaves a field as it is."""

    max_participants: int | None = None
    empty_timeout: int | None = None
    metadata: Mapping[str, Any] | None = None
    locked: bool | None = None
    lobby: bool | None = None
    password_hash: str | None = None
    """A new hash, or ``""`` to remove the password."""
    allow: Mapping[str, Any] | None = None
    e2ee: bool | None = None


@dataclass(frozen=True)
class Participant:
    """One seat in a room: one signaling connection of one identity."""

    room: str
    sid: str
    """Unique per connection (a random id made at join); the key of the seat."""
    identity: str
    name: str
    role: str
    permissions: tuple[str, ...]
    joined_at: float
    node: str
    """The node whose connection holds the seat."""
    state: Mapping[str, Any] = field(default_factory=dict)
    """Presence state shown to others: ``audio_muted``, ``video_muted``, ``hand_raised``, ..."""


class ClaimResult(enum.Enum):
    ADMITTED = "admitted"
    ROOM_FULL = "room_full"
    ROOM_NOT_FOUND = "room_not_found"
    ROOM_LOCKED = "room_locked"
    DUPLICATE = "duplicate"
    """A seat with this sid exists already."""


class RoomExistsError(Exception):
    """``RoomStore.create`` on a name that is taken."""


class StoreUnavailableError(Exception):
    """The backing service cannot be reached; the operation did not happen."""


class RoomStore(Protocol):
    async def create(self, room: Room) -> None:
        """Store a new room; raises ``RoomExistsError`` if the name is taken."""

    async def get(self, name: str) -> Room | None: ...

    async def list(self) -> list[Room]:
        """All rooms, sorted by name."""

    async def update(self, name: str, changes: RoomUpdate, now: float) -> Room | None:
        """Apply ``changes`` and set ``updated_at``; ``None`` if there is no such room."""

    async def delete(self, name: str) -> bool:
        """Remove the room and all its seats; ``False`` if there was no such room."""

    async def close_expired(self, now: float) -> builtins.list[str]:
        """Delete rooms with an ``empty_timeout`` > 0 that have been empty (no live seat) for at
        least that long since the last leave, and return their names. Seats whose lease lapsed
        count as gone. A room nobody ever joined is not closed by this."""


class SeatStore(Protocol):
    async def claim(
        self,
        participant: Participant,
        *,
        now: float,
        lease: float,
        auto_create: Room | None = None,
        bypass_lock: bool = False,
    ) -> ClaimResult:
        """Atomically take a seat for ``participant`` in ``participant.room``.

        Expired seats (lease lapsed before ``now``) are dropped first. Admits iff the room exists
        (or is created from ``auto_create`` in the same atomic step), is not locked, and holds fewer
        live seats than its ``max_participants``. N concurrent claims on K free seats admit
        exactly K. ``bypass_lock`` admits into a locked room (someone reconnecting to a meeting
        they were in); the seat cap still holds. An admitted seat lives until ``now + lease``
        unless refreshed or released."""

    async def release(self, room: str, sid: str, now: float) -> bool:
        """Free the seat; ``False`` if it was not held. When the room becomes empty, its
        empty-timeout clock starts at ``now``."""

    async def refresh(
        self, room: str, sids: Sequence[str], *, now: float, lease: float
    ) -> builtins.list[str]:
        """Extend the leases of the given live seats to ``now + lease`` and return the sids that
        no longer hold a seat (lapsed, released, or the room is gone), in the order given, each
        once. A lapsed seat is not revived here: after a store outage longer than the lease the
        caller claims it again through ``claim`` (cap respected) or closes the session."""

    async def update_state(self, room: str, sid: str, state: Mapping[str, Any]) -> Participant | None:
        """Merge ``state`` into the seat's presence state; ``None`` if no such seat."""

    async def get(self, room: str, sid: str, now: float) -> Participant | None: ...

    async def list(self, room: str, now: float) -> list[Participant]:
        """Live seats of the room, oldest join first."""

    async def count(self, room: str, now: float) -> int: ...


class RevocationStore(Protocol):
    async def revoke(self, jti: str, *, expires_at: float, now: float) -> None:
        """Remember ``jti`` as revoked until ``expires_at`` (the token's own expiry)."""

    async def is_revoked(self, jti: str, now: float) -> bool: ...


@dataclass(frozen=True)
class AdminKey:
    """A named admin API key. Its secret is not stored: the server derives it from the API secret
    and the key id (``confserver.adminkeys``), so this record holds nothing secret."""

    id: str
    """Public, like an API key: the ``kid`` of the admin tokens the key signs."""
    name: str
    """Who holds it: a person or a system."""
    scopes: tuple[str, ...]
    """Sorted, each once."""
    created_at: float
    revoked_at: float | None = None
    """When it was revoked; ``None`` while it is valid. A revoked key stays listed."""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class AdminKeyExistsError(Exception):
    """``AdminKeyStore.add`` with an id that is taken."""


class AdminKeyStore(Protocol):
    async def add(self, key: AdminKey) -> None:
        """Store a new key; raises ``AdminKeyExistsError`` if its id is taken."""

    async def get(self, key_id: str) -> AdminKey | None: ...

    async def list(self) -> list[AdminKey]:
        """All keys, revoked ones too, oldest first (then by id)."""

    async def revoke(self, key_id: str, now: float) -> AdminKey | None:
        """Mark the key revoked at ``now`` (a second revoke keeps the first time); ``None`` if
        there is no such key. Keys are never deleted: their names stay for the logs."""


class Store(Protocol):
    """What confserver keeps: rooms, seats, revoked token ids, named admin keys."""

    rooms: RoomStore
    seats: SeatStore
    revocations: RevocationStore
    admin_keys: AdminKeyStore

    async def ping(self) -> bool:
        """``True`` when the backing service answers (readiness)."""

    async def state_intact(self, now: float) -> bool:
        """``False`` once the store has lost what it held since this node first asked: the
        backing service restarted empty (a Redis without persistence), so rooms, their settings,
        revocations and admin keys are gone. The first call records the store's epoch (creating it at
        ``now`` in a new store); call it once at start. Stays ``False`` for the life of this
        store object: only a restart of the node accepts the loss. Raises
        ``StoreUnavailableError`` when the service cannot be reached."""

    async def close(self) -> None: ...
