"""Debug aid: run confserver in this process and log, every few seconds, the Python objects it
holds by type (and optionally a tracemalloc comparison), to find what grows in a soak.

    MEMWATCH_FILE=objects.jsonl [MEMWATCH_EVERY=30] [PYTHONTRACEMALLOC=25] python -m bench.memwatch

Each line of the file is one JSON object: the time, RSS, counts of the types that grew since the
first sample and, with tracemalloc on, the allocation sites that grew most.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import reprlib
import sys
import threading
import time
import tracemalloc
from collections import Counter, deque

from confserver.main import main


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")
    ]  # fmt: skip


def _malloc() -> dict[str, int]:
    """glibc's view of the heap in KiB: in use (uordblks), free inside the heap (fordblks), mmapped."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"in_use": info.uordblks // 1024, "free": info.fordblks // 1024, "mmapped": info.hblkhd // 1024}


def _counts() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def _largest(count: int = 15) -> list[str]:
    """The largest dicts, lists, sets and deques, with a glimpse of what they hold."""
    sized = [(len(o), o) for o in gc.get_objects() if type(o) in (dict, list, set, deque) and len(o) > 200]
    sized.sort(key=lambda pair: pair[0], reverse=True)
    out = []
    for size, o in sized[:count]:
        first = next(iter(o.items())) if isinstance(o, dict) else next(iter(o))
        out.append(f"{type(o).__name__}[{size}] {reprlib.repr(first)}")
    return out


def _snapshot() -> tracemalloc.Snapshot:
    """The traced allocations, without this module's and tracemalloc's own."""
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    )


def _trim() -> int:
    """glibc's malloc_trim(0): gives the heap's free pages back to the system; returns RSS after, KiB."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return _rss_kib()


def _sample(first: Counter[str], base: tracemalloc.Snapshot | None, started: float) -> str:
    now = _counts()
    grown = {k: (first.get(k, 0), v) for k, v in now.items() if v - first.get(k, 0) > 50}
    doc: dict[str, object] = {
        "t": round(time.monotonic() - started),
        "rss_kib": _rss_kib(),
        "objects": sum(now.values()),
        "blocks": sys.getallocatedblocks(),
        "malloc_kib": _malloc(),
        "rss_trimmed_kib": _trim() if os.environ.get("MEMWATCH_TRIM") else None,
        "largest": _largest(),
        "grown": dict(sorted(grown.items(), key=lambda kv: kv[1][0] - kv[1][1])[:40]),
    }
    if base is not None:
        doc["traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
        stats = _snapshot().compare_to(base, "traceback")
        doc["sites"] = [
            {"size_diff": s.size_diff, "count_diff": s.count_diff, "trace": s.traceback.format()[-16:]}
            for s in stats[:10]
        ]
    return json.dumps(doc)


def watch(path: str, every: float) -> None:
    time.sleep(every)  # the baseline once the server runs
    first = _counts()
    base = _snapshot() if tracemalloc.is_tracing() else None
    started = time.monotonic()
    while True:
        time.sleep(every)
        line = _sample(first, base, started)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    out = os.environ.get("MEMWATCH_FILE")
    if out:
        every = float(os.environ.get("MEMWATCH_EVERY", "30"))
        threading.Thread(target=watch, args=(out, every), daemon=True, name="memwatch").start()
    sys.exit(main(sys.argv[1:]))
