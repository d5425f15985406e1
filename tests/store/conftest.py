"""Fixtures: a ``store`` of each implementation; Redis runs as a real server on loopback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from confserver.store import MemoryStore, RedisStore, Store

NOW = 1_700_000_000.0


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url: str = request.getfixturevalue("redis_url")
    impl = RedisStore.from_url(url, prefix=f"test:{uuid.uuid4().hex}:")
    try:
        yield impl
    finally:
        flusher = redis.Redis.from_url(url)
        try:
            flusher.flushdb()
        finally:
            flusher.close()
        await impl.close()
