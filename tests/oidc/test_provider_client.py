"""The provider client against a hostile or broken server at the issuer's address: documents too
large, not JSON, naming another issuer, or redirecting elsewhere are all "unavailable", read only
up to the bound, and remembered briefly so that a flood of visitors costs one request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from confserver.oidc.flow import SignInError
from confserver.oidc.provider import MAX_DOCUMENT_BYTES, ProviderClient
from confserver.oidcconfig import OidcConfig


async def client_for(aiohttp_server: Any, handler: Any) -> tuple[ProviderClient, list[str]]:
    seen: list[str] = []

    async def counted(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        result: web.StreamResponse = await handler(request)
        return result

    app = web.Application()
    app.router.add_get("/{tail:.*}", counted)
    server = await aiohttp_server(app, host="127.0.0.1")
    cfg = OidcConfig(issuer=f"http://127.0.0.1:{server.port}", client_id="c", client_secret="s", timeout=2.0)
    client = ProviderClient(cfg)
    await client.start()
    return client, seen


def discovery(issuer: str) -> dict[str, str]:
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/auth",
        "token_endpoint": issuer + "/token",
        "jwks_uri": issuer + "/jwks",
    }


@pytest.mark.parametrize(
    "answer",
    [
        lambda issuer: web.Response(body=b'{"issuer": "' + b"x" * (MAX_DOCUMENT_BYTES + 10) + b'"}'),
        lambda issuer: web.Response(text="<html>maintenance</html>"),
        lambda issuer: web.json_response(discovery("https://someone-else.example")),
        lambda issuer: web.json_response({**discovery(issuer), "token_endpoint": "ftp://x"}),
        lambda issuer: web.Response(status=302, headers={"Location": "https://elsewhere.example/"}),
        lambda issuer: web.Response(status=500),
        lambda issuer: web.Response(body=b"[" * 100_000 + b"]" * 100_000),
    ],
    ids=["too-large", "not-json", "other-issuer", "bad-endpoint", "redirect", "error", "deep"],
)
async def test_an_unusable_discovery_document_is_unavailable_and_remembered(
    aiohttp_server: Any, answer: Any
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        result: web.StreamResponse = answer(f"http://{request.host}")
        return result

    client, seen = await client_for(aiohttp_server, handler)
    try:
        for _ in range(3):
            with pytest.raises(SignInError) as caught:
                await client.metadata()
            assert caught.value.code == "oidc_provider_unavailable"
        assert len(seen) == 1  # the failure is remembered: one request, not one per visitor
    finally:
        await client.close()


async def test_a_key_set_that_is_not_one_is_unavailable(aiohttp_server: Any) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/openid-configuration"):
            return web.json_response(discovery(f"http://{request.host}"))
        return web.Response(text=json.dumps({"not": "keys"}), content_type="application/json")

    client, _seen = await client_for(aiohttp_server, handler)
    try:
        with pytest.raises(SignInError) as caught:
            await client.keys()
        assert caught.value.code == "oidc_provider_unavailable"
    finally:
        await client.close()
