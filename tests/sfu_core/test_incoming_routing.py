"""Routing incoming packets to (track, layer): MID/RID extensions first, then learned and
signalled SSRCs, then payload type."""

from __future__ import annotations

from sfu.core.routing import IncomingRouter, Route, TrackRouting

MID, RID, RRID = 1, 4, 5


def router(*tracks: TrackRouting) -> IncomingRouter:
    r = IncomingRouter()
    r.configure(mid_ext=MID, rid_ext=RID, rrid_ext=RRID)
    r.set_tracks(tracks)
    return r


VIDEO = TrackRouting("0", frozenset({96}), frozenset({97}))
SIMULCAST = TrackRouting("1", frozenset({96}), frozenset({97}), simulcast=True)
AUDIO = TrackRouting("2", frozenset({111}))


def test_a_packet_naming_its_mid_is_routed_and_its_ssrc_learned() -> None:
    r = router(VIDEO, AUDIO)
    assert r.route(10, 96, {MID: b"0"}) == Route("0", "", False)
    assert r.route(10, 96, {}) == Route("0", "", False)  # later packets carry no MID


def test_simulcast_layers_are_told_apart_by_rid_and_repairs_by_repaired_rid() -> None:
    r = router(SIMULCAST)
    assert r.route(20, 96, {MID: b"1", RID: b"q"}) == Route("1", "q", False)
    assert r.route(21, 96, {MID: b"1", RID: b"f"}) == Route("1", "f", False)
    assert r.route(22, 97, {MID: b"1", RRID: b"f"}) == Route("1", "f", True)
    assert r.route(20, 96, {}) == Route("1", "q", False)
    assert r.route(22, 97, {}) == Route("1", "f", True)


def test_a_simulcast_packet_without_rid_is_not_guessed() -> None:
    r = router(SIMULCAST)
    assert r.route(30, 96, {MID: b"1"}) is None
    assert r.route(30, 96, {}) is None


def test_signalled_ssrcs_route_without_extensions() -> None:
    track = TrackRouting(
        "0", frozenset({96}), frozenset({97}), ssrcs={5: Route("0", "", False), 6: Route("0", "", True)}
    )
    r = router(track, AUDIO)
    assert r.route(5, 96, {}) == Route("0", "", False)
    assert r.route(6, 97, {}) == Route("0", "", True)


def test_payload_type_is_the_last_resort_and_only_when_unambiguous() -> None:
    assert router(VIDEO, AUDIO).route(40, 111, {}) == Route("2", "", False)
    assert router(VIDEO, AUDIO).route(40, 97, {}) == Route("0", "", True)
    other_video = TrackRouting("3", frozenset({96}))
    assert router(VIDEO, other_video).route(41, 96, {}) is None
    assert router(VIDEO).route(42, 100, {}) is None


def test_unknown_mids_are_dropped_and_learning_is_bounded() -> None:
    r = IncomingRouter(max_learned=2)
    r.configure(mid_ext=MID)
    r.set_tracks([VIDEO, TrackRouting("9", frozenset({100}))])
    assert r.route(1, 96, {MID: b"nope"}) == Route("0", "", False)  # falls back to the payload type
    assert r.route(2, 96, {MID: b"0"}) == Route("0", "", False)
    assert r.route(3, 96, {MID: b"0"}) == Route("0", "", False)
    # the first two SSRCs were learned: a later packet needs neither MID nor a known payload type
    assert r.route(1, 127, {}) == Route("0", "", False)
    assert r.route(2, 127, {}) == Route("0", "", False)
    assert r.route(3, 127, {}) is None  # the third was routed by its MID but not learned


def test_removing_a_track_forgets_its_ssrcs() -> None:
    r = router(VIDEO, AUDIO)
    r.route(10, 96, {MID: b"0"})
    r.route(11, 111, {MID: b"2"})
    r.set_tracks([AUDIO])
    assert r.route(10, 96, {}) is None
    assert r.route(11, 111, {}) == Route("2", "", False)
