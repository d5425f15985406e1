"""Single sign-on against a real OpenID provider: an official whose account the room's policy
lists gets a join token (in the fragment of the meeting link), one it does not list gets a page
saying who is signed in and that the meeting is not open to them; forged, replayed and malformed
answers are refused with a page and a stable code; sign-out ends both sessions."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from confserver.app import create_app
from confserver.metrics import Metrics
from confserver.oidc.routes import SIGN_IN
from confserver.store import MemoryStore
from confserver.tokens import KeyRing, TokenVerifier, VerificationKey

from ..conftest import API_KEY, API_SECRET, CREDS, admin_headers
from .conftest import ALLOW, POST_CLIENT_ID, ROOM, Browserish, Provider, Start, page_code


def verify_join(location: str) -> Any:
    path, _, fragment = location.partition("#")
    assert path == f"/r/{ROOM}"
    assert fragment.startswith("token=")
    verifier = TokenVerifier(KeyRing([VerificationKey.hs256(API_KEY, API_SECRET)]))
    return verifier.verify_join(fragment[len("token=") :], room=ROOM, now=time.time())


async def audit_entries(browser: Browserish) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        async with browser.http.get(
            f"{browser.server}/api/v1/audit", params={"action": "user.sign_in"}, headers=admin_headers()
        ) as r:
            entries: list[dict[str, Any]] = (await r.json())["entries"]
        if entries or time.monotonic() > deadline:
            return entries


async def test_an_official_the_policy_lists_gets_a_join_token_in_the_link_fragment(start: Start) -> None:
    _app, browser = await start()
    status, location, _ = await browser.callback(await browser.sign_in(ROOM, "alice"))
    assert status == 303
    claims = verify_join(location)
    assert (claims.identity, claims.name, claims.role) == (
        "alice@kominfo.go.id",
        "Alice Wibowo",
        "participant",
    )
    [entry] = await audit_entries(browser)
    assert entry["event"]["outcome"] == "success"
    assert entry["user"]["id"] == "alice@kominfo.go.id"
    assert entry["conf"]["room"] == ROOM


async def test_a_member_of_a_moderator_group_moderates(start: Start) -> None:
    _app, browser = await start()
    _status, location, _ = await browser.callback(await browser.sign_in(ROOM, "budi"))
    assert verify_join(location).role == "moderator"


async def test_someone_outside_the_policy_is_told_who_is_signed_in_and_refused(start: Start) -> None:
    app, browser = await start()
    status, location, body = await browser.callback(await browser.sign_in(ROOM, "eve"))
    assert (status, location) == (403, "")
    assert page_code(body) == "oidc_not_allowed"
    assert "This meeting is not open to you" in body
    assert "Eve Outsider" in body and "eve@example.org" in body
    [entry] = await audit_entries(browser)
    assert (entry["event"]["outcome"], entry["event"]["reason"]) == ("failure", "oidc_not_allowed")
    assert entry["user"]["id"] == "eve@example.org"
    registry = app[SIGN_IN].metrics.registry
    assert registry.get_sample_value("conf_sign_ins_total", {"result": "oidc_not_allowed"}) == 1


async def test_a_room_without_a_policy_is_open_to_no_one_by_sign_in(start: Start) -> None:
    _app, browser = await start(allow={})
    status, _location, body = await browser.callback(await browser.sign_in(ROOM, "budi"))
    assert (status, page_code(body)) == (403, "oidc_not_allowed")


async def test_a_meeting_that_does_not_exist_is_named_on_the_page(start: Start) -> None:
    _app, browser = await start(allow=None)
    status, _location, body = await browser.callback(await browser.sign_in(ROOM, "alice"))
    assert (status, page_code(body)) == (404, "room_not_found")


async def test_a_replayed_callback_is_refused(start: Start) -> None:
    _app, browser = await start()
    url = await browser.sign_in(ROOM, "alice")
    flow_cookies = {c.key: c.value for c in browser.http.cookie_jar if c.key.startswith("conf_oidc_")}
    assert (await browser.callback(url))[0] == 303
    status, _location, body = await browser.callback(url)  # the same answer again: its cookie is gone
    assert (status, page_code(body)) == (400, "oidc_state_mismatch")
    browser.http.cookie_jar.update_cookies(flow_cookies)  # with the cookie restored: the code is spent
    status, _location, body = await browser.callback(url)
    assert (status, page_code(body)) == (401, "oidc_code_rejected")


async def test_a_callback_with_another_state_is_refused(start: Start) -> None:
    _app, browser = await start()
    url = await browser.sign_in(ROOM, "alice")
    query = parse_qs(urlsplit(url).query)
    forged = f"{browser.server}/auth/callback?" + urlencode(
        {"code": query["code"][0], "state": "forged-state"}
    )
    status, _location, body = await browser.callback(forged)
    assert (status, page_code(body)) == (400, "oidc_state_mismatch")
    [entry] = await audit_entries(browser)
    assert (entry["event"]["outcome"], entry["event"]["reason"]) == ("failure", "oidc_state_mismatch")


async def test_an_answer_naming_another_provider_is_refused(start: Start) -> None:
    _app, browser = await start()
    url = await browser.sign_in(ROOM, "alice")
    query = parse_qs(urlsplit(url).query)
    assert query["iss"]  # the provider names itself (RFC 9207)
    query["iss"] = ["https://sso.attacker.example"]
    forged = f"{browser.server}/auth/callback?" + urlencode({k: v[0] for k, v in query.items()})
    status, _location, body = await browser.callback(forged)
    assert (status, page_code(body)) == (401, "oidc_wrong_issuer")


async def test_a_server_the_provider_does_not_know_is_told_so(start: Start) -> None:
    _app, browser = await start(client_secret="not-the-secret-the-provider-gave-us")
    status, _location, body = await browser.callback(await browser.sign_in(ROOM, "alice"))
    assert (status, page_code(body)) == (502, "oidc_client_rejected")


async def test_a_client_registered_for_client_secret_post_signs_in(start: Start) -> None:
    _app, browser = await start(client_id=POST_CLIENT_ID, client_auth="client_secret_post")
    status, location, _ = await browser.callback(await browser.sign_in(ROOM, "alice"))
    assert status == 303, location
    assert verify_join(location).identity == "alice@kominfo.go.id"


async def test_an_id_token_that_has_expired_is_refused(start: Start) -> None:
    app, browser = await start()
    app[SIGN_IN].clock = lambda: time.time() + 2 * 3600  # the server's clock is ahead; ID tokens live 1 h
    url = await browser.sign_in(ROOM, "alice")
    status, _location, body = await browser.callback(url)
    assert (status, page_code(body)) == (401, "oidc_token_expired")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "code=abc",
        "state=abc",
        "code=a&code=b&state=s",
        "code=a&state=s&state=t",
        "code=a&state=" + "s" * 3000,
        "&".join(f"x{i}=1" for i in range(20)) + "&code=a&state=s",
    ],
    ids=["nothing", "no-state", "no-code", "two-codes", "two-states", "long-state", "too-many"],
)
async def test_malformed_callbacks_are_refused_with_a_stable_code(start: Start, query: str) -> None:
    _app, browser = await start()
    status, _location, body = await browser.callback(f"{browser.server}/auth/callback?{query}")
    assert (status, page_code(body)) == (400, "oidc_bad_callback")


async def test_a_refusal_by_the_provider_is_said_plainly(start: Start) -> None:
    _app, browser = await start()
    authorize = await browser.start(ROOM)
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    url = f"{browser.server}/auth/callback?" + urlencode({"error": "access_denied", "state": state})
    status, _location, body = await browser.callback(url)
    assert (status, page_code(body)) == (401, "oidc_provider_refused")
    assert "access_denied" in body


async def test_sign_out_forgets_the_session_and_ends_the_providers(start: Start, provider: Provider) -> None:
    _app, browser = await start()
    await browser.callback(await browser.sign_in(ROOM, "alice"))
    async with browser.http.get(f"{browser.server}/auth/session") as r:
        assert (await r.json())["signed_in"] == {"identity": "alice@kominfo.go.id", "name": "Alice Wibowo"}
    async with browser.http.get(f"{browser.server}/auth/logout", allow_redirects=False) as r:
        assert r.status == 303
        target = urlsplit(r.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{provider.issuer}/session/end"
    params = parse_qs(target.query)
    assert params["post_logout_redirect_uri"] == [f"{browser.server}/auth/signed-out"]
    assert "id_token_hint" in params
    async with browser.http.get(f"{browser.server}/auth/session") as r:
        assert await r.json() == {"sso": True, "signed_in": None}


async def test_a_provider_that_is_down_gets_a_page_and_the_rest_keeps_working(start: Start) -> None:
    from ..conftest import free_port

    _app, browser = await start(issuer=f"http://127.0.0.1:{free_port()}")
    for _ in range(2):  # the second is answered from the remembered failure, at once
        began = time.monotonic()
        async with browser.http.get(f"{browser.server}/auth/sign-in/{ROOM}", allow_redirects=False) as r:
            assert (r.status, page_code(await r.text())) == (503, "oidc_provider_unavailable")
    assert time.monotonic() - began < 1.0
    async with browser.http.get(f"{browser.server}/healthz") as r:
        assert r.status == 200
    async with browser.http.get(f"{browser.server}/r/{ROOM}") as r:
        assert r.status == 200
    async with browser.http.get(f"{browser.server}/api/v1/rooms/{ROOM}", headers=admin_headers()) as r:
        assert r.status == 200


async def test_nothing_of_the_providers_tokens_reaches_the_logs(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _app, browser = await start()
    url = await browser.sign_in(ROOM, "alice")
    code = parse_qs(urlsplit(url).query)["code"][0]
    _status, location, _ = await browser.callback(url)
    token = location.partition("#token=")[2]
    assert token
    # The test harness keeps aiohttp's access log (the server as deployed runs without one).
    logged = "\n".join(
        r.getMessage() + repr(r.__dict__) for r in caplog.records if r.name != "aiohttp.access"
    )
    assert "signed in" in logged
    for secret in (code, token, "eyJ"):  # "eyJ": how every JWT (an ID token too) begins
        assert secret not in logged


async def test_any_node_completes_a_sign_in_another_started(provider: Provider, aiohttp_server: Any) -> None:
    """Two nodes behind one address share the store and the API secret, nothing else."""
    store = MemoryStore()
    cfg = provider.config()
    nodes = [
        create_app(cfg, store=store, credentials=CREDS, metrics=Metrics.create(process=False))
        for _ in range(2)
    ]
    first = await aiohttp_server(nodes[0], host="127.0.0.1", port=provider.server_port)
    second = await aiohttp_server(nodes[1], host="127.0.0.1")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            f"http://127.0.0.1:{first.port}/api/v1/rooms",
            json={"name": ROOM, "allow": ALLOW},
            headers=admin_headers(),
        ) as r:
            assert r.status == 201
        url = await Browserish(http, f"http://127.0.0.1:{first.port}").sign_in(ROOM, "alice")
        elsewhere = url.replace(f":{first.port}/", f":{second.port}/")
        status, location, _ = await Browserish(http, f"http://127.0.0.1:{second.port}").callback(elsewhere)
    assert status == 303
    assert verify_join(location).identity == "alice@kominfo.go.id"
