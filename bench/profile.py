"""Profile the server with py-spy during a fan-out load test; print its hot spots.

    .venv/bin/python -m bench.profile --subscribers 50 --seconds 20
    .venv/bin/python -m bench.profile --mics 100 --seconds 20

Starts a server, starts ``confctl load-test`` (4 publishers and S subscribers, or with
``--mics N`` a room of N open microphones of which 3 speak, everyone listening), waits for the
measurement window, records the server with ``py-spy record --format raw`` (sampling without
pausing the process), and prints the functions with the most samples: "self" counts samples
where the function itself was running, "total" where it was anywhere on the stack. The raw
stacks are kept (``--out``); ``py-spy record`` without ``--format raw`` draws a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import server as srv
from bench.run import scenario_args

PROJECT = str(Path(__file__).resolve().parent.parent)  # file names are shown relative to it


def frame_name(frame: str) -> str:
    """``handle_rtp_data (sfu/glue/receive.py:102)`` -> ``handle_rtp_data (sfu/glue/receive.py)``;
    paths shortened."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{PROJECT}/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def hot_spots(raw: str, top: int) -> tuple[int, list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")[1:]]  # the first is the thread
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    by_self = [(name, own[name], total[name]) for name, _ in own.most_common(top)]
    by_total = [(name, own[name], total[name]) for name, _ in total.most_common(top)]
    return samples, by_self, by_total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--mics", type=int, help="N open microphones (3 speaking) instead of the fan-out")
    parser.add_argument("--meeting", type=int, metavar="N", help="a meeting of N (bench.run meeting)")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "confserver-profile")
    ns = parser.parse_args(argv)
    server = srv.start()
    load_args = ["-P", "4", "-A", "4", "--speakers", "4", "-S", str(ns.subscribers)]
    what = f"fan-out to {ns.subscribers} subscribers"
    if ns.mics:
        load_args = ["-A", str(ns.mics), "--speakers", "3", "-S", str(ns.mics)]
        what = f"{ns.mics} open microphones, 3 speaking"
    if ns.meeting:
        meeting = argparse.Namespace(
            scenario="meeting", participants=ns.meeting, single_layer=False, duration="0s", processes=1
        )
        load_args = scenario_args(meeting)[:-4]  # without --duration/--processes
        what = f"a meeting of {ns.meeting}"
    command = [str(srv.BIN / "confctl"), "load-test", "--room", "profile", *load_args]
    command += ["--duration", f"{ns.seconds + 15}s", "--metrics-url", server.metrics_url, "--json"]
    load = subprocess.Popen(  # noqa: S603 - our own confctl
        command, env=server.client_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        if load.stderr is None:
            raise RuntimeError("no stderr")
        for line in load.stderr:
            if "measuring" in line:
                break
        time.sleep(2)
        raw = ns.out.with_suffix(".txt")
        spy = [str(srv.BIN / "py-spy"), "record", "--pid", str(server.pid), "--duration", str(ns.seconds)]
        spy += ["--rate", "200", "--nonblocking"]
        subprocess.run([*spy, "--format", "raw", "-o", str(raw)], check=True, capture_output=True)  # noqa: S603
        load.communicate(timeout=120)
    finally:
        if load.poll() is None:
            load.kill()
        server.stop()
    samples, by_self, by_total = hot_spots(raw.read_text(), ns.top)
    print(f"py-spy: {samples} samples of the server in {ns.seconds} s, {what}")
    for title, ranked in (("by self time", by_self), ("by total time", by_total)):
        print(f"\n{title}\n{'self %':>7} {'total %':>8}  function")
        for name, own, total in ranked:
            print(f"{own / samples * 100:7.1f} {total / samples * 100:8.1f}  {name}")
    print(f"\nraw stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
