"""The organisation's branding in Chromium: a server configured with a name, a logo, an accent
colour and a privacy note shows them on the pre-join page and in the meeting, with the meeting's
title from its metadata, under the strict Content-Security-Policy; an unbranded server keeps the
client's own wording and colours."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server
from .helpers import Crowd

BRAND = "Kementerian Contoh"
ACCENT = "#0b7a3e"
ACCENT_RGB = "rgb(11, 122, 62)"
DEFAULT_ACCENT_RGB = "rgb(37, 99, 235)"  # --accent-strong of web/style.css
NOTE = "Rapat ini hanya untuk peserta yang diundang.\nCatatan rapat disimpan 30 hari."
TITLE = "Rapat Anggaran <2027> & Rencana Kerja"
LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40" viewBox="0 0 120 40" '
    "onload=\"alert('onload')\">"
    "<style>rect { fill: #0b7a3e; }</style>"
    "<script>alert('script')</script>"
    '<rect x="0" y="0" width="120" height="40" rx="8"/>'
    '<circle cx="20" cy="20" r="12" fill="#fff"/></svg>'
)
"""A logo with script in it: shown as an image, and opened on its own it must run nothing."""

# Records what the page's Content-Security-Policy refused (nothing should be).
CSP_WATCH = (
    "window.__cspViolations = [];"
    "document.addEventListener('securitypolicyviolation', (e) =>"
    " window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


@pytest.fixture(scope="module")
def branded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("confserver-branded")
    logo = workdir / "logo.svg"
    logo.write_text(LOGO)
    srv = Server(
        workdir,
        env={
            "CONF_UI_BRAND_NAME": BRAND,
            "CONF_UI_LOGO_FILE": str(logo),
            "CONF_UI_ACCENT_COLOR": ACCENT,
            "CONF_UI_PRIVACY_NOTE": NOTE,
        },
    )
    srv.start()
    yield srv
    srv.stop()


LOADED_WIDTH = "(img) => img.decode().then(() => img.naturalWidth)"
"""The image's natural width once it has loaded (decode() fails for a broken image)."""


def background(page: Any, testid: str) -> str:
    return str(page.get_by_test_id(testid).evaluate("(el) => getComputedStyle(el).backgroundColor"))


def test_a_branded_server_shows_its_name_logo_colour_and_note_and_the_meetings_title(
    people: Crowd, branded_server: Server
) -> None:
    srv = branded_server
    srv.create_room("budget", metadata={"title": TITLE})
    ana = people.open("budget", "ana", server=srv, join=False, init_script=CSP_WATCH)
    page = ana.page

    # the pre-join page: name, logo, accent, note, and the meeting's title (as text, never markup)
    prejoin = page.locator("#view-prejoin")
    expect(prejoin.get_by_test_id("room-title")).to_have_text(TITLE)
    expect(prejoin.get_by_test_id("brand-name")).to_have_text(BRAND)
    expect(page).to_have_title(f"Join {TITLE} · {BRAND}")
    logo = prejoin.get_by_test_id("brand-logo")
    expect(logo).to_be_visible()
    assert logo.evaluate(LOADED_WIDTH) == 120
    assert logo.get_attribute("src") == "/brand-logo"
    assert background(page, "join") == ACCENT_RGB
    assert page.get_by_test_id("join").evaluate("(el) => getComputedStyle(el).color") == "rgb(255, 255, 255)"
    note = prejoin.get_by_test_id("privacy-note")
    expect(note).to_have_text(NOTE)
    assert note.evaluate("(el) => el.innerText") == NOTE  # the note's line break is kept
    ana.screenshot("branding-prejoin")

    # another language: the organisation's own words stay, the page's change
    prejoin.get_by_test_id("language").select_option("id")
    expect(page).to_have_title(f"Bergabung ke {TITLE} · {BRAND}")
    expect(prejoin.get_by_test_id("brand-name")).to_have_text(BRAND)
    assert note.evaluate("(el) => el.innerText") == NOTE

    # the meeting: title in the top bar and the page title, the logo standing for the name
    ana.join()
    expect(page.locator("#view-meeting").get_by_test_id("room-title")).to_have_text(TITLE)
    top_logo = page.locator("#view-meeting").get_by_test_id("brand-logo")
    expect(top_logo).to_have_attribute("alt", BRAND)
    assert top_logo.evaluate(LOADED_WIDTH) == 120
    expect(page).to_have_title(f"{TITLE} (1) · {BRAND}")
    status, _ = srv.api("PATCH", "/rooms/budget", {"metadata": {"title": "Rapat Anggaran (revisi)"}})
    assert status == 200
    expect(page.locator("#view-meeting").get_by_test_id("room-title")).to_have_text("Rapat Anggaran (revisi)")
    ana.screenshot("branding-meeting")
    assert page.evaluate("window.__cspViolations") == []

    # the logo opened on its own: its script does not run
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    resp = page.goto(srv.url + "/brand-logo")
    assert resp is not None and resp.headers["content-type"] == "image/svg+xml"
    page.wait_for_timeout(500)
    assert dialogs == []


def test_without_a_title_the_room_is_named_by_its_address_and_the_start_page_is_branded_too(
    people: Crowd, branded_server: Server
) -> None:
    srv = branded_server
    srv.create_room("weekly-sync", metadata={"title": "   ", "team": "x"})
    page = people.open("weekly-sync", "budi", server=srv, join=False).page
    expect(page.locator("#view-prejoin").get_by_test_id("room-title")).to_have_text("weekly-sync")
    expect(page).to_have_title(f"Join weekly-sync · {BRAND}")
    # what metadata.title may hold: cleaned and bounded the same way before and in the meeting
    shown = page.evaluate(
        r"""async () => {
            const { roomTitle } = await import("/static/roomtitle.js");
            return [
                roomTitle({ title: "Rapat\u202e  Anggaran\n\tbulan\u0007ini" }, "slug"),
                roomTitle({ title: "x".repeat(150) }, "slug"),
                roomTitle({ title: 2027 }, "slug"),
                roomTitle({ title: " \u2066 " }, "slug"),
                roomTitle(null, "slug"),
            ];
        }"""
    )
    assert shown == ["Rapat Anggaran bulan ini", "x" * 99 + "…", "slug", "slug", "slug"]

    # the start page carries the same name, logo and note
    page.goto(srv.url + "/")
    expect(page).to_have_title(BRAND)
    expect(page.get_by_test_id("brand-name")).to_have_text(BRAND)
    expect(page.get_by_test_id("privacy-note")).to_have_text(NOTE)
    assert page.get_by_test_id("brand-logo").evaluate(LOADED_WIDTH) == 120


def test_an_unbranded_server_keeps_the_clients_own_name_colours_and_note(
    people: Crowd, server: Server
) -> None:
    page = people.open("plain-room", "citra", join=False, init_script=CSP_WATCH).page
    prejoin = page.locator("#view-prejoin")
    expect(prejoin.get_by_test_id("room-title")).to_have_text("plain-room")
    expect(prejoin.get_by_test_id("brand-name")).to_have_text("Conference")
    expect(page).to_have_title("Join plain-room")
    expect(prejoin.get_by_test_id("brand-logo")).to_have_count(0)
    expect(prejoin.get_by_test_id("privacy-note")).to_have_text(
        "This meeting runs on your organisation's own server."
    )
    assert background(page, "join") == DEFAULT_ACCENT_RGB
    assert page.evaluate("window.__cspViolations") == []
