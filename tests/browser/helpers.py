"""Participants driven through the real page: open a join link, join, and read what a user sees."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Locator, Page, expect

from .conftest import ARTIFACTS, REPO, Server

expect.set_options(timeout=10_000)

VIEWPORT = {"width": 1280, "height": 720}


class Person:
    """One participant: a browser context with one page."""

    def __init__(self, context: BrowserContext, page: Page, identity: str) -> None:
        self.context = context
        self.page = page
        self.identity = identity
        self.page_errors: list[str] = []
        page.on("pageerror", lambda err: self.page_errors.append(str(err)))

    # --- joining ------------------------------------------------------------------------------

    def join(self) -> Person:
        self.page.get_by_test_id("join").click()
        expect(self.page.locator("#view-meeting")).to_be_visible()
        expect(self.tile(self.identity)).to_be_visible()
        return self

    def wait_for_media_decision(self, timeout_ms: int = 15_000) -> str:
        """Waits until the client knows whether media works; returns the status."""
        self.page.wait_for_function(
            "() => ['unavailable', 'unsupported', 'connected', 'failed'].includes(document.body.dataset.media)",
            timeout=timeout_ms,
        )
        return str(self.page.evaluate("document.body.dataset.media"))

    def poll(self, expression: str, ok: Callable[[Any], bool], timeout: float, what: str) -> Any:
        """Evaluates ``expression`` (which may return a Promise) every 250 ms until ``ok`` holds
        for its value; returns that value. ``page.wait_for_function`` cannot do this: it takes
        a Promise for a truthy value and returns at once."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.page.evaluate(expression)
            if ok(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.identity}: {what}: {value}")
            self.page.wait_for_timeout(250)

    # --- what the user sees -----------------------------------------------------------------------

    def tile(self, identity: str, source: str = "camera") -> Locator:
        return self.page.locator(f'#stage [data-participant="{identity}"][data-source="{source}"]')

    def tiles(self) -> Locator:
        return self.page.locator("#stage [data-participant][data-source=camera]")

    def row(self, identity: str) -> Locator:
        return self.page.locator(f'[data-participant-row="{identity}"]')

    def end_screen(self) -> Locator:
        return self.page.get_by_test_id("end-screen")

    def open_people(self) -> None:
        if self.page.locator("#panel-people").is_hidden():
            self.page.get_by_test_id("people-toggle").click()
        expect(self.page.locator("#panel-people")).to_be_visible()

    def open_chat(self) -> None:
        if self.page.locator("#panel-chat").is_hidden():
            self.page.get_by_test_id("chat-toggle").click()
        expect(self.page.locator("#panel-chat")).to_be_visible()

    def say(self, text: str, to: str | None = None) -> None:
        self.open_chat()
        self.page.get_by_test_id("chat-to").select_option(to or "")
        self.page.get_by_test_id("chat-input").fill(text)
        self.page.get_by_test_id("chat-send").click()

    def chat_texts(self) -> Locator:
        return self.page.locator("[data-testid=chat-log] .chat-text")

    def more_menu(self, testid: str) -> None:
        self.page.get_by_test_id("more").click()
        self.page.get_by_test_id(testid).click()

    def confirm(self) -> None:
        self.page.get_by_test_id("confirm").click()

    def screenshot(self, name: str, *, docs: str | None = None) -> Path:
        """Saves test-artifacts/NAME.png; with UPDATE_DOC_SCREENSHOTS=1 also docs/img/DOCS.png."""
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.evaluate("document.querySelectorAll('.toast').forEach((t) => t.remove())")  # clear notices
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        if docs and os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
            shutil.copy(path, REPO / "docs" / "img" / f"{docs}.png")
        return path


class Crowd:
    """The participants of one test; closes them all and reports page errors at the end."""

    def __init__(self, browser: Any, server: Server, test_name: str) -> None:
        self.browser = browser
        self.server = server
        self.test_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        self.people: list[Person] = []

    def open(
        self,
        room: str,
        identity: str,
        *,
        locale: str = "en-US",
        link: str | None = None,
        join: bool = True,
        init_script: str | None = None,
        server: Server | None = None,
        **token_kw: Any,
    ) -> Person:
        srv = server or self.server
        context = self.browser.new_context(locale=locale, viewport=VIEWPORT)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        person = Person(context, page, identity)
        self.people.append(person)
        page.goto(link or srv.link(room, identity, **token_kw))
        if join:
            person.join()
        return person

    def close(self, failed: bool) -> None:
        errors = []
        for i, p in enumerate(self.people):
            if failed:
                try:
                    p.screenshot(f"failed-{self.test_name}-{i}-{p.identity}")
                except Exception:
                    pass
            errors += [f"{p.identity}: {e}" for e in p.page_errors]
            p.context.close()
        assert not errors, f"uncaught errors in the page: {errors}"
