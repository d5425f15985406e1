"""Two meetings of 100 at once on one machine with two media workers (``sfu.workers = 2``).

Each meeting is the meeting benchmark's mix (``bench.run meeting``: all microphones on, 3
speaking, a quarter of the participants with simulcast cameras, 9 tiles and the active speaker),
run by its own ``confctl load-test`` at the same time. Prints each meeting's loss, where the
placement put the rooms, and the CPU of each media worker and of the signaling process.

    python -m bench.meetings --participants 100 --duration 30s
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from typing import Any

from bench import server as srv
from bench.run import scenario_args
from bench.workers import cpu_seconds, placement, scrape, worker_pids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.meetings", description=__doc__.split("\n\n")[0])
    p.add_argument("--participants", type=int, default=100, help="per meeting")
    p.add_argument("--meetings", type=int, default=2)
    p.add_argument("--workers", default="2")
    p.add_argument("--duration", default="30s")
    ns = p.parse_args(argv)
    meeting = argparse.Namespace(
        scenario="meeting",
        participants=ns.participants,
        single_layer=False,
        duration=ns.duration,
        processes=1,
        subscribers=None,
        e2ee=False,
    )
    args = scenario_args(meeting)
    server = srv.start({"CONF_SFU_WORKERS": ns.workers})
    reports: list[dict[str, Any]] = []
    try:
        time.sleep(1.0)
        pids = worker_pids(server.pid)
        started = time.monotonic()
        cpu0 = {i: cpu_seconds(pid) for i, pid in pids.items()}
        sig0 = cpu_seconds(server.pid)
        outputs = [tempfile.TemporaryFile("w+") for _ in range(ns.meetings)]  # reports can be large
        runs = [
            subprocess.Popen(  # noqa: S603 - our own confctl
                [
                    str(srv.BIN / "confctl"),
                    "load-test",
                    "--room",
                    f"meeting-{i}",
                    *args,
                    "--json",
                    "--quiet",
                    "--metrics-url",
                    server.metrics_url,
                ],
                env=server.client_env,
                stdout=outputs[i],
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i in range(ns.meetings)
        ]
        where: dict[int, dict[str, float]] = {}
        while any(proc.poll() is None for proc in runs):  # where the rooms are while they run
            seen = placement(scrape(server.metrics_url))
            if sum(w.get("participants", 0) for w in seen.values()) >= sum(
                w.get("participants", 0) for w in where.values()
            ):
                where = seen
            time.sleep(2.0)
        for out in outputs:
            out.seek(0)
            text = out.read()
            try:
                reports.append(json.loads(text))
            except ValueError:
                raise SystemExit(f"load test failed: {text.strip()[-2000:]}") from None
        seconds = time.monotonic() - started
        cpu = {i: 100 * (cpu_seconds(pid) - cpu0[i]) / seconds for i, pid in pids.items()}
        signaling = 100 * (cpu_seconds(server.pid) - sig0) / seconds
    finally:
        server.stop()
    print(f"# {ns.meetings} meetings of {ns.participants} at once, sfu.workers = {ns.workers}")
    print(f"# each: confctl load-test --room meeting-I {' '.join(args)}")
    for i, r in enumerate(reports):
        print(
            f"meeting {i}: joined {r['participants']['joined']}, failed {r['participants']['failed']}, "
            f"forwarded {r.get('forwarded_pps')} pkt/s, loss {r.get('loss_percent')} %, "
            f"delay p95 {r.get('delay_ms', {}).get('p95')} ms, generator CPU "
            f"{r.get('generator', {}).get('cpu_percent')} %"
        )
    for i in sorted(where):
        print(
            f"worker {i}: {where[i].get('rooms', 0):g} room(s), {where[i].get('participants', 0):g} "
            f"participants, CPU {cpu.get(i, 0.0):.0f} % of a core over the whole run"
        )
    print(f"signaling process: CPU {signaling:.0f} % of a core over the whole run")
    machine = reports[0].get("machine", {}) if reports else {}
    print(
        f"machine: {machine.get('cores')} cores, busy {machine.get('busy_percent')} %, "
        f"other programs {machine.get('other_percent')} %"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
