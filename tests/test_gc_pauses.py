"""The garbage collector's pauses as a Prometheus histogram: each pass stops the whole server
(media waits in its sockets meanwhile), so operators see how long and how often."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry

from confserver.metrics import GcPauses


def pauses(registry: CollectorRegistry, generation: int) -> tuple[float, float]:
    labels = {"generation": str(generation)}
    count = registry.get_sample_value("conf_gc_pause_seconds_count", labels)
    total = registry.get_sample_value("conf_gc_pause_seconds_sum", labels)
    assert count is not None and total is not None
    return count, total


def test_each_collection_is_observed_by_generation_while_installed() -> None:
    registry = CollectorRegistry()
    observed = GcPauses(registry)
    assert pauses(registry, 2) == (0.0, 0.0)  # exposed before the first collection
    observed.install()
    observed.install()  # once only
    try:
        cycles = []
        for _ in range(2000):  # garbage only a collection can free, so the pass has work to time
            a: list[object] = []
            a.append(a)
            cycles.append(a)
        del cycles, a
        gc.collect()
        full, seconds = pauses(registry, 2)
        assert full == 1.0 and seconds > 0.0
        gc.collect(0)
        assert pauses(registry, 0)[0] >= 1.0
        assert pauses(registry, 2)[0] == 1.0
    finally:
        observed.remove()
    gc.collect()
    assert pauses(registry, 2)[0] == 1.0  # removed: no longer observed
    assert observed not in gc.callbacks
