"""The media worker process: ``python -m sfu.worker --index I --channel-fd N``.

It reads ``start`` from the channel (a Unix socket inherited from the signaling process), runs
one ``SfuController`` with the ``[sfu]`` settings it was given (its own UDP port), answers each
request with a ``reply``, forwards what the controller sends to a participant as ``send``, and
reports its CPU time every ``LOAD_INTERVAL`` and its metrics every ``METRICS_INTERVAL``. The end
of the channel (the signaling process closed it, or died) stops the worker: no orphan keeps
media ports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any, assert_never

from prometheus_client import CollectorRegistry, generate_latest

from confserver.config import IceServerConfig, SfuConfig
from confserver.contract import ServiceError
from confserver.logsetup import setup_logging
from sfu.worker.channel import (
    ChannelError,
    Handle,
    Join,
    Leave,
    Load,
    Metrics,
    Mute,
    Ready,
    Reply,
    Request,
    Send,
    Start,
    encode,
    parse_request,
    read_frame,
)

log = logging.getLogger("sfu.worker")

LOAD_INTERVAL = 1.0
WRITE_BUFFER_LIMIT = 16 * 1024 * 1024
"""Bytes waiting for the signaling process to read before this worker gives up on it."""
METRICS_INTERVAL = 5.0


def sfu_config_from_json(obj: Mapping[str, Any]) -> SfuConfig:
    """The ``[sfu]`` settings as the signaling process sent them (``dataclasses.asdict``)."""
    fields = dict(obj)
    fields["bind_addresses"] = tuple(fields.get("bind_addresses", ()))
    fields["ice_servers"] = tuple(
        IceServerConfig(urls=tuple(s["urls"]), username=s["username"], credential=s["credential"])
        for s in fields.get("ice_servers", ())
    )
    return SfuConfig(**fields)


class _WorkerField(logging.Filter):
    """Every log line of a worker says which one (``media_worker=I`` in text, a JSON field)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.media_worker = self._index
        return True


class Worker:
    def __init__(self, writer: asyncio.StreamWriter, controller: Any) -> None:
        self._writer = writer
        self._sfu = controller
        self._tasks: set[asyncio.Task[None]] = set()

    def write(self, message: Mapping[str, Any]) -> None:
        transport = self._writer.transport
        if transport.is_closing():
            return
        self._writer.write(encode(message))
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            # the signaling process stopped reading: stop (it restarts this worker when it can)
            log.error("media worker: the signaling process does not read its channel; stopping")
            transport.abort()

    def sender(self, room: str, sid: str):  # type: ignore[no-untyped-def]
        def send(message: Mapping[str, Any]) -> None:
            self.write(Send(room, sid, message).to_json())

        return send

    def start_request(self, request: Request) -> None:
        task = asyncio.create_task(self._answer(request), name=f"worker-{request.type}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: Request) -> None:
        try:
            await self._run(request)
        except ServiceError as exc:
            self.write(Reply(request.id, exc.code, exc.message[:4000]).to_json())
        except Exception:
            log.exception("a %s request failed", request.type)
            self.write(Reply(request.id, "internal", "the media worker failed this request").to_json())
        else:
            self.write(Reply(request.id).to_json())

    async def _run(self, request: Request) -> None:
        match request:
            case Join():
                send = self.sender(request.room, request.sid)
                await self._sfu.participant_joined(
                    request.room, request.sid, request.permissions, send, identity=request.identity
                )
            case Handle():
                await self._sfu.handle(request.room, request.sid, request.message)
            case Mute():
                await self._sfu.set_muted(request.room, request.sid, request.kind, request.muted)
            case Leave():
                await self._sfu.participant_left(request.room, request.sid)
            case _:
                assert_never(request)

    async def report(self, registry: CollectorRegistry) -> None:
        last_metrics = 0.0
        while True:
            self.write(Load(time.process_time()).to_json())
            now = time.monotonic()
            if now - last_metrics >= METRICS_INTERVAL:
                last_metrics = now
                self.write(Metrics(generate_latest(registry).decode()).to_json())
            await asyncio.sleep(LOAD_INTERVAL)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._sfu.close()


async def run(fd: int) -> int:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2 * 1024 * 1024)
    first = await read_frame(reader)
    if first is None:
        return 0
    start = Start.from_json(first)
    setup_logging(start.log_level, start.log_format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(start.index))
    from sfu.controller import SfuController  # aiortc: imported in the worker only

    registry = CollectorRegistry(auto_describe=True)
    try:
        controller = SfuController(sfu_config_from_json(start.sfu), registry)
    except (OSError, ValueError, RuntimeError) as exc:  # a taken port, a bad range, wrong aiortc
        log.error("media worker %d cannot start: %s", start.index, exc)
        return 1
    worker = Worker(writer, controller)
    worker.write(Ready(os.getpid()).to_json())
    reporter = asyncio.create_task(worker.report(registry), name="worker-report")
    try:
        while True:
            frame = await read_frame(reader)
            if frame is None:
                return 0
            worker.start_request(parse_request(frame))
    except ChannelError as exc:
        log.error("media worker %d: bad frame from the signaling process (%s); stopping", start.index, exc)
        return 1
    except ConnectionError:
        return 0  # the signaling process closed the channel (or died): stop
    finally:
        reporter.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.close(), 5.0)
        writer.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sfu.worker", description="A media worker process.")
    p.add_argument("--index", type=int, default=0, help="which worker this is (shown by ps)")
    p.add_argument("--channel-fd", type=int, required=True, help="the inherited channel socket")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the signaling process stops its workers itself
    return asyncio.run(run(args.channel_fd))


if __name__ == "__main__":
    sys.exit(main())
