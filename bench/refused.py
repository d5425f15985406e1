"""Server memory after many refused joins: a refused join must leave nothing behind.

Starts a real confserver, fills a one-seat room, then opens N signaling connections that each try
to join it and are refused (``room_full``), in waves of 50 at once. Reports the server's RSS (from
/proc) before and after, and per refused join.

    python -m bench.refused --joins 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import server as bench_server
from confserver.tokens import SigningKey, mint_join_token

WAVE = 50


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _credentials(home: Path) -> dict[str, Any]:
    path = home / ".local/state/confserver/credentials.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def _refused_join(session: aiohttp.ClientSession, url: str, token: str) -> str:
    async with session.ws_connect(url) as ws:
        await ws.send_json({"type": "join", "token": token, "room": "full"})
        msg = await ws.receive_json(timeout=10)
        return str(msg.get("code") or msg.get("type"))


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _msg in ws:
        pass


async def run(joins: int) -> dict[str, Any]:
    srv = bench_server.start()
    try:
        creds = _credentials(srv.home)
        key = SigningKey.hs256(creds["api_key"], creds["api_secret"])
        ctx = ssl.create_default_context(cafile=creds["cacert"])
        base = f"https://127.0.0.1:{srv.port}"
        url = base + "/ws"

        def token(identity: str) -> str:
            return mint_join_token(key, room="full", identity=identity, now=time.time())[0]

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0)) as session:
            admin = {"Authorization": "Bearer " + _admin(creds)}
            resp = await session.post(
                base + "/api/v1/rooms", json={"name": "full", "max_participants": 1}, headers=admin
            )
            if resp.status != 201:
                raise RuntimeError(f"room create: {resp.status} {await resp.text()}")
            holder = await session.ws_connect(url)
            await holder.send_json({"type": "join", "token": token("holder"), "room": "full"})
            if (await holder.receive_json(timeout=10))["type"] != "joined":
                raise RuntimeError("the seat holder was not admitted")
            # the holder reads on, so that it answers the server's pings and keeps its seat
            reader = asyncio.create_task(_drain(holder))
            for i in range(WAVE):  # warm up: the first refusals build caches that stay
                await _refused_join(session, url, token(f"warm-{i}"))
            await asyncio.sleep(1.0)
            before = rss_mib(srv.pid)
            codes: dict[str, int] = {}
            started = time.monotonic()
            for start in range(0, joins, WAVE):
                wave = [
                    _refused_join(session, url, token(f"r-{n}"))
                    for n in range(start, min(joins, start + WAVE))
                ]
                for code in await asyncio.gather(*wave):
                    codes[code] = codes.get(code, 0) + 1
            elapsed = time.monotonic() - started
            await asyncio.sleep(2.0)
            after = rss_mib(srv.pid)
            await holder.close()
            await reader
        return {
            "joins": joins,
            "codes": codes,
            "seconds": round(elapsed, 1),
            "rss_before_mib": round(before, 1),
            "rss_after_mib": round(after, 1),
            "growth_mib": round(after - before, 1),
            "kib_per_refused_join": round((after - before) * 1024 / joins, 2),
        }
    finally:
        srv.stop()


def _admin(creds: dict[str, Any]) -> str:
    from confserver.tokens import mint_admin_token

    return mint_admin_token(creds["api_key"], creds["api_secret"], now=time.time())


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.refused", description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.joins))
    if args.json:
        print(json.dumps(result))
        return
    print(f"refused joins       {result['joins']} in {result['seconds']} s: {result['codes']}")
    print(f"server RSS          {result['rss_before_mib']} MiB -> {result['rss_after_mib']} MiB")
    print(
        f"growth              {result['growth_mib']} MiB"
        f" ({result['kib_per_refused_join']} KiB per refused join)"
    )


if __name__ == "__main__":
    main()
