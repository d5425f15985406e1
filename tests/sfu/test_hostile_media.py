"""Hostile media requests: refused before aiortc sees them, bounded in time and in CPU, and never
able to hold a participant's seat, the room or the server's shutdown."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from confserver.errors import ServiceError
from sfu.controller import MAX_REMOTE_CANDIDATES, SfuController
from sfu.core.budget import BudgetConfig, SdpBudget
from sfu.core.candidate import CandidateError, parse_candidate
from sfu.deadline import Deadlines
from sfu.publisher import Publisher
from tests.sfu.bench_sdp import hostile_candidate_offer, hostile_ssrc_offer
from tests.sfu.conftest import LOOPBACK_SFU
from tests.sfu.peers import VIEWER, Peer, wait_until
from tests.sfu.test_forwarding import video_track_of

QUICK = 5.0  # seconds: a refusal takes milliseconds; a hang takes forever


async def code_of(peer: Peer, mtype: str, **body: object) -> str:
    try:
        await asyncio.wait_for(peer.request(mtype, **body), QUICK)
    except ServiceError as exc:
        return exc.code
    return "accepted"


def publisher_of(sfu: SfuController, room: str, sid: str) -> Publisher:
    publisher = sfu._rooms[room].members[sid].publisher
    assert publisher is not None
    return publisher


def connections(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("conf_sfu_peer_connections") or 0.0


def restart_offer(sdp: str, bundle: str) -> str:
    """``sdp`` with new ICE credentials (an ICE restart) and the given BUNDLE group."""
    sdp = re.sub(r"a=ice-ufrag:\S+", "a=ice-ufrag:hostile1", sdp)
    sdp = re.sub(r"a=ice-pwd:\S+", "a=ice-pwd:hostilehostilehostile123", sdp)
    return re.sub(r"a=group:BUNDLE [^\r]*", f"a=group:BUNDLE {bundle}", sdp)


@pytest.fixture
async def flowing(sfu: SfuController) -> AsyncIterator[tuple[SfuController, Peer, Peer, str]]:
    alice, bob = Peer(sfu, "room", "alice"), Peer(sfu, "room", "bob")
    await alice.join()
    await bob.join()
    await alice.publish(video=(160, 120), audio=True)
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


# --- descriptions that made aiortc hang or fail ---------------------------------------------------


@pytest.mark.parametrize("bundle", ["0 0", "0 1 1", "1 0", "0 7"])
async def test_an_ice_restart_offer_with_a_broken_bundle_group_is_refused_with_bad_sdp(
    flowing: tuple[SfuController, Peer, Peer, str], bundle: str
) -> None:
    _sfu, alice, bob, track = flowing
    assert alice.publish_pc is not None
    sdp = restart_offer(alice.publish_pc.localDescription.sdp, bundle)
    assert await code_of(alice, "publish_offer", sdp=sdp, tracks=alice.published) == "bad_sdp"
    await still_flowing(bob, track)


async def test_an_offer_that_renames_its_m_lines_is_refused_and_adds_no_transceiver(
    flowing: tuple[SfuController, Peer, Peer, str],
) -> None:
    sfu, alice, bob, track = flowing
    assert alice.publish_pc is not None
    sdp = alice.publish_pc.localDescription.sdp
    before = len(publisher_of(sfu, "room", "alice").pc.getTransceivers())
    for n in range(5):
        renamed = sdp.replace("a=mid:0", f"a=mid:v{n}").replace("BUNDLE 0 ", f"BUNDLE v{n} ")
        tracks = [{**t, "mid": f"v{n}"} if t["mid"] == "0" else t for t in alice.published]
        assert await code_of(alice, "publish_offer", sdp=renamed, tracks=tracks) == "bad_sdp"
    publisher = publisher_of(sfu, "room", "alice")
    assert len(publisher.pc.getTransceivers()) == before
    assert len(publisher._ids) <= before
    await still_flowing(bob, track)


async def test_an_offer_without_a_direction_is_bad_sdp_not_internal(sfu: SfuController) -> None:
    alice = Peer(sfu, "room", "alice")
    await alice.join()
    donor = Peer(sfu, "room", "donor")  # a real offer to strip
    await donor.join()
    await donor.publish(video=(160, 120), audio=False)
    assert donor.publish_pc is not None
    sdp = re.sub(r"a=(sendonly|sendrecv)\r\n", "", donor.publish_pc.localDescription.sdp)
    tracks = [{"mid": "0", "source": "camera"}]
    assert await code_of(alice, "publish_offer", sdp=sdp, tracks=tracks) == "bad_sdp"
    await alice.close()
    await donor.close()


@pytest.mark.parametrize("offer", [hostile_ssrc_offer, hostile_candidate_offer], ids=["ssrc", "candidate"])
async def test_a_60_kb_padded_offer_is_refused_before_aiortc_parses_it(
    sfu: SfuController, offer: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = Peer(sfu, "room", "alice")
    await alice.join()
    sdp = offer()  # type: ignore[operator]
    assert len(sdp) > 60_000
    reached_aiortc: list[str] = []
    original = Publisher.answer

    async def answer(self: Publisher, *args: object) -> object:
        reached_aiortc.append("answer")
        return await original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Publisher, "answer", answer)
    assert await code_of(alice, "publish_offer", sdp=sdp, tracks=[]) == "bad_sdp"
    assert reached_aiortc == []
    await alice.close()


# --- permissions, budgets -------------------------------------------------------------------------


async def test_a_viewer_cannot_open_a_publish_connection_even_without_tracks(
    sfu: SfuController, registry: CollectorRegistry
) -> None:
    donor = Peer(sfu, "room", "donor")
    await donor.join()
    await donor.publish(video=(160, 120), audio=False)
    viewer = Peer(sfu, "room", "viewer", permissions=VIEWER)
    await viewer.join()
    before = connections(registry)
    assert donor.publish_pc is not None
    sdp = donor.publish_pc.localDescription.sdp
    assert await code_of(viewer, "publish_offer", sdp=sdp, tracks=[]) == "forbidden"
    assert viewer.of_type("publish_answer") == []
    assert connections(registry) == before
    candidate = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"}
    assert await code_of(viewer, "ice_candidate", target="publish", candidate=candidate) == "bad_field"
    await viewer.close()
    await donor.close()


def test_the_sdp_budget_refuses_beyond_its_burst_and_refills_over_its_window() -> None:
    budget = SdpBudget(BudgetConfig(descriptions=3, chars=100_000, window=30.0), now=0.0)
    assert [budget.charge(10, 0.0) for _ in range(4)] == [True, True, True, False]
    assert budget.charge(10, 10.0)  # a third of the window: one description back
    assert not budget.charge(10, 10.0)
    big = SdpBudget(BudgetConfig(descriptions=100, chars=100_000, window=30.0), now=0.0)
    assert big.charge(60_000, 0.0) and not big.charge(60_000, 0.0)  # the characters run out first
    assert big.charge(60_000, 30.0)


@pytest.mark.parametrize("sfu_config", [LOOPBACK_SFU])
async def test_descriptions_beyond_the_budget_are_rate_limited_before_parsing(
    sfu_config: object, registry: CollectorRegistry
) -> None:
    sfu = SfuController(LOOPBACK_SFU, registry, sdp_budget=BudgetConfig(descriptions=3, window=60.0))
    try:
        alice = Peer(sfu, "room", "alice")
        await alice.join()
        garbage = "v=0\r\n" + "a=x\r\n" * 100
        codes = [await code_of(alice, "publish_offer", sdp=garbage, tracks=[]) for _ in range(4)]
        assert codes == ["bad_sdp", "bad_sdp", "bad_sdp", "rate_limited"]
        assert await code_of(alice, "subscribe_answer", sdp=garbage) == "rate_limited"
        await alice.close()
    finally:
        await sfu.close()


# --- candidates -----------------------------------------------------------------------------------

BAD_CANDIDATES = [
    "candidate:1 1 udp 2130706431 127.0.0.1",  # fewer than 8 fields: aiortc's assert
    "1 1 udp 2130706431 127.0.0.1 5000 typ",
    "1 1 udp 2130706431 224.0.0.1 5000 typ host",  # multicast
    "1 1 udp 2130706431 0.0.0.0 5000 typ host",
    "1 1 udp 2130706431 255.255.255.255 5000 typ host",
    "1 1 udp 2130706431 ff02::1 5000 typ host",
    "1 1 udp 2130706431 127.0.0.1 0 typ host",
    "1 1 udp 2130706431 127.0.0.1 70000 typ host",
    "1 1 udp x 127.0.0.1 5000 typ host",
    "1 1 sctp 2130706431 127.0.0.1 5000 typ host",
    "1 2 udp 2130706431 127.0.0.1 5000 typ host",
    "1 1 udp 2130706431 127.0.0.1 5000 typ bogus",
    "1 1 udp 2130706431 example.com 5000 typ host",
    "1 1 udp 2130706431 127.0.0.1 5000 type host",
    "1 1 udp 2130706431 127.0.0.1 5000 typ host raddr",
]


@pytest.mark.parametrize("text", BAD_CANDIDATES)
async def test_malformed_or_implausible_candidates_are_refused_with_bad_candidate(
    flowing: tuple[SfuController, Peer, Peer, str], text: str
) -> None:
    with pytest.raises(CandidateError):
        parse_candidate(text)
    _sfu, alice, bob, track = flowing
    assert (
        await code_of(alice, "ice_candidate", target="publish", candidate={"candidate": text})
        == "bad_candidate"
    )
    assert await code_of(bob, "ice_candidate", target="subscribe", candidate=text) == "bad_candidate"
    await still_flowing(bob, track)


def test_browser_candidates_are_accepted() -> None:
    for text in (
        "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0"
        " ufrag sXq2 network-cost 999",
        "candidate:1 1 UDP 2122252543 3f6a1c1e-8d1e-4c2a-9f9e-0b8c6d8a1f00.local 51234 typ host",
        "candidate:2 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active generation 0",
        "candidate:3 1 udp 41885439 2001:db8::1 3478 typ relay raddr 198.51.100.1 rport 60000",
    ):
        parse_candidate(text)


async def test_remote_candidates_are_capped_per_connection(
    flowing: tuple[SfuController, Peer, Peer, str],
) -> None:
    _sfu, alice, bob, track = flowing
    codes = []
    for i in range(MAX_REMOTE_CANDIDATES + 5):
        text = f"candidate:{i} 1 udp 2130706431 127.0.0.1 {20000 + i} typ host"
        codes.append(await code_of(alice, "ice_candidate", target="publish", candidate=text))
    accepted = codes.count("accepted")
    assert MAX_REMOTE_CANDIDATES - 2 <= accepted <= MAX_REMOTE_CANDIDATES
    assert set(codes[accepted:]) == {"too_many_candidates"}
    await still_flowing(bob, track)


# --- deadlines ------------------------------------------------------------------------------------


async def _forever(*_args: object, **_kwargs: object) -> None:
    await asyncio.Event().wait()


@pytest.fixture
async def impatient(registry: CollectorRegistry) -> AsyncIterator[SfuController]:
    sfu = SfuController(LOOPBACK_SFU, registry, deadlines=Deadlines(media=0.5, close=0.5))
    try:
        yield sfu
    finally:
        await asyncio.wait_for(sfu.close(), QUICK)


async def test_a_stuck_media_call_misses_its_deadline_and_closes_that_participants_media(
    impatient: SfuController, registry: CollectorRegistry
) -> None:
    sfu = impatient
    alice, bob = Peer(sfu, "room", "alice"), Peer(sfu, "room", "bob")
    await alice.join()
    await bob.join()
    await alice.publish(video=(160, 120), audio=False)
    track = video_track_of(bob, "alice")
    carol = Peer(sfu, "room", "carol")
    await carol.join()
    await carol.publish(video=(160, 120), audio=False)
    other = video_track_of(bob, "carol")
    await bob.subscribe(track, other)
    await wait_until(lambda: (r := bob.video_for(other)) is not None and r.frames >= 2, 5, what="carol flows")
    before = connections(registry)
    server_pc = publisher_of(sfu, "room", "alice").pc
    server_pc.setRemoteDescription = _forever  # type: ignore[method-assign]  # aiortc hangs
    assert alice.publish_pc is not None
    sdp = alice.publish_pc.localDescription.sdp
    assert await code_of(alice, "publish_offer", sdp=sdp, tracks=alice.published) == "media_timeout"
    await bob.expect("track_unpublished", id=track)
    assert connections(registry) == before - 2  # alice's publish and subscribe connections
    assert await code_of(alice, "publish_offer", sdp=sdp, tracks=alice.published) == "media_timeout"
    await still_flowing(bob, other)
    await asyncio.wait_for(alice.leave(), QUICK)
    for p in (bob, carol):
        await p.close()


async def test_leaving_and_shutdown_finish_while_media_calls_are_stuck(
    impatient: SfuController, registry: CollectorRegistry
) -> None:
    sfu = impatient
    alice = Peer(sfu, "room", "alice")
    await alice.join()
    await alice.publish(video=(160, 120), audio=False)
    server_pc = publisher_of(sfu, "room", "alice").pc
    server_pc.setRemoteDescription = _forever  # type: ignore[method-assign]
    server_pc.close = _forever  # type: ignore[method-assign]  # and closing it hangs too
    assert alice.publish_pc is not None
    body = {"sdp": alice.publish_pc.localDescription.sdp, "tracks": alice.published}
    stuck = asyncio.create_task(alice.request("publish_offer", **body))
    await asyncio.sleep(0.1)
    waiting = asyncio.create_task(alice.request("publish_offer", **body))  # waits on the member lock
    await asyncio.sleep(0.1)
    await asyncio.wait_for(sfu.participant_left("room", "alice"), QUICK)
    bob = Peer(sfu, "room2", "bob")  # the service goes on
    await bob.join()
    await bob.publish(video=(160, 120), audio=False)
    await asyncio.wait_for(sfu.close(), QUICK)
    done, _ = await asyncio.wait([stuck, waiting], timeout=QUICK)
    assert len(done) == 2
    for task in done:
        exc = task.exception()
        assert exc is None or (isinstance(exc, ServiceError) and exc.code in ("media_timeout", "not_joined"))
    assert connections(registry) == 0
    await alice.close()
    await bob.close()
