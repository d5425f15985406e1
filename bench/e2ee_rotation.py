"""Key rotation in an E2EE room of 100: how long until everyone holds the new keys, and what it
costs in signaling.

    .venv/bin/python -m bench.e2ee_rotation --participants 100 --rounds 3

Starts a confserver without media (``CONF_SFU_ENABLED=false``: keys travel on signaling only)
and joins N synthetic E2EE participants (``confctl.loadtest.keypeer``: the browser's key
schedule, identity keys, sealed blobs) to one room, all in this process. Each round:

- **leave 1**: one participant leaves. Measured from its ``leave`` until each remaining
  participant holds every remaining sender's fresh key (the schedule waits 400 ms after a leave
  before it rotates); p50/p95/max over the receivers. Messages and bytes are everything all
  participants sent (up) and received (down) until the room is quiet again.
- **join 1**: a newcomer joins the room of N-1: from its ``join`` until it holds every sender's key.
- **leave 10**: ten leave within one second; rotations (fresh keys) made per remaining sender
  must be 1, and the same time to everyone holding the new keys.
- the ten join again (not measured).

The server and all the participants share the machine's cores: the times include the clients'
crypto (about 10,000 blob openings per rotation in this one process), which real browsers spread
over their own machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import server as bench_server
from bench.run import wait_for_quiet
from confctl.loadtest.keypeer import KeyPeer
from confserver.tokens import SigningKey, mint_admin_token, mint_join_token

ROOM = "e2ee-bench"
SETTLE = 0.6  # seconds without any message: the room is quiet
TIMEOUT = 30.0


@dataclass
class Event:
    kind: str
    seconds: list[float] = field(default_factory=list)  # per receiver: until it held every new key
    up_messages: int = 0
    up_bytes: int = 0
    down_messages: int = 0
    down_bytes: int = 0
    participants: int = 0  # in the room after the event
    rotations: tuple[int, int] = (0, 0)  # fresh keys per remaining sender: min, max
    incomplete: int = 0  # receivers that did not get there within TIMEOUT
    spread: float = 0.0  # seconds between the first and the last leave
    other_percent: float | None = None  # CPU of other programs (of one core) during the event
    cpu: tuple[float, float] = (0.0, 0.0)  # CPU seconds of the server, of all participants

    def row(self) -> dict[str, Any]:
        s = sorted(self.seconds)
        n = max(1, self.participants)
        return {
            "event": self.kind,
            "p50_s": _pct(s, 50),
            "p95_s": _pct(s, 95),
            "max_s": round(s[-1], 3) if s else None,
            "p95_after_last_s": _pct([x - self.spread for x in s], 95),
            "leaves_spread_s": round(self.spread, 3),
            "incomplete": self.incomplete,
            "up_messages": self.up_messages,
            "up_bytes": self.up_bytes,
            "down_messages": self.down_messages,
            "down_bytes": self.down_bytes,
            "up_bytes_per_participant": round(self.up_bytes / n),
            "down_bytes_per_participant": round(self.down_bytes / n),
            "up_messages_per_participant": round(self.up_messages / n, 1),
            "down_messages_per_participant": round(self.down_messages / n, 1),
            "rotations_per_sender": list(self.rotations),
            "other_programs_percent": self.other_percent,
            "server_cpu_s": round(self.cpu[0], 3),
            "participants_cpu_s": round(self.cpu[1], 3),
        }


def _pct(values: list[float], p: int) -> float | None:
    if not values:
        return None
    k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return round(values[k], 3)


class CpuWatch:
    """The machine's busy CPU seconds less this process's and the server's: other programs."""

    def __init__(self, server_pid: int | None) -> None:
        self.pid = server_pid
        self.start = (time.monotonic(), self._other(), self._server(), time.process_time())

    def _server(self) -> float:
        if self.pid is None:
            return 0.0
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / 100

    def used(self) -> tuple[float, float]:
        """CPU seconds since the start: the server's, this process's."""
        return self._server() - self.start[2], time.process_time() - self.start[3]

    def _other(self) -> float:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
        busy = (sum(fields) - fields[3] - fields[4]) / 100
        return busy - self._server() - time.process_time()

    def percent(self) -> float:
        at, other = self.start[:2]
        seconds = time.monotonic() - at
        return round(max(0.0, (self._other() - other) / seconds * 100), 1) if seconds > 0 else 0.0


class Bench:
    def __init__(self, url: str, tls: ssl.SSLContext | None, key: SigningKey) -> None:
        self.url = url
        self.tls = tls
        self.key = key
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.peers: list[KeyPeer] = []
        self.joined = 0
        self.server_pid: int | None = None

    async def new_peer(self) -> KeyPeer:
        self.joined += 1
        identity = f"kp-{self.joined:04d}"
        token, _ = mint_join_token(self.key, room=ROOM, identity=identity, now=time.time())
        peer = KeyPeer(self.session, self.url, ROOM, token, identity, tls=self.tls)
        await peer.join()
        return peer

    async def fill(self, n: int) -> None:
        while len(self.peers) < n:
            batch = min(10, n - len(self.peers))
            self.peers += await asyncio.gather(*(self.new_peer() for _ in range(batch)))
        await self.until(lambda: self.all_hold_any(self.peers), "initial keys")
        await self.quiet()

    def all_hold_any(self, peers: list[KeyPeer]) -> bool:
        return all(r.holds(s.sid) is not None for r in peers for s in peers if s is not r)

    async def until(self, done: Any, what: str) -> bool:
        deadline = time.monotonic() + TIMEOUT
        while not done():
            if time.monotonic() > deadline:
                print(f"  ({what}: not complete after {TIMEOUT:.0f} s)", flush=True)
                return False
            await asyncio.sleep(0.02)
        return True

    async def quiet(self) -> None:
        while True:
            left = SETTLE - (time.monotonic() - max(p.last_received_at for p in self.peers))
            if left <= 0:
                return
            await asyncio.sleep(left)

    def totals(self, ps: list[KeyPeer] | None = None) -> tuple[int, int, int, int]:
        ps = self.peers if ps is None else ps
        return (
            sum(p.sent["messages"] for p in ps),
            sum(p.sent["bytes"] for p in ps),
            sum(p.received["messages"] for p in ps),
            sum(p.received["bytes"] for p in ps),
        )

    def cost(self, event: Event, before: tuple[int, int, int, int], after: tuple[int, int, int, int]) -> None:
        """What everyone sent (up) and received (down) between ``before`` and ``after``."""
        event.up_messages = after[0] - before[0]
        event.up_bytes = after[1] - before[1]
        event.down_messages = after[2] - before[2]
        event.down_bytes = after[3] - before[3]
        event.participants = len(self.peers)

    async def leave(self, count: int, spread: float) -> Event:
        watch = CpuWatch(self.server_pid)
        leavers = random.sample(self.peers, count)
        everyone = list(self.peers)
        before = self.totals(everyone)
        t0 = time.monotonic()
        for i, peer in enumerate(leavers):  # on a fixed timetable; connections closed afterwards
            await asyncio.sleep(max(0.0, t0 + spread * i / max(1, count - 1) - time.monotonic()))
            self.peers.remove(peer)
            await peer.send({"type": "leave"})
        spread = time.monotonic() - t0
        stay = self.peers
        fresh: dict[str, int] = {}

        def complete() -> bool:
            for s in stay:
                kid = fresh.get(s.sid) or s.fresh_key_after(t0)
                if kid is None:
                    return False
                fresh[s.sid] = kid
            return all(r.holds(s.sid, fresh[s.sid]) is not None for r in stay for s in stay if s is not r)

        ok = await self.until(complete, f"leave {count}")
        await self.quiet()
        await asyncio.sleep(1.0)  # any second rotation would have started by now
        await self.quiet()
        event = Event(f"leave {count}", spread=spread, other_percent=watch.percent(), cpu=watch.used())
        for r in stay:
            times = [r.holds(s.sid, fresh.get(s.sid)) for s in stay if s is not r]
            if ok and all(t is not None for t in times):
                event.seconds.append(max(t for t in times if t is not None) - t0)
            else:
                event.incomplete += 1
        rotations = [s.rotations_after(t0) for s in stay]
        event.rotations = (min(rotations), max(rotations))
        self.cost(event, before, self.totals(everyone))  # the leavers' leave messages included
        for p in leavers:
            await p.close()
        return event

    async def join(self) -> Event:
        watch = CpuWatch(self.server_pid)
        before = self.totals()
        t0 = time.monotonic()
        peer = await self.new_peer()
        self.peers.append(peer)
        others = [s for s in self.peers if s is not peer]
        ok = await self.until(lambda: all(peer.holds(s.sid) is not None for s in others), "join")
        await self.quiet()
        event = Event("join 1", other_percent=watch.percent(), cpu=watch.used())
        held = [peer.holds(s.sid) for s in others]
        if ok and all(t is not None for t in held):
            event.seconds.append(max(t for t in held if t is not None) - t0)
        else:
            event.incomplete = 1
        self.cost(event, before, self.totals())
        return event

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.peers), return_exceptions=True)
        await self.session.close()


def _create_room(base: str, creds: dict[str, Any], tls: ssl.SSLContext) -> None:
    import urllib.request

    token = mint_admin_token(creds["api_key"], creds["api_secret"], now=time.time())
    request = urllib.request.Request(  # noqa: S310 - our own server on loopback
        base + "/api/v1/rooms",
        data=json.dumps({"name": ROOM, "e2ee": True}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=tls, timeout=10) as resp:  # noqa: S310
        if resp.status != 201:
            raise SystemExit(f"room create failed: {resp.status}")


async def run(participants: int, rounds: int) -> list[Event]:
    server = bench_server.start({"CONF_SFU_ENABLED": "false"})
    try:
        creds = json.loads((server.home / ".local/state/confserver/credentials.json").read_text())
        tls = ssl.create_default_context(cafile=creds["cacert"])
        base = f"https://127.0.0.1:{server.port}"
        _create_room(base, creds, tls)
        bench = Bench(
            base.replace("https:", "wss:") + "/ws",
            tls,
            SigningKey.hs256(creds["api_key"], creds["api_secret"]),
        )
        bench.server_pid = server.pid
        events: list[Event] = []
        try:
            started = time.monotonic()
            await bench.fill(participants)
            print(f"{participants} joined, keys exchanged in {time.monotonic() - started:.1f} s", flush=True)
            for n in range(rounds):
                for event in (await bench.leave(1, 0.0), await bench.join(), await bench.leave(10, 1.0)):
                    events.append(event)
                    print(f"round {n + 1}: {json.dumps(event.row())}", flush=True)
                await bench.fill(participants)
        finally:
            await bench.close()
        return events
    finally:
        server.stop()


def summary(events: list[Event]) -> list[dict[str, Any]]:
    rows = []
    for kind in dict.fromkeys(e.kind for e in events):
        mine = [e.row() for e in events if e.kind == kind]

        def med(key: str, mine: list[dict[str, Any]] = mine) -> float | None:
            values = [r[key] for r in mine if r[key] is not None]
            return round(statistics.median(values), 3) if values else None

        row: dict[str, Any] = {"event": kind, "rounds": len(mine)}
        for key in mine[0]:
            if key not in ("event", "rotations_per_sender"):
                row[key] = med(key)
        row["rotations_per_sender"] = [
            min(r["rotations_per_sender"][0] for r in mine),
            max(r["rotations_per_sender"][1] for r in mine),
        ]
        rows.append(row)
    return rows


def show(rows: list[dict[str, Any]]) -> str:
    columns = (
        ("event", "event"),
        ("p50 s", "p50_s"),
        ("p95 s", "p95_s"),
        ("max s", "max_s"),
        ("p95 s after last leave", "p95_after_last_s"),
        ("msgs up", "up_messages"),
        ("msgs down", "down_messages"),
        ("KB up", "up_bytes"),
        ("KB down", "down_bytes"),
        ("KB up/p", "up_bytes_per_participant"),
        ("KB down/p", "down_bytes_per_participant"),
        ("server CPU s", "server_cpu_s"),
        ("participants CPU s", "participants_cpu_s"),
        ("other programs %", "other_programs_percent"),
        ("rotations/sender", "rotations_per_sender"),
    )
    lines = [" | ".join(label for label, _ in columns)]
    for row in rows:
        cells = []
        for label, key in columns:
            value = row.get(key)
            if label.startswith("KB") and isinstance(value, int | float):
                value = f"{value / 1000:,.1f}"
            elif isinstance(value, list):
                value = "-".join(str(v) for v in dict.fromkeys(value))
            cells.append(str(value))
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.e2ee_rotation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--quiet-limit",
        type=float,
        default=200.0,
        help="first wait until other programs use less than this (%% of one core; default: no wait)",
    )
    ns = parser.parse_args(argv)
    if ns.quiet_limit < 200:
        wait_for_quiet(ns.quiet_limit)
    events = asyncio.run(run(ns.participants, ns.rounds))
    rows = summary(events)
    print(f"median of {ns.rounds} rounds, {ns.participants} participants:")
    print(show(rows))
    if ns.json_out is not None:
        ns.json_out.write_text(json.dumps({"summary": rows, "events": [e.row() for e in events]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
