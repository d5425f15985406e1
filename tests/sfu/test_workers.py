"""Media worker processes (``sfu.workers`` = 2): real worker processes driven through the
``MediaController`` interface, real aiortc peers on loopback that publish, subscribe and decode."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from confserver.config import Config
from confserver.contract import ServiceError, Unpublish
from sfu.worker.metrics import WorkerMetrics
from sfu.worker.remote import RemoteMediaController
from tests.sfu.conftest import LOOPBACK_SFU
from tests.sfu.peers import Peer, wait_until


@pytest.fixture
async def workers() -> AsyncIterator[tuple[RemoteMediaController, CollectorRegistry]]:
    registry = CollectorRegistry()
    cfg = Config(sfu=replace(LOOPBACK_SFU, workers=2))
    controller = RemoteMediaController(cfg, WorkerMetrics(registry))
    await controller.start()
    try:
        yield controller, registry
    finally:
        await controller.close()


def video_track_of(peer: Peer, owner: str) -> str:
    return [
        m["track"]["id"]
        for m in peer.of_type("track_published")
        if m["track"]["kind"] == "video" and m["track"]["sid"] == owner
    ][-1]


async def sees(viewer: Peer, owner: Peer, frames: int = 10, timeout: float = 15.0) -> float:
    """Subscribe ``viewer`` to ``owner``'s latest video track; seconds until ``frames`` decoded."""
    started = time.monotonic()
    await wait_until(
        lambda: any(m["track"]["sid"] == owner.sid for m in viewer.of_type("track_published")),
        timeout, what=f"{viewer.sid} hears of {owner.sid}'s track",
    )  # fmt: skip
    track = video_track_of(viewer, owner.sid)
    await viewer.subscribe(track)
    await wait_until(
        lambda: (r := viewer.video_for(track)) is not None and r.frames >= frames,
        timeout, what=f"{viewer.sid} decodes {owner.sid}'s video",
    )  # fmt: skip
    return time.monotonic() - started


async def test_two_rooms_go_to_two_workers_and_each_forwards_decodable_media(
    workers: tuple[RemoteMediaController, CollectorRegistry],
) -> None:
    controller, registry = workers
    peers = {
        room: (Peer(controller, room, room + "-pub"), Peer(controller, room, room + "-sub"))
        for room in ("a", "b")
    }
    try:
        for pub, sub in peers.values():
            await pub.join()
            await sub.join()
        assert {controller.room_worker("a"), controller.room_worker("b")} == {0, 1}
        for pub, _sub in peers.values():
            await pub.publish(video=(320, 240), audio=True)
        for pub, sub in peers.values():
            await sees(sub, pub)
            await wait_until(lambda sub=sub: sub.audio_frames() >= 10, 10, what="audio")
            got = sub.video_for(video_track_of(sub, pub.sid))
            assert got is not None and set(got.sizes) == {(320, 240)}
            assert not pub.errors and not sub.errors
        pids = controller.pids()
        assert len(set(pids)) == 2 and os.getpid() not in pids
        await asyncio.sleep(5.5)  # the workers report their metrics every 5 s
        text = generate_latest(registry).decode()
        assert 'conf_media_worker_up{worker="0"} 1.0' in text
        assert 'conf_media_worker_placements_total{worker="1"} 1.0' in text
        assert 'conf_media_worker_participants{worker="0"} 2.0' in text
        assert 'conf_sfu_packets_total{direction="out",kind="video",worker="1"}' in text
    finally:
        for pub, sub in peers.values():
            await pub.close()
            await sub.close()


async def test_a_refused_media_message_is_refused_with_the_workers_code(
    workers: tuple[RemoteMediaController, CollectorRegistry],
) -> None:
    controller, _registry = workers
    peer = Peer(controller, "r", "p")
    try:
        await peer.join()
        with pytest.raises(ServiceError) as refused:
            await peer.request("unpublish", track="nope")
        assert refused.value.code == "unknown_track"
        with pytest.raises(ServiceError) as not_joined:
            await controller.handle("r", "stranger", Unpublish("x"))
        assert not_joined.value.code == "not_joined"
    finally:
        await peer.leave()


async def test_kill_9_of_a_worker_moves_its_room_and_media_is_back_within_5_s(
    workers: tuple[RemoteMediaController, CollectorRegistry],
) -> None:
    controller, registry = workers
    alice, bob = Peer(controller, "lost", "alice"), Peer(controller, "lost", "bob")
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=(160, 120), audio=True)
        await sees(bob, alice)
        before = controller.room_worker("lost")
        assert before is not None
        pid = controller.pids()[before]
        assert pid is not None
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: alice.resets == 1 and bob.resets == 1, 5, what="both told")
        after = controller.room_worker("lost")
        assert after is not None and after != before
        await alice.publish(video=(160, 120), audio=True)
        await sees(bob, alice, frames=5)
        back = time.monotonic() - killed
        assert back < 5.0, f"media came back after {back:.1f} s"
        await wait_until(lambda: controller.pids()[before] not in (None, pid), 10, what="restarted")
        text = generate_latest(registry).decode()
        assert f'conf_media_worker_restarts_total{{worker="{before}"}} 1.0' in text
        assert f'conf_media_worker_up{{worker="{before}"}} 1.0' in text
    finally:
        await alice.close()
        await bob.close()


def test_one_worker_keeps_media_in_the_server_process_and_more_start_nothing_yet() -> None:
    from confserver.main import instruments
    from sfu.controller import SfuController

    _metrics, _listeners, single = instruments(Config(sfu=LOOPBACK_SFU))
    assert isinstance(single, SfuController)
    _metrics, _listeners, several = instruments(Config(sfu=replace(LOOPBACK_SFU, workers=3)))
    assert isinstance(several, RemoteMediaController)
    assert several.pids() == [None, None, None]  # started with the server (main.start_media)


def test_the_signaling_side_of_the_workers_does_not_import_aiortc() -> None:
    import subprocess
    import sys

    code = "import sys, confserver.main, sfu.worker.remote; print(sorted(m for m in sys.modules if m.startswith('aiortc')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
