"""A real OpenID provider (oidc-provider on Node.js, tests/oidc/provider) on loopback, and a
client that signs in through it the way a browser does: following redirects and posting the
provider's sign-in form."""

from __future__ import annotations

import json
import re
import select
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from yarl import URL

from confserver.app import create_app
from confserver.audit import Signer
from confserver.audit.sinks import FileSink
from confserver.config import AuthConfig, Config, ServerConfig
from confserver.metrics import Metrics
from confserver.oidcconfig import OidcConfig
from confserver.store import MemoryStore

from ..conftest import CREDS, admin_headers, base_config, free_port, skip_or_fail

PROVIDER_DIR = Path(__file__).parent / "provider"
CLIENT_ID = "confserver-test"
POST_CLIENT_ID = "confserver-test-post"
"""A second client, registered to send its secret in the form body (client_secret_post)."""
CLIENT_SECRET = "test-client-secret-0123456789-abcdefghij"
USERS = {
    "alice": {"email": "alice@kominfo.go.id", "name": "Alice Wibowo", "groups": ["kemenkominfo-staff"]},
    "budi": {"email": "budi@kominfo.go.id", "name": "Budi Santoso", "groups": ["kemenkominfo-eselon1"]},
    "eve": {"email": "eve@example.org", "name": "Eve Outsider", "groups": []},
}


@dataclass
class Provider:
    proc: subprocess.Popen[str]
    port: int
    server_port: int
    """The port of the confserver the provider's client is registered for."""

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, **oidc: Any) -> Config:
        """A server config on ``server_port`` signing in through this provider."""
        cfg = base_config()
        settings = OidcConfig(
            issuer=self.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            scopes=("openid", "email", "profile", "groups"),
        )
        return replace(
            cfg,
            server=ServerConfig(host="127.0.0.1", port=self.server_port),
            auth=AuthConfig(
                api_key=cfg.auth.api_key, api_secret=cfg.auth.api_secret, oidc=replace(settings, **oidc)
            ),
        )


def start_provider(workdir: Path, server_port: int, *, id_token_ttl: int = 3600) -> Provider:
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        skip_or_fail("needs Node.js and `npm ci` in tests/oidc/provider")
    server = f"http://127.0.0.1:{server_port}"
    setup = {
        "clients": [
            {
                "client_id": client_id,
                "client_secret": CLIENT_SECRET,
                "token_endpoint_auth_method": method,
                "redirect_uris": [server + "/auth/callback"],
                "post_logout_redirect_uris": [server + "/auth/signed-out"],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            }
            for client_id, method in (
                (CLIENT_ID, "client_secret_basic"),
                (POST_CLIENT_ID, "client_secret_post"),
            )
        ],
        "users": USERS,
        "id_token_ttl": id_token_ttl,
    }
    setup_file = workdir / "provider-setup.json"
    setup_file.write_text(json.dumps(setup))
    port = free_port()
    proc = subprocess.Popen(
        [str(node), "provider.js", str(port), str(setup_file)],
        cwd=PROVIDER_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""  # "listening", or nothing when it failed to start
    if "listening" not in line:
        proc.kill()
        pytest.fail("the test OpenID provider did not start")
    return Provider(proc, port, server_port)


def stop(provider: Provider) -> None:
    provider.proc.terminate()
    try:
        provider.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        provider.proc.kill()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    p = start_provider(tmp_path_factory.mktemp("oidc"), free_port())
    yield p
    stop(p)


class Browserish:
    """An HTTP client with a cookie jar that follows the sign-in as a browser would, stopping
    where the provider hands back to the server (``/auth/callback``)."""

    def __init__(self, session: aiohttp.ClientSession, server: str) -> None:
        self.http = session
        self.server = server

    async def start(self, room: str) -> str:
        """Open ``/auth/sign-in/ROOM``; the provider's URL it sends us to."""
        async with self.http.get(f"{self.server}/auth/sign-in/{room}", allow_redirects=False) as r:
            assert r.status == 303, await r.text()
            return r.headers["Location"]

    async def at_provider(self, url: str, user: str) -> str:
        """Sign in as ``user`` at the provider; the callback URL it sends the browser back to."""
        async with self.http.get(url, allow_redirects=True) as r:
            page = await r.text()
            assert r.status == 200, page
            action = re.search(r'action="([^"]+)"', page)
            assert action, page
            form_url = urljoin(str(r.url), action.group(1))
        location = await self._follow(
            self.http.post(form_url, data={"login": user}, allow_redirects=False), form_url
        )
        while not location.startswith(self.server):
            location = await self._follow(self.http.get(location, allow_redirects=False), location)
        return location

    async def sign_in(self, room: str, user: str) -> str:
        return await self.at_provider(await self.start(room), user)

    async def callback(self, url: str) -> tuple[int, str, str]:
        """The server's answer to the callback: status, Location (or ''), and body."""
        async with self.http.get(URL(url, encoded=True), allow_redirects=False) as r:
            return r.status, r.headers.get("Location", ""), await r.text()

    @staticmethod
    async def _follow(request: Any, base: str) -> str:
        async with request as r:
            assert r.status in (302, 303), (r.status, await r.text())
            return urljoin(base, r.headers["Location"])


ROOM = "rapat-eselon"
ALLOW = {"domains": ["kominfo.go.id"], "moderators": {"groups": ["kemenkominfo-eselon1"]}}

Start = Callable[..., Awaitable[tuple[web.Application, Browserish]]]


@pytest.fixture
async def start(provider: Provider, aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[Start]:
    sessions: list[aiohttp.ClientSession] = []

    async def go(*, allow: dict[str, Any] | None = ALLOW, **oidc: Any) -> tuple[web.Application, Browserish]:
        app = create_app(
            provider.config(**oidc),
            store=MemoryStore(),
            credentials=CREDS,
            metrics=Metrics.create(process=False),
            audit_sink=FileSink(tmp_path / f"audit-{len(sessions)}"),
            audit_signer=Signer(Ed25519PrivateKey.generate()),
        )
        server: TestServer = await aiohttp_server(app, host="127.0.0.1", port=provider.server_port)
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(http)
        base = f"http://127.0.0.1:{server.port}"
        if allow is not None:
            body = {"name": ROOM, "allow": allow}
            async with http.post(f"{base}/api/v1/rooms", json=body, headers=admin_headers()) as r:
                assert r.status == 201, await r.text()
        return app, Browserish(http, base)

    yield go
    for http in sessions:
        await http.close()


def page_code(body: str) -> str:
    found = re.search(r'data-testid="sso-code">([^<]+)<', body)
    return found.group(1) if found else ""


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
