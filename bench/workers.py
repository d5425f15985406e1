"""The same rooms on one and on two media workers (``sfu.workers``): CPU per forwarded packet
of each media process, forwarded packets per second in all, and where placement put the rooms.

    .venv/bin/python -m bench.workers [--rooms 2] [--publishers 2] [--subscribers 15]
                                      [--duration 30s] [--workers 1,2] [--no-pin]

For each worker count a fresh confserver (bench/server.py) is started with
``CONF_SFU_WORKERS=N``; with N = 1 the media runs in the server's own process, as by default.
Its media processes are pinned with ``taskset`` (the server itself to CPU 0 with one worker;
worker i to CPU i modulo the CPUs with two or more; the signaling process and the load
generators are not pinned). Then one ``confctl load-test`` per room runs at once (P publishers
of VP8 and Opus, S counting subscribers each). Once media flows everywhere the script takes, for
each media process, its CPU time (/proc/PID/stat) and its forwarded packets
(``conf_sfu_packets_total{direction="out"}``, relayed from each worker with a ``worker``
label) at the start and the end of a window inside the load tests' own, and reports
microseconds of CPU per forwarded packet and packets per second. A worker's relayed metrics
are refreshed every 5 s: its window runs from one refresh to another, and its CPU is read at
those moments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import positive
from bench import server as srv

CLK_TCK = 100
SAMPLE_LINE = re.compile(
    r'^conf_sfu_packets_total\{direction="out",kind="(\w+)"(?:,worker="(\d+)")?\} (\S+)$'
)
ROOMS_LINE = re.compile(r'^conf_media_worker_(rooms|participants)\{worker="(\d+)"\} (\S+)$')


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own loopback server
        text: str = resp.read().decode()
        return text


def packets_out(text: str) -> dict[int, float]:
    """Forwarded packets so far per media process (-1: the server's own process)."""
    out: dict[int, float] = {}
    for line in text.splitlines():
        m = SAMPLE_LINE.match(line)
        if m:
            key = int(m.group(2)) if m.group(2) is not None else -1
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def placement(text: str) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for line in text.splitlines():
        m = ROOMS_LINE.match(line)
        if m:
            out.setdefault(int(m.group(2)), {})[m.group(1)] = float(m.group(3))
    return out


def worker_pids(server_pid: int) -> dict[int, int]:
    """Worker index -> pid of the server's media workers (``--index I`` on their command line)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server_pid and b"sfu.worker" in argv and b"--index" in argv:
            out[int(argv[argv.index(b"--index") + 1])] = int(entry.name)
    return out


def pin(pid: int, cpu: int) -> None:
    subprocess.run(["taskset", "-pc", str(cpu), str(pid)], check=True, capture_output=True)  # noqa: S603,S607


@dataclass
class Window:
    """One media process over the measurement window."""

    pid: int
    cpu: int | None
    start: tuple[float, float, float] | None = None  # (time, cpu s, packets)
    end: tuple[float, float, float] | None = None
    last_packets: float | None = None

    def see(self, now: float, packets: float, final: bool) -> None:
        """A scrape: the window starts and ends where the packet count has just changed."""
        first = self.last_packets is None  # a relayed count may be seconds old: wait for a change
        changed = packets != self.last_packets
        self.last_packets = packets
        if first or not changed:
            return
        point = (now, cpu_seconds(self.pid), packets)
        if self.start is None:
            self.start = point
        elif final or self.end is None or point[0] > self.end[0]:
            self.end = point

    def figures(self) -> dict[str, Any]:
        if self.start is None or self.end is None or self.end[0] <= self.start[0]:
            return {"pid": self.pid, "cpu": self.cpu, "error": "no window"}
        seconds = self.end[0] - self.start[0]
        cpu = self.end[1] - self.start[1]
        packets = self.end[2] - self.start[2]
        return {
            "pid": self.pid,
            "pinned_cpu": self.cpu,
            "window_s": round(seconds, 1),
            "cpu_percent": round(100 * cpu / seconds, 1),
            "forwarded_pps": round(packets / seconds),
            "us_per_packet": round(1e6 * cpu / packets, 1) if packets else None,
        }


@dataclass
class Result:
    workers: int
    media: dict[int, dict[str, Any]] = field(default_factory=dict)
    placement: dict[int, dict[str, float]] = field(default_factory=dict)
    signaling_cpu_percent: float | None = None
    loadtests: list[dict[str, Any]] = field(default_factory=list)


def run(workers: int, ns: argparse.Namespace) -> Result:
    env = {"CONF_SFU_WORKERS": str(workers)}
    server = srv.start(env)
    result = Result(workers)
    try:
        ncpu = len(os.sched_getaffinity(0))
        if workers == 1:
            procs = {-1: server.pid}
        else:
            deadline = time.monotonic() + 30
            while len(procs := worker_pids(server.pid)) < workers and time.monotonic() < deadline:
                time.sleep(0.2)
        windows = {}
        for key, pid in procs.items():
            cpu = None if ns.no_pin else (0 if key == -1 else key % ncpu)
            if cpu is not None:
                pin(pid, cpu)
            windows[key] = Window(pid, cpu)
        total = ns.duration + 20
        tests = [
            subprocess.Popen(  # noqa: S603 - our own confctl
                [
                    str(srv.BIN / "confctl"),
                    "load-test",
                    "--room",
                    f"room{i}",
                    "-P",
                    str(ns.publishers),
                    "-A",
                    str(ns.publishers),
                    "-S",
                    str(ns.subscribers),
                    "--duration",
                    f"{total}s",
                    "--warmup",
                    "5s",
                    "--no-metrics",
                    "--json",
                    "--quiet",
                ],
                env=server.client_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(ns.rooms)
        ]
        flowing = time.monotonic() + 120
        while time.monotonic() < flowing:  # until every media process forwards
            seen = packets_out(scrape(server.metrics_url))
            if all(seen.get(key, 0) > 0 for key in procs):
                break
            time.sleep(0.5)
        time.sleep(5)
        signaling_start = (time.monotonic(), cpu_seconds(server.pid))
        stop = time.monotonic() + ns.duration
        while True:
            now = time.monotonic()
            final = now >= stop
            seen = packets_out(scrape(server.metrics_url))
            for key, window in windows.items():
                window.see(now, seen.get(key, 0.0), final and key == -1)
            if final:
                break
            time.sleep(0.1)
        text = scrape(server.metrics_url)
        result.placement = placement(text)
        if workers > 1:
            seconds = time.monotonic() - signaling_start[0]
            result.signaling_cpu_percent = round(
                100 * (cpu_seconds(server.pid) - signaling_start[1]) / seconds, 1
            )
        result.media = {key: w.figures() for key, w in windows.items()}
        for test in tests:
            out, err = test.communicate(timeout=total + 120)
            try:
                doc = json.loads(out)
                result.loadtests.append({k: doc.get(k) for k in ("forwarded_pps", "loss_percent")})
            except ValueError:
                result.loadtests.append({"error": err.strip()[-300:]})
    finally:
        server.stop()
    return result


def show(r: Result) -> None:
    print(
        f"\n## {r.workers} media worker(s)" + (" (media in the server's process)" if r.workers == 1 else "")
    )
    total = 0
    for key, f in sorted(r.media.items()):
        name = "server" if key == -1 else f"worker {key}"
        where = f"CPU {f.get('pinned_cpu')}" if f.get("pinned_cpu") is not None else "not pinned"
        if "error" in f:
            print(f"  {name}: {f['error']}")
            continue
        total += f["forwarded_pps"]
        print(
            f"  {name} ({where}): {f['us_per_packet']} µs per forwarded packet, "
            f"{f['forwarded_pps']:,} packets/s, {f['cpu_percent']} % of a core (window {f['window_s']} s)"
        )
    print(f"  forwarded in all: {total:,} packets/s")
    if r.signaling_cpu_percent is not None:
        print(f"  signaling process: {r.signaling_cpu_percent} % of a core")
    for index, load in sorted(r.placement.items()):
        print(
            f"  placement: worker {index} has {load.get('rooms', 0):g} room(s), "
            f"{load.get('participants', 0):g} participants"
        )
    for i, lt in enumerate(r.loadtests):
        print(f"  room{i} load test: {lt}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.workers", description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=positive, default=2)
    p.add_argument("--publishers", type=positive, default=2, help="per room, each with video and audio")
    p.add_argument("--subscribers", type=positive, default=15, help="per room")
    p.add_argument("--duration", type=positive, default=30, help="measurement window, seconds")
    p.add_argument("--workers", default="1,2", help="worker counts to compare (comma-separated)")
    p.add_argument("--no-pin", action="store_true", help="do not pin media processes with taskset")
    p.add_argument("--json-out", type=Path)
    ns = p.parse_args(argv)
    counts = [int(x) for x in ns.workers.split(",")]
    print(
        f"# {ns.rooms} rooms x ({ns.publishers} publishers of VP8+Opus, {ns.subscribers} subscribers), "
        f"window {ns.duration} s, workers {counts}, {'not pinned' if ns.no_pin else 'pinned with taskset'}",
        flush=True,
    )
    results = []
    for n in counts:
        r = run(n, ns)
        show(r)
        results.append(r.__dict__)
    if ns.json_out is not None:
        ns.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
