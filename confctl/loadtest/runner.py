"""Orchestration of a load test, with a live progress line on stderr.

1. The room is looked up through the admin API (created if missing, deleted at the end if it was
   created here); the server's metrics are sampled as a baseline before anyone joins.
2. Media is encoded once; one join token per participant is minted through the admin API.
3. The swarms start (in this process or in worker processes) and everyone joins, at once or
   spread over ``--ramp``. The runner waits until every participant is connected or failed
   (``--join-timeout``), then for the warm-up.
4. The measurement window: client counters and server metrics are sampled together at its start
   and end; the report is computed from the differences.
5. Everyone leaves.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from confctl.client import AdminClient, ApiError, UsageError
from confctl.loadtest import clips as clip_factory
from confctl.loadtest import plan, report, scrape, workers
from confctl.loadtest.plan import Options, Role
from confctl.loadtest.rtpstats import delay_percentiles
from confctl.loadtest.signaling import ws_url
from confctl.loadtest.swarm import Member, Snapshot, SwarmPlan

PROGRESS_INTERVAL = 1.0
PLAIN_PROGRESS_INTERVAL = 5.0


class Progress:
    """One status line on a terminal (rewritten in place), a line every few seconds elsewhere."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool = True) -> None:
        self._stream = stream
        self._enabled = enabled
        self._tty = enabled and stream.isatty()
        self._last_plain = 0.0
        self._dirty = False

    def show(self, text: str, force: bool = False) -> None:
        if not self._enabled:
            return
        if self._tty:
            self._stream.write("\r\x1b[K" + text)
            self._dirty = True
        else:
            now = time.monotonic()
            if not force and now - self._last_plain < PLAIN_PROGRESS_INTERVAL:
                return
            self._last_plain = now
            self._stream.write(text + "\n")
        self._stream.flush()

    def done(self) -> None:
        if self._tty and self._dirty:
            self._stream.write("\n")
            self._stream.flush()
            self._dirty = False


def ensure_room(client: AdminClient, room: str, e2ee: bool = False) -> bool:
    """True when the room had to be created (with ``e2ee`` as asked). An existing room must
    match: ``--e2ee`` against a plain room, or none against an E2EE room, is refused."""
    try:
        doc = client.request("GET", ["rooms", room])
    except ApiError as exc:
        if exc.status != 404:
            raise
        # explicit either way: a server may make E2EE rooms by default (rooms.e2ee_default)
        client.request("POST", ["rooms"], {"name": room, "e2ee": e2ee})
        return True
    has = bool(doc.get("e2ee")) if isinstance(doc, dict) else False
    if has != e2ee:
        state = "is" if has else "is not"
        raise UsageError(f"room {room!r} {state} end-to-end encrypted: {'add' if has else 'drop'} --e2ee")
    return False


def mint_tokens(client: AdminClient, room: str, people: list[Role]) -> list[str]:
    tokens = []
    for role in people:
        doc = client.request(
            "POST",
            ["tokens"],
            {
                "room": room,
                "identity": role.identity,
                "name": f"Load {role.index}",
                "permissions": role.permissions,
            },
        )
        token = doc.get("token") if isinstance(doc, dict) else None
        if not isinstance(token, str):
            raise ApiError("invalid_response", "the token response has no token")
        tokens.append(token)
    return tokens


class Run:
    def __init__(self, options: Options, client: AdminClient, progress: Progress) -> None:
        self.options = options
        self.client = client
        self.progress = progress
        self.swarms: list[workers.SwarmHandle] = []
        self._last: Snapshot | None = None

    async def _sample(self) -> scrape.ServerSample | None:
        url = self.options.metrics_url
        return None if url is None else await asyncio.to_thread(scrape.sample, url)

    async def _snapshot(self) -> Snapshot:
        return Snapshot.merge(await asyncio.gather(*(s.snapshot() for s in self.swarms)))

    def _generator_cpu(self, snap: Snapshot) -> float:
        # workers report their own CPU; the parent's counts too when it is not one of them
        return snap.cpu + (time.process_time() if len(self.swarms) > 1 else 0.0)

    def _status(self, phase: str, snap: Snapshot) -> str:
        last = self._last
        self._last = snap
        sent = got = 0.0
        loss = late = ""
        if last is not None and snap.at > last.at:
            dt = snap.at - last.at
            sent = (snap.sent - last.sent) / dt
            got = (snap.received.packets - last.received.packets) / dt
            expected = snap.received.expected - last.received.expected
            if expected > 0:
                lost = max(0, expected - (snap.received.received - last.received.received))
                loss = f" | loss {lost / expected * 100:.2f}%"
            delay = delay_percentiles(snap.received.delays_since(last.received))
            if delay is not None:
                late = f" | delay p95 {delay['p95']:,.1f} ms"
        failed = f", {snap.failed} failed" if snap.failed else ""
        return (
            f"load-test: {phase} | joined {snap.joined}/{snap.participants},"
            f" connected {snap.connected}{failed}"
            f" | sent {sent:,.0f}/s | received {got:,.0f}/s{loss}{late}"
        )

    async def _tick(self, phase: Callable[[float], str], seconds: float) -> Snapshot:
        """Show progress every second for ``seconds``; returns the last snapshot."""
        start = time.monotonic()
        snap = await self._snapshot()
        while (left := start + seconds - time.monotonic()) > 0:
            await asyncio.sleep(min(PROGRESS_INTERVAL, left))
            snap = await self._snapshot()
            self.progress.show(self._status(phase(time.monotonic() - start), snap))
        return snap

    async def _join(self) -> Snapshot:
        total = self.options.total
        deadline = time.monotonic() + self.options.ramp + self.options.join_timeout
        started = time.monotonic()
        while True:
            snap = await self._snapshot()
            self.progress.show(self._status(f"joining {time.monotonic() - started:.0f}s", snap))
            if snap.connected + snap.failed >= total or time.monotonic() >= deadline:
                return snap
            await asyncio.sleep(0.25 if time.monotonic() - started < 5 else PROGRESS_INTERVAL)

    async def execute(self) -> dict[str, Any]:
        o = self.options
        created = await asyncio.to_thread(ensure_room, self.client, o.room, o.e2ee)
        try:
            return await self._execute()
        finally:
            if created:
                try:
                    await asyncio.to_thread(self.client.request, "DELETE", ["rooms", o.room])
                except ApiError:
                    pass

    async def _execute(self) -> dict[str, Any]:
        o = self.options
        base = await self._sample()
        self.progress.show("load-test: encoding media", force=True)
        speakers_only = o.audio_publishers == o.speaking
        clips = await asyncio.to_thread(
            clip_factory.build,
            video=o.video_publishers > 0,
            simulcast=o.simulcast,
            speech=o.speaking > 0 and o.sender == "crafted",
            quiet=o.audio_publishers > 0 and not speakers_only,
        )
        people = plan.roles(o, secrets.token_hex(3))
        self.progress.show(f"load-test: minting {len(people)} join tokens", force=True)
        tokens = await asyncio.to_thread(mint_tokens, self.client, o.room, people)
        n = len(people)
        members = [Member(r, t, o.ramp * i / n) for i, (r, t) in enumerate(zip(people, tokens, strict=True))]
        groups: list[list[Member]] = [members[k :: o.processes] for k in range(o.processes)]
        url = ws_url(self.client.base_url)
        cafile = self.client.settings.cacert
        self.swarms = workers.handles([SwarmPlan(url, cafile, o, clips, tuple(group)) for group in groups])
        try:
            return await self._measure(base)
        finally:
            self.progress.show("load-test: leaving", force=True)
            await asyncio.gather(*(s.stop() for s in self.swarms), return_exceptions=True)
            self.progress.done()

    async def _measure(self, base: scrape.ServerSample | None) -> dict[str, Any]:
        o = self.options
        await asyncio.gather(*(s.prepare() for s in self.swarms))
        for swarm in self.swarms:
            swarm.start()
        await self._join()
        if o.warmup > 0:
            await self._tick(lambda t: f"warm-up {t:.0f}/{o.warmup:.0f}s", o.warmup)
        c0, s0 = await _together(self._snapshot(), self._sample())
        busy0 = report.cpu_busy_seconds()
        cpu0 = self._generator_cpu(c0)
        await self._tick(lambda t: f"measuring {t:.0f}/{o.duration:.0f}s", o.duration)
        c1, s1 = await _together(self._snapshot(), self._sample())
        busy1 = report.cpu_busy_seconds()
        cpu1 = self._generator_cpu(c1)
        busy = busy1 - busy0 if busy0 is not None and busy1 is not None else None
        window = report.Window(c0, c1, base, s0, s1, cpu1 - cpu0, busy)
        return report.build(o, window)


async def _together(
    client: Awaitable[Snapshot], server: Awaitable[scrape.ServerSample | None]
) -> tuple[Snapshot, scrape.ServerSample | None]:
    snap, sample = await asyncio.gather(client, server)
    return snap, sample


async def run(options: Options, client: AdminClient, progress: Progress) -> dict[str, Any]:
    return await Run(options, client, progress).execute()
