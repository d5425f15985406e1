"""Participants come and go: the room is told, connections are torn down, nothing leaks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sfu.controller import SfuController
from tests.sfu.conftest import config
from tests.sfu.peers import Peer, wait_until
from tests.sfu.test_forwarding import video_track_of


def open_udp_sockets() -> int:
    """UDP sockets this process has open (from /proc)."""
    inodes: set[str] = set()
    for name in ("udp", "udp6"):
        path = Path("/proc/net") / name
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                inodes.add(line.split()[9])
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def connections(sfu: SfuController) -> float | None:
    return sfu.metrics.registry.get_sample_value("conf_sfu_peer_connections")


async def settled(baseline_tasks: int, baseline_sockets: int, timeout: float = 3.0) -> tuple[int, int]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        tasks = len(asyncio.all_tasks())
        sockets = open_udp_sockets()
        if (
            tasks <= baseline_tasks and sockets <= baseline_sockets
        ) or asyncio.get_running_loop().time() > deadline:
            return tasks, sockets
        await asyncio.sleep(0.05)


async def test_a_publisher_leaving_is_announced_and_torn_down_without_leaks() -> None:
    baseline_tasks, baseline_sockets = len(asyncio.all_tasks()), open_udp_sockets()
    sfu = SfuController(config())
    alice, bob, carol = (Peer(sfu, "bye", n) for n in ("alice", "bob", "carol"))
    for p in (alice, bob, carol):
        await p.join()
    await alice.publish(video=(160, 120), audio=True)
    video = video_track_of(bob, "alice")
    audio = next(m["track"]["id"] for m in bob.of_type("track_published") if m["track"]["kind"] == "audio")
    for p in (bob, carol):
        await p.subscribe(video)
        await wait_until(lambda p=p: (r := p.video_for(video)) is not None and r.frames >= 3, 5, what="video")
    room = sfu._rooms["bye"]
    assert connections(sfu) == 4  # alice publishes and subscribes, bob and carol subscribe

    await alice.leave()
    for p in (bob, carol):
        await p.expect("track_unpublished", id=video)
        await p.expect("track_unpublished", id=audio)
        await wait_until(lambda p=p: p.track_map == {}, 2, what="track map emptied")
    assert room.tracks == {}
    for member in room.members.values():
        assert member.subscriber is not None
        assert member.subscriber.forwarders == {}
        assert all(slot.track is None for slot in (*member.subscriber.audio, *member.subscriber.video))
    assert connections(sfu) == 2
    assert sfu.metrics.registry.get_sample_value("conf_sfu_tracks", {"kind": "video"}) == 0

    for p in (bob, carol):
        await p.leave()
    assert sfu._rooms == {}
    await sfu.close()
    tasks, sockets = await settled(baseline_tasks, baseline_sockets)
    assert sockets == baseline_sockets
    assert tasks == baseline_tasks, [t.get_coro() for t in asyncio.all_tasks()]


async def test_leaving_in_the_middle_of_a_negotiation_leaves_no_state(sfu: SfuController) -> None:
    alice = Peer(sfu, "mid", "alice")
    await alice.join()
    await sfu.participant_left("mid", "alice")  # the subscribe offer was never answered
    assert sfu._rooms == {}
    await alice.close()


async def test_closing_the_controller_closes_every_connection() -> None:
    sfu = SfuController(config())
    peers = [Peer(sfu, "shut", f"p{i}") for i in range(2)]
    for p in peers:
        await p.join()
    await peers[0].publish(video=(160, 120), audio=False)
    await sfu.close()
    assert connections(sfu) == 0
    for p in peers:
        await p.close()
