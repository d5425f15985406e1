"""Two real confserver processes on one Redis write one audit chain at once: every admin action
and join through either node is in it once, and it verifies with the shared audit key."""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from confserver.tokens import SigningKey, mint_join_token
from tests.conftest import free_port
from tests.test_e2e_server import BIN, Server, start_server

API_KEY = "APInodes000001"
API_SECRET = secrets.token_urlsafe(32)


@pytest.fixture
def nodes(tmp_path: Path, redis_url: str) -> Iterator[tuple[list[Server], Path]]:
    key_file = tmp_path / "audit-key.pem"  # the same key file on every node, as AUDIT.md says
    prefix = f"nodes{secrets.token_hex(4)}:"
    servers = []
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        env = {
            "CONF_SFU_ENABLED": "false",
            "CONF_STORE_KIND": "redis",
            "CONF_STORE_REDIS_URL": redis_url,
            "CONF_STORE_PREFIX": prefix,
            "CONF_AUTH_API_KEY": API_KEY,
            "CONF_AUTH_API_SECRET": API_SECRET,
            "CONF_AUDIT_KEY_FILE": str(key_file),
            "CONF_SIGNALING_NODE_ID": f"node-{name}",
        }
        servers.append(start_server(home, free_port(), free_port(), env))
    yield servers, key_file
    for srv in servers:
        if srv.proc.poll() is None:
            srv.stop()


def _confctl(srv: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **srv.env,
        "CONF_URL": srv.url,
        "CONF_API_KEY": API_KEY,
        "CONF_API_SECRET": API_SECRET,
        "CONF_CACERT": str(srv.cacert),
    }
    return subprocess.run(
        [str(BIN / "confctl"), *args], env=env, cwd=srv.home, capture_output=True, text=True, timeout=60
    )


async def _join_and_leave(srv: Server, room: str, identity: str) -> None:
    token, _ = mint_join_token(
        SigningKey.hs256(API_KEY, API_SECRET), room=room, identity=identity, now=time.time()
    )
    ctx = ssl.create_default_context(cafile=str(srv.cacert))
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"wss://localhost:{srv.port}/ws", ssl=ctx)
        await ws.send_json({"type": "join", "token": token, "room": room})
        joined = await ws.receive_json(timeout=10)
        assert joined["type"] == "joined", joined
        await ws.close()


async def test_two_nodes_write_one_chain_that_verifies(nodes: tuple[list[Server], Path]) -> None:
    servers, key_file = nodes
    rooms = [f"r{i}" for i in range(20)]
    with ThreadPoolExecutor(8) as pool:  # room creations through both nodes at once
        done = list(pool.map(lambda i: _confctl(servers[i % 2], "room", "create", rooms[i]), range(20)))
    assert all(d.returncode == 0 for d in done), [d.stderr for d in done if d.returncode]
    await asyncio.gather(*(_join_and_leave(servers[i % 2], rooms[i], f"user{i}") for i in range(20)))
    await asyncio.sleep(0.5)  # the leaves are queued when the sockets close
    verified = _confctl(servers[0], "--json", "audit", "verify", "--public-key", str(key_file))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["intact"] and report["unsigned_tail"] == 0
    exported = _confctl(servers[1], "audit", "export")
    entries = [json.loads(line) for line in exported.stdout.splitlines()[:-1]]
    by = {
        (e["event"]["action"], e.get("conf", {}).get("room"), e["service"]["node"]["name"]) for e in entries
    }
    for i, room in enumerate(rooms):
        node = f"node-{'ab'[i % 2]}"
        assert ("room.create", room, node) in by
        assert ("participant.join", room, node) in by
        assert ("participant.leave", room, node) in by
    for action in ("room.create", "participant.join", "participant.leave"):
        assert sum(e["event"]["action"] == action for e in entries) == 20, action
    assert {e["service"]["node"]["name"] for e in entries if e["event"]["action"] == "audit.checkpoint"} <= {
        "node-a",
        "node-b",
    }
