"""The benchmarks' in-process measurements (bench/floor.py, bench/path.py) run and give plausible figures."""

from __future__ import annotations

from bench.floor import floor_us
from bench.path import measure


def test_floor_is_a_positive_per_packet_cost() -> None:
    cost = floor_us(destinations=3, batches=3)
    assert 0.1 < cost < 10_000  # microseconds of CPU per protect + send: measured, never zero


def test_path_benchmark_forwards_every_packet_and_reports_both_costs() -> None:
    path, floor = measure(subscribers=3, batches=3)  # exits if a packet was not forwarded
    assert path > 0 and floor > 0
