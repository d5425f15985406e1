"""The benchmarks' floor measurement (bench/floor.py) runs and gives a plausible figure."""

from __future__ import annotations

from bench.floor import floor_us


def test_floor_is_a_positive_per_packet_cost() -> None:
    cost = floor_us(destinations=3, batches=3)
    assert 0.1 < cost < 10_000  # microseconds of CPU per protect + send: measured, never zero
