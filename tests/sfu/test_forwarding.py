"""Media flows end to end: publishers' packets reach subscribers, who decode them."""

from __future__ import annotations

from sfu.controller import SfuController
from tests.sfu.peers import Peer, wait_until


async def test_one_publisher_two_subscribers_decode_video_at_the_published_size_and_hear_audio(
    sfu: SfuController,
) -> None:
    alice = Peer(sfu, "r1", "alice")
    bob = Peer(sfu, "r1", "bob")
    carol = Peer(sfu, "r1", "carol")
    peers = [alice, bob, carol]
    try:
        for p in peers:
            await p.join()
        await alice.publish(video=(320, 240), audio=True)
        published = await bob.expect("track_published")
        await carol.expect("track_published")
        video_id = next(
            m["track"]["id"] for m in bob.of_type("track_published") if m["track"]["kind"] == "video"
        )
        for p in (bob, carol):
            await p.subscribe(video_id, max_width=320, max_height=240)
        for p in (bob, carol):
            await wait_until(
                lambda p=p: (r := p.video_for(video_id)) is not None and r.frames >= 10,
                10,
                what=f"{p.sid} decodes video",
            )
            await wait_until(lambda p=p: p.audio_frames() >= 20, 10, what=f"{p.sid} hears audio")
            got = p.video_for(video_id)
            assert got is not None and set(got.sizes) == {(320, 240)}
        assert published["track"]["sid"] == "alice"
        assert not any(p.errors for p in peers)
    finally:
        for p in peers:
            await p.close()
