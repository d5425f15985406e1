"""Single sign-on in Chromium, against a real OpenID provider: an official opens the room's
address with no link, signs in at the provider and lands on the meeting's pre-join page; someone
the room's policy does not list sees who is signed in and that the meeting is not open to them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.oidc.conftest import CLIENT_ID, CLIENT_SECRET, Provider, start_provider, stop

from .conftest import Server, free_port

ROOM = "rapat-pimpinan"


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Provider]]:
    workdir = tmp_path_factory.mktemp("sso")
    port = free_port()
    provider = start_provider(workdir, port)
    config = workdir / "confserver.toml"
    config.write_text(
        "[auth.oidc]\n"
        f"issuer = {json.dumps(provider.issuer)}\n"
        f"client_id = {json.dumps(CLIENT_ID)}\n"
        f"client_secret = {json.dumps(CLIENT_SECRET)}\n"
        'scopes = ["openid", "email", "profile", "groups"]\n'
    )
    server = Server(workdir, port, config_file=config, env={"CONF_LOG_LEVEL": "debug"})
    try:
        server.start()
        server.create_room(
            ROOM, allow={"domains": ["kominfo.go.id"], "moderators": {"groups": ["kemenkominfo-eselon1"]}}
        )
        yield server, provider
    finally:
        server.stop()
        stop(provider)


def sign_in(browser: Any, server: Server, user: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.goto(f"{server.url}/r/{ROOM}")
    page.get_by_label("User").fill(user)  # the provider's sign-in form
    page.get_by_role("button", name="Sign in").click()
    return page


def test_an_official_signs_in_and_lands_in_the_meeting(browser: Any, sso: tuple[Server, Provider]) -> None:
    server, _provider = sso
    page = sign_in(browser, server, "budi")
    expect(page.locator("#view-prejoin")).to_be_visible()
    assert page.url == f"{server.url}/r/{ROOM}"  # the token has left the address bar
    expect(page.get_by_test_id("name")).to_have_value("Budi Santoso")
    page.get_by_test_id("join").click()
    expect(page.locator("#view-meeting")).to_be_visible()
    expect(page.get_by_test_id("stage")).to_contain_text("Budi Santoso")
    page.get_by_test_id("leave").click()  # then sign out: here, and at the provider
    page.get_by_test_id("sign-out").click()
    page.get_by_role("button", name="Yes, sign me out").click()
    expect(page.get_by_test_id("sso-title")).to_have_text("You have signed out")
    page.goto(f"{server.url}/r/{ROOM}")  # back to the room: the provider asks who you are again
    expect(page.get_by_label("User")).to_be_visible()
    page.context.close()
    log = Path(server.log).read_text()
    assert "signed in" in log
    assert "eyJ" not in log and "code=" not in log  # no token, no authorization code


def test_someone_outside_the_rooms_policy_is_refused_with_a_clear_page(
    browser: Any, sso: tuple[Server, Provider]
) -> None:
    server, _provider = sso
    page = sign_in(browser, server, "eve")
    expect(page.get_by_test_id("sso-title")).to_have_text("This meeting is not open to you")
    expect(page.get_by_test_id("sso-who")).to_contain_text("Eve Outsider")
    expect(page.get_by_test_id("sso-code")).to_have_text("oidc_not_allowed")
    page.get_by_test_id("sso-sign-out").click()  # to the provider's sign-out, then back here
    page.get_by_role("button", name="Yes, sign me out").click()
    expect(page.get_by_test_id("sso-title")).to_have_text("You have signed out")
    page.context.close()


def test_a_guest_link_made_by_an_admin_still_works_beside_sign_in(
    browser: Any, sso: tuple[Server, Provider]
) -> None:
    server, _provider = sso
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.goto(server.link(ROOM, "tamu-1", name="Tamu Dari Luar"))
    expect(page.get_by_test_id("name")).to_have_value("Tamu Dari Luar")
    page.get_by_test_id("join").click()
    expect(page.locator("#view-meeting")).to_be_visible()
    page.get_by_test_id("leave").click()
    expect(page.get_by_test_id("rejoin")).to_be_visible()
    expect(page.get_by_test_id("sign-out")).to_have_count(0)  # a guest did not sign in
    context.close()


def test_an_expired_token_from_a_sign_in_signs_in_again(browser: Any, sso: tuple[Server, Provider]) -> None:
    server, _provider = sso
    page = sign_in(browser, server, "alice")
    expect(page.locator("#view-prejoin")).to_be_visible()
    expired = server.token(ROOM, "alice@kominfo.go.id", ttl=60, now=time.time() - 3600)
    page.evaluate(f"sessionStorage.setItem('conf.token.{ROOM}', {json.dumps(expired)})")
    page.reload()  # the provider still knows alice: straight back with a fresh token, no form
    expect(page.locator("#view-prejoin")).to_be_visible()
    expect(page.get_by_test_id("name")).to_have_value("Alice Wibowo")
    fresh = page.evaluate(f"sessionStorage.getItem('conf.token.{ROOM}')")
    assert fresh and fresh != expired
    page.context.close()
