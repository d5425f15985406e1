"""What the audit log and webhooks add to a join: join latency with neither, with the audit log
(files, as beside the memory store), with the audit log and a healthy webhook receiver, and with
the audit log and a stalled receiver; the server in this process (signaling only, no media), each
receiver in a process of its own, all on loopback.

Each configuration runs in short rounds, interleaved (none, audit, audit+hook, audit+stalled,
none, …), so a change of the machine's speed during the run touches all alike. A join is timed from
opening the WebSocket to the ``joined`` answer; participants of a round join rooms of 10 and stay
until the round ends. Also reports the cost of one ``Webhooks.emit`` and one ``AuditLog.record``
call, and how many entries a second the audit writer seals and appends.

    python -m bench.accountability --rounds 10 --joins 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import secrets
import socket
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from confserver.app import create_app
from confserver.audit import Actor, Signer
from confserver.audit.log import AuditLog
from confserver.audit.sinks import FileSink
from confserver.config import MetricsConfig, SignalingConfig, TlsConfig, WebhookConfig, load_config
from confserver.credentials import ApiCredentials
from confserver.metrics import Metrics
from confserver.store import MemoryStore
from confserver.tokens import SigningKey, mint_join_token
from confserver.webhooks import EventParticipant, Webhooks

API_KEY = "APIbench0000001"
API_SECRET = secrets.token_urlsafe(32)
HOOK_SECRET = secrets.token_urlsafe(32)


def _receiver_process(port: int, stall: bool) -> None:
    """A webhook receiver in its own process, as a real one is: it answers 204, or never."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if stall:
            await asyncio.Event().wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


def start_receiver(stall: bool) -> tuple[multiprocessing.Process, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = multiprocessing.get_context("spawn").Process(
        target=_receiver_process, args=(port, stall), daemon=True
    )
    proc.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}/hook"
        time.sleep(0.05)
    raise RuntimeError("the webhook receiver did not start")


SIGNER = Signer(Ed25519PrivateKey.generate())


async def one_round(hook_url: str | None, audit_dir: Path | None, joins: int, round_no: int) -> list[float]:
    cfg = replace(
        load_config(env={}),
        tls=TlsConfig(mode="off"),
        metrics=MetricsConfig(enabled=False),
        signaling=SignalingConfig(max_unjoined_per_address=1000, rate_burst=1000),
        webhooks=(WebhookConfig(url=hook_url, secret=HOOK_SECRET, timeout=60),) if hook_url else (),
    )
    creds = ApiCredentials(API_KEY, API_SECRET, "config")
    app = create_app(
        cfg,
        store=MemoryStore(),
        credentials=creds,
        metrics=Metrics.create(process=False),
        audit_sink=FileSink(audit_dir) if audit_dir is not None else None,
        audit_signer=SIGNER,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    key = SigningKey.hs256(API_KEY, API_SECRET)
    times: list[float] = []
    sockets = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for i in range(joins):
            room = f"r{round_no}-{i // 10}"
            token, _ = mint_join_token(key, room=room, identity=f"u{i}", now=time.time())
            started = time.perf_counter()
            ws = await session.ws_connect(server.make_url("/ws"))
            await ws.send_str(json.dumps({"type": "join", "token": token, "room": room}))
            while True:
                msg = json.loads((await ws.receive(timeout=10)).data)
                if msg["type"] == "joined":
                    break
            times.append(time.perf_counter() - started)
            sockets.append(ws)
        for ws in sockets:
            await ws.close()
    await server.close()
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def emit_cost(n: int) -> float:
    hooks = Webhooks(
        [WebhookConfig(url="http://127.0.0.1:9/hook", secret=HOOK_SECRET, queue_size=n)],
        Metrics.create(process=False),
        node="bench",
    )
    who = EventParticipant("PA_1", "alice@example.gov", "Alice")
    started = time.perf_counter()
    for _ in range(n):
        hooks.emit("participant_joined", "room", who)
    return (time.perf_counter() - started) / n


def record_cost(n: int) -> float:
    audit = AuditLog(
        FileSink(tempfile.mkdtemp()), SIGNER, Metrics.create(process=False), node="bench", queue_size=n
    )
    ana = Actor("participant", "alice@example.gov", "Alice")
    started = time.perf_counter()
    for _ in range(n):
        audit.record("participant.join", actor=ana, room="room", client_ip="127.0.0.1", conf={"sid": "PA_1"})
    return (time.perf_counter() - started) / n


async def write_rate(n: int) -> float:
    """Entries a second the writer seals and appends (queued all at once, then drained)."""
    with tempfile.TemporaryDirectory() as directory:
        audit = AuditLog(
            FileSink(directory), SIGNER, Metrics.create(process=False), node="bench", queue_size=n + 10
        )
        await audit.start()
        await audit.flush()
        ana = Actor("participant", "alice@example.gov", "Alice")
        for _ in range(n):
            audit.record(
                "participant.join", actor=ana, room="room", client_ip="127.0.0.1", conf={"sid": "PA_1"}
            )
        started = time.perf_counter()
        await audit.flush()
        elapsed = time.perf_counter() - started
        await audit.close()
    return n / elapsed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--joins", type=int, default=100, help="joins per round and configuration")
    args = ap.parse_args()
    logging.getLogger("confserver.webhooks").setLevel(logging.ERROR)  # "not sent at shutdown": expected
    healthy, healthy_url = start_receiver(stall=False)
    stalled, stalled_url = start_receiver(stall=True)
    setups = {
        "none": (None, False),
        "audit": (None, True),
        "audit+hook": (healthy_url, True),
        "audit+stalled": (stalled_url, True),
    }
    results: dict[str, list[float]] = {name: [] for name in setups}
    for r in range(args.rounds):
        for name, (url, audited) in setups.items():
            with tempfile.TemporaryDirectory() as directory:
                audit_dir = Path(directory) if audited else None
                results[name] += await one_round(url, audit_dir, args.joins, r)
    for proc in (healthy, stalled):
        proc.terminate()
        proc.join()
    base = p95(results["none"])
    print(f"{args.rounds} rounds x {args.joins} joins per configuration")
    print(f"{'setup':14} {'p50 ms':>8} {'p95 ms':>8} {'p95 - none':>11}")
    for name, times in results.items():
        q = p95(times)
        print(f"{name:14} {statistics.median(times) * 1e3:8.2f} {q * 1e3:8.2f} {(q - base) * 1e3:+10.2f}")
    print(f"Webhooks.emit: {emit_cost(10_000) * 1e6:.1f} us per event")
    print(f"AuditLog.record: {record_cost(10_000) * 1e6:.1f} us per entry")
    print(f"Audit writer: {await write_rate(50_000):,.0f} entries/s sealed and appended")


if __name__ == "__main__":
    asyncio.run(main())
