from __future__ import annotations

import pytest

from sfu.core.history import PacketHistory, ResendThrottle


def packet(n: int) -> bytes:
    return b"pkt-%d" % n


def test_stored_packets_are_returned_by_extended_sequence_number() -> None:
    history = PacketHistory(8)
    for seq in range(100, 105):
        history.put(seq, packet(seq), now=0.0)
    assert history.get(102) == packet(102)
    assert history.get(99) is None
    assert history.get(105) is None
    assert history.highest == 104


def test_oldest_packets_are_evicted_when_the_ring_is_full() -> None:
    history = PacketHistory(4)
    for seq in range(10):
        history.put(seq, packet(seq), now=0.0)
    assert [history.get(s) is not None for s in range(10)] == [False] * 6 + [True] * 4


def test_extended_keys_do_not_collide_across_16_bit_wraps() -> None:
    history = PacketHistory(512)
    history.put(65536 + 5, packet(1), now=0.0)
    assert history.get(5) is None
    assert history.get(65536 + 5) == packet(1)


def test_resend_of_the_same_packet_is_throttled_for_100_ms() -> None:
    throttle = ResendThrottle()
    assert throttle.allow(1, now=0.01)
    assert not throttle.allow(1, now=0.05)
    assert not throttle.allow(1, now=0.109)
    assert throttle.allow(1, now=0.111)


def test_resend_throttle_follows_the_round_trip_time() -> None:
    throttle = ResendThrottle()
    assert throttle.allow(1, now=0.0, rtt=0.03)
    assert not throttle.allow(1, now=0.02, rtt=0.03)
    assert throttle.allow(1, now=0.031, rtt=0.03)


def test_resends_stop_after_the_maximum_count() -> None:
    throttle = ResendThrottle(max_resends=2)
    assert throttle.allow(1, now=0.0)
    assert throttle.allow(1, now=1.0)
    assert not throttle.allow(1, now=2.0)


def test_throttle_of_one_packet_leaves_the_others_alone() -> None:
    throttle = ResendThrottle()
    assert throttle.allow(13, now=0.0)
    assert throttle.allow(10, now=0.02) and throttle.allow(11, now=0.02)
    assert not throttle.allow(13, now=0.02)


def test_packets_older_than_max_age_are_not_offered() -> None:
    history = PacketHistory(max_age=1.0)
    history.put(1, packet(1), now=0.0)
    assert history.recent(1, now=0.9) == packet(1)
    assert history.recent(1, now=1.5) is None
    assert history.get(1) == packet(1)


def test_an_overwritten_slot_holds_only_the_new_packet() -> None:
    history = PacketHistory(4)
    history.put(1, packet(1), now=0.0)
    history.put(5, packet(5), now=0.01)
    assert history.recent(1, now=0.02) is None
    assert history.recent(5, now=0.02) == packet(5)


def test_sixteen_bit_feedback_is_extended_against_what_was_sent() -> None:
    history = PacketHistory()
    assert history.extend(5) is None
    history.put(3 * 65536 + 2, packet(0), now=0.0)
    assert history.extend(65535) == 3 * 65536 - 1
    assert history.extend(2) == 3 * 65536 + 2


def test_clear_forgets_everything() -> None:
    history = PacketHistory(8)
    history.put(1, packet(1), now=0.0)
    history.clear()
    assert history.get(1) is None
    assert history.highest is None


def test_history_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PacketHistory(0)
