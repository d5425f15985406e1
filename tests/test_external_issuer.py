"""An organisation's token issuer keeps its private key; the server holds only the public key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from confserver.config import AuthConfig, KeyConfig
from confserver.store import RedisStore
from confserver.tokens import SigningKey, generate_keypair, mint_join_token

from .conftest import AppMaker, admin_headers, base_config, connect, free_port, join_token


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
async def test_token_from_external_issuer_is_accepted_with_its_public_key(
    make_client: AppMaker, tmp_path: Path, alg: str
) -> None:
    private_pem, public_pem = generate_keypair(alg)
    (tmp_path / "issuer.pub").write_bytes(public_pem)
    cfg = base_config()
    cfg = replace(cfg, auth=AuthConfig(keys=(KeyConfig("idp-1", alg, str(tmp_path / "issuer.pub")),)))  # type: ignore[arg-type]
    client: TestClient = await make_client(cfg)
    token, _ = mint_join_token(
        SigningKey.from_private_pem("idp-1", alg, private_pem), room="r1", identity="ana", now=time.time()
    )
    ws = await connect(client)
    await ws.send({"type": "join", "token": token, "room": "r1"})
    assert (await ws.expect("joined"))["self"]["identity"] == "ana"

    # key confusion: an HS256 token whose HMAC secret is the issuer's public key is refused
    header = {"alg": "HS256", "kid": "idp-1", "typ": "JWT"}
    payload = {
        "iss": "idp-1",
        "sub": "mallory",
        "aud": "confserver",
        "room": "r1",
        "iat": int(time.time()),
        "nbf": int(time.time()),
        "exp": int(time.time()) + 600,
        "jti": "x1",
    }

    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    signing_input = f"{b64(header)}.{b64(payload)}"
    sig = base64.urlsafe_b64encode(
        hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    ).rstrip(b"=")
    forged = f"{signing_input}.{sig.decode()}"
    bad = await connect(client)
    await bad.send({"type": "join", "token": forged, "room": "r1"})
    err = await bad.expect("error")
    assert (err["code"], err["reason"]) == ("token_rejected", "alg_not_allowed")

    # and an external issuer's key cannot mint admin tokens
    resp = await client.get("/api/v1/rooms", headers={"Authorization": f"Bearer {token}"})
    assert resp.status in (401, 403)


async def test_unreachable_redis_makes_readyz_fail_and_api_answer_503(make_client: AppMaker) -> None:
    dead = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    client: TestClient = await make_client(app_store=dead)
    resp = await client.get("/readyz")
    assert resp.status == 503
    resp = await client.get("/api/v1/rooms", headers=admin_headers())
    assert resp.status == 503 and (await resp.json())["error"] == "store_unavailable"
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token("r1", "a"), "room": "r1"})
    assert (await ws.expect("error"))["code"] == "store_unavailable"
    assert (await client.get("/healthz")).status == 200
    await dead.close()
