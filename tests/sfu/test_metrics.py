"""The SFU's counters reach Prometheus on every scrape, without waiting for the periodic flush."""

from __future__ import annotations

from prometheus_client import generate_latest

from sfu.metrics import SfuMetrics


def sample(metrics: SfuMetrics, line_start: str) -> float:
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start}")


def test_a_scrape_includes_what_was_counted_since_the_last_flush_once() -> None:
    metrics = SfuMetrics()
    metrics.counters.packets_in_video += 3
    metrics.counters.count_out(True, 100, 1000)
    metrics.counters.drop("silent")
    assert sample(metrics, 'conf_sfu_packets_total{direction="in",kind="video"}') == 3
    assert sample(metrics, 'conf_sfu_packets_total{direction="out",kind="video"}') == 100
    assert sample(metrics, 'conf_sfu_dropped_packets_total{reason="silent"}') == 1
    metrics.counters.packets_in_video += 1
    metrics.flush()  # the periodic flush and later scrapes count nothing twice
    assert sample(metrics, 'conf_sfu_packets_total{direction="in",kind="video"}') == 4
    assert sample(metrics, 'conf_sfu_packets_total{direction="out",kind="video"}') == 100
