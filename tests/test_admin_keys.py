"""Named admin API keys: each admin route needs its scope, a revoked key is refused at once, the
bootstrap key holds every scope, and a key's secret is shown once and never stored."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from confserver.adminkeys import SCOPES, derive_secret
from confserver.api import API, PREFIX, ROUTE_SCOPES, ROUTES, Route
from confserver.app import create_app
from confserver.metrics import Metrics
from confserver.store import MemoryStore, RedisStore
from confserver.tokens import SigningKey, mint_admin_token, mint_join_token

from .conftest import (
    API_KEY,
    API_SECRET,
    CREDS,
    AppMaker,
    admin_headers,
    app_of,
    base_config,
    create_room,
)

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/rooms"): {"name": "made-by-key"},
    ("PATCH", "/rooms/{name}"): {"locked": False},
    ("POST", "/rooms/{name}/participants/{identity}/mute"): {"kind": "audio"},
    ("POST", "/tokens"): {"room": "r1", "identity": "ana"},
    ("POST", "/keys"): {"name": "made by a key", "scopes": ["keys:admin"]},
}


async def _json(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    return body


def _bearer(key_id: str, secret: str) -> dict[str, str]:
    return {
        "Authorization": "Bearer " + mint_admin_token(key_id, secret, now=time.time(), subject="ops-script")
    }


async def _new_key(client: TestClient, name: str, scopes: list[str]) -> dict[str, Any]:
    resp = await client.post("/api/v1/keys", json={"name": name, "scopes": scopes}, headers=admin_headers())
    body = await _json(resp)
    assert resp.status == 201, body
    return body


async def _call(client: TestClient, route: Route, headers: dict[str, str]) -> tuple[int, str | None]:
    path = (
        route.path.replace("{name}", "r1")
        .replace("{identity}", "ana")
        .replace("{jti}", "some-jti")
        .replace("{key_id}", "AKnosuchkey00000")
        .replace("{node_id}", "node-x")
    )
    body = BODIES.get((route.method, route.path))
    resp = await client.request(route.method, PREFIX + path, json=body, headers=headers)
    error = (await _json(resp)).get("error") if resp.status >= 400 else None
    return resp.status, error


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_each_route_is_refused_outside_its_scope_and_allowed_with_it(
    client: TestClient, route: Route
) -> None:
    await create_room(client, "r1")
    others = await _new_key(client, "everything else", [s for s in SCOPES if s != route.scope])
    status, error = await _call(client, route, _bearer(others["id"], others["secret"]))
    assert (status, error) == (403, "insufficient_scope")
    assert len((await _json(await client.get("/api/v1/rooms", headers=admin_headers())))["rooms"]) == 1

    only = await _new_key(client, "just this", [route.scope])
    status, error = await _call(client, route, _bearer(only["id"], only["secret"]))
    assert status not in (401, 403), (status, error)


async def test_every_admin_route_served_has_a_known_scope(client: TestClient) -> None:
    served = {
        ("GET" if r.method == "HEAD" else r.method, r.resource.canonical)
        for r in app_of(client).router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith(PREFIX + "/")
        and r.method != "*"
        and r.resource.canonical != PREFIX + "/openapi.json"
    }
    assert served == set(ROUTE_SCOPES)
    assert set(ROUTE_SCOPES.values()) <= set(SCOPES)


async def test_the_openapi_document_names_each_operations_scope(client: TestClient) -> None:
    doc = await _json(await client.get("/api/v1/openapi.json"))
    documented = {
        (method.upper(), PREFIX + path): op["security"][0]["adminBearer"]
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method != "parameters"
    }
    assert documented == {route: [scope] for route, scope in ROUTE_SCOPES.items()}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_the_bootstrap_key_holds_every_scope(client: TestClient, route: Route) -> None:
    await create_room(client, "r1")
    status, error = await _call(client, route, admin_headers())
    assert status not in (401, 403), (status, error)


async def test_a_created_key_works_and_its_secret_is_never_listed(client: TestClient) -> None:
    key = await _new_key(client, "Ana Lima", ["rooms:read", "rooms:write"])
    assert key["id"].startswith("AK") and key["scopes"] == ["rooms:read", "rooms:write"]
    assert key["revoked"] is False and len(key["secret"]) >= 43
    headers = _bearer(key["id"], key["secret"])
    assert (await client.post("/api/v1/rooms", json={"name": "by-ana"}, headers=headers)).status == 201

    resp = await client.get("/api/v1/keys", headers=admin_headers())
    listed = (await _json(resp))["keys"]
    assert [k["name"] for k in listed] == ["Ana Lima"]
    assert "secret" not in listed[0] and key["secret"] not in await resp.text()


async def test_nothing_secret_is_stored_for_a_key(client: TestClient) -> None:
    key = await _new_key(client, "ci", ["rooms:read"])
    stored = await app_of(client)[API].store.admin_keys.get(key["id"])
    assert stored is not None and key["secret"] not in repr(stored)
    assert key["secret"] == derive_secret(API_SECRET.encode(), key["id"])


async def test_a_revoked_keys_tokens_fail_at_once(client: TestClient) -> None:
    key = await _new_key(client, "leaky", ["rooms:read"])
    headers = _bearer(key["id"], key["secret"])  # minted before the revocation
    assert (await client.get("/api/v1/rooms", headers=headers)).status == 200

    resp = await client.delete(f"/api/v1/keys/{key['id']}", headers=admin_headers())
    revoked = await _json(resp)
    assert resp.status == 200 and revoked["revoked"] is True and revoked["revoked_at"] > 0

    resp = await client.get("/api/v1/rooms", headers=headers)
    assert (resp.status, (await _json(resp))["error"]) == (401, "key_revoked")
    resp = await client.get("/api/v1/rooms", headers=_bearer(key["id"], key["secret"]))
    assert (resp.status, (await _json(resp))["error"]) == (401, "key_revoked")
    listed = (await _json(await client.get("/api/v1/keys", headers=admin_headers())))["keys"]
    assert [k["revoked"] for k in listed] == [True]


async def test_a_wrong_secret_tells_nothing_about_the_key(client: TestClient) -> None:
    key = await _new_key(client, "gone", ["rooms:read"])
    await client.delete(f"/api/v1/keys/{key['id']}", headers=admin_headers())
    for key_id in (key["id"], "AKneverexisted00"):
        resp = await client.get("/api/v1/rooms", headers=_bearer(key_id, "x" * 43))
        assert (resp.status, (await _json(resp))["error"]) == (401, "unauthorized")


async def test_the_bootstrap_key_cannot_be_revoked_through_the_api(client: TestClient) -> None:
    resp = await client.delete(f"/api/v1/keys/{API_KEY}", headers=admin_headers())
    assert (resp.status, (await _json(resp))["error"]) == (403, "bootstrap_key")
    assert (await client.get("/api/v1/rooms", headers=admin_headers())).status == 200


async def test_revoking_an_unknown_key_is_key_not_found(client: TestClient) -> None:
    resp = await client.delete("/api/v1/keys/AKnosuchkey00000", headers=admin_headers())
    assert (resp.status, (await _json(resp))["error"]) == (404, "key_not_found")


async def test_a_key_grants_only_scopes_it_holds(client: TestClient) -> None:
    admin = await _new_key(client, "key admin", ["keys:admin", "rooms:read"])
    headers = _bearer(admin["id"], admin["secret"])
    resp = await client.post("/api/v1/keys", json={"name": "x", "scopes": ["rooms:write"]}, headers=headers)
    assert (resp.status, (await _json(resp))["error"]) == (403, "insufficient_scope")
    resp = await client.post("/api/v1/keys", json={"name": "x", "scopes": ["rooms:read"]}, headers=headers)
    assert resp.status == 201


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": ["rooms:everything"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": "rooms:read"},
        {"name": "   ", "scopes": ["rooms:read"]},
        {"name": "a\nb", "scopes": ["rooms:read"]},
        {"name": "x" * 65, "scopes": ["rooms:read"]},
        {"scopes": ["rooms:read"]},
        {"name": "x", "scopes": ["rooms:read"], "secret": "mine"},
    ],
)
async def test_a_bad_key_request_is_invalid_field(client: TestClient, body: dict[str, Any]) -> None:
    resp = await client.post("/api/v1/keys", json=body, headers=admin_headers())
    assert (resp.status, (await _json(resp))["error"]) == (400, "invalid_field")
    assert (await _json(await client.get("/api/v1/keys", headers=admin_headers())))["keys"] == []


async def test_admin_changes_are_logged_with_the_keys_name(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    key = await _new_key(client, "Ana Lima", ["rooms:write"])
    with caplog.at_level(logging.INFO, logger="confserver.api"):
        resp = await client.post(
            "/api/v1/rooms", json={"name": "r9"}, headers=_bearer(key["id"], key["secret"])
        )
        assert resp.status == 201
    [record] = [r for r in caplog.records if r.getMessage() == "admin created room"]
    assert record.__dict__["admin_key"] == "Ana Lima" and record.__dict__["admin_key_id"] == key["id"]
    assert record.__dict__["admin"] == "ops-script" and record.__dict__["admin_jti"]


async def test_a_named_keys_secret_signs_no_join_token(client: TestClient) -> None:
    """Only the server mints join tokens (tokens:create); a key's secret cannot make one offline."""
    await create_room(client, "r1")
    key = await _new_key(client, "reader", ["rooms:read"])
    token, _claims = mint_join_token(
        SigningKey.hs256(key["id"], key["secret"]), room="r1", identity="ana", now=time.time()
    )
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "room": "r1"})
    err = await ws.receive_json()
    assert err["code"] == "token_rejected" and err["reason"] == "unknown_key"
    await ws.close()


@pytest.mark.redis
async def test_a_key_revoked_on_one_node_is_refused_on_another_at_once(
    make_client: AppMaker, redis_url: str
) -> None:
    prefix = f"keys-{uuid.uuid4().hex}:"
    stores = [RedisStore.from_url(redis_url, prefix=prefix) for _ in range(2)]
    try:
        node_a, node_b = [await make_client(app_store=s) for s in stores]
        made = await node_a.post(
            "/api/v1/keys", json={"name": "roaming", "scopes": ["rooms:read"]}, headers=admin_headers()
        )
        key = await _json(made)
        headers = _bearer(key["id"], key["secret"])
        assert (await node_b.get("/api/v1/rooms", headers=headers)).status == 200
        assert (await node_b.delete(f"/api/v1/keys/{key['id']}", headers=admin_headers())).status == 200
        resp = await node_a.get("/api/v1/rooms", headers=headers)
        assert (resp.status, (await _json(resp))["error"]) == (401, "key_revoked")
    finally:
        for s in stores:
            await s.close()


async def test_a_route_missing_from_the_scope_table_is_refused_to_every_key(aiohttp_client: Any) -> None:
    app = create_app(
        base_config(), store=MemoryStore(), credentials=CREDS, metrics=Metrics.create(process=False)
    )

    async def unlisted(request: web.Request) -> web.Response:
        return web.json_response({"leaked": True})

    app.router.add_get(PREFIX + "/unlisted", unlisted)
    client: TestClient = await aiohttp_client(app)
    resp = await client.get(PREFIX + "/unlisted", headers=admin_headers())
    assert (resp.status, (await _json(resp))["error"]) == (403, "insufficient_scope")
