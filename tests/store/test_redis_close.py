"""Closing a RedisStore never hangs a stopping server."""

from __future__ import annotations

import asyncio
import time

import pytest

from confserver.store import RedisStore
from confserver.store import redis as redis_store


async def test_a_close_that_hangs_is_abandoned_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0", prefix="t:")  # never connected

    async def stuck() -> None:
        await asyncio.Event().wait()  # as redis-py waiting for a socket that never closes

    monkeypatch.setattr(store, "_close", stuck)
    monkeypatch.setattr(redis_store, "CLOSE_TIMEOUT", 0.2)
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 2
    assert "abandoned" in caplog.text
