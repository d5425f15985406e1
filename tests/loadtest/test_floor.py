"""The benchmarks' in-process measurements (bench/floor.py, path.py, sendpaths.py, slots.py) run and give plausible figures."""

from __future__ import annotations

import argparse
import time

import pytest

from bench import positive
from bench.floor import FloorSampler, floor_us
from bench.path import measure
from bench.run import dig
from bench.sendpaths import measure as measure_sends
from bench.sendpaths import measure_per_socket
from bench.slots import measure as measure_slots


def test_floor_is_a_positive_per_packet_cost() -> None:
    cost = floor_us(destinations=3, batches=3)
    assert 0.1 < cost < 10_000  # microseconds of CPU per protect + send: measured, never zero


def test_path_benchmark_forwards_every_packet_and_reports_each_ways_cost() -> None:
    cost = measure(subscribers=3, batches=3)  # exits if a packet was not forwarded or sent
    assert set(cost) == {"path", "shared", "floor"} and min(cost.values()) > 0


async def test_adding_a_video_slot_is_timed_both_ways() -> None:
    cost = await measure_slots(connections=2, slots=3, rounds=1)
    assert set(cost) == {"aiortc", "sfu"} and min(cost.values()) > 0


def test_the_floor_is_sampled_while_something_else_runs_and_read_for_a_window() -> None:
    start = time.time()
    with FloorSampler(destinations=3, interval=0.02, rounds=2) as sampler:
        time.sleep(0.3)
    end = time.time()
    assert len(sampler.samples) >= 3
    assert all(start <= at <= end and us > 0 for at, us in sampler.samples)
    first_at, first_us = sampler.samples[0]
    assert sampler.between(first_at, first_at) == first_us
    assert sampler.between(end + 1, end + 2) is None


def test_the_three_ways_of_sending_a_fan_out_are_each_timed_every_round() -> None:
    costs = measure_sends(destinations=3, rounds=4)  # exits if sendmmsg sent fewer datagrams
    assert len(costs) == 3
    assert all(len(values) == 4 and min(values) > 0 for values in costs.values())


def test_batching_a_sockets_packets_is_timed_against_sending_them_one_by_one() -> None:
    costs = measure_per_socket(packets=3, destinations=2, rounds=3)  # exits if a datagram was not sent
    assert len(costs) == 2
    assert all(len(values) == 3 and min(values) > 0 for values in costs.values())


def test_the_benchmarks_refuse_counts_below_one_with_a_clear_message() -> None:
    assert positive("3") == 3
    for text, message in (("0", "must be at least 1: 0"), ("x", "not a whole number: 'x'")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            positive(text)


def test_a_drop_reason_that_did_not_occur_reads_as_zero_and_a_missing_server_as_unknown() -> None:
    path = ("server", "dropped", "stale")
    assert dig({"server": {"dropped": {"stale": 3}}}, path) == 3.0
    assert dig({"server": {"dropped": {"silent": 9}}}, path) == 0.0  # listed only when it occurred
    assert dig({"server": None}, path) is None  # --no-metrics: not known
    assert dig({"server": {}}, ("server", "cpu_percent")) is None
