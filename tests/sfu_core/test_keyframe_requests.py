from __future__ import annotations

from sfu.core.actions import SendPli
from sfu.core.keyrequest import KeyframeRequester

CAMERA, SCREEN = 0xAAAA, 0xBBBB


def test_first_request_sends_a_pli_at_once() -> None:
    assert KeyframeRequester().request(CAMERA, now=0.0) == SendPli(CAMERA)


def test_requests_within_300_ms_are_merged_into_one_pli() -> None:
    requester = KeyframeRequester()
    sent = [requester.request(CAMERA, now=t / 1000) for t in range(0, 600, 20)]
    times = [t for t, action in zip(range(0, 600, 20), sent, strict=True) if action is not None]
    assert times == [0, 300]


def test_pli_is_repeated_every_300_ms_while_the_keyframe_is_awaited() -> None:
    requester = KeyframeRequester()
    requester.request(CAMERA, now=0.0)
    polled = {t: requester.poll(now=t / 1000) for t in range(100, 1000, 100)}
    assert [t for t, actions in polled.items() if actions] == [300, 600, 900]
    assert polled[300] == [SendPli(CAMERA)]


def test_arriving_keyframe_stops_the_repeats() -> None:
    requester = KeyframeRequester()
    requester.request(CAMERA, now=0.0)
    assert requester.awaiting(CAMERA)
    requester.on_keyframe(CAMERA)
    assert not requester.awaiting(CAMERA)
    assert requester.poll(now=1.0) == []


def test_throttle_is_per_source() -> None:
    requester = KeyframeRequester()
    assert requester.request(CAMERA, now=0.0) == SendPli(CAMERA)
    assert requester.request(SCREEN, now=0.01) == SendPli(SCREEN)
    assert requester.request(CAMERA, now=0.02) is None


def test_throttle_holds_even_after_a_keyframe_arrived() -> None:
    requester = KeyframeRequester()
    requester.request(CAMERA, now=0.0)
    requester.on_keyframe(CAMERA)
    assert requester.request(CAMERA, now=0.1) is None
    assert requester.poll(now=0.3) == [SendPli(CAMERA)]  # the pending request is not lost


def test_repeats_give_up_when_nobody_asks_any_more() -> None:
    requester = KeyframeRequester(give_up_after=2.0)
    requester.request(CAMERA, now=0.0)
    assert requester.poll(now=1.9) == [SendPli(CAMERA)]
    assert requester.poll(now=2.5) == []
    assert not requester.awaiting(CAMERA)


def test_forgotten_source_is_neither_awaited_nor_throttled() -> None:
    requester = KeyframeRequester()
    requester.request(CAMERA, now=0.0)
    requester.forget(CAMERA)
    assert not requester.awaiting(CAMERA)
    assert requester.request(CAMERA, now=0.01) == SendPli(CAMERA)
