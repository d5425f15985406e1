"""A connection that ends leaves no reference cycle for the full collection to find.

The server runs with a high ``server.gc_threshold``, so full collections are rare: a connection
whose objects reach the collector's oldest generation and only then become cyclic garbage stays in
memory until the next one, for minutes to hours. Two such cycles made a long soak's memory grow
(bench/HISTORY.md, "The soak's memory"): a closed WebSocket whose heartbeat aiohttp re-armed when
the client answered the server's Close frame (keeping the whole connection alive for 15 s), and a
TLS handshake that timed out (its exception's traceback holding the TLS protocol and its 256 KiB
read buffer)."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import gc
import ssl
from dataclasses import replace
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from confserver.devcerts import ensure_dev_certs, ssl_context
from confserver.listener import ConnectionCaps, GuardedSite, ListenerMetrics
from confserver.signaling.session import Session
from confserver.signaling.websocket import WsPeer, _WebSocketResponse

from .conftest import AppMaker, base_config, connect, create_room, join, join_token


def _timers_of_closed_websockets() -> list[asyncio.TimerHandle]:
    """Timers still scheduled on the loop for a WebSocket response that has closed."""
    loop = asyncio.get_running_loop()
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    out = []
    for handle in scheduled:
        owner = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
        if not handle.cancelled() and isinstance(owner, web.WebSocketResponse) and owner.closed:
            out.append(handle)
    return out


async def test_a_refused_join_leaves_no_heartbeat_armed(make_client: AppMaker) -> None:
    cfg = base_config()
    client = await make_client(replace(cfg, rooms=replace(cfg.rooms, auto_create=False)))
    await create_room(client, "full", max_participants=1)
    inside, _ = await join(client, "full", "inside")
    for i in range(5):
        ws = await connect(client)
        await ws.send({"type": "join", "token": join_token("full", f"p{i}"), "room": "full"})
        assert (await ws.recv())["code"] == "room_full"
        assert await ws.closed() == 4000  # the client answers the server's Close frame
    await asyncio.sleep(0.2)  # the server's handlers finish
    assert _timers_of_closed_websockets() == []
    await inside.close()


async def test_the_websocket_keeps_its_heartbeat_while_open(make_client: AppMaker) -> None:
    client = await make_client()
    inside, _ = await join(client, "open", "inside")
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    live = [h for h in scheduled if not h.cancelled()]
    owners = [getattr(h._callback, "__self__", None) for h in live]  # type: ignore[attr-defined]
    heartbeats = [o for o in owners if isinstance(o, _WebSocketResponse)]
    assert heartbeats  # the live connection is still pinged
    await inside.close()


async def test_a_timed_out_tls_handshake_is_freed_without_the_collector(tmp_path: Path) -> None:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = GuardedSite(
        runner,
        "127.0.0.1",
        0,
        caps=ConnectionCaps(100, 100),
        metrics=ListenerMetrics.create(CollectorRegistry()),
        header_timeout=0.3,
        ssl_context=ssl_context(ensure_dev_certs(tmp_path / "certs")),
    )
    await site.start()
    gc.collect()
    gc.disable()  # what is still alive at the end was not freed by reference counting
    try:
        streams = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(3)]
        for _, writer in streams:
            writer.write(b"\x16\x03\x01\x00")  # a ClientHello begun, then silence
        for reader, writer in streams:
            assert await asyncio.wait_for(reader.read(1024), 5) == b""  # closed at the deadline
            writer.close()
        await asyncio.sleep(0.1)
        tls_kinds = (asyncio.sslproto.SSLProtocol, ssl.SSLObject)
        alive = [o for o in gc.get_objects() if isinstance(o, tls_kinds)]
        assert alive == []
    finally:
        gc.enable()
        await runner.cleanup()


async def test_a_connection_the_server_closed_is_freed_without_the_collector(make_client: AppMaker) -> None:
    cfg = base_config()
    client = await make_client(
        replace(
            cfg,
            rooms=replace(cfg.rooms, auto_create=False),
            signaling=replace(cfg.signaling, join_timeout=0.3),
        )
    )
    await create_room(client, "full", max_participants=1)
    inside, _ = await join(client, "full", "inside")

    def alive() -> tuple[int, int, int]:
        objs = gc.get_objects()
        return (
            sum(isinstance(o, WsPeer) for o in objs),
            sum(isinstance(o, Session) for o in objs),
            sum(isinstance(o, web.WebSocketResponse) for o in objs),
        )

    gc.collect()
    before = alive()
    gc.disable()  # what is still alive at the end was not freed by reference counting
    try:
        for i in range(3):
            idle = await connect(client)
            assert await idle.closed() == 4010  # the join timeout
            refused = await connect(client)
            await refused.send({"type": "join", "token": join_token("full", f"p{i}"), "room": "full"})
            assert await refused.closed() == 4000
        await asyncio.sleep(0.3)  # the server's handlers finish
        assert alive() == before
    finally:
        gc.enable()
    await inside.close()
