"""Debug aid: run confserver in this process and log, every MEMPROBE_EVERY seconds, where its
resident memory is: /proc/self/smaps by kind of mapping, pymalloc arenas, glibc mallinfo2,
threads, file descriptors, the collector's generations and (MEMPROBE_OBJECTS=1) live objects.
Unlike bench/memwatch.py it runs no collection of its own unless asked (``collect_file``): a
periodic ``gc.collect()`` hides exactly the garbage that waits in the oldest generation.

    MEMPROBE_FILE=probe.jsonl [MEMPROBE_EVERY=15] python -m bench.memprobe
    BENCH_SERVER_MODULE=bench.memprobe MEMPROBE_FILE=... python -m bench.soak ...  (as the soak's server)
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import sys
import tempfile
import threading
import time
import types
from collections import Counter

from confserver.main import main

_libc = ctypes.CDLL("libc.so.6")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc.mallinfo2.restype = _MallInfo2
_libc.fopen.restype = ctypes.c_void_p
_libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_libc.fclose.argtypes = [ctypes.c_void_p]
_dbg = ctypes.pythonapi._PyObject_DebugMallocStats
_dbg.argtypes = [ctypes.c_void_p]


def smaps() -> dict[str, object]:
    kinds: Counter[str] = Counter()
    anon_by_size: Counter[str] = Counter()
    anon_count: Counter[str] = Counter()
    files: Counter[str] = Counter()
    cur = ""
    size = 0
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split(None, 5)
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                size = (hi - lo) // 1024
                path = parts[5].strip() if len(parts) > 5 else ""
                cur = path
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
                if cur == "":
                    if size >= 60000:
                        b = "anon>=60M"
                    elif size >= 8000:
                        b = "anon8M-60M"
                    elif size >= 1024:
                        b = "anon1M-8M"
                    else:
                        b = "anon<1M"
                    anon_by_size[b] += rss
                    anon_count[b] += 1
                    kinds["anon"] += rss
                elif cur.startswith("["):
                    kinds[cur] += rss
                else:
                    kinds["file"] += rss
                    files[os.path.basename(cur)] += rss
    return {
        "kinds": dict(kinds),
        "anon_rss": dict(anon_by_size),
        "anon_n": dict(anon_count),
        "top_files": dict(files.most_common(8)),
    }


def pymalloc() -> dict[str, int]:
    fd, path = tempfile.mkstemp(prefix="pymalloc-")
    os.close(fd)
    fp = _libc.fopen(path.encode(), b"w")
    _dbg(fp)
    _libc.fclose(fp)
    text = open(path, encoding="ascii", errors="replace").read()
    os.unlink(path)
    out: dict[str, int] = {}
    for key in (
        "arenas allocated total",
        "arenas reclaimed",
        "arenas highwater mark",
        "arenas allocated current",
        "bytes in allocated blocks",
        "bytes in available blocks",
        "unused pools",
    ):
        m = re.search(r"# " + key + r"\s+=\s+([\d,]+)", text)
        if m:
            out[key] = int(m.group(1).replace(",", ""))
    return out


_types_before: Counter[str] | None = None


def collect_file(pid: int) -> str:
    """Created by anyone, this file makes the next sample of process ``pid`` run a full collection
    (DEBUG_SAVEALL) and report the garbage it found by type, its frames and one of its cycles."""
    return os.path.join(tempfile.gettempdir(), f"memprobe-collect-{pid}")


def _desc(o: object) -> str:
    t = type(o).__qualname__
    if isinstance(o, dict):
        keys = list(o)[:6]
        return f"dict{keys}"
    if isinstance(o, types.FrameType):
        return f"frame {o.f_code.co_name} {o.f_code.co_filename}:{o.f_lineno}"
    if type(o).__name__ == "cell":
        return "cell"
    if isinstance(o, (list, tuple, set)):
        return f"{t}[{len(o)}]"
    if isinstance(o, types.FunctionType):
        return f"function {o.__qualname__}"
    return t + " " + repr(o)[:120]


def _cycle(garbage: list[object], typename: str) -> list[str]:
    """The shortest reference cycle, within ``garbage``, through one object of ``typename``."""
    ids = {id(o) for o in garbage}
    start = next((o for o in garbage if type(o).__qualname__ == typename), None)
    if start is None:
        return []
    from collections import deque as _dq

    prev: dict[int, object] = {}
    queue = _dq([start])
    seen = {id(start)}
    while queue:
        cur = queue.popleft()
        for ref in gc.get_referents(cur):
            if ref is start:
                path = [cur]
                while id(path[-1]) in prev:
                    path.append(prev[id(path[-1])])
                return [_desc(o)[:160] for o in reversed(path)]
            if id(ref) in ids and id(ref) not in seen:
                seen.add(id(ref))
                prev[id(ref)] = cur
                queue.append(ref)
    return ["<no cycle>"]


def sample(started: float, objs: bool) -> dict[str, object]:
    mi = _libc.mallinfo2()
    tasks = os.listdir("/proc/self/task")
    names: Counter[str] = Counter()
    for t in tasks:
        try:
            names[open(f"/proc/self/task/{t}/comm").read().strip()] += 1
        except OSError:
            pass
    status = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "VmSize", "VmHWM"):
            status[k] = int(v.split()[0])
    doc: dict[str, object] = {
        "t": round(time.monotonic() - started),
        **status,
        "smaps": smaps(),
        "malloc": {
            "arena": mi.arena // 1024,
            "in_use": mi.uordblks // 1024,
            "free": mi.fordblks // 1024,
            "mmapped": mi.hblkhd // 1024,
            "mmap_n": mi.hblks,
            "keepcost": mi.keepcost // 1024,
        },
        "pymalloc": pymalloc(),
        "blocks": sys.getallocatedblocks(),
        "threads": dict(names),
        "fds": len(os.listdir("/proc/self/fd")),
        "gc_count": gc.get_count(),
        "gc_stats": gc.get_stats(),
    }
    if objs:
        doc["objects"] = len(gc.get_objects())
    if os.path.exists(collect_file(os.getpid())):
        os.unlink(collect_file(os.getpid()))
        t0 = time.monotonic()
        gc.set_debug(gc.DEBUG_SAVEALL)
        doc["forced_collect"] = gc.collect()
        gc.set_debug(0)
        doc["garbage_types"] = Counter(type(o).__qualname__ for o in gc.garbage).most_common(30)
        frames = Counter(
            f"{o.f_code.co_name}:{o.f_code.co_filename.rsplit('/', 2)[-1]}"
            for o in gc.garbage
            if type(o).__name__ == "frame"
        )
        doc["garbage_frames"] = frames.most_common(15)
        doc["cycle"] = _cycle(gc.garbage, os.environ.get("MEMPROBE_CYCLE", "_WebSocketResponse"))
        gc.garbage.clear()
        gc.collect()  # what DEBUG_SAVEALL kept, now freed
        doc["forced_collect_ms"] = round((time.monotonic() - t0) * 1000)
        doc["blocks_after_collect"] = sys.getallocatedblocks()
        types = Counter(type(o).__qualname__ for o in gc.get_objects())
        global _types_before
        if _types_before is not None:
            doc["types_grown"] = sorted(
                (
                    (k, v - _types_before.get(k, 0))
                    for k, v in types.items()
                    if v - _types_before.get(k, 0) > 30
                ),
                key=lambda kv: -kv[1],
            )[:40]
        _types_before = types
    if os.environ.get("MEMPROBE_TRIM"):
        _libc.malloc_trim(0)
    return doc


def watch(path: str, every: float) -> None:
    started = time.monotonic()
    while True:
        time.sleep(every)
        try:
            line = json.dumps(sample(started, bool(os.environ.get("MEMPROBE_OBJECTS"))))
        except Exception as exc:
            line = json.dumps({"error": repr(exc)})
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    out = os.environ.get("MEMPROBE_FILE")
    if out:
        threading.Thread(
            target=watch,
            args=(out, float(os.environ.get("MEMPROBE_EVERY", "15"))),
            daemon=True,
            name="memprobe",
        ).start()
    sys.exit(main(sys.argv[1:]))
