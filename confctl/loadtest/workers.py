"""Swarms in this process or in worker processes, behind one small interface.

With ``--processes N`` (N > 1) the participants are dealt over N worker processes (started with
``spawn``, so no event loop or thread state is inherited), each running its own event loop. The
parent talks to a worker over a pipe: ``go`` (start joining), ``snap`` (answer with a
``Snapshot``), ``stop`` (leave, answer with the last snapshot, exit). Workers ignore Ctrl-C: the
parent stops them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from multiprocessing.connection import Connection
from typing import Protocol

from confctl.loadtest.swarm import Snapshot, Swarm, SwarmPlan, collect_rarely

START_TIMEOUT = 60.0
REPLY_TIMEOUT = 30.0


class SwarmHandle(Protocol):
    async def prepare(self) -> None: ...
    def start(self) -> None: ...
    async def snapshot(self) -> Snapshot: ...
    async def stop(self) -> Snapshot: ...


class LocalSwarm:
    """The participants run in this process's event loop."""

    def __init__(self, plan: SwarmPlan) -> None:
        self._swarm = Swarm(plan)

    async def prepare(self) -> None:
        await self._swarm.prepare()

    def start(self) -> None:
        self._swarm.start()

    async def snapshot(self) -> Snapshot:
        return await self._swarm.snapshot()

    async def stop(self) -> Snapshot:
        await self._swarm.stop()
        return await self._swarm.snapshot()


class WorkerError(RuntimeError):
    """A worker process died or did not answer."""


class ProcessSwarm:
    """The participants run in a worker process."""

    def __init__(self, plan: SwarmPlan) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=worker_main, args=(plan, child), daemon=True)
        self._child = child
        self._last = Snapshot()

    async def _reply(self, wait: float) -> object:
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self._conn.poll, wait)
        if not ready:
            raise WorkerError("a load-test worker process did not answer")
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            raise WorkerError("a load-test worker process ended unexpectedly") from None

    def _send(self, command: str) -> None:
        try:
            self._conn.send(command)
        except (BrokenPipeError, OSError):
            raise WorkerError("a load-test worker process ended unexpectedly") from None

    async def prepare(self) -> None:
        self._process.start()
        self._child.close()
        if await self._reply(START_TIMEOUT) != "ready":
            raise WorkerError("a load-test worker process failed to start")

    def start(self) -> None:
        self._send("go")

    async def snapshot(self) -> Snapshot:
        self._send("snap")
        reply = await self._reply(REPLY_TIMEOUT)
        if isinstance(reply, Snapshot):
            self._last = reply
        return self._last

    async def stop(self) -> Snapshot:
        if self._process.is_alive():
            try:
                self._send("stop")
                reply = await self._reply(REPLY_TIMEOUT)
                if isinstance(reply, Snapshot):
                    self._last = reply
            except WorkerError:
                pass
        await asyncio.get_running_loop().run_in_executor(None, self._process.join, 5.0)
        if self._process.is_alive():
            self._process.kill()
        self._conn.close()
        return self._last


def worker_main(plan: SwarmPlan, conn: Connection) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    collect_rarely()
    asyncio.run(_serve(plan, conn))


async def _serve(plan: SwarmPlan, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def readable() -> None:
        try:
            commands.put_nowait(str(conn.recv()))
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            commands.put_nowait("stop")

    swarm = Swarm(plan)
    await swarm.prepare()
    loop.add_reader(conn.fileno(), readable)
    conn.send("ready")
    while True:
        command = await commands.get()
        if command == "go":
            swarm.start()
        elif command == "snap":
            conn.send(await swarm.snapshot())
        elif command == "stop":
            await swarm.stop()
            final = await swarm.snapshot()
            loop.remove_reader(conn.fileno())
            try:
                conn.send(final)
            except (BrokenPipeError, OSError):
                pass
            return


def handles(plans: list[SwarmPlan]) -> list[SwarmHandle]:
    """One swarm in this process, or one worker process per plan."""
    if len(plans) == 1:
        return [LocalSwarm(plans[0])]
    return [ProcessSwarm(plan) for plan in plans]
