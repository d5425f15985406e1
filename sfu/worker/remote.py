"""``RemoteMediaController``: confserver's ``MediaController`` with the media in N worker
processes (``sfu.workers`` > 1). It runs in the signaling process and imports no aiortc.

Each room is placed on one worker at its first participant (``sfu.worker.placement``); every
call for that room goes to that worker over its channel (``sfu.worker.link``), with a deadline:
a worker that does not answer in time gives ``media_timeout``, never a stuck session. What a
worker sends to a participant arrives as a ``send`` frame and goes to the ``send`` function the
session registered, and only if that participant's room is on that worker.

A worker that dies (or breaks the channel's rules, or stops reporting) is killed and restarted.
Its rooms are placed again at once on the live workers; each of their participants is told
(``media_reset``: the client closes its peer connections, publishes and subscribes again) and
joined on the new worker with its mute state. The signaling session, the seat, chat and
moderation are not touched. Calls for a room that is moving wait until it has moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from confserver.config import Config
from confserver.contract import MediaMessage, ServiceError
from confserver.media import SendFn
from sfu.turn import ice_servers_for

from .channel import Event, Handle, Join, Leave, Load, Metrics, Mute, Request, Send, Start
from .link import LOST, WORKER_COMMAND, WorkerLink
from .metrics import WorkerMetrics
from .placement import NoWorkerError, Placement

log = logging.getLogger("sfu.worker")

CALL_TIMEOUT: Final = 12.0
"""Seconds a worker has to answer one call: above the SFU's own 10 s deadline on each media step,
below the signaling session's 15 s backstop."""
LAPSE: Final = 10.0
"""Seconds without any frame from a worker (it reports every second) before it counts as stuck."""
RESTART_DELAYS: Final = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
"""Seconds before each successive restart of a worker that keeps dying (the last one repeats)."""
STABLE_AFTER: Final = 60.0
"""A worker up this long has its restart count forgotten."""
MEDIA_RESET: Final = {"type": "media_reset"}


@dataclass
class Member:
    sid: str
    identity: str
    permissions: frozenset[str]
    send: SendFn
    muted: dict[str, bool] = field(default_factory=dict)
    placed: bool = False
    """Joined (or being joined) on the room's worker."""


@dataclass
class RoomMedia:
    name: str
    worker: int | None = None
    members: dict[str, Member] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set unless the room is moving to another worker."""
    moves: int = 0

    def __post_init__(self) -> None:
        self.ready.set()


class RemoteMediaController:
    """Implements ``confserver.media.MediaController`` over media worker processes."""

    def __init__(
        self,
        cfg: Config,
        metrics: WorkerMetrics,
        *,
        workers: int | None = None,
        command: Sequence[str] = WORKER_COMMAND,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        self._cfg = cfg
        self._command = tuple(command)
        self._call_timeout = call_timeout
        count = workers if workers is not None else cfg.sfu.worker_count
        self._placement = Placement(count)
        self._links: list[WorkerLink | None] = [None] * count
        self._rooms: dict[str, RoomMedia] = {}
        self._metrics = metrics
        self._last_load: list[tuple[float, float] | None] = [None] * count
        self._quick_deaths = [0] * count
        self._tasks: set[asyncio.Task[None]] = set()
        self._live = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False
        metrics.attach(self)

    # --- start and stop --------------------------------------------------------------------------

    def ports(self) -> list[int]:
        base = self._cfg.sfu.udp_port
        return [base + i if base else 0 for i in range(len(self._links))]

    def pids(self) -> list[int | None]:
        return [link.pid if link is not None and link.alive else None for link in self._links]

    async def start(self) -> None:
        """Start every worker; a worker that cannot start stops the server's start."""
        try:
            await asyncio.gather(*(self._spawn(i) for i in range(len(self._links))))
        except BaseException:
            await self.close()
            raise
        self._watchdog = asyncio.create_task(self._watch(), name="media-workers-watchdog")

    async def _spawn(self, index: int) -> None:
        # its own port; no TURN secret (credentials are made here, in the signaling process)
        sfu = dataclasses.replace(self._cfg.sfu, workers=1, udp_port=self.ports()[index], turn_secret="")
        start = Start(index, dataclasses.asdict(sfu), self._cfg.log.level, self._cfg.log.format)
        link = WorkerLink(index, on_event=self._on_event, on_lost=self._on_lost, command=self._command)
        await link.spawn(start)
        if self._closed:
            await link.stop()
            return
        self._links[index] = link
        self._last_load[index] = None
        self._placement.up(index)
        self._metrics.up(index, True)
        self._live.set()
        log.info(
            "media worker %d started (pid %s, UDP port %s)", index, link.pid, start.sfu["udp_port"] or "any"
        )

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for task in list(self._tasks):
            task.cancel()
        links = [link for link in self._links if link is not None]
        await asyncio.gather(*(link.stop() for link in links), return_exceptions=True)
        self._rooms.clear()

    # --- MediaController -------------------------------------------------------------------------

    async def participant_joined(
        self, room: str, sid: str, permissions: frozenset[str], send: SendFn, identity: str = ""
    ) -> None:
        r = self._rooms.get(room)
        if r is None:
            r = self._rooms[room] = RoomMedia(room)
        member = Member(sid, identity, frozenset(permissions), send)
        r.members[sid] = member  # not placed yet: a move going on leaves it to this call
        await self._settled(r)
        if r.members.get(sid) is not member:
            return  # left meanwhile
        if r.worker is None:
            try:
                r.worker = await self._place(room)
            except ServiceError:
                r.members.pop(sid, None)
                raise
        await self._join(r, r.worker, member)

    async def handle(self, room: str, sid: str, message: MediaMessage) -> None:
        r = self._rooms.get(room)
        if r is None or sid not in r.members:
            raise ServiceError("not_joined", "this session has no media state in the room")
        await self._settled(r)
        if r.worker is not None:
            await self._call(r.worker, Handle(0, room, sid, message))

    async def set_muted(self, room: str, sid: str, kind: str, muted: bool) -> None:
        r = self._rooms.get(room)
        member = r.members.get(sid) if r is not None else None
        if r is None or member is None or kind not in ("audio", "video"):
            return
        member.muted[kind] = muted
        await self._settled(r)
        if r.worker is not None:
            await self._call(r.worker, Mute(0, room, sid, kind, muted))

    async def participant_left(self, room: str, sid: str) -> None:
        r = self._rooms.get(room)
        member = r.members.pop(sid, None) if r is not None else None
        if r is None or member is None:
            return
        if not r.members:
            self._rooms.pop(room, None)
        await self._settled(r)
        # the room is released only if no one came back meanwhile (they use the same placement)
        self._placement.left(room, counted=member.placed, empty=room not in self._rooms)
        if r.worker is not None and member.placed:
            await self._call(r.worker, Leave(0, room, sid))

    def ice_servers(self, identity: str, *, not_after: float | None = None) -> list[dict[str, Any]]:
        sfu = self._cfg.sfu
        return ice_servers_for(
            sfu.ice_servers, identity, secret=sfu.turn_secret, now=time.time(),
            ttl=sfu.turn_credential_ttl, not_after=not_after,
        )  # fmt: skip

    # --- what the metrics read -------------------------------------------------------------------

    def load(self) -> list[tuple[bool, int, int, float]]:
        """Per worker: alive, rooms, participants, CPU (fraction of a core)."""
        return [(w.alive, len(w.rooms), w.participants, w.cpu) for w in self._placement.workers]

    @property
    def placement(self) -> Placement:
        return self._placement

    def room_worker(self, room: str) -> int | None:
        r = self._rooms.get(room)
        return r.worker if r is not None else None

    # --- internals -------------------------------------------------------------------------------

    async def _settled(self, r: RoomMedia) -> None:
        if not r.ready.is_set():
            try:
                await asyncio.wait_for(r.ready.wait(), self._call_timeout)
            except TimeoutError:
                raise ServiceError("media_timeout", "the room's media did not come back in time") from None

    async def _place(self, room: str) -> int:
        """A live worker for ``room``, waiting (within the call deadline) for one to restart."""
        deadline = time.monotonic() + self._call_timeout
        while True:
            known = self._placement.worker_of(room)
            if known is not None:
                return known
            try:
                index = self._placement.place(room)
                self._metrics.placed(index)
                return index
            except NoWorkerError:
                self._live.clear()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServiceError("media_unavailable", "no media worker is running") from None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._live.wait(), left)

    async def _call(self, index: int, request: Request) -> None:
        link = self._links[index]
        if link is None:
            return
        try:
            reply = await link.call(request, self._call_timeout)
        except TimeoutError:
            self._metrics.call_timeout(index)
            raise ServiceError(
                "media_timeout", f"the media worker did not answer in {self._call_timeout:g} s"
            ) from None
        if reply is LOST or reply.code is None:
            return  # a lost worker's rooms move; their participants are told (media_reset)
        raise ServiceError(reply.code, reply.message)

    def _on_event(self, index: int, event: Event) -> None:
        if isinstance(event, Send):
            r = self._rooms.get(event.room)
            member = r.members.get(event.sid) if r is not None else None
            if r is not None and member is not None and r.worker == index:
                member.send(event.message)
        elif isinstance(event, Load):
            now = time.monotonic()
            last = self._last_load[index]
            self._last_load[index] = (now, event.cpu_seconds)
            if last is not None and now > last[0]:
                used = max(0.0, event.cpu_seconds - last[1])
                self._placement.report(index, used / (now - last[0]))
                self._metrics.cpu(index, used)
        elif isinstance(event, Metrics):
            self._metrics.relay(index, event.text)

    def _on_lost(self, index: int, reason: str, bad_frame: bool) -> None:
        rooms = self._placement.down(index)
        self._metrics.up(index, False)
        if self._closed:
            return
        if bad_frame:
            self._metrics.channel_error(index)
        log.error(
            "media worker %d stopped: %s; restarting it; its %d room(s) move to a live worker",
            index, reason, len(rooms),
        )  # fmt: skip
        self._metrics.restarted(index)
        self._background(self._restart(index), f"media-worker-{index}-restart")
        for name in rooms:
            r = self._rooms.get(name)
            if r is not None:
                r.worker = None
                r.moves += 1
                r.ready.clear()
                self._background(self._move(r, r.moves), f"media-move-{name}")

    async def _move(self, r: RoomMedia, move: int) -> None:
        """Place ``r`` again and join its participants there, each told first."""
        try:
            index = await self._place(r.name)
            if self._rooms.get(r.name) is not r:  # emptied meanwhile
                if r.name not in self._rooms:
                    self._placement.left(r.name, counted=False, empty=True)
                return
            if r.moves != move:
                return
            r.worker = index
            members = [m for m in r.members.values() if m.placed]
            for member in members:
                member.placed = False
                member.send(MEDIA_RESET)
            await asyncio.gather(*(self._rejoin(r, index, m) for m in members), return_exceptions=True)
        except ServiceError:
            log.error("room %s: no media worker to move to; its participants have no media", r.name)
        finally:
            if r.moves == move:
                r.ready.set()

    async def _join(self, r: RoomMedia, index: int, member: Member) -> None:
        member.placed = True
        self._placement.joined(r.name)
        await self._call(index, Join(0, r.name, member.sid, member.permissions, member.identity))

    async def _rejoin(self, r: RoomMedia, index: int, member: Member) -> None:
        if r.members.get(member.sid) is not member:
            return  # left meanwhile
        await self._join(r, index, member)
        for kind, muted in member.muted.items():
            if muted:
                await self._call(index, Mute(0, r.name, member.sid, kind, True))

    async def _restart(self, index: int) -> None:
        old = self._links[index]
        self._links[index] = None
        if old is not None:
            await old.reap()
            if time.monotonic() - old.started_at > STABLE_AFTER:
                self._quick_deaths[index] = 0
        while not self._closed:
            delay = RESTART_DELAYS[min(self._quick_deaths[index], len(RESTART_DELAYS) - 1)]
            self._quick_deaths[index] += 1
            await asyncio.sleep(delay)
            try:
                await self._spawn(index)
                return
            except Exception as exc:
                log.error("media worker %d could not be restarted: %s", index, exc)

    async def _watch(self) -> None:
        """A worker that has sent nothing for ``LAPSE`` seconds is stuck: it is killed (and so
        restarted like a dead one)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for link in self._links:
                if link is not None and link.alive and now - link.last_heard > LAPSE:
                    link.lose(f"it sent nothing for {LAPSE:g} s")

    def _background(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
