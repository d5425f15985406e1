"""Every answer of the server carries the pages' security headers, errors included, and its
``Server`` header names no versions."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from confserver.store import MemoryStore

from .conftest import AppMaker, admin_headers


class BrokenStore(MemoryStore):
    """A store that fails in an unexpected way: the server answers 500."""

    async def ping(self) -> bool:
        raise RuntimeError("disk on fire")


def _assert_secure(resp: Any) -> None:
    h = resp.headers
    csp = h.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, (resp.status, dict(h))
    assert h.get("X-Content-Type-Options") == "nosniff", (resp.status, dict(h))
    assert h.get("Referrer-Policy") == "no-referrer", (resp.status, dict(h))
    assert h.get("Server") == "confserver", (resp.status, h.get("Server"))


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/r/board", 200),
        ("GET", "/static/protocol.js", 200),
        ("GET", "/api/v1/rooms/nowhere", 404),
        ("GET", "/nothing/here", 404),
        ("GET", "/r/bad%20name", 404),
        ("GET", "/static/missing.js", 404),
        ("POST", "/r/board", 405),
        ("PUT", "/api/v1/rooms", 405),
        ("GET", "/healthz", 200),
    ],
)
async def test_every_answer_carries_the_security_headers(
    client: TestClient, method: str, path: str, status: int
) -> None:
    resp = await client.request(method, path, headers=admin_headers())
    assert resp.status == status
    _assert_secure(resp)


async def test_an_api_answer_is_not_cached(client: TestClient) -> None:
    resp = await client.get("/api/v1/rooms", headers=admin_headers())
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    _assert_secure(resp)


async def test_an_internal_error_carries_the_security_headers(make_client: AppMaker) -> None:
    client = await make_client(app_store=BrokenStore())
    resp = await client.get("/readyz")
    assert resp.status == 500
    _assert_secure(resp)


async def test_an_unauthenticated_api_call_carries_the_security_headers(client: TestClient) -> None:
    resp = await client.get("/api/v1/rooms")
    assert resp.status == 401
    _assert_secure(resp)
