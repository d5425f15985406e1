"""The real thing, as a new user meets it: the `confserver` process with no configuration (dev TLS,
memory store, generated credentials), driven by the real `confctl` CLI and a WebSocket client that
trusts only the generated CA. Metrics are checked with promtool; logs must hold no token or secret."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import free_port, skip_or_fail

BIN = Path(sys.executable).parent


@dataclass
class Server:
    proc: subprocess.Popen[str]
    home: Path
    port: int
    metrics_port: int
    env: dict[str, str]
    banner: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def cacert(self) -> Path:
        return self.home / "certs" / "ca.pem"

    def confctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "confctl"), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def confctl_json(self, *args: str) -> Any:
        done = self.confctl("--json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _out, err = self.proc.communicate(timeout=15)
        assert self.proc.returncode == 0, err
        return err


def start_server(
    home: Path,
    port: int,
    metrics_port: int,
    extra_env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONF_")}
    env.update(
        HOME=str(home),
        CONF_SERVER_PORT=str(port),
        CONF_METRICS_PORT=str(metrics_port),
        CONF_LOG_FORMAT="json",
        **(extra_env or {}),
    )
    proc = subprocess.Popen(
        [str(BIN / "confserver")],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith("Try:"):
            return Server(proc, home, port, metrics_port, env, "".join(lines))
    proc.kill()
    raise AssertionError(
        "confserver did not start: " + "".join(lines) + (proc.stderr.read() if proc.stderr else "")
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path, free_port(), free_port())
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()


async def ws_join(
    srv: Server, token: str, room: str
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=str(srv.cacert))  # only the dev CA: verification stays on
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(f"wss://localhost:{srv.port}/ws", ssl=ctx)
    await ws.send_json({"type": "join", "token": token, "room": room})
    return session, ws, await ws.receive_json(timeout=10)


async def test_new_user_runs_server_and_manages_it_with_confctl(server: Server) -> None:
    assert server.url in server.banner and str(server.cacert) in server.banner
    assert "confctl" in server.banner
    creds = json.loads((server.home / ".local/state/confserver/credentials.json").read_text())
    assert (server.home / ".local/state/confserver/credentials.json").stat().st_mode & 0o077 == 0
    assert creds["api_key"] in server.banner and creds["api_secret"] not in server.banner

    # confctl needs no setup on the same machine: it reads the credentials file confserver wrote
    made = server.confctl(
        "room", "create", "board", "--max-participants", "3", "--metadata", '{"topic":"budget"}'
    )
    assert made.returncode == 0, made.stderr
    rooms = server.confctl_json("room", "list")["rooms"]
    assert [(r["name"], r["max_participants"]) for r in rooms] == [("board", 3)]
    table = server.confctl("room", "list").stdout
    assert "board" in table and "NAME" in table

    tokens = [
        server.confctl_json("token", "create", "--room", "board", "--identity", f"p{i}", "--ttl", "15m")
        for i in range(4)
    ]
    for t in tokens:
        assert t["join_url"] == f"{server.url}/r/board#token={t['token']}"
    sessions = []  # (session, websocket): keep references, or the sockets are collected and closed
    try:
        for t in tokens[:3]:
            sess, ws, joined = await ws_join(server, t["token"], "board")
            sessions.append((sess, ws))
            assert joined["type"] == "joined"
        sess, ws, refused = await ws_join(server, tokens[3]["token"], "board")
        sessions.append((sess, ws))
        assert refused.get("code") == "room_full", refused

        people = server.confctl_json("participant", "list", "board")["participants"]
        assert sorted(p["identity"] for p in people) == ["p0", "p1", "p2"]
        assert server.confctl("participant", "mute", "board", "p1").returncode == 0
        assert server.confctl("participant", "kick", "board", "p2").returncode == 0
        people = server.confctl_json("participant", "list", "board")["participants"]
        assert [p["identity"] for p in people if p["state"]["audio_muted"]] == ["p1"]
        assert sorted(p["identity"] for p in people) == ["p0", "p1"]

        revoke = server.confctl("token", "revoke", tokens[0]["jti"])
        assert revoke.returncode == 0, revoke.stderr

        missing = server.confctl("room", "show", "nowhere")
        assert missing.returncode == 1 and "room_not_found" in missing.stderr
        bad = server.confctl("room", "create", "bad name")
        assert bad.returncode == 2

        metrics = await _get(f"http://127.0.0.1:{server.metrics_port}/metrics")
        assert 'conf_joins_total{result="admitted"} 3.0' in metrics
        assert 'conf_joins_total{result="room_full"} 1.0' in metrics
        assert "conf_participants 1.0" in metrics
        assert "process_cpu_seconds_total" in metrics
        assert 'conf_gc_pause_seconds_count{generation="2"}' in metrics  # full collections, from the start
        promtool = shutil.which("promtool")
        if promtool is None:
            skip_or_fail("promtool is not installed (apt-get install prometheus)")
        check = subprocess.run(
            [str(promtool), "check", "metrics"], input=metrics, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        for sess, _ws in sessions:
            await sess.close()

    logs = server.stop()
    assert logs.strip(), "the server logged nothing"
    for line in logs.splitlines():
        json.loads(line)  # JSON lines
    assert creds["api_secret"] not in logs
    for t in tokens:
        assert t["token"] not in logs
        assert t["token"].split(".")[1] not in logs


async def test_restart_keeps_credentials_and_issued_tokens_valid(tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    first = start_server(tmp_path, port, mport)
    token = first.confctl_json("token", "create", "--room", "standup", "--identity", "ana")["token"]
    key1 = json.loads((tmp_path / ".local/state/confserver/credentials.json").read_text())["api_key"]
    ca1 = first.cacert.read_bytes()
    first.stop()

    second = start_server(tmp_path, port, mport)
    try:
        key2 = json.loads((tmp_path / ".local/state/confserver/credentials.json").read_text())["api_key"]
        assert key1 == key2 and second.cacert.read_bytes() == ca1
        sess, _ws, joined = await ws_join(second, token, "standup")
        await sess.close()
        assert joined["type"] == "joined"  # dev mode auto-creates the room on first join
    finally:
        second.stop()


def test_bad_configuration_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "conf.toml"
    cfg.write_text("[server]\nprot = 9000\n")
    done = subprocess.run(
        [str(BIN / "confserver"), "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "server.prot" in done.stderr
    env = {**os.environ, "CONF_STORE_KIND": "postgres"}
    done = subprocess.run([str(BIN / "confserver")], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 2 and "CONF_STORE_KIND" in done.stderr


def test_confctl_never_turns_tls_verification_off(server: Server) -> None:
    env = {**server.env, "HOME": str(server.home / "elsewhere")}  # no credentials file, no CA
    done = subprocess.run(
        [
            str(BIN / "confctl"),
            "--url",
            server.url,
            "--api-key",
            "k",
            "--api-secret",
            "x" * 40,
            "room",
            "list",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3
    assert "certificate" in done.stderr.lower() or "verify" in done.stderr.lower()


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        return await r.text()
