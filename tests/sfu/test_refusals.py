"""Refused media requests get stable error codes, and the room carries on unaffected."""

from __future__ import annotations

import pytest

from confserver.errors import ServiceError
from sfu.controller import SfuController
from tests.sfu.conftest import config
from tests.sfu.peers import VIEWER, Peer, wait_until
from tests.sfu.test_forwarding import video_track_of

GARBAGE = [
    "hello",
    "v=0\r\n",
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video x UDP 96\r\na=mid:0\r\n",
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\na=fingerprint:sha-256 AA\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "a=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n",
]


async def code_of(peer: Peer, mtype: str, **body: object) -> str:
    with pytest.raises(ServiceError) as info:
        await peer.request(mtype, **body)
    return info.value.code


@pytest.fixture
async def flowing(sfu: SfuController) -> tuple[SfuController, Peer, Peer, str]:
    alice, bob = Peer(sfu, "room", "alice"), Peer(sfu, "room", "bob")
    await alice.join()
    await bob.join()
    await alice.publish(video=(160, 120), audio=False)
    track = video_track_of(bob, "alice")
    await bob.subscribe(track)
    await wait_until(lambda: (r := bob.video_for(track)) is not None and r.frames >= 2, 5, what="video flows")
    yield sfu, alice, bob, track
    await alice.close()
    await bob.close()


async def still_flowing(bob: Peer, track: str) -> None:
    got = bob.video_for(track)
    assert got is not None
    before = got.frames
    await wait_until(lambda: got.frames >= before + 5, 3, what="video keeps flowing")


@pytest.mark.parametrize("sdp", GARBAGE)
async def test_garbage_sdp_is_refused_with_bad_sdp_and_the_room_goes_on(
    flowing: tuple[SfuController, Peer, Peer, str], sdp: str
) -> None:
    sfu, _alice, bob, track = flowing
    carol = Peer(sfu, "room", "carol")
    await carol.join()
    assert (
        await code_of(carol, "publish_offer", sdp=sdp, tracks=[{"mid": "0", "source": "camera"}]) == "bad_sdp"
    )
    assert await code_of(carol, "subscribe_answer", sdp=sdp) in ("bad_sdp", "unexpected_answer")
    assert [m for m in bob.of_type("track_published") if m["track"]["sid"] == "carol"] == []
    await still_flowing(bob, track)
    await carol.close()


async def test_a_publish_offer_whose_tracks_do_not_match_its_m_lines_is_bad_sdp(
    flowing: tuple[SfuController, Peer, Peer, str],
) -> None:
    _sfu, alice, bob, track = flowing
    assert alice.publish_pc is not None
    sdp = alice.publish_pc.localDescription.sdp
    assert (
        await code_of(alice, "publish_offer", sdp=sdp, tracks=[{"mid": "7", "source": "camera"}]) == "bad_sdp"
    )
    assert (
        await code_of(alice, "publish_offer", sdp=sdp, tracks=[{"mid": "0", "source": "microphone"}])
        == "bad_sdp"
    )
    await still_flowing(bob, track)


async def test_unknown_track_ids_are_refused(flowing: tuple[SfuController, Peer, Peer, str]) -> None:
    _sfu, _alice, bob, track = flowing
    assert (
        await code_of(bob, "update_subscription", tracks=[{"id": "TR_nope", "subscribe": True}])
        == "unknown_track"
    )
    assert await code_of(bob, "unpublish", track="TR_nope") == "unknown_track"
    await still_flowing(bob, track)


async def test_tracks_of_another_room_cannot_be_subscribed(
    flowing: tuple[SfuController, Peer, Peer, str],
) -> None:
    sfu, _alice, _bob, track = flowing
    eve = Peer(sfu, "other-room", "eve")
    await eve.join()
    assert (
        await code_of(eve, "update_subscription", tracks=[{"id": track, "subscribe": True}])
        == "unknown_track"
    )
    await eve.close()


async def test_a_viewer_cannot_publish_and_one_without_subscribe_cannot_subscribe(
    flowing: tuple[SfuController, Peer, Peer, str],
) -> None:
    sfu, _alice, bob, track = flowing
    viewer = Peer(sfu, "room", "viewer", permissions=VIEWER)
    await viewer.join()
    with pytest.raises(ServiceError) as info:
        await viewer.publish(video=(160, 120), audio=False)
    assert info.value.code == "forbidden"
    mic_only = Peer(sfu, "room", "mic", permissions=frozenset({"publish_audio"}))
    await mic_only.join()
    with pytest.raises(ServiceError) as info:
        await mic_only.publish(video=(160, 120), audio=False)
    assert info.value.code == "forbidden"
    assert (
        await code_of(mic_only, "update_subscription", tracks=[{"id": track, "subscribe": True}])
        == "forbidden"
    )
    assert mic_only.of_type("subscribe_offer") == []
    await still_flowing(bob, track)
    await viewer.close()
    await mic_only.close()


async def test_malformed_fields_are_refused(flowing: tuple[SfuController, Peer, Peer, str]) -> None:
    _sfu, alice, bob, track = flowing
    assert await code_of(bob, "update_subscription", tracks="all") == "bad_field"
    assert await code_of(bob, "update_subscription", tracks=[{"id": track, "max_width": -1}]) == "bad_field"
    assert await code_of(bob, "update_subscription") == "missing_field"
    assert (
        await code_of(alice, "publish_offer", sdp="v=0", tracks=[{"mid": "0", "source": "hologram"}])
        == "bad_field"
    )
    assert await code_of(bob, "ice_candidate", target="sideways", candidate=None) == "bad_field"
    assert await code_of(bob, "ice_candidate", target="publish", candidate={"candidate": "x"}) == "bad_field"
    assert await code_of(bob, "subscribe_answer", sdp="v=0") == "unexpected_answer"
    assert await code_of(bob, "update_subscription", tracks=[{"id": track}, {"id": track}]) == "bad_field"
    await still_flowing(bob, track)


async def test_subscribing_to_own_tracks_is_refused(flowing: tuple[SfuController, Peer, Peer, str]) -> None:
    _sfu, alice, _bob, track = flowing
    assert await code_of(alice, "update_subscription", tracks=[{"id": track}]) == "bad_field"


@pytest.mark.parametrize("sfu_config", [config(max_video_subscriptions=1)])
async def test_more_video_subscriptions_than_allowed_are_refused(sfu: SfuController) -> None:
    peers = [Peer(sfu, "cap", f"p{i}") for i in range(3)]
    for p in peers:
        await p.join()
    for p in peers[1:]:
        await p.publish(video=(160, 120), audio=False)
    viewer = peers[0]
    first, second = video_track_of(viewer, "p1"), video_track_of(viewer, "p2")
    await viewer.subscribe(first)
    assert await code_of(viewer, "update_subscription", tracks=[{"id": second}]) == "too_many_subscriptions"
    # swapping one for the other in a single update is within the cap
    await viewer.request("update_subscription", tracks=[{"id": first, "subscribe": False}, {"id": second}])
    await wait_until(lambda: list(viewer.track_map.values()) == [second], 5, what="swapped")
    for p in peers:
        await p.close()


@pytest.mark.parametrize("sfu_config", [config(max_video_subscriptions=1)])
async def test_a_screen_share_added_later_is_announced_and_does_not_count_against_the_cap(
    sfu: SfuController,
) -> None:
    alice, bob = Peer(sfu, "screen", "alice"), Peer(sfu, "screen", "bob")
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=(160, 120), audio=False)
        camera = video_track_of(bob, "alice")
        await bob.subscribe(camera)
        await alice.publish(video=(320, 240), audio=False, source="screen")  # renegotiates
        screen = next(
            m["track"]["id"] for m in bob.of_type("track_published") if m["track"]["source"] == "screen"
        )
        assert bob.of_type("track_unpublished") == []  # the camera stayed published
        await bob.subscribe(screen)
        await wait_until(
            lambda: all((r := bob.video_for(t)) is not None and r.frames >= 3 for t in (camera, screen)),
            8,
            what="camera and screen",
        )
        assert {(w, h) for w, h in bob.video_for(screen).sizes} == {(320, 240)}  # type: ignore[union-attr]
        await alice.request("unpublish", track=screen)
        await bob.expect("track_unpublished", id=screen)
        await still_flowing(bob, camera)
    finally:
        await alice.close()
        await bob.close()
