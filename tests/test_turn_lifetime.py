"""TURN credentials live no longer than the session they are issued to: at most the configured TTL
and never past the expiry of the join token the participant was admitted with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from confserver.app import create_app
from confserver.config import IceServerConfig, SfuConfig
from confserver.metrics import Metrics
from confserver.signaling import session as session_module
from confserver.store import MemoryStore
from sfu.controller import SfuController
from sfu.turn import DEFAULT_CREDENTIAL_TTL, credential_expiry, ice_servers_for, turn_credentials

from .conftest import CREDS, base_config, create_room, join, join_token

SECRET = "coturn-shared-secret-for-tests"
TURN = IceServerConfig(urls=("turn:turn.example.test:3478?transport=udp", "turns:turn.example.test:5349"))
STUN = IceServerConfig(urls=("stun:turn.example.test:3478",))
NOW = 1_800_000_000


def expiry_of(server: dict[str, Any]) -> int:
    return int(server["username"].split(":", 1)[0])


def test_credentials_expire_after_the_ttl_when_the_token_lives_longer() -> None:
    servers = ice_servers_for([STUN, TURN], "ana", secret=SECRET, now=NOW, ttl=3600, not_after=NOW + 7200)
    assert servers[0] == {"urls": list(STUN.urls)}
    assert expiry_of(servers[1]) == NOW + 3600


def test_credentials_expire_with_the_join_token_when_it_expires_first() -> None:
    servers = ice_servers_for([TURN], "ana", secret=SECRET, now=NOW, ttl=3600, not_after=NOW + 600)
    assert servers[0]["username"] == f"{NOW + 600}:ana"
    digest = hmac.new(SECRET.encode(), servers[0]["username"].encode(), hashlib.sha1).digest()
    assert servers[0]["credential"] == base64.b64encode(digest).decode()
    assert turn_credentials(SECRET, "ana", now=NOW, ttl=3600, not_after=NOW + 600) == (
        servers[0]["username"],
        servers[0]["credential"],
    )


def test_expiry_is_the_earlier_of_ttl_and_token_expiry() -> None:
    assert credential_expiry(now=NOW, ttl=60) == NOW + 60
    assert credential_expiry(now=NOW + 0.9, ttl=60, not_after=NOW + 30) == NOW + 30
    assert credential_expiry(now=NOW, ttl=60, not_after=NOW + 61) == NOW + 60


def test_the_suggested_default_lifetime_is_short() -> None:
    assert DEFAULT_CREDENTIAL_TTL <= 3600


async def _sfu_client(aiohttp_client: Any, sfu_cfg: SfuConfig) -> TestClient:
    cfg = replace(base_config(), sfu=sfu_cfg)
    app = create_app(
        cfg,
        store=MemoryStore(),
        credentials=CREDS,
        metrics=Metrics.create(process=False),
        media=SfuController(sfu_cfg, CollectorRegistry()),
    )
    client: TestClient = await aiohttp_client(app, connector=aiohttp.TCPConnector(limit=0))
    return client


async def _joined(client: TestClient, token: str) -> dict[str, Any]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "room": "r1"})
    msg: dict[str, Any] = await ws.receive_json()
    await ws.close()
    assert msg["type"] == "joined", msg
    return msg


async def test_a_participant_gets_turn_credentials_that_end_with_its_join_token(aiohttp_client: Any) -> None:
    sfu_cfg = SfuConfig(
        bind_addresses=("127.0.0.1",), ice_servers=(TURN,), turn_secret=SECRET, turn_credential_ttl=3600
    )
    client = await _sfu_client(aiohttp_client, sfu_cfg)
    joined = await _joined(client, join_token("r1", "ana", ttl=600))
    (turn,) = joined["ice_servers"]
    assert turn["username"].endswith(":ana")
    assert expiry_of(turn) <= joined["token_expires_at"]
    assert expiry_of(turn) <= time.time() + 600


async def test_a_participant_gets_turn_credentials_no_longer_than_the_ttl(aiohttp_client: Any) -> None:
    sfu_cfg = SfuConfig(
        bind_addresses=("127.0.0.1",), ice_servers=(TURN,), turn_secret=SECRET, turn_credential_ttl=900
    )
    client = await _sfu_client(aiohttp_client, sfu_cfg)
    before = int(time.time())
    joined = await _joined(client, join_token("r1", "bob", ttl=7200))
    (turn,) = joined["ice_servers"]
    assert before + 900 <= expiry_of(turn) <= int(time.time()) + 900


async def test_a_joined_session_gets_fresh_credentials_while_it_stays(
    aiohttp_client: Any, monkeypatch: Any
) -> None:
    """Credentials given at join end with the token; a session still in the room receives new ones
    (``ice_servers``) before that, for as long as it stays (a removed one is closed and gets none)."""
    monkeypatch.setattr(session_module, "ICE_REFRESH_INTERVAL", 0.3)
    sfu_cfg = SfuConfig(
        bind_addresses=("127.0.0.1",), ice_servers=(TURN,), turn_secret=SECRET, turn_credential_ttl=3600
    )
    client = await _sfu_client(aiohttp_client, sfu_cfg)
    await create_room(client, "r1")
    ana, joined = await join(client, "r1", "ana", ttl=120)
    first = expiry_of(joined["ice_servers"][0])
    assert first <= joined["token_expires_at"]
    fresh = await ana.expect("ice_servers", timeout=3.0)
    (turn,) = fresh["ice_servers"]
    assert turn["username"].endswith(":ana")
    assert expiry_of(turn) > first  # no longer bound by the token: the live session is the authority
    await ana.expect("ice_servers", timeout=3.0)  # and again, while the session lasts
