"""Storage: the Protocols of ``base`` and the implementations, chosen by ``open_store``."""

from __future__ import annotations

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
    Store,
    StoreUnavailableError,
)
from confserver.store.memory import MemoryStore
from confserver.store.redis import RedisStore

__all__ = [
    "ROOM_CAP",
    "AdminKey",
    "AdminKeyExistsError",
    "AdminKeyStore",
    "ClaimResult",
    "MemoryStore",
    "Participant",
    "RedisStore",
    "RevocationStore",
    "Room",
    "RoomExistsError",
    "RoomStore",
    "RoomUpdate",
    "SeatStore",
    "Store",
    "StoreUnavailableError",
    "open_store",
]

STORE_KINDS = ("memory", "redis")


async def open_store(
    kind: str, *, redis_url: str = "redis://127.0.0.1:6379/0", prefix: str = "conf:"
) -> Store:
    """Open the store named by ``kind``: ``"memory"`` or ``"redis"``."""
    if kind == "memory":
        return MemoryStore()
    if kind == "redis":
        return RedisStore.from_url(redis_url, prefix=prefix)
    raise ValueError(f"unknown store kind {kind!r}; expected one of: {', '.join(STORE_KINDS)}")
