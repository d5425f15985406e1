from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.core.actions import Drop, DropReason
from sfu.core.munger import Munged, RtpMunger, extend

LOW, HIGH = 0x1000, 0x2000
FRAME = 3000  # 30 fps at 90 kHz


def munger(first_sequence: int = 1000, first_timestamp: int = 50_000) -> RtpMunger:
    return RtpMunger(90_000, first_sequence=first_sequence, first_timestamp=first_timestamp)


def forward(m: RtpMunger, source: int, seq: int, ts: int, now: float) -> Munged:
    result = m.process(source, seq & 0xFFFF, ts & 0xFFFFFFFF, now)
    assert isinstance(result, Munged), result
    return result


def incoming_for(m: RtpMunger, sequence: int) -> tuple[int, int] | None:
    """(source, incoming 16-bit sequence number) behind outgoing ``sequence``."""
    found = m.origin(sequence)
    return None if found is None else found[:2]


def test_first_packet_starts_at_the_configured_sequence_and_timestamp() -> None:
    m = munger()
    assert forward(m, LOW, 31337, 123456, 0.0) == Munged(1000, 50_000, 1000)
    assert m.source == LOW


def test_in_order_packets_keep_their_spacing() -> None:
    m = munger()
    forward(m, LOW, 500, 9000, 0.0)
    assert forward(m, LOW, 501, 9000, 0.001) == Munged(1001, 50_000, 1001)
    assert forward(m, LOW, 502, 12000, 0.033) == Munged(1002, 53_000, 1002)


def test_loss_gaps_are_preserved_so_the_receiver_can_nack() -> None:
    m = munger()
    forward(m, LOW, 10, 0, 0.0)
    assert forward(m, LOW, 14, 0, 0.01).sequence == 1004


def test_reordered_packet_gets_its_in_order_number() -> None:
    m = munger()
    forward(m, LOW, 10, 0, 0.0)
    forward(m, LOW, 12, FRAME, 0.01)
    assert forward(m, LOW, 11, 0, 0.02) == Munged(1001, 50_000, 1001)
    assert m.highest_sequence == 1002


def test_duplicate_of_the_newest_packet_is_dropped() -> None:
    m = munger()
    forward(m, LOW, 10, 0, 0.0)
    assert m.process(LOW, 10, 0, 0.01) == Drop(DropReason.DUPLICATE)


def test_incoming_wrap_keeps_outgoing_contiguous() -> None:
    m = munger(first_sequence=7)
    out = [forward(m, LOW, s, s * 10, 0.0).ext_sequence for s in (65534, 65535, 65536, 65537)]
    assert out == [7, 8, 9, 10]


def test_outgoing_sequence_and_timestamp_wrap_in_the_header_only() -> None:
    m = munger(first_sequence=65535, first_timestamp=0xFFFF_FFFF)
    forward(m, LOW, 1, 0, 0.0)
    second = forward(m, LOW, 2, FRAME, 0.033)
    assert second == Munged(0, FRAME - 1, 65536)


def test_simulcast_switch_keeps_sequence_contiguous_and_timestamp_monotonic() -> None:
    m = munger()
    outs = [forward(m, LOW, 100 + i, 1000 + i * FRAME, i / 30) for i in range(5)]
    # the high layer has unrelated sequence numbers and timestamps; its keyframe arrives 40 ms later
    switched = forward(m, HIGH, 40000, 7_000_000, 4 / 30 + 0.040)
    after = forward(m, HIGH, 40001, 7_000_000 + FRAME, 5 / 30 + 0.040)
    assert switched.ext_sequence == outs[-1].ext_sequence + 1
    assert after.ext_sequence == switched.ext_sequence + 1
    assert switched.timestamp - outs[-1].timestamp == pytest.approx(0.040 * 90_000, abs=1)
    assert after.timestamp - switched.timestamp == FRAME
    assert m.source == HIGH


def test_switch_at_the_same_instant_still_advances_the_timestamp() -> None:
    m = munger()
    first = forward(m, LOW, 1, 0, 5.0)
    switched = forward(m, HIGH, 1, 0, 5.0)
    assert switched.timestamp == first.timestamp + 1
    assert switched.sequence == first.sequence + 1


def test_late_packet_from_before_the_switch_point_is_dropped() -> None:
    m = munger()
    forward(m, LOW, 1, 0, 0.0)
    forward(m, HIGH, 500, 0, 0.1)  # keyframe starts here
    forward(m, HIGH, 501, 0, 0.11)
    assert m.process(HIGH, 499, 0, 0.12) == Drop(DropReason.BEFORE_SWITCH)


def test_skipped_packets_close_their_gap_without_hiding_real_loss() -> None:
    m = munger()
    forward(m, LOW, 10, 0, 0.0)
    m.skip_sequence(LOW, 11)  # e.g. padding-only: deliberately not forwarded
    assert forward(m, LOW, 12, 0, 0.01).sequence == 1001
    # 13 is lost in the network, 14 arrives: the receiver must see the hole
    assert forward(m, LOW, 14, 0, 0.02).sequence == 1003


def test_late_packet_from_before_a_skip_uses_the_old_numbering() -> None:
    m = munger()
    forward(m, LOW, 10, 0, 0.0)
    m.skip_sequence(LOW, 12)  # 11 still on its way
    assert forward(m, LOW, 13, 0, 0.01).sequence == 1002
    assert forward(m, LOW, 11, 0, 0.02).sequence == 1001


def test_consecutive_skips_collapse() -> None:
    m = munger()
    forward(m, LOW, 10, 0, 0.0)
    for s in range(11, 20):
        m.skip_sequence(LOW, s)
    assert forward(m, LOW, 20, 0, 0.1).sequence == 1001
    assert incoming_for(m, 1001) == (LOW, 20)
    assert incoming_for(m, 1000) == (LOW, 10)


def test_skip_of_a_late_or_foreign_packet_changes_nothing() -> None:
    m = munger()
    m.skip_sequence(LOW, 5)  # nothing forwarded yet
    forward(m, LOW, 10, 0, 0.0)
    forward(m, LOW, 11, 0, 0.0)
    m.skip_sequence(LOW, 9)
    m.skip_sequence(HIGH, 12)
    assert forward(m, LOW, 12, 0, 0.0).sequence == 1002


def test_outgoing_sequence_maps_back_to_the_incoming_one_across_a_switch() -> None:
    m = munger()
    for i in range(3):
        forward(m, LOW, 200 + i, 0, 0.0)  # out 1000..1002
    forward(m, HIGH, 9000, 0, 0.1)  # out 1003
    forward(m, HIGH, 9002, 0, 0.1)  # out 1005 (9001 lost)
    assert incoming_for(m, 1001) == (LOW, 201)
    assert incoming_for(m, 1004) == (HIGH, 9001)
    assert incoming_for(m, 1005) == (HIGH, 9002)
    assert incoming_for(m, 1006) is None
    assert incoming_for(m, 900) is None


def test_nothing_maps_back_before_the_first_packet() -> None:
    assert incoming_for(munger(), 1000) is None


def test_resync_on_the_same_source_rebases_after_a_pause() -> None:
    m = munger()
    first = forward(m, LOW, 100, 0, 0.0)
    m.resync()
    # 300 packets were not forwarded during the pause; the stream continues without a gap
    resumed = forward(m, LOW, 400, 10 * 90_000, 10.0)
    assert resumed.ext_sequence == first.ext_sequence + 1
    assert resumed.timestamp == first.timestamp + 10 * 90_000
    assert m.process(LOW, 399, 0, 10.0) == Drop(DropReason.BEFORE_SWITCH)


def test_sender_report_timestamp_is_translated_for_the_forwarded_source() -> None:
    m = munger()
    forward(m, LOW, 1, 1_000_000, 0.0)
    assert m.translate_timestamp(LOW, 1_000_000 + 4500) == 50_000 + 4500
    assert m.translate_timestamp(HIGH, 1) is None


def test_timestamp_translation_follows_a_wrap_of_the_source() -> None:
    m = munger()
    forward(m, LOW, 1, 0xFFFF_FF00, 0.0)
    assert forward(m, LOW, 2, 0x100, 0.01).timestamp == 50_000 + 0x200
    assert m.translate_timestamp(LOW, 0x0000_0200) == 50_000 + 0x300


def test_the_numbering_step_extends_timestamps_across_the_32_bit_wrap() -> None:
    """Each packet's timestamp is placed closest to the highest of its stream, which only a
    packet ahead of it moves."""
    highest, highest_ts = 7, 0xFFFF_F000
    packets = []
    for sequence, timestamp in enumerate([0xFFFF_FF00, 0x0000_0100, 0xFFFF_FFF0, 0x0001_0000], start=8):
        ext, highest_ts, packet_ts = extend(highest, highest_ts, sequence, timestamp)
        assert ext == sequence == highest + 1
        highest = ext
        packets.append((packet_ts, highest_ts))
    base = 1 << 32
    assert packets == [
        (0xFFFF_FF00, 0xFFFF_FF00),
        (base + 0x100, base + 0x100),
        (0xFFFF_FFF0, base + 0x100),  # went back: the highest stays
        (base + 0x10000, base + 0x10000),
    ]


def test_the_numbering_step_tells_next_duplicate_and_late_packets_apart() -> None:
    highest = 3 * 65536 + 65535
    assert extend(highest, 0, 0, 0)[0] == highest + 1  # next, across the 16-bit wrap
    assert extend(highest, 0, 65535, 0)[0] == highest  # duplicate
    assert extend(highest, 0, 65530, 0)[0] == highest - 5  # late
    assert extend(highest, 0, 0x7FFE, 0)[0] == highest + 0x7FFF  # the furthest ahead
    assert extend(highest, 0, 0x7FFF, 0)[0] == highest - 0x8000  # half way round: late


def test_clock_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RtpMunger(0, first_sequence=0, first_timestamp=0)


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(1, 40), st.integers(0, 3), st.integers(0, 0xFFFF)),
        min_size=1,
        max_size=30,
    )
)
def test_switches_and_loss_keep_sequence_gapless_except_for_loss_and_timestamps_monotonic(
    runs: list[tuple[bool, int, int, int]],
) -> None:
    m = munger(first_sequence=65000)
    now = 0.0
    source = seq = ts = 0
    expected_next: int | None = None
    last_ts: int | None = None
    for switch, length, lost_every, start in runs:
        if switch or expected_next is None:
            source += 1  # a new layer: unrelated sequence numbers and timestamps
            seq = start
            ts = start * 65537
        for i in range(length):
            gap = 1 if lost_every and i % (lost_every + 1) == lost_every else 0
            seq += gap
            now += 0.01
            ts += 900
            out = forward(m, source, seq, ts, now)
            if expected_next is not None:
                assert out.ext_sequence == expected_next + gap
            if last_ts is not None:
                assert 0 < (out.timestamp - last_ts) % (1 << 32) < 1 << 31
            last_ts = out.timestamp
            expected_next = out.ext_sequence + 1
            seq += 1
