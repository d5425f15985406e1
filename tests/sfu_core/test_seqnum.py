from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sfu.core.seqnum import SeqUnwrapper, TsUnwrapper, seq_delta, seq_newer, ts_delta, ts_newer, unwrap_near


def test_seq_unwrap_survives_wraparound_and_reordering() -> None:
    unwrapper = SeqUnwrapper()
    incoming = [65533, 65535, 65534, 0, 2, 1, 3]
    assert [unwrapper.unwrap(s) for s in incoming] == [65533, 65535, 65534, 65536, 65538, 65537, 65539]
    assert unwrapper.highest == 65539


def test_seq_unwrap_keeps_counting_across_many_wraps_with_loss() -> None:
    unwrapper = SeqUnwrapper()
    ext = 0
    for _ in range(5 * 65536 // 1000):
        ext += 1000  # a burst of 999 lost packets every time
        assert unwrapper.unwrap(ext & 0xFFFF) == ext


def test_seq_unwrap_late_packet_from_before_a_wrap_maps_below_the_wrap() -> None:
    unwrapper = SeqUnwrapper()
    unwrapper.unwrap(65530)
    unwrapper.unwrap(10)  # wrapped: 65546
    assert unwrapper.unwrap(65520) == 65520
    assert unwrapper.highest == 65546


def test_seq_unwrap_late_packet_before_the_first_one_goes_negative() -> None:
    unwrapper = SeqUnwrapper()
    unwrapper.unwrap(3)
    assert unwrapper.unwrap(65535) == -1
    assert unwrapper.highest == 3


def test_peek_does_not_move_the_highest_value() -> None:
    unwrapper = SeqUnwrapper()
    assert unwrapper.peek(5) == 5
    unwrapper.unwrap(65535)
    assert unwrapper.peek(1) == 65537
    assert unwrapper.highest == 65535
    unwrapper.reset()
    assert unwrapper.highest is None
    assert unwrapper.unwrap(42) == 42


def test_ts_unwrap_wraps_at_32_bits() -> None:
    unwrapper = TsUnwrapper()
    values = [0xFFFF_F000, 0xFFFF_FF00, 0x0000_0100, 0xFFFF_FFF0, 0x0001_0000]
    base = 1 << 32
    assert [unwrapper.unwrap(v) for v in values] == [
        0xFFFF_F000,
        0xFFFF_FF00,
        base + 0x100,
        0xFFFF_FFF0,
        base + 0x10000,
    ]


def test_modular_helpers_compare_across_the_wrap() -> None:
    assert seq_delta(2, 65534) == 4
    assert seq_delta(65534, 2) == -4
    assert seq_newer(0, 65535)
    assert not seq_newer(65535, 0)
    assert not seq_newer(7, 7)
    assert ts_delta(5, 0xFFFF_FFFB) == 10
    assert ts_newer(1, 0xFFFF_FFFF)
    assert not ts_newer(0xFFFF_FFFF, 1)


def test_unwrap_near_picks_the_closest_extended_value() -> None:
    assert unwrap_near(5, 3 * 65536 + 65530) == 4 * 65536 + 5
    assert unwrap_near(65530, 4 * 65536 + 5) == 3 * 65536 + 65530
    assert unwrap_near(100, 100) == 100
    assert unwrap_near(0xFFFF_FFFF, 1 << 32, bits=32) == (1 << 32) - 1


@given(
    st.integers(0, 0xFFFF),
    st.lists(st.tuples(st.integers(1, 3000), st.integers(0, 100)), min_size=1, max_size=200),
)
def test_seq_unwrap_recovers_extended_values_under_loss_and_reordering(
    start: int, steps: list[tuple[int, int]]
) -> None:
    unwrapper = SeqUnwrapper()
    assert unwrapper.unwrap(start) == start
    ext = start
    for forward, back in steps:
        ext += forward
        assert unwrapper.unwrap(ext & 0xFFFF) == ext
        late = ext - back  # a reordered packet up to 100 behind
        assert unwrapper.unwrap(late & 0xFFFF) == late
