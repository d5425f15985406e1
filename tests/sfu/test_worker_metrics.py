"""The workers' metrics on the signaling process's registry: each worker's ``conf_sfu_*`` relayed
with a ``worker`` label, nothing else taken from a worker, bad text dropped and counted."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from sfu.worker.metrics import WorkerMetrics

WORKER_TEXT = """# HELP conf_sfu_packets_total RTP packets.
# TYPE conf_sfu_packets_total counter
conf_sfu_packets_total{direction="out",kind="video"} 120.0
# HELP conf_joins_total A family a worker must not set.
# TYPE conf_joins_total counter
conf_joins_total{result="admitted"} 99.0
"""


class Load:
    def load(self) -> list[tuple[bool, int, int, float]]:
        return [(True, 2, 7, 0.25), (False, 0, 0, 0.0)]


def test_worker_metrics_are_relayed_with_a_worker_label_and_only_conf_sfu() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.attach(Load())
    metrics.relay(0, WORKER_TEXT)
    metrics.relay(1, WORKER_TEXT.replace("120.0", "30.0"))
    text = generate_latest(registry).decode()
    assert 'conf_sfu_packets_total{direction="out",kind="video",worker="0"} 120.0' in text
    assert 'conf_sfu_packets_total{direction="out",kind="video",worker="1"} 30.0' in text
    assert text.count("# TYPE conf_sfu_packets_total counter") == 1
    assert "conf_joins_total" not in text
    assert 'conf_media_worker_rooms{worker="0"} 2.0' in text
    assert 'conf_media_worker_participants{worker="0"} 7.0' in text
    assert 'conf_media_worker_cpu_load{worker="0"} 0.25' in text


def test_metrics_text_that_does_not_parse_is_dropped_and_counted() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.relay(0, WORKER_TEXT)
    metrics.relay(0, "conf_sfu_packets_total{direction= 1 2 3\n")
    assert registry.get_sample_value("conf_media_worker_bad_frames_total", {"worker": "0"}) == 1.0
    assert "conf_sfu_packets_total{" not in generate_latest(registry).decode()


def test_a_stopped_worker_s_relayed_metrics_go_away() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.relay(0, WORKER_TEXT)
    metrics.up(0, False)
    assert "conf_sfu_packets_total{" not in generate_latest(registry).decode()
    assert registry.get_sample_value("conf_media_worker_up", {"worker": "0"}) == 0.0
