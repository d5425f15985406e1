"""Media flows end to end: publishers' packets reach subscribers, who decode them."""

from __future__ import annotations

import asyncio
import random
import re

from sfu.context import PacketFilters
from sfu.controller import SfuController
from tests.sfu.conftest import config
from tests.sfu.peers import Peer, wait_until


def video_track_of(peer: Peer, owner: str) -> str:
    return next(
        m["track"]["id"]
        for m in peer.of_type("track_published")
        if m["track"]["kind"] == "video" and m["track"]["sid"] == owner
    )


async def close_all(*peers: Peer) -> None:
    for p in peers:
        await p.close()


async def test_one_publisher_two_subscribers_decode_video_at_the_published_size_and_hear_audio(
    sfu: SfuController,
) -> None:
    alice, bob, carol = (Peer(sfu, "r1", n) for n in ("alice", "bob", "carol"))
    try:
        for p in (alice, bob, carol):
            await p.join()
        await alice.publish(video=(320, 240), audio=True)
        published = await bob.expect("track_published")
        await carol.expect("track_published")
        video_id = video_track_of(bob, "alice")
        for p in (bob, carol):
            await p.subscribe(video_id, max_width=320, max_height=240)
        for p in (bob, carol):
            await wait_until(
                lambda p=p: (r := p.video_for(video_id)) is not None and r.frames >= 10,
                10,
                what=f"{p.sid} video",
            )
            await wait_until(lambda p=p: p.audio_frames() >= 20, 10, what=f"{p.sid} hears audio")
            got = p.video_for(video_id)
            assert got is not None and set(got.sizes) == {(320, 240)}
        assert published["track"]["sid"] == "alice"
        assert published["track"]["identity"] == "id-alice"
        assert not any(p.errors for p in (alice, bob, carol))
    finally:
        await close_all(alice, bob, carol)


async def test_five_participants_all_publishing_each_receive_the_other_four(sfu: SfuController) -> None:
    peers = [Peer(sfu, "r5", f"p{i}") for i in range(5)]
    try:
        for p in peers:
            await p.join()
        for p in peers:
            await p.publish(video=(160, 120), audio=True)
        for p in peers:
            await wait_until(lambda p=p: len(p.of_type("track_published")) >= 10, 5, what="announcements")
        for p in peers:
            others = [video_track_of(p, q.sid) for q in peers if q is not p]
            await p.subscribe(*others)
        for p in peers:
            for q in peers:
                if q is p:
                    continue
                track = video_track_of(p, q.sid)
                await wait_until(
                    lambda p=p, t=track: (r := p.video_for(t)) is not None and r.frames >= 5,
                    15,
                    what=f"{p.sid} sees {q.sid}",
                )
            await wait_until(lambda p=p: p.audio_frames() >= 10, 10, what=f"{p.sid} hears someone")
            assert len(p.track_map) == 4
            offer = p.of_type("subscribe_offer")[-1]["sdp"]
            streams = re.findall(r"a=msid:(\S+) ", offer)
            assert len(streams) == offer.count("m=") == len(set(streams))  # no cross-slot lip sync
        assert not any(p.errors for p in peers)
    finally:
        await close_all(*peers)


async def test_a_late_subscriber_gets_video_within_two_seconds(sfu: SfuController) -> None:
    alice, bob = Peer(sfu, "late", "alice"), Peer(sfu, "late", "bob")
    try:
        await alice.join()
        await alice.publish(video=(320, 240), audio=False)
        await asyncio.sleep(2.5)  # the publisher's first keyframe is long gone
        await bob.join()
        track = video_track_of(bob, "alice")
        await bob.expect("subscribe_offer")
        await wait_until(lambda: bob.audio_slots != [], 5, what="first negotiation")
        start = asyncio.get_running_loop().time()
        await bob.subscribe(track)
        await wait_until(
            lambda: (r := bob.video_for(track)) is not None and r.frames >= 1, 2.0, what="late video"
        )
        got = bob.video_for(track)
        assert got is not None and got.first_at is not None and got.first_at - start < 2.0
        sfu.metrics.flush()
        assert sfu.metrics.registry.get_sample_value("conf_sfu_plis_total") >= 1  # it had to ask
    finally:
        await close_all(alice, bob)


def lossy(rate: float, seed: int) -> PacketFilters:
    rng = random.Random(seed)
    return PacketFilters(outgoing=lambda data: rng.random() < rate, incoming=lambda data: rng.random() < rate)


async def test_subscribers_keep_decoding_with_five_percent_loss_at_the_sfu() -> None:
    sfu = SfuController(config(), None, packet_filters=lossy(0.05, seed=5))
    alice, bob = Peer(sfu, "loss", "alice"), Peer(sfu, "loss", "bob")
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=(320, 240), audio=False)
        track = video_track_of(bob, "alice")
        await bob.subscribe(track)
        await wait_until(
            lambda: (r := bob.video_for(track)) is not None and r.frames >= 1, 5, what="first frame"
        )
        got = bob.video_for(track)
        assert got is not None and alice.video_source is not None
        before, produced = got.frames, alice.video_source.produced
        await asyncio.sleep(3.0)
        sent = alice.video_source.produced - produced
        await asyncio.sleep(0.5)  # frames of the window still being repaired or decoded
        assert sent >= 20
        # about one packet in ten is lost on the way (5% on each hop)
        assert got.frames - before >= 0.9 * sent
        sfu.metrics.flush()
        assert sfu.metrics.registry.get_sample_value("conf_sfu_nacks_total") > 0  # the SFU resent to bob
        layer = sfu._rooms["loss"].tracks[track].layers[""]
        assert layer.rtx_ssrc is not None  # and asked alice, who resent over RTX
    finally:
        await close_all(alice, bob)
        await sfu.close()
