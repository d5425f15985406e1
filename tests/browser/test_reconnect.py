"""A network blip: the page shows "reconnecting…" and joins again by itself with the same link."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import Server
from .helpers import Crowd


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.start()
    yield srv
    srv.stop()


def test_after_a_server_restart_everyone_rejoins_by_themselves(people: Crowd, own_server: Server) -> None:
    ana = people.open("blip", "ana", name="Ana Putri", server=own_server)
    budi = people.open("blip", "budi", name="Budi Santoso", server=own_server)
    budi.page.get_by_test_id("raise-hand").click()
    expect(ana.tile("budi").locator(".tile-hand")).to_be_visible()
    own_server.stop(kill=True)  # connections drop without a goodbye
    for person in (ana, budi):
        expect(person.page.get_by_test_id("banner")).to_contain_text("Reconnecting")
    own_server.start()
    for person in (ana, budi):
        expect(person.page.get_by_test_id("banner")).to_be_hidden(timeout=20_000)
        expect(person.page.locator(".toast", has_text="Reconnected")).to_be_visible()
    expect(ana.tile("budi")).to_be_visible()
    expect(budi.tile("ana")).to_be_visible()
    # the state from before the blip came back with the rejoin
    expect(ana.tile("budi").locator(".tile-hand")).to_be_visible()
    budi.say("still here")
    ana.open_chat()
    expect(ana.chat_texts()).to_have_text(["still here"])


def test_a_connection_that_goes_quiet_is_replaced(people: Crowd, server: Server) -> None:
    ana = people.open("quiet", "ana", name="Ana Putri")
    budi = people.open("quiet", "budi", name="Budi Santoso")
    budi.context.set_offline(True)
    expect(budi.page.get_by_test_id("banner")).to_contain_text("Reconnecting", timeout=25_000)
    budi.context.set_offline(False)
    expect(budi.page.get_by_test_id("banner")).to_be_hidden(timeout=20_000)
    expect(budi.tile("ana")).to_be_visible()
    expect(ana.tile("budi")).to_be_visible()
    expect(ana.tiles()).to_have_count(2)  # the old session was replaced, not doubled
