"""Which media worker a room lives on: a sans-I/O core, no processes, no clock.

A room is placed once, at its first participant, on the least loaded live worker: the least CPU
(in steps of ``CPU_STEP`` of a core, so that noise does not decide), then the fewest
participants, then the fewest rooms, then the lowest index. It stays there until it is empty or
its worker dies; a dead worker releases its rooms, which are placed again like new ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CPU_STEP = 0.1
"""CPU load differences below this fraction of a core count as equal."""


@dataclass
class WorkerLoad:
    index: int
    alive: bool = False
    cpu: float = 0.0
    """Fraction of one core the worker used over its last report."""
    participants: int = 0
    rooms: set[str] = field(default_factory=set)

    def key(self) -> tuple[int, int, int, int]:
        return (round(self.cpu / CPU_STEP), self.participants, len(self.rooms), self.index)


class NoWorkerError(Exception):
    """No live worker to place a room on."""


class Placement:
    def __init__(self, workers: int) -> None:
        self.workers = [WorkerLoad(i) for i in range(workers)]
        self._room_worker: dict[str, int] = {}
        self.placements = [0] * workers
        """Rooms placed on each worker since start (moves after a worker's death included)."""

    def worker_of(self, room: str) -> int | None:
        return self._room_worker.get(room)

    def place(self, room: str) -> int:
        """The room's worker, placing it on the least loaded live one if it has none."""
        known = self._room_worker.get(room)
        if known is not None:
            return known
        live = [w for w in self.workers if w.alive]
        if not live:
            raise NoWorkerError("no media worker is running")
        chosen = min(live, key=WorkerLoad.key)
        chosen.rooms.add(room)
        self._room_worker[room] = chosen.index
        self.placements[chosen.index] += 1
        return chosen.index

    def joined(self, room: str) -> None:
        self.workers[self._room_worker[room]].participants += 1

    def left(self, room: str, *, empty: bool, counted: bool = True) -> None:
        """A participant (``counted`` by ``joined``) left ``room``; ``empty``: it was the last
        one, the room is released."""
        index = self._room_worker.get(room)
        if index is None:
            return
        worker = self.workers[index]
        if counted:
            worker.participants = max(0, worker.participants - 1)
        if empty:
            worker.rooms.discard(room)
            del self._room_worker[room]

    def report(self, index: int, cpu: float) -> None:
        self.workers[index].cpu = max(0.0, cpu)

    def up(self, index: int) -> None:
        worker = self.workers[index]
        worker.alive = True
        worker.cpu = 0.0

    def down(self, index: int) -> list[str]:
        """Worker ``index`` died: it takes no room, and its rooms (returned) have no worker."""
        worker = self.workers[index]
        worker.alive = False
        rooms = sorted(worker.rooms)
        for room in rooms:
            del self._room_worker[room]
        worker.rooms.clear()
        worker.participants = 0
        worker.cpu = 0.0
        return rooms
