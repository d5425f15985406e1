"""The lobby and the room password in the real page: a participant waits, a moderator hears and
sees them knock, admits them and both see each other; a denied one gets a clear page; a password
is asked, a wrong one asked again, the right one gets in."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import Server
from .helpers import Crowd


def test_a_moderator_admits_one_and_denies_another(people: Crowd, server: Server) -> None:
    server.create_room("lobby-room", lobby=True)
    ana = people.open("lobby-room", "ana", name="Ana Putri", role="moderator")
    budi = people.open("lobby-room", "budi", name="Budi Santoso", join=False)
    budi.page.get_by_test_id("join").click()
    expect(budi.page.get_by_test_id("lobby")).to_be_visible()
    expect(budi.page.get_by_test_id("lobby-status")).to_have_attribute("data-moderators", "1")
    expect(ana.page.get_by_test_id("lobby-notice")).to_contain_text("Budi Santoso is waiting to join")
    expect(ana.page.get_by_test_id("lobby-count")).to_have_text("1")
    expect(budi.tile("ana")).to_have_count(0)  # nothing of the meeting while waiting
    budi.screenshot("lobby-waiting")
    ana.open_people()
    ana.screenshot("lobby-moderator")
    ana.page.locator('[data-waiting-row="budi"] [data-action=admit]').click()
    expect(budi.page.locator("#view-meeting")).to_be_visible()
    expect(budi.tile("ana")).to_be_visible()
    expect(ana.tile("budi")).to_be_visible()
    expect(ana.page.get_by_test_id("lobby-count")).to_be_hidden()

    citra = people.open("lobby-room", "citra", name="Citra Dewi", join=False)
    citra.page.get_by_test_id("join").click()
    expect(citra.page.get_by_test_id("lobby")).to_be_visible()
    ana.page.locator('[data-waiting-row="citra"] [data-action=deny]').click()
    expect(citra.end_screen()).to_have_attribute("data-reason", "lobby_denied")
    expect(citra.page.get_by_test_id("end-title")).to_have_text("You were not let in")
    expect(ana.tile("citra")).to_have_count(0)


def test_waiting_without_a_moderator_says_so(people: Crowd, server: Server) -> None:
    server.create_room("lobby-nomod", lobby=True)
    dani = people.open("lobby-nomod", "dani", name="Dani", join=False)
    dani.page.get_by_test_id("join").click()
    expect(dani.page.get_by_test_id("lobby-status")).to_have_attribute("data-moderators", "0")
    expect(dani.page.get_by_test_id("lobby-status")).to_contain_text("No moderator is in the meeting yet")
    ana = people.open("lobby-nomod", "ana", name="Ana Putri", role="moderator")
    expect(dani.page.get_by_test_id("lobby-status")).to_have_attribute("data-moderators", "1")
    dani.page.get_by_test_id("lobby-leave").click()
    expect(dani.end_screen()).to_have_attribute("data-reason", "left")
    ana.open_people()
    expect(ana.page.get_by_test_id("lobby-waiting")).to_have_count(0)


def test_a_room_password_is_asked_and_checked(people: Crowd, server: Server) -> None:
    server.create_room("secret", password="kopi tubruk")
    eko = people.open("secret", "eko", name="Eko", join=False)
    eko.page.get_by_test_id("join").click()
    field = eko.page.get_by_test_id("room-password")
    expect(field).to_be_visible()
    expect(eko.page.get_by_test_id("password-error")).to_be_hidden()
    field.fill("teh manis")
    eko.page.get_by_test_id("password-submit").click()
    expect(eko.page.get_by_test_id("password-error")).to_be_visible()
    eko.page.get_by_test_id("room-password").fill("kopi tubruk")
    eko.page.get_by_test_id("password-submit").click()
    expect(eko.page.locator("#view-meeting")).to_be_visible()
    expect(eko.tile("eko")).to_be_visible()
    people.open("secret", "ana", name="Ana Putri", role="moderator")  # moderators are not asked
    expect(eko.tile("ana")).to_be_visible()
