"""Where nodes and room ownership are kept: in Redis for several nodes, in memory for one.

Each node writes its record (``NodeInfo``) with a time to live and renews it every third of it; a
node whose record lapsed is dead. A room is owned by one node: the first node to claim it (an
atomic step) gets a fencing token, a number that only grows; a claim on a room whose owner is dead
takes it over with a new token. An owner checks its claim at every heartbeat, so a node that was
thought dead and comes back learns that it lost the room before it acts on it again.

Redis keys (under ``prefix``): ``node:ID`` (JSON NodeInfo, with the TTL), ``nodes`` (ZSET id -> last
heartbeat, to list dead nodes for a while), ``drain:ID`` (set by an admin; a node clears its own at
start), ``owner:ROOM`` (hash ``node``, ``token``), ``fence`` (the token counter).
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import redis.asyncio
import redis.exceptions

from ..store import StoreUnavailableError
from .pulse import Pulse

DEAD_LISTED = 3600.0
"""Seconds a dead node stays in the listing."""


@dataclass(frozen=True)
class NodeInfo:
    id: str
    url: str
    """Where other nodes reach this one: ``https://host:port`` (``http`` with TLS off)."""
    fingerprint: str = ""
    """SHA-256 of the node's TLS certificate (hex), which the other nodes pin; empty with TLS off."""
    media: str = ""
    """The UDP ports it offers media on, as its banner says."""
    rooms: int = 0
    participants: int = 0
    load: float = 0.0
    """CPU of the node's processes over the last heartbeat, in cores."""
    draining: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeInfo | None:
        try:
            raw = json.loads(text)
            return cls(
                id=str(raw["id"]),
                url=str(raw["url"]),
                fingerprint=str(raw.get("fingerprint", "")),
                media=str(raw.get("media", "")),
                rooms=int(raw.get("rooms", 0)),
                participants=int(raw.get("participants", 0)),
                load=float(raw.get("load", 0.0)),
                draining=bool(raw.get("draining", False)),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Listed:
    """A node as the listing shows it: its last record and whether its heartbeat is alive."""

    info: NodeInfo
    alive: bool
    seen_at: float
    draining: bool = False
    """An admin asked it to drain (its own record says so only from its next heartbeat)."""

    @property
    def state(self) -> str:
        if not self.alive:
            return "dead"
        return "draining" if self.draining or self.info.draining else "active"


class Outcome(enum.Enum):
    MINE = "mine"
    """This node owned the room already."""
    CLAIMED = "claimed"
    """Nobody owned it: this node does now."""
    TAKEN_OVER = "taken_over"
    """Its owner was dead: this node owns it now (the dead node's seats are to be freed)."""
    ELSEWHERE = "elsewhere"
    """A live node owns it."""
    UNOWNED = "unowned"
    """Nobody (alive) owns it and this node may not claim it (draining)."""
    OWNER_SILENT = "owner_silent"
    """Its owner's record lapsed, but this node may not take it over yet: it has not itself seen
    the registry healthy for a whole ``node_ttl`` (after a Redis outage every record lapses, live
    nodes' too, until their next heartbeat)."""


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    node: str
    """The owner after the call ('' when unowned); with TAKEN_OVER, the dead previous owner."""
    token: int


class Registry(Protocol):
    shared: bool
    """Whether other nodes see it (Redis); with ``False`` this node is alone and relays nothing."""

    async def heartbeat(self, info: NodeInfo, ttl: float) -> bool:
        """Write this node's record for ``ttl`` seconds; ``True`` when an admin asked it to drain."""

    async def set_drain(self, node: str, draining: bool) -> bool:
        """Ask a node to drain (or stop); ``False`` when no such node is listed."""

    async def clear_drain(self, node: str) -> None: ...

    async def nodes(self) -> list[Listed]:
        """Live nodes and the recently dead, by id."""

    async def node(self, node: str) -> NodeInfo | None:
        """The live node's record; ``None`` when it is dead or unknown."""

    async def claim(self, room: str, node: str, *, may_claim: bool, may_take_over: bool = True) -> Claim: ...

    async def release(self, room: str, node: str, token: int) -> bool:
        """Give up a room this node owns with ``token``; ``False`` if it owns it no more."""

    async def close(self) -> None: ...


class MemoryRegistry:
    """One node, in this process: the claims always succeed; drain works as with Redis."""

    shared = False

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._nodes: dict[str, tuple[NodeInfo, float, float]] = {}
        self._drain: set[str] = set()
        self._owners: dict[str, tuple[str, int]] = {}
        self._fence = 0

    def _alive(self, node: str) -> bool:
        entry = self._nodes.get(node)
        return entry is not None and entry[1] > self._clock()

    async def heartbeat(self, info: NodeInfo, ttl: float) -> bool:
        now = self._clock()
        self._nodes[info.id] = (info, now + ttl, now)
        return info.id in self._drain

    async def set_drain(self, node: str, draining: bool) -> bool:
        if node not in self._nodes:
            return False
        if draining:
            self._drain.add(node)
        else:
            self._drain.discard(node)
        return True

    async def clear_drain(self, node: str) -> None:
        self._drain.discard(node)

    async def nodes(self) -> list[Listed]:
        return [
            Listed(info, self._alive(nid), seen, nid in self._drain)
            for nid, (info, _, seen) in sorted(self._nodes.items())
        ]

    async def node(self, node: str) -> NodeInfo | None:
        return self._nodes[node][0] if self._alive(node) else None

    async def claim(self, room: str, node: str, *, may_claim: bool, may_take_over: bool = True) -> Claim:
        owner = self._owners.get(room)
        if owner is not None and owner[0] == node:
            return Claim(Outcome.MINE, node, owner[1])
        if owner is not None and self._alive(owner[0]):
            return Claim(Outcome.ELSEWHERE, owner[0], owner[1])
        if not may_claim:
            return Claim(Outcome.UNOWNED, "", 0)
        if owner is not None and not may_take_over:
            return Claim(Outcome.OWNER_SILENT, owner[0], owner[1])
        self._fence += 1
        self._owners[room] = (node, self._fence)
        if owner is not None:
            return Claim(Outcome.TAKEN_OVER, owner[0], self._fence)
        return Claim(Outcome.CLAIMED, node, self._fence)

    async def release(self, room: str, node: str, token: int) -> bool:
        if self._owners.get(room) != (node, token):
            return False
        del self._owners[room]
        return True

    async def close(self) -> None:
        return None


# KEYS: owner key, fence key. ARGV: node, may claim ('1'/'0'), node key prefix, may take over
_CLAIM = """
local owner = redis.call('HGET', KEYS[1], 'node')
local token = tonumber(redis.call('HGET', KEYS[1], 'token') or '0')
if owner == ARGV[1] then return {'mine', owner, token} end
if owner and redis.call('EXISTS', ARGV[3] .. owner) == 1 then return {'elsewhere', owner, token} end
if ARGV[2] ~= '1' then return {'unowned', '', 0} end
if owner and ARGV[4] ~= '1' then return {'owner_silent', owner, token} end
local fresh = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'token', fresh)
if owner then return {'taken_over', owner, fresh} end
return {'claimed', ARGV[1], fresh}
"""

# KEYS: owner key. ARGV: node, token
_RELEASE = """
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  redis.call('DEL', KEYS[1]); return 1
end
return 0
"""


class RedisRegistry:
    shared = True

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = "conf:", url: str = "") -> None:
        self._client = client
        self._p = prefix + "cluster:"
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._url = url
        self._pulse: Pulse | None = None
        """Renews this node's record from a thread (made at the first heartbeat, given a URL)."""

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "conf:") -> RedisRegistry:
        """A join storm waits up to 5 s for one of 32 connections rather than failing."""
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=32, timeout=5, socket_timeout=5, socket_connect_timeout=2
        )
        return cls(redis.asyncio.Redis(connection_pool=pool), prefix=prefix, url=url)

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            raise StoreUnavailableError(str(e)) from None

    async def heartbeat(self, info: NodeInfo, ttl: float) -> bool:
        if self._url and self._pulse is None:
            self._pulse = Pulse(self._url, self._p + "node:" + info.id, ttl)
        if self._pulse is not None:
            self._pulse.beat(info.to_json())
        pipe = self._client.pipeline(transaction=False)
        pipe.set(self._p + "node:" + info.id, info.to_json(), px=int(ttl * 1000))
        pipe.zadd(self._p + "nodes", {info.id: time.time()})
        pipe.zremrangebyscore(self._p + "nodes", "-inf", time.time() - DEAD_LISTED)
        pipe.exists(self._p + "drain:" + info.id)
        done = await self._call(pipe.execute())
        return bool(done[-1])

    async def set_drain(self, node: str, draining: bool) -> bool:
        if await self._call(self._client.zscore(self._p + "nodes", node)) is None:
            return False
        key = self._p + "drain:" + node
        await self._call(self._client.set(key, "1") if draining else self._client.delete(key))
        return True

    async def clear_drain(self, node: str) -> None:
        await self._call(self._client.delete(self._p + "drain:" + node))

    async def nodes(self) -> list[Listed]:
        members = await self._call(self._client.zrange(self._p + "nodes", 0, -1, withscores=True))
        if not members:
            return []
        ids = [m.decode() if isinstance(m, bytes) else str(m) for m, _ in members]
        keys = [self._p + "node:" + i for i in ids] + [self._p + "drain:" + i for i in ids]
        found = await self._call(self._client.mget(keys))
        records, drains = found[: len(ids)], found[len(ids) :]
        listed = []
        for nid, (_, seen), record, drain in zip(ids, members, records, drains, strict=True):
            info = NodeInfo.from_json(record) if record is not None else None
            listed.append(
                Listed(info or NodeInfo(id=nid, url=""), info is not None, float(seen), drain is not None)
            )
        return sorted(listed, key=lambda n: n.info.id)

    async def node(self, node: str) -> NodeInfo | None:
        record = await self._call(self._client.get(self._p + "node:" + node))
        return NodeInfo.from_json(record) if record is not None else None

    async def claim(self, room: str, node: str, *, may_claim: bool, may_take_over: bool = True) -> Claim:
        keys = [self._p + "owner:" + room, self._p + "fence"]
        args = [node, "1" if may_claim else "0", self._p + "node:", "1" if may_take_over else "0"]
        outcome, owner, token = await self._call(self._claim(keys=keys, args=args))
        text = owner.decode() if isinstance(owner, bytes) else str(owner)
        name = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        return Claim(Outcome(name), text, int(token))

    async def release(self, room: str, node: str, token: int) -> bool:
        done = await self._call(self._release(keys=[self._p + "owner:" + room], args=[node, str(token)]))
        return bool(done)

    async def close(self) -> None:
        if self._pulse is not None:
            await asyncio.to_thread(self._pulse.stop)
        await self._client.aclose()
