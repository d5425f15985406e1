"""Admin tokens are revocable through the same revocation list as join tokens."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import jwt
from aiohttp.test_utils import TestClient

from confserver.tokens import ADMIN_MAX_TTL, mint_admin_token

from .conftest import API_KEY, API_SECRET, AppMaker, admin_headers, base_config


def _admin_token() -> tuple[str, str, int]:
    """A fresh admin token, its jti and its expiry."""
    token = mint_admin_token(API_KEY, API_SECRET, now=time.time(), ttl=ADMIN_MAX_TTL, subject="leaky-script")
    claims = jwt.decode(token, options={"verify_signature": False})
    return token, claims["jti"], claims["exp"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _json(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    return body


async def test_a_revoked_admin_token_is_refused_with_token_revoked(client: TestClient) -> None:
    token, jti, _exp = _admin_token()
    assert (await client.get("/api/v1/rooms", headers=_bearer(token))).status == 200

    resp = await client.post(f"/api/v1/tokens/{jti}/revoke", headers=admin_headers())
    assert resp.status == 200 and (await _json(resp))["jti"] == jti

    resp = await client.get("/api/v1/rooms", headers=_bearer(token))
    assert resp.status == 401
    assert (await _json(resp))["error"] == "token_revoked"
    resp = await client.post("/api/v1/rooms", json={"name": "r1"}, headers=_bearer(token))
    assert (resp.status, (await _json(resp))["error"]) == (401, "token_revoked")
    # Other admin tokens of the same API key keep working.
    assert (await client.get("/api/v1/rooms", headers=admin_headers())).status == 200


async def test_an_admin_token_can_revoke_itself(client: TestClient) -> None:
    token, jti, _exp = _admin_token()
    assert (await client.post(f"/api/v1/tokens/{jti}/revoke", headers=_bearer(token))).status == 200
    resp = await client.get("/api/v1/rooms", headers=_bearer(token))
    assert (resp.status, (await _json(resp))["error"]) == (401, "token_revoked")


async def test_revocation_outlasts_an_admin_token_even_when_join_tokens_are_shorter(
    make_client: AppMaker,
) -> None:
    cfg = base_config()
    cfg = replace(cfg, auth=replace(cfg.auth, token_max_ttl=60, token_default_ttl=60))
    client = await make_client(cfg)
    token, jti, exp = _admin_token()
    revoked = await _json(await client.post(f"/api/v1/tokens/{jti}/revoke", headers=admin_headers()))
    assert revoked["revoked_until"] >= exp + cfg.auth.leeway
    resp = await client.get("/api/v1/rooms", headers=_bearer(token))
    assert (resp.status, (await _json(resp))["error"]) == (401, "token_revoked")


async def test_revoking_refuses_a_jti_no_token_can_carry(client: TestClient) -> None:
    resp = await client.post("/api/v1/tokens/bad%0Ajti/revoke", headers=admin_headers())
    assert (resp.status, (await _json(resp))["error"]) == (400, "invalid_field")


async def test_a_named_keys_admin_token_is_revocable_by_its_jti_alone(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/keys", json={"name": "ci", "scopes": ["rooms:read"]}, headers=admin_headers()
    )
    key = await _json(resp)
    token = mint_admin_token(key["id"], key["secret"], now=time.time(), subject="ci-job")
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert (await client.post(f"/api/v1/tokens/{jti}/revoke", headers=admin_headers())).status == 200
    resp = await client.get("/api/v1/rooms", headers=_bearer(token))
    assert (resp.status, (await _json(resp))["error"]) == (401, "token_revoked")
    # The key itself stays valid: a new token of it works.
    fresh = mint_admin_token(key["id"], key["secret"], now=time.time(), subject="ci-job")
    assert (await client.get("/api/v1/rooms", headers=_bearer(fresh))).status == 200
