"""Hostile and broken conditions around sign-in: sealed cookies that were tampered with, reused for
another purpose or kept too long; a browser that starts many sign-ins; a provider that accepts
connections and never answers; bad settings. Each is refused with a stable code, within a bound,
and leaves the rooms as they were."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from confserver.app import create_app
from confserver.config import ConfigError, load_config
from confserver.metrics import Metrics
from confserver.oidc.flow import Sealer
from confserver.oidc.routes import MAX_FLOWS
from confserver.store import MemoryStore

from ..conftest import CREDS, admin_headers, free_port
from .conftest import ROOM, Browserish, Provider, Start, page_code, start_provider, stop

SEALER = Sealer("s" * 43)


def test_a_sealed_value_opens_only_unchanged_for_its_purpose_and_in_time() -> None:
    sealed = SEALER.seal("flow", {"state": "abc"}, now=1000, ttl=600)
    assert SEALER.open("flow", sealed, now=1599) == {"state": "abc"}
    assert SEALER.open("flow", sealed, now=1600) is None  # expired
    assert SEALER.open("session", sealed, now=1000) is None  # another purpose
    assert Sealer("t" * 43).open("flow", sealed, now=1000) is None  # another server's key
    flipped = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    assert SEALER.open("flow", flipped, now=1000) is None
    for garbage in ("", "!!!", "A" * 5000, "AAAA"):
        assert SEALER.open("flow", garbage, now=1000) is None


async def test_a_browser_starting_many_sign_ins_keeps_a_few_cookies(start: Start) -> None:
    _app, browser = await start()
    for _ in range(12):
        await browser.start(ROOM)
    flows = [c for c in browser.http.cookie_jar if c.key.startswith("conf_oidc_")]
    assert len(flows) <= MAX_FLOWS


async def test_hostile_callbacks_leave_the_room_as_it_was(start: Start) -> None:
    _app, browser = await start()
    url = f"{browser.server}/api/v1/rooms/{ROOM}"
    async with browser.http.get(url, headers=admin_headers()) as r:
        before = await r.json()
    for query in (
        "code=x&state=y",
        "state=y&error=access_denied",
        "code=x&code=y&state=z",
        "x=" + "y" * 9000,
    ):
        async with browser.http.get(f"{browser.server}/auth/callback?{query}", allow_redirects=False) as r:
            assert r.status in (400, 401), await r.text()
    async with browser.http.get(url, headers=admin_headers()) as r:
        assert await r.json() == before


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_provider_that_never_answers_costs_one_timeout_and_blocks_nothing(
    start: Start,
    silent_port: int,
) -> None:
    _app, browser = await start(issuer=f"http://127.0.0.1:{silent_port}", timeout=1.0)

    async def sign_in() -> tuple[int, str]:
        async with browser.http.get(f"{browser.server}/auth/sign-in/{ROOM}", allow_redirects=False) as r:
            return r.status, page_code(await r.text())

    began = time.monotonic()
    waiting = [asyncio.create_task(sign_in()) for _ in range(5)]
    await asyncio.sleep(0.2)
    async with browser.http.get(f"{browser.server}/healthz") as r:  # answered while they wait
        assert r.status == 200
    assert time.monotonic() - began < 0.9
    assert await asyncio.gather(*waiting) == [(503, "oidc_provider_unavailable")] * 5
    assert time.monotonic() - began < 3.0  # they shared one fetch and its deadline


@pytest.mark.parametrize(
    ("oidc", "message"),
    [
        ({"issuer": "ftp://sso"}, "auth.oidc.issuer"),
        ({"issuer": "https://sso.example.gov"}, "auth.oidc.client_id"),
        ({"issuer": "https://sso.example.gov", "client_id": "c"}, "auth.oidc.client_secret"),
        (
            {"issuer": "https://sso.example.gov?x=1", "client_id": "c", "client_secret": "s"},
            "auth.oidc.issuer",
        ),
        (
            {"issuer": "https://s.example.gov", "client_id": "c", "client_secret": "s", "scopes": ["a b"]},
            "scopes",
        ),
        (
            {"issuer": "https://s.example.gov", "client_id": "c", "client_secret": "s", "identity_claim": ""},
            "identity_claim",
        ),
        (
            {"issuer": "https://s.example.gov", "client_id": "c", "client_secret": "s", "timeout": 0},
            "timeout",
        ),
        (
            {"issuer": "https://s.example.gov", "client_id": "c", "client_secret": "s", "join_token_ttl": 10},
            "join_token_ttl",
        ),
    ],
)
def test_bad_sign_in_settings_stop_the_start_naming_the_key(
    tmp_path: Any, oidc: dict[str, Any], message: str
) -> None:
    lines = ["[auth.oidc]"]
    for key, value in oidc.items():
        rendered = (
            "[" + ", ".join(f'"{v}"' for v in value) + "]"
            if isinstance(value, list)
            else f'"{value}"'
            if isinstance(value, str)
            else str(value)
        )
        lines.append(f"{key} = {rendered}")
    path = tmp_path / "c.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(path, env={})


def test_production_needs_an_https_provider(tmp_path: Any) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[auth.oidc]\nissuer = "http://sso.example.gov"\nclient_id = "c"\nclient_secret = "s"\n')
    with pytest.raises(ConfigError, match="production needs https"):
        load_config(path, env={"CONF_MODE": "production"})


async def test_a_provider_that_goes_down_mid_sign_in_gets_a_page(aiohttp_server: Any, tmp_path: Any) -> None:
    provider = start_provider(tmp_path, free_port())
    try:
        app = create_app(
            provider.config(), store=MemoryStore(), credentials=CREDS, metrics=Metrics.create(process=False)
        )
        server = await aiohttp_server(app, host="127.0.0.1", port=provider.server_port)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            browser = Browserish(http, f"http://127.0.0.1:{server.port}")
            url = await browser.sign_in(ROOM, "alice")
            stop(provider)  # the official is on the way back; the token endpoint is gone
            status, _location, body = await browser.callback(url)
            assert (status, page_code(body)) == (503, "oidc_provider_unavailable")
            async with http.get(f"{browser.server}/healthz") as r:
                assert r.status == 200
    finally:
        stop(provider)


@pytest.mark.parametrize(
    ("public_url", "prefix", "secure"), [("https://conf.example.gov", "__Secure-", True), ("", "", False)]
)
async def test_sign_in_cookies_are_http_only_lax_scoped_and_secure_over_https(
    provider: Provider, aiohttp_client: Any, public_url: str, prefix: str, secure: bool
) -> None:
    cfg = provider.config()
    cfg = replace(cfg, server=replace(cfg.server, public_url=public_url, trust_proxy_tls=bool(public_url)))
    client = await aiohttp_client(
        create_app(cfg, store=MemoryStore(), credentials=CREDS, metrics=Metrics.create(process=False))
    )
    resp = await client.get(f"/auth/sign-in/{ROOM}", allow_redirects=False)
    assert resp.status == 303
    [cookie] = resp.cookies.values()
    assert cookie.key.startswith(prefix + "conf_oidc_")
    assert (cookie["httponly"], cookie["samesite"], cookie["path"], cookie["max-age"]) == (
        True,
        "Lax",
        "/auth",
        "600",
    )
    assert bool(cookie["secure"]) is secure
    assert parse_qs(urlsplit(resp.headers["Location"]).query)["redirect_uri"] == [
        (public_url or f"http://127.0.0.1:{provider.server_port}") + "/auth/callback"
    ]


def test_check_config_prints_no_client_secret(provider: Provider) -> None:
    from confserver.main import redacted

    cfg = provider.config()
    shown = repr(redacted(cfg))
    assert cfg.auth.oidc.client_secret not in shown and cfg.auth.oidc.client_secret not in repr(cfg)
    assert redacted(cfg).auth.oidc.client_secret == "***"
