from __future__ import annotations

from sfu.core.actions import DropReason
from sfu.core.simulcast import (
    FORWARD,
    LayerDecision,
    LayerInfo,
    LayerLimits,
    LayerLiveness,
    LayerSelector,
    SimulcastConfig,
)

LAYERS = [
    LayerInfo("f", 1280, 720, 1_500_000),
    LayerInfo("q", 320, 180, 150_000),
    LayerInfo("h", 640, 360, 500_000),
]
SMALL = LayerLimits(max_width=320, max_height=180)
LARGE = LayerLimits(max_width=1280, max_height=720)


def tick(
    sel: LayerSelector, now: float, keyframes: str = "", layers: str = "qhf"
) -> dict[str, LayerDecision]:
    """One packet of each layer in ``layers`` at ``now``; those in ``keyframes`` start a keyframe."""
    return {rid: sel.on_packet(rid, rid in keyframes, now) for rid in layers}


def forwarded(decisions: dict[str, LayerDecision]) -> str:
    return "".join(rid for rid, d in decisions.items() if d.forward)


def selector(limits: LayerLimits = LARGE, bitrate: int | None = None) -> LayerSelector:
    sel = LayerSelector(SimulcastConfig())
    sel.set_layers(LAYERS, 0.0)
    sel.set_limits(limits, 0.0)
    sel.set_available_bitrate(bitrate, 0.0)
    return sel


def started(limits: LayerLimits = LARGE, bitrate: int | None = None) -> LayerSelector:
    sel = selector(limits, bitrate)
    tick(sel, 0.0)
    tick(sel, 0.01, keyframes="qhf")
    return sel


def test_layers_are_ordered_lowest_first() -> None:
    assert [layer.rid for layer in selector().layers] == ["q", "h", "f"]


def test_small_tile_gets_the_low_layer() -> None:
    sel = started(SMALL)
    assert sel.current == "q"
    assert forwarded(tick(sel, 0.05)) == "q"


def test_large_tile_gets_the_high_layer() -> None:
    sel = started(LARGE)
    assert sel.current == "f"
    assert forwarded(tick(sel, 0.05)) == "f"


def test_medium_tile_gets_the_smallest_layer_that_covers_it() -> None:
    assert started(LayerLimits(max_width=400, max_height=225)).current == "h"


def test_tile_larger_than_every_layer_gets_the_largest() -> None:
    assert started(LayerLimits(max_width=3840, max_height=2160)).current == "f"


def test_explicit_max_layer_caps_the_choice() -> None:
    assert started(LayerLimits(max_width=1280, max_height=720, max_layer="h")).current == "h"


def test_shedding_holds_every_subscriber_below_the_top_and_never_below_the_lowest() -> None:
    assert started(LayerLimits(max_width=1280, max_height=720, shed=1)).current == "h"
    assert started(LayerLimits(max_width=1280, max_height=720, shed=2)).current == "q"
    assert started(LayerLimits(max_width=1280, max_height=720, shed=5)).current == "q"
    assert started(LayerLimits(max_width=320, max_height=180, shed=1)).current == "q"  # already lower
    assert started(LayerLimits(max_width=1280, max_height=720, max_layer="q", shed=1)).current == "q"


def test_shedding_switches_down_on_a_keyframe_and_back_up_when_it_ends() -> None:
    sel = started(LARGE)
    sel.set_limits(LayerLimits(max_width=1280, max_height=720, shed=1), 0.1)
    assert sel.target == "h" and forwarded(tick(sel, 0.12)) == "f"  # until h's keyframe
    assert forwarded(tick(sel, 0.15, keyframes="h")) == "h"
    sel.set_limits(LARGE, 0.2)
    assert sel.target == "f"
    assert forwarded(tick(sel, 0.25, keyframes="f")) == "hf"  # h until f's keyframe, then f
    assert sel.current == "f" and forwarded(tick(sel, 0.3)) == "f"


def test_nothing_is_forwarded_before_the_first_keyframe_and_one_is_requested() -> None:
    sel = selector(SMALL)
    decisions = tick(sel, 0.0)
    assert forwarded(decisions) == ""
    assert decisions["q"].request_keyframe
    assert decisions["q"].reason is DropReason.WAITING_FOR_KEYFRAME
    first = sel.on_packet("q", True, 0.02)
    assert first.forward and first.switched


def test_switch_waits_for_a_keyframe_of_the_target_and_requests_one() -> None:
    sel = started(SMALL)
    sel.set_limits(LARGE, 1.0)
    assert sel.target == "f" and sel.current == "q"
    decisions = tick(sel, 1.01)
    assert forwarded(decisions) == "q"  # the old layer keeps flowing meanwhile
    assert decisions["q"].request_keyframe
    assert decisions["f"].reason is DropReason.WAITING_FOR_KEYFRAME
    assert decisions["f"].request_keyframe
    assert decisions["h"].reason is DropReason.LAYER_NOT_SELECTED
    decisions = tick(sel, 1.05, keyframes="f")
    assert decisions["f"].switched and decisions["f"].forward
    assert sel.current == "f"
    after = tick(sel, 1.08)
    assert forwarded(after) == "f"
    assert not any(d.request_keyframe for d in after.values())


def flow(sel: LayerSelector, start: float, end: float, layers: str = "qhf", keyframes: str = "") -> float:
    """Packets of ``layers`` every 30 ms from ``start`` to ``end``; returns the last time."""
    t = start
    while t < end:
        t += 0.03
        tick(sel, t, keyframes=keyframes, layers=layers)
    return t


def test_switch_down_also_waits_for_a_keyframe() -> None:
    sel = started(LARGE)
    t = flow(sel, 0.01, 2.0)
    sel.set_limits(SMALL, t)
    assert forwarded(tick(sel, t + 0.01)) == "f"
    assert forwarded(tick(sel, t + 0.02, keyframes="q")) == "q"


def test_everything_stalling_then_resuming_restarts_at_once_on_a_keyframe() -> None:
    sel = started(LARGE)
    assert sel.update(3.0) is None  # nothing for 3 s: the publisher's link dropped
    decisions = tick(sel, 3.01)
    assert forwarded(decisions) == ""
    assert decisions["f"].request_keyframe
    assert forwarded(tick(sel, 3.05, keyframes="f")) == "f"


def test_paused_subscriber_gets_nothing_and_requests_no_keyframe() -> None:
    sel = started(LARGE)
    sel.set_limits(LayerLimits(max_width=1280, max_height=720, paused=True), 1.0)
    decisions = tick(sel, 1.01, keyframes="qhf")
    assert forwarded(decisions) == ""
    assert all(d.reason is DropReason.PAUSED and not d.request_keyframe for d in decisions.values())
    sel.set_limits(LARGE, 2.0)
    assert sel.needs_keyframe
    assert forwarded(tick(sel, 2.01)) == ""
    assert forwarded(tick(sel, 2.02, keyframes="f")) == "f"


def test_stalled_layer_falls_back_to_the_next_lower_one() -> None:
    sel = started(LARGE)
    t = flow(sel, 0.01, 1.0)
    t = flow(sel, t, 2.2, layers="qh")  # the top layer stops (e.g. the publisher's uplink degraded)
    assert sel.target == "h"
    decisions = tick(sel, t + 0.03, keyframes="h", layers="qh")
    assert decisions["h"].switched
    assert sel.current == "h"


def test_timer_update_notices_that_every_layer_stalled() -> None:
    sel = started(LARGE)
    assert sel.update(0.5) == "f"
    assert sel.update(5.0) is None
    assert sel.current is None


def test_layer_back_from_a_stall_is_chosen_only_after_the_resume_hold() -> None:
    sel = started(LARGE)
    t = flow(sel, 0.01, 2.5, layers="qh", keyframes="h")
    assert sel.current == "h"
    resumed_at = t + 0.03
    tick(sel, resumed_at)  # the top layer is back
    assert sel.target == "h"
    t = flow(sel, resumed_at, resumed_at + 0.9)
    assert sel.update(t) == "h"
    t = flow(sel, t, resumed_at + 1.1)
    assert sel.update(t) == "f"  # the periodic re-evaluation picks it up


def test_bandwidth_caps_the_layer_below_what_the_tile_wants() -> None:
    assert started(LARGE, bitrate=600_000).current == "h"


def test_unknown_bandwidth_does_not_cap() -> None:
    assert started(LARGE, bitrate=None).current == "f"


def test_too_little_bandwidth_still_gets_the_lowest_layer() -> None:
    assert started(LARGE, bitrate=50_000).current == "q"


def test_bandwidth_downgrade_is_immediate_but_upgrade_waits_and_needs_headroom() -> None:
    sel = started(LARGE, bitrate=3_000_000)
    assert sel.current == "f"
    t = flow(sel, 0.01, 1.0)
    assert sel.set_available_bitrate(1_000_000, t) == "h"
    t = flow(sel, t, 2.0)
    assert sel.set_available_bitrate(3_000_000, t) == "h"  # within the hold time
    t = flow(sel, t, 4.5)
    assert sel.set_available_bitrate(1_600_000, t) == "h"  # fits, but without headroom: streak broken
    assert sel.set_available_bitrate(3_000_000, t) == "h"
    t = flow(sel, t, t + 2.9)
    assert sel.update(t) == "h"
    t = flow(sel, t, t + 0.2)
    assert sel.update(t) == "f"


def test_flapping_estimate_does_not_flap_the_layer() -> None:
    sel = started(LARGE, bitrate=3_000_000)
    t = 0.01
    targets = []
    for i in range(20):
        t = flow(sel, t, t + 0.3)
        targets.append(sel.set_available_bitrate(1_000_000 if i % 2 == 0 else 2_000_000, t))
    assert targets == ["h"] * 20


def test_layer_table_without_packets_has_no_target() -> None:
    sel = LayerSelector()
    assert sel.set_layers(LAYERS, 0.0) is None
    assert not sel.needs_keyframe


def test_layer_table_with_recent_packet_times_counts_layers_as_live() -> None:
    sel = LayerSelector()
    layers = [
        LayerInfo(layer.rid, layer.width, layer.height, layer.bitrate, last_packet_at=9.9) for layer in LAYERS
    ]
    assert sel.set_layers(layers, 10.0) == "f"
    assert sel.set_limits(SMALL, 10.0) == "q"


def test_layer_table_can_shrink_to_nothing_and_grow_back() -> None:
    sel = started(LARGE, bitrate=3_000_000)
    assert sel.set_layers([], 0.02) is None
    assert sel.set_layers(LAYERS, 0.03) == "f"


def test_unknown_layer_is_never_forwarded() -> None:
    sel = started(LARGE)
    decision = sel.on_packet("x", True, 0.05)
    assert not decision.forward
    assert decision.reason is DropReason.LAYER_NOT_SELECTED


class SharedTrack:
    """What a published track does with its subscribers' selectors: feed one shared liveness per
    packet, re-evaluate everyone when it changes, show each packet only to the selectors
    listening to its layer."""

    def __init__(self, *limits: LayerLimits) -> None:
        self.liveness = LayerLiveness()
        self.selectors: list[LayerSelector] = []
        for limit in limits:
            sel = LayerSelector(SimulcastConfig(), liveness=self.liveness)
            sel.set_layers(LAYERS, 0.0)
            sel.set_limits(limit, 0.0)
            self.selectors.append(sel)
        self.shown = {rid: 0 for rid in "qhf"}

    def packet(self, rid: str, now: float, keyframe: bool = False) -> list[LayerDecision | None]:
        if self.liveness.seen(rid, now):
            for sel in self.selectors:
                sel.update(now)
        out: list[LayerDecision | None] = []
        for sel in self.selectors:
            if rid in sel.listening:
                self.shown[rid] += 1
                out.append(sel.on_packet(rid, keyframe, now))
            else:
                out.append(None)
        return out


def test_selectors_sharing_a_tracks_liveness_see_only_the_layers_they_listen_to() -> None:
    track = SharedTrack(SMALL, LARGE)
    now = 0.0
    for rid in "qhf":
        track.packet(rid, now)
    for rid in "qhf":
        track.packet(rid, 0.01, keyframe=True)
    small, large = track.selectors
    assert (small.current, large.current) == ("q", "f")
    assert (small.listening, large.listening) == (("q",), ("f",))
    track.shown = dict.fromkeys("qhf", 0)
    for i in range(100):
        now = 0.02 + i * 0.01
        small_d, large_d = track.packet("h", now)
        assert small_d is None and large_d is None  # nobody forwards h: nobody is shown it
        assert track.packet("q", now)[0] == FORWARD
        assert track.packet("f", now)[1] == FORWARD
    assert track.shown == {"q": 100, "h": 0, "f": 100}


def test_a_stalled_layer_is_noticed_through_the_shared_liveness() -> None:
    track = SharedTrack(LARGE)
    for rid in "qhf":
        track.packet(rid, 0.0, keyframe=True)
    (large,) = track.selectors
    assert large.current == "f"
    now = 0.0
    while now < 1.5:  # f stops; q and h keep flowing
        now += 0.02
        track.packet("q", now)
        track.packet("h", now)
    assert large.target == "h" and "h" in large.listening
    (decision,) = track.packet("h", now + 0.02, keyframe=True)
    assert decision is not None and decision.switched and large.current == "h"


def test_liveness_reports_a_layer_coming_back_and_another_stalling() -> None:
    liveness = LayerLiveness(stall_timeout=1.0, check_interval=0.1)
    assert liveness.seen("q", 0.0) is True  # first packet
    assert liveness.seen("f", 0.0) is True
    assert liveness.seen("q", 0.5) is False
    assert liveness.seen("q", 1.2) is True  # f has stalled
    assert liveness.seen("q", 1.3) is False
    assert liveness.seen("f", 2.5) is True  # f is back
    assert liveness.active_since["f"] == 2.5
