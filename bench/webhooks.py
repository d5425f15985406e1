"""What webhooks add to a join: join latency without webhooks, with a healthy receiver and with a
stalled one, all on loopback in one process (signaling only, no media).

Each configuration runs in short rounds, interleaved (none, healthy, stalled, none, …), so a change
of the machine's speed during the run touches all three alike. A join is timed from opening the
WebSocket to the ``joined`` answer; participants of a round join rooms of 10 and stay until the
round ends. Also reports the cost of one ``Webhooks.emit`` call.

    python -m bench.webhooks --rounds 10 --joins 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from dataclasses import replace

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from confserver.app import create_app
from confserver.config import MetricsConfig, SignalingConfig, TlsConfig, WebhookConfig, load_config
from confserver.credentials import ApiCredentials
from confserver.metrics import Metrics
from confserver.store import MemoryStore
from confserver.tokens import SigningKey, mint_join_token
from confserver.webhooks import EventParticipant, Webhooks

API_KEY = "APIbench0000001"
API_SECRET = secrets.token_urlsafe(32)
HOOK_SECRET = secrets.token_urlsafe(32)


async def start_receiver(stall: asyncio.Event | None) -> tuple[TestServer, str]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if stall is not None:
            await stall.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, str(server.make_url("/hook"))


async def one_round(hook_url: str | None, joins: int, round_no: int) -> list[float]:
    cfg = replace(
        load_config(env={}),
        tls=TlsConfig(mode="off"),
        metrics=MetricsConfig(enabled=False),
        signaling=SignalingConfig(max_unjoined_per_address=1000, rate_burst=1000),
        webhooks=(WebhookConfig(url=hook_url, secret=HOOK_SECRET, timeout=60),) if hook_url else (),
    )
    creds = ApiCredentials(API_KEY, API_SECRET, "config")
    app = create_app(cfg, store=MemoryStore(), credentials=creds, metrics=Metrics.create(process=False))
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


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--joins", type=int, default=100, help="joins per round and configuration")
    args = ap.parse_args()
    stall = asyncio.Event()
    healthy, healthy_url = await start_receiver(None)
    stalled, stalled_url = await start_receiver(stall)
    results: dict[str, list[float]] = {"none": [], "healthy": [], "stalled": []}
    urls = {"none": None, "healthy": healthy_url, "stalled": stalled_url}
    for r in range(args.rounds):
        for name, url in urls.items():
            results[name] += await one_round(url, args.joins, r)
    stall.set()
    await healthy.close()
    await stalled.close()
    base = p95(results["none"])
    print(f"{args.rounds} rounds x {args.joins} joins per configuration")
    print(f"{'webhooks':10} {'p50 ms':>8} {'p95 ms':>8} {'p95 - none':>11}")
    for name, times in results.items():
        q = p95(times)
        print(f"{name:10} {statistics.median(times) * 1e3:8.2f} {q * 1e3:8.2f} {(q - base) * 1e3:+10.2f}")
    print(f"Webhooks.emit: {emit_cost(10_000) * 1e6:.1f} us per event")


if __name__ == "__main__":
    asyncio.run(main())
