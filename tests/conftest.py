"""Shared fixtures: an app on a memory store, admin headers, join tokens, signaling clients.

In CI (CI=true) a skipped test fails the run: tests may skip on a laptop without Chromium or
redis-server, never in CI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient

from confserver.app import create_app
from confserver.config import Config, MetricsConfig, SignalingConfig, TlsConfig, load_config
from confserver.credentials import ApiCredentials
from confserver.metrics import Metrics
from confserver.store import MemoryStore, Store
from confserver.tokens import SigningKey, mint_admin_token, mint_join_token

API_KEY = "AKtestkey0000001"
API_SECRET = "s" * 43
CREDS = ApiCredentials(API_KEY, API_SECRET, "config")
IN_CI = os.environ.get("CI") == "true"

_skipped: list[str] = []


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop running in the main
    thread while it is active, which the asyncio tests must not meet."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid.replace("\\", "/"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _skipped:
        print(f"\nCI=true: {len(_skipped)} test(s) skipped, which fails the run: {_skipped[:5]}")
        session.exitstatus = 1


def skip_or_fail(reason: str) -> None:
    """Skip on a laptop; fail in CI, where everything the tests need must be installed."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def base_config(**overrides: Any) -> Config:
    cfg = load_config(env={})
    cfg = replace(
        cfg,
        tls=TlsConfig(mode="off"),
        metrics=MetricsConfig(enabled=False),
        signaling=SignalingConfig(heartbeat_interval=5.0, join_timeout=5.0),
    )
    return replace(cfg, **overrides)


def admin_headers(secret: str = API_SECRET, key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_admin_token(key, secret, now=time.time())}


def join_token(room: str, identity: str, **kw: Any) -> str:
    token, _claims = mint_join_token(
        SigningKey.hs256(API_KEY, API_SECRET),
        room=room,
        identity=identity,
        now=kw.pop("now", time.time()),
        **kw,
    )
    return token


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(workdir),
            ],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if client.ping():
                        return proc, port
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        proc.kill()
        proc.wait()
    pytest.fail("redis-server did not start on a free loopback port")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail("redis-server is not installed (apt-get install redis-server)")
        raise AssertionError("unreachable")
    proc, port = _start_redis(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def store() -> Store:
    return MemoryStore()


AppMaker = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(aiohttp_client: Any, store: Store) -> AppMaker:
    """Build an app (memory store unless given) and a test client for it."""

    async def make(
        cfg: Config | None = None, *, app_store: Store | None = None, metrics: Metrics | None = None
    ) -> TestClient:
        app = create_app(
            cfg or base_config(),
            store=app_store or store,
            credentials=CREDS,
            metrics=metrics or Metrics.create(process=False),
        )
        # no pool limit: tests open more than 100 signaling connections at once
        client: TestClient = await aiohttp_client(app, connector=aiohttp.TCPConnector(limit=0))
        return client

    return make


@pytest.fixture
async def client(make_client: AppMaker) -> TestClient:
    return await make_client()


class Ws:
    """A signaling client for tests: send JSON, wait for a message of a given type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(msg))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = await self.ws.receive(timeout=timeout)
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"connection ended: {frame.type.name} {self.ws.close_code}")
        msg: dict[str, Any] = json.loads(frame.data)
        self.seen.append(msg)
        return msg

    async def expect(self, mtype: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no {mtype} message; saw {[m.get('type') for m in self.seen[-10:]]}")
            msg = await self.recv(left)
            if msg.get("type") == mtype and all(msg.get(k) == v for k, v in match.items()):
                return msg

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Wait until the server closes the connection; returns the close code."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.ws.closed:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError("connection still open")
            frame = await self.ws.receive(timeout=left)
            if frame.type == aiohttp.WSMsgType.TEXT:
                self.seen.append(json.loads(frame.data))
            elif frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                break
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()


async def connect(client: TestClient, **kw: Any) -> Ws:
    return Ws(await client.ws_connect("/ws", **kw))


async def join(client: TestClient, room: str, identity: str, **token_kw: Any) -> tuple[Ws, dict[str, Any]]:
    """Connect and join; returns the client and its ``joined`` message."""
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token(room, identity, **token_kw), "room": room})
    msg = await ws.recv()
    if msg["type"] != "joined":
        raise AssertionError(f"join refused: {msg}")
    return ws, msg


async def create_room(client: TestClient, name: str, **fields: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/rooms", json={"name": name, **fields}, headers=admin_headers())
    body: dict[str, Any] = await resp.json()
    if resp.status != 201:
        raise AssertionError(f"room create failed: {resp.status} {body}")
    return body


def app_of(client: TestClient) -> web.Application:
    return client.server.app  # type: ignore[no-any-return]
