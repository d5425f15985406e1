"""In the meeting: presence, microphone and camera state, hands, chat and layout, as users see them."""

from __future__ import annotations

from playwright.sync_api import expect

from .bots import Bots
from .conftest import Server
from .helpers import Crowd, Person


def join_three(people: Crowd, room: str) -> tuple[Person, Person, Person]:
    ana = people.open(room, "ana", name="Ana Putri", role="moderator")
    budi = people.open(room, "budi", name="Budi Santoso")
    citra = people.open(room, "citra", name="Citra Dewi")
    return ana, budi, citra


def test_three_browsers_join_and_each_lists_the_other_two(people: Crowd, server: Server) -> None:
    ana = people.open("grid", "ana", name="Ana Putri", role="moderator", join=False)
    expect(ana.page.get_by_test_id("join")).to_be_enabled()
    expect(ana.page.locator("#preview-video")).to_be_visible()  # the fake camera's preview
    expect(ana.page.locator("#pj-camera-select option")).not_to_have_count(0)  # device pickers
    expect(ana.page.locator("#pj-mic-select option")).not_to_have_count(0)
    ana.page.wait_for_function(
        "() => Number(document.getElementById('pj-meter').getAttribute('aria-valuenow')) > 0"
    )
    ana.screenshot("prejoin", docs="prejoin")
    ana.join()
    budi = people.open("grid", "budi", name="Budi Santoso")
    citra = people.open("grid", "citra", name="Citra Dewi")
    trio = {"ana": ana, "budi": budi, "citra": citra}
    for me, person in trio.items():
        for other in trio.keys() - {me}:
            tile = person.tile(other)
            expect(tile).to_be_visible()
            expect(tile.locator("video")).to_have_count(1)
        expect(person.tiles()).to_have_count(3)
        expect(person.page.get_by_test_id("people-count")).to_have_text("3")
    expect(budi.tile("ana")).to_contain_text("Ana Putri")
    expect(ana.tile("ana")).to_contain_text("Ana Putri (you)")
    expect(ana.tile("ana")).to_have_attribute("data-video", "on")  # self view shows the camera
    # this server runs without media: the meeting works and says what is missing
    assert ana.wait_for_media_decision() == "unavailable"
    expect(ana.page.get_by_test_id("media-notice")).to_contain_text("Audio and video unavailable")
    ana.screenshot("grid-three")


def join_two(people: Crowd, room: str) -> tuple[Person, Person]:
    ana = people.open(room, "ana", name="Ana Putri", role="moderator")
    budi = people.open(room, "budi", name="Budi Santoso")
    return ana, budi


def test_muting_the_microphone_shows_on_the_others(people: Crowd) -> None:
    ana, budi, citra = join_three(people, "mute-self")
    mic = budi.page.get_by_test_id("mic")
    expect(mic).to_have_attribute("data-on", "true")
    expect(ana.tile("budi")).to_have_attribute("data-audio", "on")
    mic.click()
    expect(mic).to_have_attribute("data-on", "false")
    for person in (ana, citra):
        expect(person.tile("budi")).to_have_attribute("data-audio", "off")
        person.open_people()
        expect(person.row("budi")).to_have_attribute("data-audio", "off")
    budi.page.keyboard.press("m")  # the keyboard shortcut unmutes
    expect(mic).to_have_attribute("data-on", "true")
    expect(citra.tile("budi")).to_have_attribute("data-audio", "on")


def test_turning_the_camera_off_shows_the_avatar_to_others(people: Crowd) -> None:
    ana, budi = join_two(people, "camera-off")
    expect(budi.tile("budi")).to_have_attribute("data-video", "on")
    budi.page.get_by_test_id("camera").click()
    expect(budi.page.get_by_test_id("camera")).to_have_attribute("data-on", "false")
    expect(budi.tile("budi")).to_have_attribute("data-video", "off")
    ana.open_people()
    expect(ana.row("budi")).to_have_attribute("data-video", "off")


def test_joining_with_camera_and_microphone_off_and_turning_them_on(people: Crowd) -> None:
    ana = people.open("devices-off", "ana", name="Ana Putri")
    citra = people.open("devices-off", "citra", name="Citra Dewi", join=False)
    for toggle in ("prejoin-camera", "prejoin-mic"):
        citra.page.get_by_test_id(toggle).click()
        expect(citra.page.get_by_test_id(toggle)).to_have_attribute("data-on", "false")
    expect(citra.page.locator("#preview-off")).to_contain_text("Your camera is off")
    citra.join()
    expect(citra.page.get_by_test_id("camera")).to_have_attribute("data-on", "false")
    expect(citra.page.get_by_test_id("mic")).to_have_attribute("data-on", "false")
    expect(ana.tile("citra")).to_have_attribute("data-audio", "off")
    ana.open_people()
    expect(ana.row("citra")).to_have_attribute("data-video", "off")
    citra.page.get_by_test_id("camera").click()
    expect(citra.tile("citra")).to_have_attribute("data-video", "on")
    expect(ana.row("citra")).to_have_attribute("data-video", "on")


def test_a_raised_hand_is_seen_by_everyone(people: Crowd) -> None:
    ana, budi = join_two(people, "hands")
    budi.page.keyboard.press("r")  # the shortcut for the hand
    expect(budi.page.get_by_test_id("raise-hand")).to_have_attribute("aria-pressed", "true")
    expect(ana.tile("budi").locator(".tile-hand")).to_be_visible()
    expect(ana.page.locator(".toast", has_text="Budi Santoso raised their hand")).to_be_visible()
    ana.open_people()
    expect(ana.row("budi")).to_have_attribute("data-hand", "true")
    # raised hands come first in the list, before this participant
    first_row = ana.page.locator("[data-participant-row]").first
    expect(first_row).to_have_attribute("data-participant-row", "budi")


def test_chat_reaches_everyone(people: Crowd) -> None:
    ana, budi, citra = join_three(people, "chat")
    budi.say("Selamat pagi, semuanya")
    for person in (ana, citra):
        expect(person.page.get_by_test_id("chat-unread")).to_have_text("1")
        person.open_chat()
        expect(person.chat_texts()).to_have_text(["Selamat pagi, semuanya"])
        expect(person.page.get_by_test_id("chat-unread")).to_be_hidden()
    expect(budi.chat_texts()).to_have_text(["Selamat pagi, semuanya"])
    expect(ana.page.locator(".chat-msg .chat-from")).to_have_text(["Budi Santoso"])


def test_a_private_message_reaches_only_its_target(people: Crowd) -> None:
    ana, budi, citra = join_three(people, "private")
    citra.say("only for Ana", to="ana")
    ana.open_chat()
    expect(ana.chat_texts()).to_have_text(["only for Ana"])
    expect(ana.page.locator(".chat-msg.is-private .chat-private")).to_have_text("privately to you")
    expect(citra.page.locator(".chat-msg.is-private .chat-private")).to_have_text("privately to Ana Putri")
    citra.say("for everyone")  # a later room message proves Budi's chat works and skipped the first
    budi.open_chat()
    expect(budi.chat_texts()).to_have_text(["for everyone"])


def test_pinning_shows_that_participant_large(people: Crowd) -> None:
    ana, _budi = join_two(people, "pin")
    stage = ana.page.get_by_test_id("stage")
    expect(stage).to_have_attribute("data-layout", "grid")
    ana.tile("budi").hover()
    ana.tile("budi").locator(".tile-pin").click()
    expect(stage).to_have_attribute("data-layout", "speaker")
    expect(ana.page.locator(".stage-main [data-participant=budi]")).to_be_visible()
    expect(ana.page.locator(".strip-tiles [data-participant]")).to_have_count(1)
    main = ana.page.locator(".stage-main [data-participant=budi]").bounding_box()
    thumb = ana.page.locator(".strip-tiles [data-participant=ana]").bounding_box()
    assert main and thumb and main["width"] > 2 * thumb["width"]
    ana.page.keyboard.press("w")  # back to the grid
    expect(stage).to_have_attribute("data-layout", "grid")
    expect(ana.tiles()).to_have_count(2)


def test_leaving_tells_the_others_and_offers_to_rejoin(people: Crowd) -> None:
    ana, budi = join_two(people, "leave")
    budi.page.get_by_test_id("leave").click()
    expect(budi.end_screen()).to_have_attribute("data-reason", "left")
    expect(ana.tile("budi")).to_have_count(0)
    budi.page.get_by_test_id("rejoin").click()  # the link is kept for this tab
    budi.join()
    expect(ana.tile("budi")).to_be_visible()


def test_a_large_meeting_is_shown_25_tiles_a_page(people: Crowd, server: Server) -> None:
    with Bots(server, "big", 26):
        ana = people.open("big", "ana", name="Ana Putri")
        expect(ana.page.get_by_test_id("people-count")).to_have_text("27")
        expect(ana.tiles()).to_have_count(25)
        expect(ana.tile("ana")).to_be_visible()  # this participant first
        expect(ana.page.locator(".pager-label")).to_have_text("Page 1 of 2")
        ana.screenshot("grid-27")
        ana.page.get_by_test_id("page-next").click()
        expect(ana.tiles()).to_have_count(2)
        expect(ana.page.locator(".pager-label")).to_have_text("Page 2 of 2")
        expect(ana.page.get_by_test_id("page-next")).to_be_disabled()


def test_joining_again_elsewhere_replaces_the_old_session(people: Crowd) -> None:
    ana, budi = join_two(people, "twice")
    budi_again = people.open("twice", "budi", name="Budi Santoso")
    expect(budi.end_screen()).to_have_attribute("data-reason", "duplicate")
    expect(budi.page.get_by_test_id("end-title")).to_have_text("You joined from another window")
    expect(ana.tiles()).to_have_count(2)
    expect(ana.page.locator(".toast", has_text="Budi Santoso left")).to_have_count(
        0
    )  # a rejoin, not a departure
    expect(budi_again.tile("ana")).to_be_visible()


def test_a_moderator_may_rename_and_a_viewer_only_watches(people: Crowd) -> None:
    ana = people.open("roles", "ana", name="Ana Putri", role="moderator", join=False)
    expect(ana.page.locator("#pj-role")).to_have_text("You join as a moderator.")
    ana.page.get_by_test_id("name").fill("Ibu Ana Putri")  # update_name: moderators may
    ana.join()
    vera = people.open("roles", "vera", name="Vera", role="viewer", join=False)
    expect(vera.page.get_by_test_id("name")).not_to_be_editable()
    expect(vera.page.locator("#pj-role")).to_contain_text("viewer")
    expect(vera.page.get_by_test_id("prejoin-camera")).to_be_disabled()
    expect(vera.page.locator("#preview-off")).to_contain_text("without camera")
    vera.join()
    expect(vera.tile("ana")).to_contain_text("Ibu Ana Putri")
    expect(vera.page.get_by_test_id("mic")).to_be_disabled()
    expect(vera.page.get_by_test_id("camera")).to_be_disabled()
    expect(vera.page.get_by_test_id("screen-share")).to_be_hidden()
    vera.say("a question from a viewer")
    ana.open_chat()
    expect(ana.chat_texts()).to_have_text(["a question from a viewer"])


def test_the_meeting_works_from_the_keyboard_with_labelled_controls(people: Crowd) -> None:
    ana = people.open("keys", "ana", name="Ana Putri", join=False)
    expect(ana.page.get_by_test_id("join")).to_be_focused()
    ana.page.keyboard.press("Enter")
    expect(ana.tile("ana")).to_be_visible()
    page = ana.page
    page.keyboard.press("c")  # chat opens with the focus in the message field
    expect(page.get_by_test_id("chat-input")).to_be_focused()
    page.keyboard.type("typed, not clicked")
    page.keyboard.press("Enter")
    expect(ana.chat_texts()).to_have_text(["typed, not clicked"])
    page.keyboard.press("Escape")  # closes the panel, focus back on its button
    expect(page.locator("#panel-chat")).to_be_hidden()
    expect(page.get_by_test_id("chat-toggle")).to_be_focused()
    page.keyboard.press("Tab")
    focused = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert focused == "solid"  # the focus is visible
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, select, input, textarea')]
            .filter((el) => el.offsetParent !== null)
            .filter((el) => !(el.getAttribute('aria-label') || el.textContent.trim() || el.labels?.length))
            .map((el) => el.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []
