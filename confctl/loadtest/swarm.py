"""The synthetic participants of one process, and the snapshot of their counters.

A ``Snapshot`` is cumulative (packets since the start) and carries the process's CPU time and a
monotonic timestamp, so the runner computes rates over any window by subtracting two of them,
and adds up the snapshots of several processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp

from confctl.loadtest.clips import ClipSet
from confctl.loadtest.participant import Environment, Participant
from confctl.loadtest.plan import Options, Role
from confctl.loadtest.rawmedia import Pacer
from confctl.loadtest.rtpstats import ReceiveTotals
from confctl.loadtest.signaling import tls_context

LEAVE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Member:
    role: Role
    token: str
    join_after: float  # seconds after the start


@dataclass(frozen=True)
class SwarmPlan:
    ws_url: str
    cafile: str | None
    options: Options
    clips: ClipSet
    members: tuple[Member, ...]


@dataclass(frozen=True)
class Snapshot:
    at: float = 0.0  # time.monotonic(): one clock for every process of the machine
    cpu: float = 0.0  # CPU seconds of the process(es)
    participants: int = 0
    joined: int = 0
    connected: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # reason -> participants
    errors: dict[str, int] = field(default_factory=dict)  # error code -> messages after joining
    join_latencies: tuple[float, ...] = ()
    connect_latencies: tuple[float, ...] = ()
    media_latencies: tuple[float, ...] = ()
    sent: int = 0
    planned: float = 0.0  # packets per second the crafted streams are meant to send
    video_streams: int = 0  # crafted video streams (simulcast layers)
    paused_streams: int = 0  # of those, paused by the server (publish_layers)
    dtx_streams: int = 0  # microphones sending Opus DTX
    received: ReceiveTotals = field(default_factory=ReceiveTotals)
    frames_decoded: int = 0
    awaiting_media: int = 0  # subscribers that expect media and have none yet
    e2ee: dict[str, int] = field(default_factory=dict)  # key exchange and frame counters (--e2ee)

    @staticmethod
    def merge(parts: Iterable[Snapshot]) -> Snapshot:
        items = list(parts)
        if not items:
            return Snapshot()
        failures: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        e2ee: Counter[str] = Counter()
        received = ReceiveTotals()
        for s in items:
            failures.update(s.failures)
            errors.update(s.errors)
            e2ee.update(s.e2ee)
            received += s.received
        return Snapshot(
            at=max(s.at for s in items),
            cpu=sum(s.cpu for s in items),
            participants=sum(s.participants for s in items),
            joined=sum(s.joined for s in items),
            connected=sum(s.connected for s in items),
            failed=sum(s.failed for s in items),
            failures=dict(failures),
            errors=dict(errors),
            join_latencies=tuple(x for s in items for x in s.join_latencies),
            connect_latencies=tuple(x for s in items for x in s.connect_latencies),
            media_latencies=tuple(x for s in items for x in s.media_latencies),
            sent=sum(s.sent for s in items),
            planned=sum(s.planned for s in items),
            video_streams=sum(s.video_streams for s in items),
            paused_streams=sum(s.paused_streams for s in items),
            dtx_streams=sum(s.dtx_streams for s in items),
            received=received,
            frames_decoded=sum(s.frames_decoded for s in items),
            awaiting_media=sum(s.awaiting_media for s in items),
            e2ee=dict(e2ee),
        )


GC_THRESHOLD = 10_000


def collect_rarely() -> None:
    """For a process that runs participants: the collector's young-generation threshold the
    server uses (server.gc_threshold). With Python's default, hundreds of joining connections
    set off a full collection every few seconds, each stopping this process's senders for
    ~0.5 s, which then send what fell due in a burst."""
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


class Swarm:
    def __init__(self, plan: SwarmPlan) -> None:
        self._plan = plan
        self._session: aiohttp.ClientSession | None = None
        self._pacer = Pacer()
        self._participants: list[Participant] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def prepare(self) -> None:
        plan = self._plan
        # WebSockets hold their connection: no pool limit
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        env = Environment(
            session=self._session,
            url=plan.ws_url,
            tls=tls_context(plan.cafile) if plan.ws_url.startswith("wss:") else None,
            options=plan.options,
            clips=plan.clips,
            pacer=self._pacer,
        )
        self._participants = [Participant(m.role, m.token, env) for m in plan.members]

    def start(self) -> None:
        """Let every participant join at its time."""
        for member, participant in zip(self._plan.members, self._participants, strict=True):
            self._tasks.append(asyncio.create_task(self._join_after(member.join_after, participant)))

    @staticmethod
    async def _join_after(delay: float, participant: Participant) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        await participant.run()

    async def snapshot(self) -> Snapshot:
        await asyncio.gather(*(p.refresh_stats() for p in self._participants), return_exceptions=True)
        return self.counts()

    def _expects_media(self, p: Participant) -> bool:
        """Someone else publishes video or speaks (only those are forwarded)."""
        o = self._plan.options
        return p.role.subscribe and (
            o.video_publishers > int(p.role.video) or o.speaking > int(p.role.speaker)
        )

    def counts(self) -> Snapshot:
        ps = self._participants
        received = ReceiveTotals()
        for p in ps:
            received += p.received()
        failures = Counter(p.failure for p in ps if p.failure is not None)
        errors: Counter[str] = Counter()
        e2ee: Counter[str] = Counter()
        for p in ps:
            errors.update(p.errors)
            if p.keys is not None:
                e2ee.update(p.keys.counts)

        def latencies(points: list[tuple[float | None, float | None]]) -> tuple[float, ...]:
            return tuple(end - start for start, end in points if start is not None and end is not None)

        awaiting = sum(
            1 for p in ps if self._expects_media(p) and p.failure is None and p.first_media_at is None
        )
        video, paused, dtx = self._pacer.asked_less
        return Snapshot(
            at=time.monotonic(),
            cpu=time.process_time(),
            participants=len(ps),
            joined=sum(1 for p in ps if p.joined_at is not None and p.failure is None),
            connected=sum(1 for p in ps if p.connected_at is not None and p.failure is None),
            failed=sum(1 for p in ps if p.failure is not None),
            failures=dict(failures),
            errors=dict(errors),
            join_latencies=latencies([(p.started_at, p.joined_at) for p in ps]),
            connect_latencies=latencies([(p.started_at, p.connected_at) for p in ps]),
            media_latencies=latencies([(p.started_at, p.first_media_at) for p in ps if p.role.subscribe]),
            sent=sum(p.sent for p in ps),
            planned=self._pacer.planned,
            video_streams=video,
            paused_streams=paused,
            dtx_streams=dtx,
            received=received,
            frames_decoded=sum(p.frames_decoded for p in ps),
            awaiting_media=awaiting,
            e2ee=dict(e2ee),
        )

    async def stop(self) -> None:
        """Leave (every participant at once), then release everything."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(p.leave() for p in self._participants), return_exceptions=True),
                LEAVE_TIMEOUT,
            )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._pacer.close()
        if self._session is not None:
            await self._session.close()
