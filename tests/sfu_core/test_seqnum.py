from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sfu.core.seqnum import SeqUnwrapper, unwrap_near


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
