"""What a relayed session costs: two confserver nodes on one redis-server, one participant
connected to the node serving the room and one connected through the other node; each round sends
a ``ping`` on both connections in turn and times the ``pong``. The difference is the delay the relay
adds to a round trip (two extra hops on loopback); half of it is the added one-way delay of a
message. Also times the join through each node.

    python -m bench.relay --rounds 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp

from bench.server import start, start_redis
from confserver.tokens import SigningKey, mint_join_token

API_KEY = "AKbenchrelay0001"
API_SECRET = "b" * 43


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def token(room: str, identity: str) -> str:
    minted, _ = mint_join_token(
        SigningKey.hs256(API_KEY, API_SECRET), room=room, identity=identity, now=time.time()
    )
    return minted


async def join(
    http: aiohttp.ClientSession, port: int, room: str, identity: str
) -> tuple[aiohttp.ClientWebSocketResponse, float]:
    started = time.perf_counter()
    ws = await http.ws_connect(f"https://127.0.0.1:{port}/ws", ssl=False)
    await ws.send_str(json.dumps({"type": "join", "token": token(room, identity)}))
    while True:
        msg = json.loads((await ws.receive()).data)
        if msg["type"] == "joined":
            return ws, time.perf_counter() - started
        if msg["type"] == "error":
            raise RuntimeError(f"join refused: {msg}")


async def rtt(ws: aiohttp.ClientWebSocketResponse, n: int) -> float:
    started = time.perf_counter()
    await ws.send_str(json.dumps({"type": "ping", "t": n}))
    while True:
        msg = json.loads((await ws.receive()).data)
        if msg["type"] == "pong" and msg.get("t") == n:
            return time.perf_counter() - started


async def measure(ports: tuple[int, int], rounds: int, joins: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"direct": [], "relayed": [], "join_direct": [], "join_relayed": []}
    async with aiohttp.ClientSession() as http:
        owner, _ = await join(http, ports[0], "bench", "owner")  # the room is served by node a
        relayed, _ = await join(http, ports[1], "bench", "relayed")
        direct, _ = await join(http, ports[0], "bench", "direct")
        for _ in range(50):  # warm up
            await rtt(direct, -1)
            await rtt(relayed, -1)
        for n in range(rounds):
            first, second = (direct, relayed) if n % 2 == 0 else (relayed, direct)
            t1 = await rtt(first, n)
            t2 = await rtt(second, n)
            out["direct"].append(t1 if first is direct else t2)
            out["relayed"].append(t2 if first is direct else t1)
            await asyncio.sleep(0.002)
        for n in range(joins):
            for key, port in (("join_direct", ports[0]), ("join_relayed", ports[1])):
                ws, took = await join(http, port, "bench", f"j{n}")
                out[key].append(took)
                await ws.close()
        for ws in (owner, relayed, direct):
            await ws.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--joins", type=int, default=100)
    ns = parser.parse_args(argv)
    redis, redis_port, _ = start_redis("relaybench-")
    env = {
        "CONF_STORE_KIND": "redis",
        "CONF_STORE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CONF_AUTH_API_KEY": API_KEY,
        "CONF_AUTH_API_SECRET": API_SECRET,
        "CONF_SFU_ENABLED": "false",
        "CONF_SIGNALING_RATE_PER_SECOND": "10000",
        "CONF_SIGNALING_RATE_BURST": "10000",
    }
    servers = []
    try:
        servers = [start({**env, "CONF_SIGNALING_NODE_ID": name}) for name in ("a", "b")]
        found = asyncio.run(measure((servers[0].port, servers[1].port), ns.rounds, ns.joins))
    finally:
        for s in servers:
            s.stop()
        redis.kill()
        redis.wait()
    added = [r - d for r, d in zip(found["relayed"], found["direct"], strict=True)]
    ms = 1000.0
    print(f"round trips: {ns.rounds} each, alternating; joins: {ns.joins} each")
    print(f"{'':28} {'p50 ms':>8} {'p95 ms':>8}")
    for label, values in (
        ("ping direct", found["direct"]),
        ("ping relayed", found["relayed"]),
        ("added per round trip", added),
        ("join direct", found["join_direct"]),
        ("join relayed", found["join_relayed"]),
    ):
        print(f"{label:28} {quantile(values, 0.5) * ms:8.3f} {quantile(values, 0.95) * ms:8.3f}")
    print(f"added one-way (half a round trip), p95: {quantile(added, 0.95) * ms / 2:.3f} ms")
    print(f"mean added per round trip: {statistics.fmean(added) * ms:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
