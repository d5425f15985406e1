"""The media workers' metrics, exposed by the signaling process on its own ``/metrics``.

``conf_media_worker_*`` describe each worker (label ``worker``, its index): up, restarts,
placements, rooms, participants, CPU seconds, bad frames, calls that missed their deadline.
Each worker's own ``conf_sfu_*`` metrics are relayed: the worker sends its exposition every 5 s
over the channel, and the scrape shows the latest one with a ``worker`` label added. Only
``conf_sfu_*`` families are taken from a worker; text that does not parse is dropped and counted
as a bad frame. One scrape target covers the machine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

log = logging.getLogger("sfu.worker")

RELAYED_PREFIX = "conf_sfu_"


class LoadSource(Protocol):
    def load(self) -> list[tuple[bool, int, int, float]]: ...


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._source: LoadSource | None = None
        self._relayed: dict[int, list[Metric]] = {}
        labels = ["worker"]
        self._up = Gauge("conf_media_worker_up", "1 while the media worker runs.", labels, registry=registry)
        self._restarts = Counter(
            "conf_media_worker_restarts",
            "Media workers that stopped and were restarted.",
            labels,
            registry=registry,
        )
        self._placements = Counter(
            "conf_media_worker_placements",
            "Rooms placed on the media worker (at their first participant, or moved after a worker stopped).",
            labels,
            registry=registry,
        )
        self._cpu = Counter(
            "conf_media_worker_cpu_seconds", "CPU time the media worker used (user and system).", labels,
            registry=registry,
        )  # fmt: skip
        self._bad = Counter(
            "conf_media_worker_bad_frames",
            "Frames from the media worker that broke the channel's rules (the worker is restarted; "
            "metrics text is dropped).",
            labels,
            registry=registry,
        )
        self._timeouts = Counter(
            "conf_media_worker_call_timeouts",
            "Calls the media worker did not answer within their deadline (media_timeout).",
            labels,
            registry=registry,
        )
        registry.register(_LoadCollector(self))

    def attach(self, source: LoadSource) -> None:
        self._source = source

    def up(self, index: int, up: bool) -> None:
        self._up.labels(str(index)).set(1 if up else 0)
        if not up:
            self._relayed.pop(index, None)

    def restarted(self, index: int) -> None:
        self._restarts.labels(str(index)).inc()

    def placed(self, index: int) -> None:
        self._placements.labels(str(index)).inc()

    def cpu(self, index: int, seconds: float) -> None:
        self._cpu.labels(str(index)).inc(seconds)

    def channel_error(self, index: int) -> None:
        self._bad.labels(str(index)).inc()

    def call_timeout(self, index: int) -> None:
        self._timeouts.labels(str(index)).inc()

    def relay(self, index: int, text: str) -> None:
        """Keep worker ``index``'s latest ``conf_sfu_*`` families for the next scrapes."""
        try:
            families = [f for f in text_string_to_metric_families(text) if f.name.startswith(RELAYED_PREFIX)]
        except Exception as exc:
            if index in self._relayed or not self._relayed:
                log.warning("media worker %d sent metrics that do not parse (%s); dropped", index, exc)
            self.channel_error(index)
            self._relayed.pop(index, None)
            return
        self._relayed[index] = families

    def collect(self) -> Iterator[Metric]:
        source = self._source
        load = source.load() if source is not None else []
        rooms = GaugeMetricFamily("conf_media_worker_rooms", "Rooms on the media worker.", labels=["worker"])
        people = GaugeMetricFamily(
            "conf_media_worker_participants", "Participants in the media worker's rooms.", labels=["worker"]
        )
        cpu = GaugeMetricFamily(
            "conf_media_worker_cpu_load",
            "Fraction of one core the media worker used over its last report (placement reads it).",
            labels=["worker"],
        )
        for i, (_alive, n_rooms, n_people, fraction) in enumerate(load):
            rooms.add_metric([str(i)], n_rooms)
            people.add_metric([str(i)], n_people)
            cpu.add_metric([str(i)], fraction)
        yield rooms
        yield people
        yield cpu
        yield from self._merged()

    def _merged(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index, families in sorted(self._relayed.items()):
            for family in families:
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for s in family.samples:
                    labels: dict[str, Any] = {**s.labels, "worker": str(index)}
                    out.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))
        yield from merged.values()


class _LoadCollector:
    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect()
