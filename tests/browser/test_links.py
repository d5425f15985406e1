"""Join links that cannot work get a clear page in the user's language (English or Bahasa Indonesia,
from the browser's language), and the token never stays in the address bar."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from confserver.tokens import mint_join_token

from .conftest import REPO, Server
from .helpers import Crowd, Person

LOCALES = {"en": "en-US", "id": "id-ID"}
CATALOGUES = {lang: json.loads((REPO / "web" / "i18n" / f"{lang}.json").read_text()) for lang in LOCALES}


def expect_end_screen(person: Person, reason: str, lang: str) -> None:
    messages = CATALOGUES[lang]
    expect(person.end_screen()).to_have_attribute("data-reason", reason)
    expect(person.page.get_by_test_id("end-title")).to_have_text(messages[f"end.{reason}.title"])
    expect(person.page.get_by_test_id("end-text")).to_have_text(messages[f"end.{reason}.text"])
    expect(person.page.locator("html")).to_have_attribute("lang", lang)


def forged(token: str) -> str:
    head, payload, sig = token.split(".")
    return f"{head}.{payload}.{sig[:-4]}AAAA"


@pytest.mark.parametrize("lang", sorted(LOCALES))
def test_bad_links_get_a_clear_page_in_the_browsers_language(
    people: Crowd, server: Server, lang: str
) -> None:
    """Expired, for another room, forged, withdrawn, no token at all, and a full room."""
    url = server.url
    revoked, claims = mint_join_token(server.key, room=f"withdrawn-{lang}", identity="eko", now=time.time())
    status, body = server.api("POST", f"/tokens/{claims.jti}/revoke")
    assert status == 200, body
    server.create_room(f"small-{lang}", max_participants=1)
    people.open(f"small-{lang}", "ana", name="Ana Putri")  # takes the only seat
    cases = [
        # (link, the page can tell before joining, the page shown)
        (server.link(f"expired-{lang}", "eko", ttl=60, now=time.time() - 3600), True, "expired"),
        (f"{url}/r/other-{lang}#token={server.token('elsewhere', 'eko')}", True, "wrong_room"),
        (f"{url}/r/forged-{lang}#token={forged(server.token(f'forged-{lang}', 'eko'))}", False, "invalid"),
        (f"{url}/r/withdrawn-{lang}#token={revoked}", False, "revoked"),
        (f"{url}/r/bare-{lang}", True, "missing"),
        (server.link(f"small-{lang}", "eko"), False, "room_full"),
    ]
    eko = people.open("unused", "eko", link="about:blank", join=False, locale=LOCALES[lang])
    for link, before_joining, reason in cases:
        eko.page.goto(link)
        if not before_joining:
            eko.page.get_by_test_id("join").click()  # the server is the judge of these
        expect_end_screen(eko, reason, lang)
        assert "token=" not in eko.page.url
    expect(eko.page.get_by_test_id("rejoin")).to_be_visible()  # a full room is worth another try later


def test_the_token_leaves_the_address_bar_and_goes_only_into_the_first_message(
    people: Crowd, server: Server
) -> None:
    token = server.token("links", "fajar")
    sent: list[str] = []
    fajar = people.open("links", "fajar", link=f"{server.url}/r/links#token={token}", join=False)
    expect(fajar.page.get_by_test_id("join")).to_be_visible()
    assert fajar.page.url == f"{server.url}/r/links"
    fajar.page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(str(frame))))
    fajar.join()
    fajar.page.get_by_test_id("raise-hand").click()
    expect(fajar.page.get_by_test_id("raise-hand")).to_have_attribute("aria-pressed", "true")
    assert sent and json.loads(sent[0])["type"] == "join" and json.loads(sent[0])["token"] == token
    assert all(token not in frame for frame in sent[1:])


def test_the_language_can_be_switched_and_is_remembered(people: Crowd, server: Server) -> None:
    gita = people.open("links", "gita", join=False, locale="en-GB")
    expect(gita.page.locator("#pj-title")).to_have_text("Ready to join?")
    gita.page.locator("[data-testid=language]:visible").select_option("id")
    expect(gita.page.locator("#pj-title")).to_have_text(CATALOGUES["id"]["prejoin.title"])
    expect(gita.page.get_by_test_id("join")).to_have_text("Gabung rapat")
    gita.page.reload()  # the link is kept for this tab; the choice of language too
    expect(gita.page.locator("html")).to_have_attribute("lang", "id")
    gita.join()
    expect(gita.page.get_by_test_id("leave")).to_have_attribute("aria-label", "Keluar dari rapat")


DENY_DEVICES = """
navigator.mediaDevices.getUserMedia = async () => {
  throw new DOMException("Permission denied", "NotAllowedError");
};
"""


def test_a_denied_camera_is_explained_and_joining_still_works(people: Crowd, server: Server) -> None:
    hana = people.open("links", "hana", join=False, init_script=DENY_DEVICES)
    notice = hana.page.get_by_test_id("device-notice")
    expect(notice).to_have_attribute("data-problem", "devices.both_denied")
    expect(notice).to_contain_text("Camera and microphone are blocked")
    expect(hana.page.get_by_test_id("prejoin-camera")).to_be_disabled()
    hana.join()
    expect(hana.page.get_by_test_id("mic")).to_have_attribute("data-on", "false")
    expect(hana.page.get_by_test_id("camera")).to_have_attribute("data-on", "false")
