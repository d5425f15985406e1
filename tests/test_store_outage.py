"""A Redis outage does not break the seat cap, and a Redis that restarted empty is noticed.

Each test runs its own redis-server, stopped and started again on the same port.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from aiohttp.test_utils import TestClient

from confserver.config import Config
from confserver.signaling.messages import CloseCode
from confserver.store import RedisStore, StoreUnavailableError

from .conftest import (
    AppMaker,
    Ws,
    admin_headers,
    base_config,
    connect,
    create_room,
    free_port,
    join,
    join_token,
    skip_or_fail,
)

pytestmark = pytest.mark.redis

T = TypeVar("T")
LEASE = 1.5
HEARTBEAT = 0.25


@dataclass
class RedisServer:
    """A redis-server of this test's own, which the test stops and starts again."""

    binary: str
    workdir: Path
    port: int
    persist: bool
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--save",
                "",
                *persistence,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if client.ping():
                        return
                except redis.exceptions.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _server(tmp_path: Path, *, persist: bool) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail("redis-server is not installed (apt-get install redis-server)")
        raise AssertionError("unreachable")
    server = RedisServer(binary, tmp_path, free_port(), persist)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _server(tmp_path, persist=True)


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _server(tmp_path, persist=False)


def _config() -> Config:
    cfg = base_config()
    return replace(
        cfg,
        store=replace(cfg.store, kind="redis", seat_lease=LEASE),
        signaling=replace(cfg.signaling, heartbeat_interval=HEARTBEAT, join_timeout=10.0),
        rooms=replace(cfg.rooms, auto_create=True),
    )


@pytest.fixture
async def stores() -> AsyncIterator[list[RedisStore]]:
    """Stores made by a test, closed after its apps stopped."""
    made: list[RedisStore] = []
    yield made
    for store in made:
        await store.close()


async def _node(make_client: AppMaker, stores: list[RedisStore], url: str) -> tuple[TestClient, RedisStore]:
    store = RedisStore.from_url(url, prefix="conf:")
    stores.append(store)
    assert await store.state_intact(time.time()) is True  # what the app does at start
    return await make_client(_config(), app_store=store), store


async def _try_join(client: TestClient, room: str, identity: str) -> tuple[Ws, dict[str, Any]]:
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token(room, identity), "room": room})
    return ws, await ws.recv(timeout=10)


async def _answer(call: Callable[[], Awaitable[T]]) -> T:
    """The store's answer once the connections broken by the restart are replaced (a pooled
    connection fails once after Redis restarted)."""
    for _ in range(8):
        try:
            return await call()
        except StoreUnavailableError:
            await asyncio.sleep(0.05)
    return await call()


@dataclass
class Attendee:
    """A joined client that keeps reading (answering the server's pings) until it is closed."""

    ws: Ws
    sid: str
    reader: asyncio.Task[int | None]

    @classmethod
    def of(cls, ws: Ws, joined: dict[str, Any]) -> Attendee:
        return cls(ws, joined["sid"], asyncio.create_task(ws.closed(timeout=60)))

    def was_told_seat_lost(self) -> bool:
        return any(m.get("code") == "seat_lost" for m in self.ws.seen)


async def test_after_an_outage_longer_than_the_lease_the_room_never_holds_more_than_its_cap(
    make_client: AppMaker, stores: list[RedisStore], persistent_redis: RedisServer
) -> None:
    node_a, store_a = await _node(make_client, stores, persistent_redis.url)
    node_b, _ = await _node(make_client, stores, persistent_redis.url)
    await create_room(node_a, "council", max_participants=3)
    attendees = [Attendee.of(*await join(node_a, "council", f"early-{i}")) for i in range(3)]

    persistent_redis.kill()
    during = [await _try_join(node_b, "council", f"during-{i}") for i in range(2)]
    assert [msg.get("code") for _, msg in during] == ["store_unavailable"] * 2
    await asyncio.sleep(LEASE + 2 * HEARTBEAT)  # every seat's lease lapses while Redis is down
    persistent_redis.start()  # with its data (appendonly): the seats are there, lapsed

    after = await asyncio.gather(*(_try_join(node_b, "council", f"after-{i}") for i in range(4)))
    attendees += [Attendee.of(ws, msg) for ws, msg in after if msg["type"] == "joined"]
    seats_seen: list[int] = []
    for _ in range(int(3 * LEASE / HEARTBEAT)):  # a few lease refreshes of both nodes
        seats_seen.append(await store_a.seats.count("council", time.time()))
        await asyncio.sleep(HEARTBEAT)

    assert max(seats_seen) <= 3, seats_seen
    held = {p.sid for p in await store_a.seats.list("council", time.time())}
    assert len(held) == 3
    connected = {a.sid for a in attendees if not a.reader.done()}
    assert connected == held  # everyone still connected holds a seat; the room holds 3 people
    for a in attendees:
        if a.sid not in held:
            assert await a.reader == CloseCode.SEAT_LOST
            assert a.was_told_seat_lost()
    for ws, _ in [*during, *after]:
        await ws.close()
    for a in attendees:
        await a.ws.close()
        await a.reader


async def test_seats_are_taken_again_after_an_outage_when_nobody_took_them(
    make_client: AppMaker, stores: list[RedisStore], persistent_redis: RedisServer
) -> None:
    node, store = await _node(make_client, stores, persistent_redis.url)
    await create_room(node, "council", max_participants=3)
    attendees = [Attendee.of(*await join(node, "council", f"early-{i}")) for i in range(3)]
    persistent_redis.kill()
    await asyncio.sleep(LEASE + 2 * HEARTBEAT)
    persistent_redis.start()
    await asyncio.sleep(4 * HEARTBEAT)
    held = {p.sid for p in await store.seats.list("council", time.time())}
    assert held == {a.sid for a in attendees}
    assert not any(a.reader.done() for a in attendees)
    late, refused = await _try_join(node, "council", "late")
    assert refused["code"] == "room_full"
    await late.close()
    for a in attendees:
        await a.ws.close()
        await a.reader


async def test_redis_restarted_empty_is_detected_and_known_rooms_are_not_recreated_with_defaults(
    make_client: AppMaker, stores: list[RedisStore], volatile_redis: RedisServer
) -> None:
    node, store = await _node(make_client, stores, volatile_redis.url)
    await create_room(node, "council", max_participants=3)
    seated = Attendee.of(*await join(node, "council", "chair"))
    revoked = join_token("council", "leaked", jti="leaked-token-0001")
    resp = await node.post("/api/v1/tokens/leaked-token-0001/revoke", headers=admin_headers())
    assert resp.status == 200

    volatile_redis.kill()
    volatile_redis.start()  # no persistence: everything is gone

    # the connected participant's seat and room are gone: closed rather than left seatless
    assert await asyncio.wait_for(seated.reader, 8 * HEARTBEAT) == CloseCode.SEAT_LOST
    assert seated.was_told_seat_lost()
    assert await _answer(lambda: store.state_intact(time.time())) is False
    ready = await node.get("/readyz")
    assert (ready.status, (await ready.json())["store"]) == (503, "state_lost")
    # a join does not re-create the 3-seat room with the defaults (100 seats)
    ws, msg = await _try_join(node, "council", "newcomer")
    assert msg.get("code") == "room_not_found", msg
    assert await _answer(lambda: store.rooms.get("council")) is None
    # the revoked token stays revoked on the node that revoked it
    ws2 = await connect(node)
    await ws2.send({"type": "join", "token": revoked, "room": "council"})
    msg2 = await ws2.recv()
    assert (msg2["code"], msg2.get("reason")) == ("token_rejected", "revoked")
    for w in (ws, ws2, seated.ws):
        await w.close()
