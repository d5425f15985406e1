"""The node registry and room ownership, the same contract in memory and on a real redis-server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from confserver.cluster.registry import MemoryRegistry, NodeInfo, Outcome, RedisRegistry, Registry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Registry, Any]]:
    """A registry and a way to make a node's heartbeat lapse."""
    if request.param == "memory":
        clock = Clock()
        reg = MemoryRegistry(clock=clock)

        async def lapse(node: str) -> None:
            clock.now += 100

        yield reg, lapse
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"t{secrets.token_hex(4)}:"
    redis_reg = RedisRegistry.from_url(url, prefix=prefix)

    async def lapse_redis(node: str) -> None:
        await redis_reg._client.delete(f"{prefix}cluster:node:{node}")

    yield redis_reg, lapse_redis
    await redis_reg.close()


def node(nid: str, **kw: Any) -> NodeInfo:
    return NodeInfo(id=nid, url=f"http://127.0.0.1:{9000 + len(nid)}", **kw)


async def test_the_first_claim_owns_the_room_and_others_see_it(env: tuple[Registry, Any]) -> None:
    reg, _ = env
    await reg.heartbeat(node("a"), 30)
    await reg.heartbeat(node("b"), 30)
    first = await reg.claim("r", "a", may_claim=True)
    assert first.outcome is Outcome.CLAIMED and first.token > 0
    again = await reg.claim("r", "a", may_claim=True)
    assert (again.outcome, again.token) == (Outcome.MINE, first.token)
    other = await reg.claim("r", "b", may_claim=True)
    assert (other.outcome, other.node) == (Outcome.ELSEWHERE, "a")


async def test_a_dead_owners_room_is_taken_over_with_a_greater_token(env: tuple[Registry, Any]) -> None:
    reg, lapse = env
    await reg.heartbeat(node("a"), 30)
    first = await reg.claim("r", "a", may_claim=True)
    await lapse("a")
    await reg.heartbeat(node("b"), 30)
    taken = await reg.claim("r", "b", may_claim=True)
    assert taken.outcome is Outcome.TAKEN_OVER
    assert taken.node == "a"  # the dead owner, whose seats are to be freed
    assert taken.token > first.token
    # the old owner, back, learns it lost the room
    await reg.heartbeat(node("a"), 30)
    assert (await reg.claim("r", "a", may_claim=True)).outcome is Outcome.ELSEWHERE
    # and cannot give up what it no longer owns
    assert not await reg.release("r", "a", first.token)


async def test_a_draining_node_claims_nothing(env: tuple[Registry, Any]) -> None:
    reg, _ = env
    await reg.heartbeat(node("a"), 30)
    assert (await reg.claim("r", "a", may_claim=False)).outcome is Outcome.UNOWNED
    assert (await reg.claim("r", "a", may_claim=True)).outcome is Outcome.CLAIMED


async def test_release_needs_the_current_token(env: tuple[Registry, Any]) -> None:
    reg, _ = env
    await reg.heartbeat(node("a"), 30)
    claim = await reg.claim("r", "a", may_claim=True)
    assert not await reg.release("r", "a", claim.token + 1)
    assert not await reg.release("r", "b", claim.token)
    assert await reg.release("r", "a", claim.token)
    assert (await reg.claim("r", "b", may_claim=True)).outcome is Outcome.CLAIMED


async def test_drain_is_set_by_anyone_and_read_by_the_node(env: tuple[Registry, Any]) -> None:
    reg, lapse = env
    assert not await reg.set_drain("nobody", True)
    assert not await reg.heartbeat(node("a"), 30)
    assert await reg.set_drain("a", True)
    assert await reg.heartbeat(node("a", draining=True), 30)
    states = {n.info.id: n.state for n in await reg.nodes()}
    assert states == {"a": "draining"}
    await reg.clear_drain("a")
    assert not await reg.heartbeat(node("a"), 30)
    await lapse("a")
    assert [(n.info.id, n.state) for n in await reg.nodes()] == [("a", "dead")]
    assert await reg.node("a") is None


async def test_concurrent_claims_from_many_nodes_give_one_owner(env: tuple[Registry, Any]) -> None:
    reg, _ = env
    ids = [f"n{i}" for i in range(8)]
    for nid in ids:
        await reg.heartbeat(node(nid), 30)
    claims = await asyncio.gather(*(reg.claim("r", nid, may_claim=True) for nid in ids for _ in range(5)))
    owners = {c.node for c in claims if c.outcome in (Outcome.CLAIMED, Outcome.MINE)}
    assert len(owners) == 1
    assert sum(c.outcome is Outcome.CLAIMED for c in claims) == 1
    assert all(c.node in owners for c in claims)


def test_node_records_read_back_and_garbage_is_refused() -> None:
    info = NodeInfo(
        id="a",
        url="https://h:1",
        fingerprint="ab",
        media="UDP port 1",
        rooms=2,
        participants=3,
        load=0.5,
        draining=True,
    )
    assert NodeInfo.from_json(info.to_json()) == info
    for bad in ("", "[]", "{}", '{"id": "a"}', "not json", '{"id":"a","url":"u","rooms":"x"}'):
        assert NodeInfo.from_json(bad) is None
