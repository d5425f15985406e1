"""One media worker process and its channel, seen from the signaling process.

``WorkerLink.spawn`` starts ``python -m sfu.worker`` with one end of a Unix socket pair, sends
``start`` and waits for ``ready``. ``call`` sends a request and waits for the matching reply with
a deadline. Every frame the worker sends is checked (``sfu.worker.channel``); the first bad one
ends the link: the worker is killed, ``on_lost`` runs once, and calls still waiting return
``LOST``. The link never restarts anything itself: the controller decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from .channel import ChannelError, Event, Ready, Reply, Request, Start, encode, parse_event, read_frame

log = logging.getLogger("sfu.worker")

READY_TIMEOUT: Final = 30.0
"""Seconds a worker has to start (importing aiortc takes most of it)."""
STOP_TIMEOUT: Final = 5.0
READ_LIMIT: Final = 2 * 1024 * 1024
WRITE_BUFFER_LIMIT: Final = 16 * 1024 * 1024
"""Bytes waiting to be written to a worker before it counts as stuck (and is killed)."""
LOST: Final = Reply(-1, "worker_lost", "the media worker stopped")
WORKER_COMMAND: Final = (sys.executable, "-m", "sfu.worker")
"""The worker's command line; ``--index I --channel-fd N`` are added (the index for ``ps``)."""


class WorkerStartError(RuntimeError):
    pass


class WorkerLink:
    def __init__(
        self,
        index: int,
        *,
        on_event: Callable[[int, Event], None],
        on_lost: Callable[[int, str, bool], None],
        command: Sequence[str] = WORKER_COMMAND,
    ) -> None:
        self.index = index
        self._command = tuple(command)
        self.pid: int | None = None
        self.started_at = 0.0
        self.last_heard = 0.0
        self._on_event = on_event
        self._on_lost = on_lost
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self._lost = False

    @property
    def alive(self) -> bool:
        return self._writer is not None and not self._lost

    async def spawn(self, start: Start) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._command, "--index", str(self.index), "--channel-fd", str(child.fileno()),
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=READ_LIMIT)
        self._writer = writer
        writer.write(encode(start.to_json()))
        try:
            first = await asyncio.wait_for(read_frame(reader), READY_TIMEOUT)
            ready = parse_event(first) if first is not None else None
        except (TimeoutError, ChannelError) as exc:
            self.kill()
            raise WorkerStartError(f"media worker {self.index} did not start: {exc or 'no answer'}") from None
        if not isinstance(ready, Ready):
            self.kill()
            raise WorkerStartError(f"media worker {self.index} exited while starting (see its log above)")
        self.pid = ready.pid
        self.started_at = self.last_heard = time.monotonic()
        self._reader_task = asyncio.create_task(self._read(reader), name=f"media-worker-{self.index}")

    async def call(self, request: Request, seconds: float) -> Reply:
        """Send ``request`` (its ``id`` replaced) and wait for the reply; ``LOST`` when the worker
        stopped meanwhile; ``TimeoutError`` after ``seconds``."""
        if not self.alive:
            return LOST
        call_id = next(self._ids)
        request = dataclasses.replace(request, id=call_id)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            self._write(request.to_json())
            return await asyncio.wait_for(future, seconds)
        finally:
            self._pending.pop(call_id, None)

    def _write(self, message: dict[str, Any]) -> None:
        writer = self._writer
        if writer is None or self._lost:
            return
        writer.write(encode(message))
        transport = writer.transport
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            self.lose("it stopped reading its channel")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        reason = "it exited"
        bad_frame = False
        try:
            while True:
                frame = await read_frame(reader)
                if frame is None:
                    break
                event = parse_event(frame)
                self.last_heard = time.monotonic()
                if isinstance(event, Reply):
                    future = self._pending.get(event.id)
                    if future is not None and not future.done():
                        future.set_result(event)
                elif isinstance(event, Ready):
                    raise ChannelError("ready sent twice")
                else:
                    self._on_event(self.index, event)
        except ChannelError as exc:
            reason = f"it sent a bad frame ({exc})"
            bad_frame = True
        except ConnectionError:
            pass
        except Exception:
            log.exception("media worker %d: handling its frames failed", self.index)
            reason = "handling its frames failed"
        self.lose(reason, bad_frame=bad_frame)

    def lose(self, reason: str, *, bad_frame: bool = False) -> None:
        """End the link once: kill the process, answer waiting calls with ``LOST``, tell the owner."""
        if self._lost:
            return
        self._lost = True
        self.kill()
        for future in self._pending.values():
            if not future.done():
                future.set_result(LOST)
        self._pending.clear()
        if self._writer is not None:
            self._writer.close()
        task = self._reader_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._on_lost(self.index, reason, bad_frame)

    def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

    async def reap(self) -> int | None:
        """Wait (briefly) for the process to be gone; its exit status."""
        proc = self._proc
        if proc is None:
            return None
        try:
            return await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.kill()
            return await proc.wait()

    async def stop(self) -> None:
        """Close the channel (the worker stops on its own), then make sure the process is gone."""
        self._lost = True
        for future in self._pending.values():
            if not future.done():
                future.set_result(LOST)
        if self._writer is not None:
            self._writer.close()
        await self.reap()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
