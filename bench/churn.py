"""Debug aid: the server memory a kind of connection leaves behind. Starts a confserver (as
bench.memprobe with BENCH_SERVER_MODULE=bench.memprobe), runs MODE in waves of CHURN_WAVE
connections at once and prints the server's RSS after each round; asks bench.memprobe for a full
collection (and its garbage report) before the first round and at the end.

    BENCH_SERVER_MODULE=bench.memprobe MEMPROBE_FILE=p.jsonl MEMPROBE_EVERY=3 CHURN_WAVE=15 \
        python -m bench.churn --mode badtoken --rounds 3 --per-round 1000

Modes: refused (a join refused room_full, read until the server closes), refusedq (the same, the
client closing once it has the error, as bench.refused), badtoken (a garbage token), idle (never
joins: closed at the join timeout), halfopen (a ClientHello begun, then silence: closed at
server.header_timeout), tls (a handshake, then close), ws (a WebSocket opened and closed), join
(join and leave).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bench import server as bench_server
from bench.memprobe import collect_file
from bench.refused import _admin, _credentials, _drain, rss_mib
from confserver.tokens import SigningKey, mint_join_token

WAVE = int(os.environ.get("CHURN_WAVE", "15"))


async def one(
    mode: str,
    session: aiohttp.ClientSession,
    url: str,
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    token: Callable[[str], str],
) -> None:
    if mode == "halfopen":  # a TLS ClientHello started, then silence, until the server closes
        r, w = await asyncio.open_connection(host, port)
        w.write(b"\x16\x03\x01\x00")
        await r.read(1024)
        w.close()
        return
    if mode == "tls":
        r, w = await asyncio.open_connection(host, port, ssl=ctx)
        w.close()
        await w.wait_closed()
        return
    async with session.ws_connect(url) as ws:
        if mode == "ws":
            return
        if mode == "idle":  # never joins: the server closes it (4010) after its join timeout
            async for _ in ws:
                pass
            return
        if mode == "badtoken":
            await ws.send_json({"type": "join", "token": "not.a.token", "room": "full"})
        elif mode == "refused":
            await ws.send_json({"type": "join", "token": token("r"), "room": "full"})
        elif mode == "refusedq":  # as bench.refused: the client closes once it has the error
            await ws.send_json({"type": "join", "token": token("r"), "room": "full"})
            await ws.receive_json(timeout=10)
            return
        elif mode == "join":
            await ws.send_json({"type": "join", "token": token("j"), "room": "open"})
            await ws.receive_json(timeout=10)
            await ws.send_json({"type": "leave"})
        async for _ in ws:
            pass


def _ask_collect(pid: int) -> None:
    """bench.memprobe runs a full collection at its next sample and reports the garbage."""
    Path(collect_file(pid)).touch()


async def run(ns: argparse.Namespace) -> None:
    srv = bench_server.start()
    try:
        creds = _credentials(srv.home)
        key = SigningKey.hs256(creds["api_key"], creds["api_secret"])
        ctx = ssl.create_default_context(cafile=creds["cacert"])
        base = f"https://127.0.0.1:{srv.port}"
        url = base + "/ws"
        counter = [0]

        def token(prefix: str) -> str:
            counter[0] += 1
            room = "full" if prefix in ("r", "holder") else "open"
            return mint_join_token(key, room=room, identity=f"{prefix}-{counter[0]}", now=time.time())[0]

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0)) as session:
            admin = {"Authorization": "Bearer " + _admin(creds)}
            for name, cap in (("full", 1), ("open", 100)):
                resp = await session.post(
                    base + "/api/v1/rooms",
                    json={"name": name, "max_participants": cap, "empty_timeout": 3600},
                    headers=admin,
                )
                assert resp.status == 201, await resp.text()
            holder = await session.ws_connect(url)
            await holder.send_json({"type": "join", "token": token("holder"), "room": "full"})
            assert (await holder.receive_json(timeout=10))["type"] == "joined"
            reader = asyncio.create_task(_drain(holder))
            _ask_collect(srv.pid)
            await asyncio.sleep(float(os.environ.get("MEMPROBE_EVERY", "5")) + 2)
            print(f"start rss {rss_mib(srv.pid):.1f}", flush=True)
            for rnd in range(ns.rounds):
                for start in range(0, ns.per_round, WAVE):
                    await asyncio.gather(
                        *(
                            one(ns.mode, session, url, "127.0.0.1", srv.port, ctx, token)
                            for _ in range(min(WAVE, ns.per_round - start))
                        )
                    )
                    if ns.pause:
                        await asyncio.sleep(ns.pause)
                done = (rnd + 1) * ns.per_round
                print(f"round {rnd} ({done} {ns.mode}) rss {rss_mib(srv.pid):.1f}", flush=True)
            await asyncio.sleep(ns.idle)
            print(f"idle rss {rss_mib(srv.pid):.1f}", flush=True)
            _ask_collect(srv.pid)
            await asyncio.sleep(float(os.environ.get("MEMPROBE_EVERY", "5")) + 2)
            print(f"after collect rss {rss_mib(srv.pid):.1f}", flush=True)
            await holder.close()
            await reader
    finally:
        srv.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="refused")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--per-round", type=int, default=500)
    p.add_argument("--idle", type=float, default=3.0)
    p.add_argument("--pause", type=float, default=0.0)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
