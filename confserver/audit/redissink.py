"""The audit chain in Redis, shared by every node: ``audit:log`` (a list, oldest first),
``audit:head`` (``SEQ:HASH`` of the newest entry) and ``audit:signed`` (the newest checkpoint),
under the store's prefix. A batch is appended by one script that first checks the head, so two
nodes never both extend the same entry: the loser seals its batch again on the new head."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio

from .chain import GENESIS
from .record import timestamp
from .sinks import Head

_APPEND = """
local head = redis.call('GET', KEYS[2]) or ARGV[1]
if head ~= ARGV[2] then return head end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('SET', KEYS[2], ARGV[3])
return ''
"""
_TRIM = """
if redis.call('LINDEX', KEYS[1], tonumber(ARGV[1]) - 1) ~= ARGV[2] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[1]), -1)
return 1
"""
_PAGE = 1000


def _head_text(head: Head) -> str:
    return f"{head[0]}:{head[1]}"


def _parse_head(text: str) -> Head:
    seq, _, digest = text.partition(":")
    return int(seq), digest


class RedisSink:
    """Durability is Redis's own (``appendonly`` with ``appendfsync everysec`` is what DEPLOY.md
    configures); ``sync`` has nothing to add."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = "conf:", owned: bool = False) -> None:
        self._client = client
        self._owned = owned
        self._log_key = f"{prefix}audit:log"
        self._head_key = f"{prefix}audit:head"
        self._signed_key = f"{prefix}audit:signed"
        self._append = client.register_script(_APPEND)
        self._trim = client.register_script(_TRIM)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "conf:") -> RedisSink:
        """A sink on its own small connection pool (audit writes never wait behind joins)."""
        client = redis.asyncio.Redis.from_url(
            url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2, max_connections=4
        )
        return cls(client, prefix=prefix, owned=True)

    async def open(self) -> Head:
        text = await self._client.get(self._head_key)
        return _parse_head(str(text)) if text else (0, GENESIS)

    async def append(self, lines: Sequence[bytes], expect: Head, new_head: Head) -> Head | None:
        found = await self._append(
            keys=[self._log_key, self._head_key],
            args=[_head_text((0, GENESIS)), _head_text(expect), _head_text(new_head), *lines],
        )
        return None if not found else _parse_head(str(found))

    async def sync(self) -> None:
        return None

    async def set_signed_head(self, checkpoint: dict[str, Any]) -> None:
        # Only ever forward: a slower node must not put back an older head.
        current = await self.signed_head()
        if current is None or current["event"]["sequence"] < checkpoint["event"]["sequence"]:
            await self._client.set(self._signed_key, json.dumps(checkpoint, sort_keys=True))

    async def signed_head(self) -> dict[str, Any] | None:
        text = await self._client.get(self._signed_key)
        if not text:
            return None
        head: dict[str, Any] = json.loads(text)
        return head

    async def lines(self) -> AsyncIterator[bytes]:
        start = 0
        while True:
            page = await self._client.lrange(self._log_key, start, start + _PAGE - 1)
            for line in page:
                yield line.encode("ascii") if isinstance(line, str) else line
            if len(page) < _PAGE:
                return
            start += len(page)

    async def remove_before(self, cutoff: float) -> int | None:
        limit = timestamp(cutoff)
        page = await self._client.lrange(self._log_key, 0, _PAGE - 1)
        old = 0
        for line in page[:-1]:  # the newest entry always stays
            if json.loads(line)["@timestamp"] >= limit:
                break
            old += 1
        if not old or not await self._trim(keys=[self._log_key], args=[old, page[old - 1]]):
            return None
        seq: int = json.loads(page[old])["event"]["sequence"]
        return seq

    async def close(self) -> None:
        if self._owned:
            await self._client.aclose()
