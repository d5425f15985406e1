"""Which layers a publisher is told to send: ``LayerDemand`` and the selectors' ``wanted``."""

from __future__ import annotations

import pytest

from sfu.core.dynacast import LayerDemand
from sfu.core.simulcast import LayerLimits
from tests.sfu_core.test_simulcast_selection import LARGE, SMALL, selector, tick


def test_a_new_track_sends_everything_until_nobody_wanted_a_layer_for_the_delay() -> None:
    demand = LayerDemand("qhf", 0.0, pause_delay=3.0)
    assert demand.active == ("q", "h", "f")
    assert demand.update(["h"], 1.0) is None
    assert demand.update(["h"], 2.9) is None
    assert demand.update(["h"], 3.0) == ("h",)  # q and f: unwanted for 3 s since the start
    assert demand.paused == 2
    assert demand.update(["h"], 4.0) is None  # said once


def test_a_layer_comes_back_at_once_and_goes_only_after_the_delay() -> None:
    demand = LayerDemand("qhf", 0.0, pause_delay=3.0)
    assert demand.update([], 3.0) == ()
    assert demand.update(["f", "f"], 3.5) == ("f",)
    assert demand.update(["q"], 3.6) == ("q", "f")  # lowest first, whatever the order asked
    assert demand.update(["q"], 6.4) is None  # f was wanted 2.9 s ago
    assert demand.update(["q"], 6.5) == ("q",)


def test_a_page_flipped_back_within_the_delay_changes_nothing() -> None:
    demand = LayerDemand("qhf", 0.0, pause_delay=3.0)
    for t in range(1, 30):
        wanted = ["h"] if t % 2 else ["q", "h", "f"]
        assert demand.update(wanted, float(t)) is None


def test_unknown_layers_are_ignored_and_new_layers_start_on() -> None:
    demand = LayerDemand(["q", "h"], 0.0, pause_delay=1.0)
    assert demand.update(["x"], 1.0) == ()
    demand.set_layers(["q", "h", "f"], 2.0)  # renegotiated with a third layer: it is sent
    assert demand.active == ("f",)
    assert demand.update([], 2.5) is None
    assert demand.update([], 3.0) == ()
    demand.set_layers([""], 4.0)  # simulcast off: one layer, on
    assert demand.layers == ("",) and demand.active == ("",)


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError):
        LayerDemand("q", 0.0, pause_delay=-1.0)


def test_a_selector_wants_the_layer_its_tile_needs_even_when_that_layer_does_not_flow() -> None:
    sel = selector(SMALL)
    tick(sel, 0.0, keyframes="q", layers="q")  # only q flows (h and f switched off)
    assert sel.target == "q" and sel.wanted == "q"
    sel.set_limits(LARGE, 0.1)
    assert sel.target == "q"  # f does not flow: q is forwarded meanwhile
    assert sel.wanted == "f"  # but f is what the publisher must be asked for
    sel.set_limits(LayerLimits(max_width=1280, max_height=720, paused=True), 0.2)
    assert sel.wanted is None


def test_a_selector_wants_no_more_than_its_bandwidth_allows() -> None:
    sel = selector(LARGE, bitrate=600_000)
    assert sel.wanted == "h"
    sel.set_available_bitrate(100_000, 0.5)
    assert sel.wanted == "q"  # nothing fits: the lowest
