"""Moderators: mute one or everyone, remove a participant, lock the room, end the meeting; everyone
sees what happened."""

from __future__ import annotations

from playwright.sync_api import expect

from .helpers import Crowd, Person


def join_three(people: Crowd, room: str) -> tuple[Person, Person, Person]:
    ana = people.open(room, "ana", name="Ana Putri", role="moderator")
    budi = people.open(room, "budi", name="Budi Santoso")
    citra = people.open(room, "citra", name="Citra Dewi")
    return ana, budi, citra


def person_action(moderator: Person, identity: str, action: str) -> None:
    moderator.open_people()
    row = moderator.row(identity)
    row.hover()
    row.locator(f"[data-action={action}]").click()


def test_a_moderator_removes_a_participant_and_everyone_sees_it(people: Crowd) -> None:
    ana, budi, citra = join_three(people, "remove")
    person_action(ana, "budi", "remove")
    ana.confirm()
    expect(budi.end_screen()).to_have_attribute("data-reason", "removed")
    expect(budi.page.get_by_test_id("end-title")).to_have_text("You were removed from the meeting")
    expect(budi.page.get_by_test_id("rejoin")).to_have_count(0)
    for person in (ana, citra):
        expect(person.tile("budi")).to_have_count(0)
        expect(person.page.get_by_test_id("removed-notice")).to_contain_text(
            "Budi Santoso was removed from the meeting"
        )
    expect(ana.row("budi")).to_have_count(0)
    expect(citra.page.get_by_test_id("people-count")).to_have_text("2")


def test_a_moderator_mutes_a_participant(people: Crowd) -> None:
    ana, budi, citra = join_three(people, "mod-mute")
    expect(budi.page.get_by_test_id("mic")).to_have_attribute("data-on", "true")
    person_action(ana, "budi", "mute-audio")
    expect(budi.page.get_by_test_id("mic")).to_have_attribute("data-on", "false")
    expect(budi.page.get_by_test_id("muted-notice")).to_contain_text("Ana Putri muted your microphone")
    expect(citra.tile("budi")).to_have_attribute("data-audio", "off")
    # asking to unmute leaves the choice to the participant
    person_action(ana, "budi", "ask-unmute")
    budi.page.locator(".toast", has_text="asks you to unmute").get_by_role("button", name="Unmute").click()
    expect(budi.page.get_by_test_id("mic")).to_have_attribute("data-on", "true")
    expect(ana.tile("budi")).to_have_attribute("data-audio", "on")


def test_a_moderator_mutes_everyone(people: Crowd) -> None:
    ana, budi, citra = join_three(people, "mute-all")
    ana.more_menu("mute-all")
    ana.confirm()
    for person in (budi, citra):
        expect(person.page.get_by_test_id("mic")).to_have_attribute("data-on", "false")
    expect(ana.tile("budi")).to_have_attribute("data-audio", "off")
    expect(ana.tile("citra")).to_have_attribute("data-audio", "off")
    expect(ana.page.get_by_test_id("mic")).to_have_attribute("data-on", "true")  # not the moderator


def test_a_locked_room_refuses_a_new_join_with_a_clear_message(people: Crowd) -> None:
    ana, budi, _citra = join_three(people, "lock")
    ana.more_menu("lock-room")
    for person in (ana, budi):
        expect(person.page.get_by_test_id("locked-badge")).to_be_visible()
        expect(person.page.get_by_test_id("lock-notice")).to_contain_text("The meeting was locked")
    dani = people.open("lock", "dani", name="Dani", join=False)
    dani.page.get_by_test_id("join").click()
    expect(dani.end_screen()).to_have_attribute("data-reason", "room_locked")
    expect(dani.page.get_by_test_id("end-title")).to_have_text("The meeting is locked")
    expect(dani.page.get_by_test_id("end-text")).to_contain_text("Ask the organiser to unlock it")
    ana.more_menu("lock-room")  # unlock: Dani can try again and gets in
    expect(budi.page.get_by_test_id("locked-badge")).to_be_hidden()
    dani.page.get_by_test_id("rejoin").click()
    dani.join()
    expect(ana.tile("dani")).to_be_visible()


def test_a_moderator_ends_the_meeting_for_everyone(people: Crowd) -> None:
    ana = people.open("end", "ana", name="Ana Putri", role="moderator")
    budi = people.open("end", "budi", name="Budi Santoso")
    ana.more_menu("end-meeting")
    ana.confirm()
    for person in (ana, budi):
        expect(person.end_screen()).to_have_attribute("data-reason", "ended")
        expect(person.page.get_by_test_id("end-title")).to_have_text("The meeting has ended")


def test_participants_do_not_get_moderator_controls(people: Crowd) -> None:
    budi = people.open("no-mod", "budi", name="Budi Santoso")
    people.open("no-mod", "citra", name="Citra Dewi")
    budi.open_people()
    expect(budi.row("citra").locator("[data-action=message]")).to_have_count(1)
    expect(budi.row("citra").locator("[data-action=remove]")).to_have_count(0)
    expect(budi.page.get_by_test_id("panel-mute-all")).to_be_hidden()
    budi.page.get_by_test_id("more").click()
    expect(budi.page.get_by_test_id("mute-all")).to_have_count(0)
    expect(budi.page.get_by_test_id("shortcuts")).to_be_visible()
