"""Dynacast in Chromium: a camera nobody watches stops sending, and starts again when watched."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Server
from .helpers import Crowd, Person
from .test_media import COLLECT_PEER_CONNECTIONS, require_media, wait_for_video

pytestmark = pytest.mark.media

# The camera sender of the page's publish connection: its encodings' `active` flags and the
# packets its outbound streams have sent so far.
CAMERA_SENDING = """
async () => {
  for (const pc of window.__pcs) {
    if (pc.connectionState === 'closed') continue;
    const sender = pc.getSenders().find((s) => s.track && s.track.kind === 'video');
    if (!sender) continue;
    const encodings = sender.getParameters().encodings || [];
    let packets = 0;
    (await sender.getStats()).forEach((s) => { if (s.type === 'outbound-rtp') packets += s.packetsSent || 0; });
    return { active: encodings.map((e) => e.active !== false), packets };
  }
  return null;
}
"""


def camera(person: Person) -> dict[str, Any]:
    state: dict[str, Any] = person.page.evaluate(CAMERA_SENDING) or {"active": [], "packets": 0}
    return state


def poll(person: Person, ok: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = camera(person)
        if ok(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"{person.identity}: {what}: {state}")
        person.page.wait_for_timeout(250)


def test_a_camera_nobody_watches_is_switched_off_until_someone_does(
    browser: Any, media_server: Server
) -> None:
    crowd = Crowd(browser, media_server, "dynacast")
    failed = True
    try:
        ana = crowd.open("dynacast", "ana", init_script=COLLECT_PEER_CONNECTIONS)
        require_media(ana)
        first = poll(ana, lambda c: c["packets"] > 0, 20, "the camera sends")
        assert len(first["active"]) == 3 and all(first["active"])  # three simulcast layers, all on at first
        # alone in the room: after the server's pause delay (3 s) every layer is off
        poll(ana, lambda c: len(c["active"]) == 3 and not any(c["active"]), 15, "all layers off")
        ana.page.wait_for_timeout(500)  # what was queued has left
        before = camera(ana)["packets"]
        ana.page.wait_for_timeout(1500)
        assert camera(ana)["packets"] - before <= 2  # nothing more leaves (~90 packets/s when on)

        budi = crowd.open("dynacast", "budi")
        require_media(budi)
        wait_for_video(budi, "ana")  # the layer Budi's tile needs was switched on again
        poll(ana, lambda c: any(c["active"]) and c["packets"] > before + 10, 10, "on again")
        failed = False
    finally:
        crowd.close(failed)
