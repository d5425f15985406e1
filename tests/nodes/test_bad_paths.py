"""Garbage in the paths of the node routes and of the calls forwarded to a room's node."""

from __future__ import annotations

import pytest

from ..conftest import TestClient, admin_headers

BAD = ["%ED%A0%80", "%FF%FE", "a" * 3000, "%00", "..%2F..", "%F0%9F%98%80" * 40]


@pytest.mark.parametrize("bad", BAD)
async def test_node_ids_that_are_garbage_are_answered_not_found(client: TestClient, bad: str) -> None:
    for method in ("POST", "DELETE"):
        resp = await client.request(method, f"/api/v1/nodes/{bad}/drain", headers=admin_headers())
        assert resp.status in (404, 400), (bad, resp.status, await resp.text())
    resp = await client.get("/readyz")
    assert resp.status == 200  # nothing drained


@pytest.mark.parametrize("bad", BAD)
async def test_room_names_that_are_garbage_get_a_clear_error(client: TestClient, bad: str) -> None:
    for method, suffix in (("GET", "/participants"), ("DELETE", ""), ("PATCH", ""), ("GET", "/lobby")):
        resp = await client.request(method, f"/api/v1/rooms/{bad}{suffix}", headers=admin_headers(), json={})
        assert 400 <= resp.status < 500, (bad, method, resp.status, await resp.text())
        assert "error" in await resp.json()
