"""The lobby of each room on this node: who is waiting for a moderator, in the order they came.

Pure state with an injected clock. A waiter holds no seat. One who drops off keeps their place for
the rejoin grace (``away``), and a moderator may admit them meanwhile: they then enter at once when
they come back. The ``enter`` callback is the waiting session's own continuation of its join.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ServiceError
from .hub import Peer

Enter = Callable[[], Awaitable[None]]

KNOCK_WINDOW = 60.0
MAX_TRACKED_IDENTITIES = 100_000
"""Identities whose recent knocks are remembered for the rate limit, all rooms together."""


@dataclass
class Waiter:
    room: str
    identity: str
    name: str
    sid: str
    since: float
    peer: Peer | None
    """``None`` while away (the connection dropped within the grace)."""
    enter: Enter | None
    away_since: float | None = None
    admitted: bool = False
    """Admitted while away: enters as soon as they come back."""

    def info(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "name": self.name,
            "since": int(self.since * 1000),
            "away": self.peer is None,
        }


class Lobby:
    def __init__(self, *, max_waiting: int, knocks_per_minute: int, grace: float, clock: Callable[[], float]):
        self._max = max_waiting
        self._knocks_per_minute = knocks_per_minute
        self._grace = grace
        self._clock = clock
        self._rooms: dict[str, dict[str, Waiter]] = {}
        self._knocks: dict[tuple[str, str], deque[float]] = {}

    def waiting(self, room: str) -> list[Waiter]:
        return sorted(self._rooms.get(room, {}).values(), key=lambda w: (w.since, w.identity))

    def get(self, room: str, identity: str) -> Waiter | None:
        return self._rooms.get(room, {}).get(identity)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def knock(self, room: str, identity: str, name: str, sid: str, peer: Peer, enter: Enter) -> Waiter:
        """Wait in ``room``; the same identity coming back takes its old place. Raises
        ``rate_limited`` or ``lobby_full``."""
        now = self._clock()
        self._count_knock(room, identity, now)
        waiting = self._rooms.setdefault(room, {})
        existing = waiting.get(identity)
        if existing is not None:
            existing.name, existing.sid, existing.peer, existing.enter = name, sid, peer, enter
            existing.away_since = None
            return existing
        if len(waiting) >= self._max:
            if not waiting:
                del self._rooms[room]
            raise ServiceError("lobby_full", "too many people are waiting to enter this room; try later", 503)
        waiter = Waiter(room, identity, name, sid, now, peer, enter)
        waiting[identity] = waiter
        return waiter

    def _count_knock(self, room: str, identity: str, now: float) -> None:
        key = (room, identity)
        times = self._knocks.get(key)
        if times is None:
            if len(self._knocks) >= MAX_TRACKED_IDENTITIES:
                self._forget_old_knocks(now)
            times = self._knocks[key] = deque()
        while times and now - times[0] >= KNOCK_WINDOW:
            times.popleft()
        if len(times) >= self._knocks_per_minute:
            raise ServiceError("rate_limited", "too many attempts to enter this room; wait a minute", 429)
        times.append(now)

    def _forget_old_knocks(self, now: float) -> None:
        self._knocks = {k: t for k, t in self._knocks.items() if t and now - t[-1] < KNOCK_WINDOW}
        while len(self._knocks) >= MAX_TRACKED_IDENTITIES:  # all recent: drop the oldest
            del self._knocks[next(iter(self._knocks))]

    def take(self, room: str, identity: str) -> Waiter:
        """Remove and return a waiter; ``participant_not_found`` when no one by that name waits."""
        waiter = self._rooms.get(room, {}).pop(identity, None)
        if waiter is None:
            raise ServiceError("participant_not_found", f"no one named {identity} is waiting to enter", 404)
        if not self._rooms[room]:
            del self._rooms[room]
        return waiter

    def put_back(self, waiter: Waiter) -> None:
        self._rooms.setdefault(waiter.room, {})[waiter.identity] = waiter

    def away(self, room: str, sid: str) -> Waiter | None:
        """The waiter's connection ended: keep the place for the grace."""
        for waiter in self._rooms.get(room, {}).values():
            if waiter.sid == sid:
                waiter.peer, waiter.enter, waiter.away_since = None, None, self._clock()
                return waiter
        return None

    def expire(self) -> list[str]:
        """Drop the places kept longer than the grace; the rooms whose lobby changed."""
        now = self._clock()
        changed = []
        for room, waiting in list(self._rooms.items()):
            gone = [
                i
                for i, w in waiting.items()
                if w.away_since is not None and now - w.away_since >= self._grace
            ]
            for identity in gone:
                del waiting[identity]
            if gone:
                changed.append(room)
            if not waiting:
                del self._rooms[room]
        return changed

    def close_room(self, room: str) -> list[Waiter]:
        self._knocks = {k: t for k, t in self._knocks.items() if k[0] != room}
        return list(self._rooms.pop(room, {}).values())
