"""Two server nodes share one real redis-server: the seat cap holds across both."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from confserver.store import RedisStore

from .conftest import AppMaker, base_config, connect, create_room, join, join_token

pytestmark = pytest.mark.redis


@pytest.fixture
async def shared_redis(redis_url: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    prefix = f"nodes:{uuid.uuid4().hex}:"
    a = RedisStore.from_url(redis_url, prefix=prefix)
    b = RedisStore.from_url(redis_url, prefix=prefix)
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
async def nodes(
    make_client: AppMaker, shared_redis: tuple[RedisStore, RedisStore]
) -> AsyncIterator[tuple[TestClient, TestClient]]:
    """Two server nodes on the shared Redis; stopped before their stores are closed (a node's
    background work must not meet a closed connection pool). The joins come from one address
    here, from many in life: the cap on unjoined connections per address is lifted."""
    cfg = base_config()
    cfg = replace(cfg, signaling=replace(cfg.signaling, max_unjoined_per_address=cfg.signaling.max_unjoined))
    node_a = await make_client(cfg, app_store=shared_redis[0])
    node_b = await make_client(cfg, app_store=shared_redis[1])
    yield node_a, node_b
    await node_a.close()
    await node_b.close()


async def _attempt(client: TestClient, room: str, identity: str) -> str:
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token(room, identity), "room": room})
    msg = await ws.recv()
    return "joined" if msg["type"] == "joined" else str(msg["code"])


async def test_concurrent_joins_on_two_nodes_admit_exactly_the_free_seats(
    nodes: tuple[TestClient, TestClient], shared_redis: tuple[RedisStore, RedisStore]
) -> None:
    node_a, node_b = nodes
    await create_room(node_a, "council", max_participants=10)
    await join(node_b, "council", "early")
    results = await asyncio.gather(
        *(_attempt(node_a if i % 2 else node_b, "council", f"p{i}") for i in range(40))
    )
    assert results.count("joined") == 9
    assert results.count("room_full") == 31
    assert await shared_redis[1].seats.count("council", time.time()) == 10


async def test_101st_join_is_refused_with_room_full_on_redis(nodes: tuple[TestClient, TestClient]) -> None:
    client = nodes[0]
    await create_room(client, "plenary")
    results = await asyncio.gather(*(_attempt(client, "plenary", f"p{i}") for i in range(101)))
    assert sorted(set(results)) == ["joined", "room_full"], results
    assert results.count("joined") == 100
    assert results.count("room_full") == 1


async def test_room_created_on_one_node_is_seen_by_the_other(nodes: tuple[TestClient, TestClient]) -> None:
    from .conftest import admin_headers

    node_a, node_b = nodes
    await create_room(node_a, "shared", metadata={"floor": 3})
    resp = await node_b.get("/api/v1/rooms/shared", headers=admin_headers())
    assert resp.status == 200
    assert (await resp.json())["metadata"] == {"floor": 3}
