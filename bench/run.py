"""Run a load-test benchmark several times against fresh confserver processes; print the median.

    .venv/bin/python -m bench.run fanout --subscribers 100
    .venv/bin/python -m bench.run meeting
    .venv/bin/python -m bench.run joinstorm
    .venv/bin/python -m bench.run idle

Each run starts a new server (bench/server.py), runs ``confctl load-test ... --json`` against
it, and stops it. Before and after, it measures the machine's floor (``bench.floor``: SRTP
protect + send to 100 destinations; the lower of the two is kept, a slow moment of the virtual
machine inflates it), and also gives the server's CPU per forwarded packet as a multiple of it.
The floor is also sampled every two seconds during the run (``floor us during``, the median of
the samples in the measurement window): the virtual machine's speed can change within a run. It
is not used for the ratio: a sample taken while the server and the load generator keep both
cores busy is slowed by sharing a core with them (it read 1.1-2.2x the floor taken alone).
The figures printed are the median of the runs; every run's figures are printed too, with the
exact command. ``--json-out FILE`` keeps everything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import server as srv
from bench.floor import FloorSampler, floor_us

SCENARIOS: dict[str, str] = {
    "fanout": "4 publishers (VP8 + Opus, all speaking) in a room of S subscribers taking every feed",
    "meeting": "N participants (100), all with audio (3 speaking), N/4 cameras, 9 tiles + the active speaker",
    "joinstorm": "100 participants (all with audio, 3 speaking) joining at once",
    "idle": "S participants joined and connected, nothing published",
}

# (label, path in the report) of the figures summarised
FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("joined", ("participants", "joined")),
    ("failed", ("participants", "failed")),
    ("join p50 ms", ("join_latency_ms", "p50")),
    ("join p95 ms", ("join_latency_ms", "p95")),
    ("connected p50 ms", ("connect_latency_ms", "p50")),
    ("connected p95 ms", ("connect_latency_ms", "p95")),
    ("first media p95 ms", ("first_media_ms", "p95")),
    ("planned pkt/s", ("planned_pps",)),
    ("sent pkt/s", ("sent_pps",)),
    ("server read % of sent", ("server", "in_percent_of_sent")),
    ("forwarded pkt/s", ("forwarded_pps",)),
    ("loss %", ("loss_percent",)),
    ("delay p50 ms", ("delay_ms", "p50")),
    ("delay p95 ms", ("delay_ms", "p95")),
    ("delay max ms", ("delay_ms", "max")),
    ("server socket drops", ("server", "socket_drops")),
    ("server socket queue KiB", ("server", "socket_queue_kib")),
    ("server wait p50 ms", ("server", "receive_wait_ms", "p50")),
    ("server wait p95 ms", ("server", "receive_wait_ms", "p95")),
    ("server stale drops", ("server", "dropped", "stale")),
    ("server shed layers (mean)", ("server", "shed_layers", "mean")),
    ("server full GCs in window", ("server", "gc_pauses", "full")),
    ("server GC longest ms in window", ("server", "gc_pauses", "longest_ms")),
    ("server full GCs since start", ("server", "gc_pauses_since_start", "full")),
    ("server GC ms since start", ("server", "gc_pauses_since_start", "total_ms")),
    ("server CPU %", ("server", "cpu_percent")),
    ("server us/forwarded pkt", ("server", "cpu_us_per_packet")),
    ("floor us (protect+send)", ("floor_us",)),
    ("floor us during", ("floor_during_us",)),
    ("server cost / floor", ("server_floor_ratio",)),
    ("server ms/s per connection", ("server", "cpu_ms_per_s_per_connection")),
    ("server RSS MiB", ("server", "rss_mb")),
    ("server MiB/participant", ("server", "rss_mb_per_participant")),
    ("generator CPU %", ("generator", "cpu_percent")),
    ("generator us/pkt", ("generator", "cpu_us_per_packet")),
    ("machine busy %", ("machine", "busy_percent")),
    ("other programs %", ("machine", "other_percent")),
)


def scenario_args(ns: argparse.Namespace) -> list[str]:
    if ns.scenario == "fanout":
        s = ns.subscribers or 100
        args = ["-P", "4", "-A", "4", "--speakers", "4", "-S", str(s)]
    elif ns.scenario == "meeting":
        n = ns.participants or 100
        args = ["-N", str(n), "-A", str(n), "--speakers", "3", "-P", str(max(1, n // 4)), "-S", str(n)]
        args += ["--tiles", "9", "--tile-size", "320x180", "--speaker-view"]
        if not ns.single_layer:
            args.append("--simulcast")
    elif ns.scenario == "joinstorm":
        args = ["-N", "100", "-A", "100", "--speakers", "3", "-S", "100", "--warmup", "0s"]
    else:
        args = ["-S", str(ns.subscribers or 100)]
    if ns.e2ee:
        args.append("--e2ee")
    return [*args, "--duration", ns.duration, "--processes", str(ns.processes)]


def dig(doc: Any, path: tuple[str, ...]) -> float | None:
    for i, key in enumerate(path):
        if not isinstance(doc, dict):
            return None
        if key not in doc and i > 0 and path[i - 1] == "dropped":
            return 0.0  # the report lists only the reasons that occurred
        doc = doc.get(key)
    return float(doc) if isinstance(doc, int | float) else None


def busy_seconds() -> float:
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / 100


def wait_for_quiet(limit: float, longest: float = 3600.0) -> float:
    """Wait until other programs leave the machine idle (under ``limit`` % of one core over 10 s);
    returns the last figure seen (another program sharing the cores skews every result)."""
    deadline = time.monotonic() + longest
    while True:
        before = busy_seconds()
        time.sleep(10)
        busy = (busy_seconds() - before) / 10 * 100
        if busy <= limit or time.monotonic() > deadline:
            return busy
        print(f"  (machine busy {busy:.0f} % of one core: waiting for it to be quiet)", flush=True)


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("CONF_"):
        raise argparse.ArgumentTypeError(f"expected CONF_NAME=VALUE, got {text!r}")
    return name, value


def run_once(args: list[str], extra_env: dict[str, str]) -> tuple[dict[str, Any], str]:
    server = srv.start(extra_env)
    command = [str(srv.BIN / "confctl"), "load-test", "--room", "bench", *args]
    command += ["--metrics-url", server.metrics_url, "--json", "--quiet"]
    try:
        done = subprocess.run(  # noqa: S603 - our own confctl
            command, env=server.client_env, capture_output=True, text=True, timeout=900
        )
    finally:
        server.stop()
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"load test failed ({done.returncode}): {done.stderr.strip()}")
    shown = " ".join(["confctl", *command[1:]]).replace(server.metrics_url, "http://127.0.0.1:PORT/metrics")
    return json.loads(done.stdout), shown


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--subscribers", type=int, help="fanout/idle: room size (default 100)")
    parser.add_argument(
        "--participants", type=int, help="meeting: size (default 100; a quarter with cameras)"
    )
    parser.add_argument("--single-layer", action="store_true", help="meeting: no simulcast")
    parser.add_argument("--e2ee", action="store_true", help="an end-to-end encrypted room (encrypted frames)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", default="30s")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        type=_setting,
        metavar="CONF_X=V",
        help="a setting for the server under test, e.g. CONF_SFU_DYNACAST=false (repeatable)",
    )
    parser.add_argument(
        "--other-limit", type=float, default=15.0, help="discard a run in which other programs used more (%%)"
    )
    parser.add_argument("--retries", type=int, default=4, help="extra runs allowed to replace discarded ones")
    parser.add_argument(
        "--quiet-limit",
        type=float,
        default=15.0,
        help="wait before each run until the machine is this idle (%%)",
    )
    ns = parser.parse_args(argv)
    args = scenario_args(ns)
    print(f"# {ns.scenario}: {SCENARIOS[ns.scenario]}", flush=True)
    runs: list[dict[str, Any]] = []
    command = ""
    attempts = 0
    while len(runs) < ns.runs and attempts < ns.runs + ns.retries:
        attempts += 1
        if ns.quiet_limit < 200:
            wait_for_quiet(ns.quiet_limit)
        before = floor_us()
        with FloorSampler() as sampler:
            doc, command = run_once(args, dict(ns.server_env))
        floor = min(before, floor_us())  # the machine at its steadier moment, before or after
        start = float(doc.get("window_started_at") or 0.0)
        during = sampler.between(start, start + float(doc.get("window_s") or 0.0))
        doc["floor_us"] = round(floor, 2)
        doc["floor_during_us"] = round(during, 2) if during is not None else None
        doc["floor_samples"] = [[round(at, 2), round(us, 2)] for at, us in sampler.samples]
        per_packet = dig(doc, ("server", "cpu_us_per_packet"))
        if per_packet is not None:
            doc["server_floor_ratio"] = round(per_packet / floor, 2)
        line = ", ".join(f"{label} {_show(dig(doc, path))}" for label, path in FIGURES)
        other = dig(doc, ("machine", "other_percent")) or 0.0
        if other > ns.other_limit:
            print(f"discarded (other programs used {other:.0f} % of one core): {line}", flush=True)
            continue
        runs.append(doc)
        print(f"run {len(runs)}: {line}", flush=True)
    if not runs:
        raise SystemExit("no run without other programs competing for the cores")
    m = runs[0]["machine"]
    print(f"machine: {m['cores']} cores, {m['cpu']}")
    print(f"command: {command}")
    print(f"median of {len(runs)} runs:")
    summary = {label: median([dig(d, path) for d in runs]) for label, path in FIGURES}
    width = max(len(k) for k in summary)
    for label, value in summary.items():
        print(f"  {label:<{width}}  {_show(value)}")
    if ns.json_out is not None:
        ns.json_out.write_text(json.dumps({"command": command, "median": summary, "runs": runs}, indent=2))
    return 0


def _show(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
