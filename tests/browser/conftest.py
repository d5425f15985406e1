"""Browser end-to-end fixtures: real ``confserver`` processes on loopback and headless Chromium.

Two servers serve the session: ``server`` runs signaling only (media off: the meeting must work
without it, and three browsers encoding simulcast video would slow every other test on a small
machine), ``media_server`` runs with the SFU for the media tests. One Chromium process serves the
session; every participant is a fresh browser context (its own storage, permissions and locale),
so tests do not leak into each other. A test that needs its own server (a restart) makes one.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from confserver.tokens import SigningKey, mint_admin_token, mint_join_token
from tests.conftest import skip_or_fail

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]
API_KEY = "AKbrowsertests01"
API_SECRET = "browser-tests-secret-" + "x" * 24
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "media: needs the media service (SFU); skipped while the server answers media_unavailable"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        if here in path.parents and path.name != "test_web_assets.py":
            item.add_marker(pytest.mark.browser)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``confserver`` subprocess with TLS off on 127.0.0.1."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        media: bool = False,
        env: dict[str, str] | None = None,
        config_file: Path | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.command = command  # another build of the server (a test's own), same CONF_* env
        self.workdir = workdir
        self.config_file = config_file  # for what the environment cannot set (TOML tables)
        self.media = media
        self.env = dict(env or {})  # more CONF_* settings
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = SigningKey.hs256(API_KEY, API_SECRET)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"confserver-{self.port}.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONF_")}
        env.update(
            CONF_TLS_MODE="off",
            CONF_SERVER_HOST="127.0.0.1",
            CONF_SERVER_PORT=str(self.port),
            CONF_METRICS_ENABLED="false",
            CONF_AUTH_CREDENTIALS_FILE=str(self.workdir / "credentials.json"),
            CONF_AUDIT_DIR=str(self.workdir / f"audit-{self.port}"),  # one writer per directory
            CONF_AUDIT_KEY_FILE=str(self.workdir / "audit-key.pem"),
            CONF_AUTH_API_KEY=API_KEY,
            CONF_AUTH_API_SECRET=API_SECRET,
            CONF_LOG_LEVEL="warning",
            CONF_SFU_ENABLED="true" if self.media else "false",
        )
        env.update(self.env)
        exe = Path(sys.executable).with_name("confserver")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "confserver.main"]
        if os.environ.get("BROWSER_TESTS_SERVER_CMD"):  # another build of the server, same CONF_* env
            cmd = shlex.split(os.environ["BROWSER_TESTS_SERVER_CMD"])
        if self.command is not None:
            cmd = list(self.command)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        if self.config_file is not None:
            cmd = [*cmd, "--config", str(self.config_file)]
        log = self.log.open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"confserver exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("confserver did not become healthy in 30 s")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def token(self, room: str, identity: str, **kw: Any) -> str:
        token, _claims = mint_join_token(
            self.key, room=room, identity=identity, now=kw.pop("now", time.time()), **kw
        )
        return token

    def link(self, room: str, identity: str, **kw: Any) -> str:
        return f"{self.url}/r/{room}#token={self.token(room, identity, **kw)}"

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.url + "/api/v1" + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": "Bearer " + mint_admin_token(API_KEY, API_SECRET, now=time.time()),
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def create_room(self, name: str, **fields: Any) -> None:
        status, body = self.api("POST", "/rooms", {"name": name, **fields})
        assert status == 201, body


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"{CHROMIUM} is not installed (Debian package chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("confserver"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def media_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("confserver-media"), media=True)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the playwright Python package is not installed")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_session: Any, chromium_path: str) -> Iterator[Any]:
    # Playwright launches Chromium with a fresh temporary --user-data-dir; each participant below
    # is a separate context (separate storage and permissions) in it.
    b = playwright_session.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def people(browser: Any, server: Server, request: pytest.FixtureRequest) -> Iterator[Any]:
    from .helpers import Crowd

    crowd = Crowd(browser, server, request.node.name)
    yield crowd
    crowd.close(failed=getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
