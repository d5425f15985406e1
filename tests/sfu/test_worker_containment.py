"""A media worker is less trusted than the signaling process: one that sends garbage or a
message no worker may send is killed and restarted, with a log line and a metric; one that stops
answering gives ``media_timeout`` and never holds up signaling."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry

from confserver.config import Config
from confserver.contract import ServiceError, Unpublish
from sfu.worker.metrics import WorkerMetrics
from sfu.worker.remote import RemoteMediaController
from tests.sfu.conftest import LOOPBACK_SFU
from tests.sfu.peers import wait_until

Factory = Callable[[str], "asyncio.Future[RemoteMediaController]"]


@pytest.fixture
async def fake() -> AsyncIterator[tuple[Callable[..., object], CollectorRegistry]]:
    registry = CollectorRegistry()
    made: list[RemoteMediaController] = []

    async def make(mode: str, call_timeout: float = 12.0, workers: int = 1) -> RemoteMediaController:
        controller = RemoteMediaController(
            Config(sfu=LOOPBACK_SFU),
            WorkerMetrics(registry),
            workers=workers,
            command=(sys.executable, "-m", "tests.sfu.fakeworker", "--mode", mode),
            call_timeout=call_timeout,
        )
        made.append(controller)
        await controller.start()
        return controller

    try:
        yield make, registry
    finally:
        for controller in made:
            await controller.close()


def value(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name, {"worker": "0"}) or 0.0


async def test_garbage_from_a_worker_restarts_it_with_a_log_line_and_a_metric(
    fake: tuple[Callable[..., object], CollectorRegistry], caplog: pytest.LogCaptureFixture
) -> None:
    make, registry = fake
    controller: RemoteMediaController = await make("garbage")  # type: ignore[misc]
    first = controller.pids()[0]
    assert first is not None
    sent: list[object] = []
    with caplog.at_level(logging.ERROR, logger="sfu.worker"):
        await asyncio.wait_for(controller.participant_joined("r", "s1", frozenset(), sent.append), 5)
    assert value(registry, "conf_media_worker_bad_frames_total") == 1.0
    assert value(registry, "conf_media_worker_restarts_total") == 1.0
    assert [r for r in caplog.records if "bad frame" in r.getMessage()]
    # restarted: the room moves to it (the participant is told), and this one breaks the rules too
    await wait_until(lambda: sent[:1] == [{"type": "media_reset"}], 10, what="the room moved")
    await wait_until(lambda: value(registry, "conf_media_worker_restarts_total") == 2.0, 10, what="again")
    assert controller.pids()[0] != first


async def test_a_worker_cannot_send_participants_signaling_messages(
    fake: tuple[Callable[..., object], CollectorRegistry],
) -> None:
    make, registry = fake
    controller: RemoteMediaController = await make("impostor")  # type: ignore[misc]
    sent: list[dict[str, object]] = []
    joining = asyncio.create_task(controller.participant_joined("r", "s1", frozenset(), sent.append))
    await wait_until(lambda: value(registry, "conf_media_worker_bad_frames_total") == 1.0, 5, what="refused")
    joining.cancel()
    assert all(m.get("type") != "kicked" for m in sent)


async def test_a_silent_worker_gives_media_timeout_and_signaling_goes_on(
    fake: tuple[Callable[..., object], CollectorRegistry],
) -> None:
    make, registry = fake
    controller: RemoteMediaController = await make("silent", call_timeout=1.0)  # type: ignore[misc]
    started = time.monotonic()
    with pytest.raises(ServiceError) as refused:
        await controller.participant_joined("r", "s1", frozenset(), lambda m: None)
    assert refused.value.code == "media_timeout"
    assert time.monotonic() - started < 3.0
    with pytest.raises(ServiceError):
        await controller.handle("r", "s1", Unpublish("t"))
    assert value(registry, "conf_media_worker_call_timeouts_total") == 2.0
    await asyncio.sleep(0)  # the loop was never blocked: this test got here


async def test_joins_and_leaves_during_a_move_leave_no_room_or_count_behind(
    fake: tuple[Callable[..., object], CollectorRegistry],
) -> None:
    make, _registry = fake
    controller: RemoteMediaController = await make("ok", workers=2)  # type: ignore[misc]
    told: dict[str, list[object]] = {}

    async def join(room: str, sid: str) -> None:
        told[sid] = []
        await controller.participant_joined(room, sid, frozenset(), told[sid].append)

    for room, sid in (("a", "a1"), ("a", "a2"), ("b", "b1")):
        await join(room, sid)
    lost = controller.room_worker("a")
    assert lost is not None and controller.room_worker("b") == 1 - lost
    pid = controller.pids()[lost]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await asyncio.gather(controller.participant_left("a", "a2"), join("a", "a3"), join("c", "c1"))
    await wait_until(lambda: {"type": "media_reset"} in told["a1"], 5, what="a1 told")
    await wait_until(lambda: controller.pids()[lost] not in (None, pid), 10, what="restarted")
    await asyncio.sleep(0.2)
    load = controller.load()
    assert sum(rooms for _alive, rooms, _n, _cpu in load) == 3
    assert sum(n for _alive, _rooms, n, _cpu in load) == 4  # a1, a3, b1, c1
    assert controller.room_worker("a") is not None
    for room, sid in (("a", "a1"), ("a", "a3"), ("b", "b1"), ("c", "c1")):
        await controller.participant_left(room, sid)
    assert [(rooms, n) for _alive, rooms, n, _cpu in controller.load()] == [(0, 0), (0, 0)]
