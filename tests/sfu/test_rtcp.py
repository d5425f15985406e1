"""RTCP around the forwarder: receiver reports reach publishers, translated sender reports
reach subscribers, and every metric the operators graph is exported."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCPeerConnection

from sfu.controller import SfuController
from tests.sfu.peers import Peer, wait_until
from tests.sfu.test_forwarding import video_track_of


async def stats_of(pc: RTCPeerConnection, kind: str) -> list[Any]:
    report = await pc.getStats()
    return [s for s in report.values() if s.type == kind]


async def test_publishers_get_receiver_reports_and_subscribers_get_sender_reports(sfu: SfuController) -> None:
    alice, bob = Peer(sfu, "rtcp", "alice"), Peer(sfu, "rtcp", "bob")
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=(160, 120), audio=True)
        track = video_track_of(bob, "alice")
        await bob.subscribe(track)
        await wait_until(lambda: (r := bob.video_for(track)) is not None and r.frames >= 3, 5, what="video")
        assert alice.publish_pc is not None and bob.subscribe_pc is not None
        publisher_pc, subscriber_pc = alice.publish_pc, bob.subscribe_pc
        reports: list[Any] = []
        senders: list[Any] = []

        async def reported() -> bool:
            reports[:] = await stats_of(publisher_pc, "remote-inbound-rtp")
            senders[:] = await stats_of(subscriber_pc, "remote-outbound-rtp")
            return len(reports) >= 2 and len(senders) >= 2

        deadline = asyncio.get_running_loop().time() + 6
        while not await reported():
            assert asyncio.get_running_loop().time() < deadline, (
                f"reports {reports}, sender reports {senders}"
            )
            await asyncio.sleep(0.2)
        assert all(r.packetsReceived > 0 for r in reports)  # the SFU acknowledged both streams
        assert all(s.packetsSent > 0 for s in senders)  # video and audio slots both got an SR
    finally:
        await alice.close()
        await bob.close()


async def test_every_sfu_metric_is_exported(sfu: SfuController) -> None:
    alice, bob = Peer(sfu, "m", "alice"), Peer(sfu, "m", "bob")
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=(160, 120), audio=True)
        track = video_track_of(bob, "alice")
        await bob.subscribe(track)
        await wait_until(lambda: (r := bob.video_for(track)) is not None and r.frames >= 3, 5, what="video")
        sfu.metrics.flush()
        get = sfu.metrics.registry.get_sample_value
        assert get("conf_sfu_packets_total", {"direction": "in", "kind": "video"}) > 0
        assert get("conf_sfu_packets_total", {"direction": "out", "kind": "video"}) > 0
        assert get("conf_sfu_bytes_total", {"direction": "out", "kind": "audio"}) > 0
        assert get("conf_sfu_plis_total") is not None
        assert get("conf_sfu_nacks_total") is not None
        assert get("conf_sfu_keyframe_wait_seconds_count") >= 1
        assert get("conf_sfu_tracks", {"kind": "video"}) == 1
        assert get("conf_sfu_tracks", {"kind": "audio"}) == 1
        assert get("conf_sfu_peer_connections") == 3
    finally:
        await alice.close()
        await bob.close()


async def test_trickled_candidates_are_accepted_for_negotiated_connections(sfu: SfuController) -> None:
    alice = Peer(sfu, "trickle", "alice")
    await alice.join()
    await alice.publish(video=(160, 120), audio=False)
    candidate = {
        "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    await alice.request("ice_candidate", target="publish", candidate=candidate)
    await alice.request("ice_candidate", target="publish", candidate=None)
    await alice.request("ice_candidate", target="subscribe", candidate=candidate)
    await alice.close()
