"""End-to-end encrypted meetings in Chromium: media through the SFU encrypted in each browser, the
same safety code everywhere, frames nobody can decode without the keys, a refused browser without
encoded transforms, and a server that swaps a public key caught by the safety code.

These tests need the media service, like test_media.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server
from .helpers import Crowd, Person
from .test_media import COLLECT_PEER_CONNECTIONS, require_media, wait_for_video

pytestmark = pytest.mark.media

ROOM = "e2ee-trio"

# Test-side: the page's E2EE worker, for asking it what it did (frames encrypted and decrypted).
COLLECT_WORKERS = """
(() => {
  const Original = window.Worker;
  window.__workers = [];
  window.Worker = function (...args) {
    const w = new Original(...args);
    window.__workers.push(w);
    return w;
  };
  window.Worker.prototype = Original.prototype;
})();
"""

INBOUND = """
async () => {
  const totals = { framesDecoded: 0, videoPackets: 0, audioPackets: 0, audioSamples: 0, codecs: [] };
  for (const pc of window.__pcs) {
    if (pc.connectionState === 'closed') continue;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === 'codec') totals.codecs.push(s.mimeType);
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') { totals.framesDecoded += s.framesDecoded || 0; totals.videoPackets += s.packetsReceived || 0; }
      if (s.kind === 'audio') { totals.audioPackets += s.packetsReceived || 0; totals.audioSamples += s.totalSamplesReceived || 0; }
    });
  }
  return totals;
}
"""

WORKER_STATS = """
async () => {
  const w = window.__workers.at(-1);
  if (!w) return null;
  return await new Promise((resolve) => {
    const on = (ev) => { if (ev.data && ev.data.type === 'stats') { w.removeEventListener('message', on); resolve(ev.data); } };
    w.addEventListener('message', on);
    w.postMessage({ type: 'stats' });
  });
}
"""

SAFETY_CODE = "() => document.querySelector('[data-testid=safety-code]')?.dataset.code || ''"


def open_e2ee(crowd: Crowd, room: str, identity: str, name: str, **kw: Any) -> Person:
    return crowd.open(room, identity, name=name, init_script=COLLECT_PEER_CONNECTIONS + COLLECT_WORKERS, **kw)


def safety_code(person: Person) -> str:
    return str(person.page.evaluate(SAFETY_CODE))


@pytest.fixture(scope="module")
def trio(browser: Any, media_server: Server) -> Iterator[dict[str, Person]]:
    media_server.create_room(ROOM, e2ee=True)
    crowd = Crowd(browser, media_server, "e2ee")
    try:
        ana = open_e2ee(crowd, ROOM, "ana", "Ana Putri", role="moderator")
        require_media(ana)
        budi = open_e2ee(crowd, ROOM, "budi", "Budi Santoso")
        citra = open_e2ee(crowd, ROOM, "citra", "Citra Dewi", locale="id-ID")
        yield {"ana": ana, "budi": budi, "citra": citra}
    finally:
        crowd.close(failed=False)


def test_three_browsers_see_and_hear_each_other_encrypted(trio: dict[str, Person]) -> None:
    for me, person in trio.items():
        expect(person.page.get_by_test_id("e2ee-badge")).to_be_visible()
        for other in trio.keys() - {me}:
            wait_for_video(person, other, timeout_ms=30_000)
            expect(person.tile(other)).to_have_attribute("data-e2ee", "ok")
    for person in trio.values():
        first = person.poll(INBOUND, lambda t: t["framesDecoded"] > 0 and t["audioSamples"] > 0, 20, "media")
        person.page.wait_for_timeout(1000)
        later = person.page.evaluate(INBOUND)
        assert later["audioSamples"] > first["audioSamples"], "audio stopped"
        assert later["framesDecoded"] > first["framesDecoded"], "video stopped"
        assert not any("VP9" in c or "AV1" in c for c in later["codecs"]), later["codecs"]
        stats = person.page.evaluate(WORKER_STATS)
        assert stats["encrypt"]["frames"] > 0 and stats["decrypt"]["frames"] > 0, stats
    # every sender and receiver goes through the worker (Chromium takes the standard API)
    attached = trio["ana"].page.evaluate(
        """() => window.__pcs.filter((pc) => pc.connectionState !== 'closed').map((pc) => [
            ...pc.getTransceivers().filter((t) => t.sender.track).map((t) => !!t.sender.transform),
            ...pc.getTransceivers().filter((t) => t.currentDirection === 'recvonly').map((t) => !!t.receiver.transform)])"""
    )
    flat = [x for pc in attached for x in pc]
    assert flat and all(flat), attached


def open_safety(person: Person) -> None:
    if person.page.locator("#panel-e2ee").is_hidden():
        person.page.get_by_test_id("e2ee-badge").click()
    expect(person.page.get_by_test_id("e2ee-panel")).to_be_visible()


def same_codes(people: list[Person], timeout: float = 15) -> str:
    """Waits until everyone shows one and the same safety code; returns it."""
    first = people[0]
    first.poll(
        "() => 0",
        lambda _: len({safety_code(p) for p in people}) == 1 and safety_code(first) != "",
        timeout,
        f"safety codes {[safety_code(p) for p in people]}",
    )
    return safety_code(first)


def test_everyone_shows_the_same_safety_code_and_can_mark_who_compared(trio: dict[str, Person]) -> None:
    ana, budi, citra = trio["ana"], trio["budi"], trio["citra"]
    for person in trio.values():
        open_safety(person)
    code = same_codes([ana, budi, citra])
    digits = ana.page.get_by_test_id("safety-digits").inner_text().split()
    assert len(digits) == 5 and all(len(d) == 5 and d.isdigit() for d in digits), digits
    assert code.startswith(" ".join(digits))
    expect(citra.page.get_by_test_id("e2ee-panel")).to_contain_text("Kode keamanan")
    expect(citra.page.get_by_test_id("e2ee-badge")).to_contain_text("Terenkripsi ujung ke ujung")
    # Ana read the code aloud with Budi: she marks him, and her people list shows it
    ana.page.locator('[data-verify-row="budi"] [data-testid=verify]').click()
    expect(ana.page.locator('[data-verify-row="budi"]')).to_have_attribute("data-verified", "true")
    ana.screenshot("e2ee-safety-code", docs="e2ee-safety-code")
    ana.open_people()
    expect(ana.row("budi")).to_have_attribute("data-verified", "true")
    expect(ana.row("citra")).to_have_attribute("data-verified", "false")
    expect(ana.row("budi").locator(".state-verified")).to_be_visible()


def test_simulcast_layers_and_a_screen_share_work_encrypted(trio: dict[str, Person]) -> None:
    ana, budi, citra = trio["ana"], trio["budi"], trio["citra"]
    # each layer is encrypted by itself: the SFU still picks the high one for a pinned tile and
    # the low one for a thumbnail (it reads keyframes and sizes from the clear VP8 prefix)
    ana.tile("citra").hover()
    ana.tile("citra").locator(".tile-pin").click()
    try:
        seen = ana.page.wait_for_function(
            """() => {
                const big = document.querySelector('.stage-main [data-participant="citra"] video');
                const small = document.querySelector('.strip-tiles [data-participant="budi"] video');
                const ok = big && small && big.videoWidth >= 960 && small.videoWidth > 0 && small.videoWidth <= 320;
                return ok ? {big: big.videoWidth, small: small.videoWidth} : null;
            }""",
            timeout=60_000,
        ).json_value()
        assert seen["big"] >= 960 and 0 < seen["small"] <= 320, seen
    finally:
        ana.page.get_by_test_id("layout").click()
        expect(ana.page.get_by_test_id("stage")).to_have_attribute("data-layout", "grid")
    budi.page.get_by_test_id("screen-share").click()
    try:
        for person in (ana, citra):
            wait_for_video(person, "budi", "screen", timeout_ms=30_000)
            expect(person.tile("budi", "screen")).to_have_attribute("data-e2ee", "ok")
    finally:
        budi.page.get_by_test_id("screen-share").click()
    expect(ana.tile("budi", "screen")).to_have_count(0)


# A participant whose worker is given no receive keys: the frames reach it, none can be decoded.
NO_RECEIVE_KEYS = """
(() => {
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (message, ...rest) {
    if (message && message.type === 'setReceiveKey') return;
    return post.call(this, message, ...rest);
  };
})();
"""


def test_the_media_is_encrypted_on_the_wire(
    trio: dict[str, Person], browser: Any, media_server: Server
) -> None:
    crowd = Crowd(browser, media_server, "e2ee-nokeys")
    try:
        dewi = crowd.open(
            ROOM,
            "dewi",
            name="Dewi Lestari",
            init_script=COLLECT_PEER_CONNECTIONS + COLLECT_WORKERS + NO_RECEIVE_KEYS,
        )
        require_media(dewi)
        seen = dewi.poll(
            INBOUND, lambda t: t["videoPackets"] > 200 and t["audioPackets"] > 100, 30, "packets"
        )
        dewi.page.wait_for_timeout(2000)
        later = dewi.page.evaluate(INBOUND)
        assert later["videoPackets"] > seen["videoPackets"], "no more packets"
        assert later["framesDecoded"] == 0, later
        stats = dewi.page.evaluate(WORKER_STATS)
        assert stats["decrypt"]["frames"] == 0 and stats["decrypt"]["dropped"] > 100, stats
        # the user sees why the tiles stay empty, never garbage
        expect(dewi.tile("ana")).to_have_attribute("data-e2ee", "waiting")
        expect(dewi.tile("ana").locator(".tile-keys")).to_contain_text("Waiting for encryption keys")
        # while the others, who have Dewi's keys, see her
        wait_for_video(trio["ana"], "dewi", timeout_ms=30_000)
    finally:
        crowd.close(failed=False)


ONLY_ENCODED_STREAMS = """
(() => { delete window.RTCRtpScriptTransform; })();
"""


def test_browsers_with_only_encoded_streams_take_part(
    trio: dict[str, Person], browser: Any, media_server: Server
) -> None:
    crowd = Crowd(browser, media_server, "e2ee-streams")
    try:
        fajar = crowd.open(
            ROOM,
            "fajar",
            name="Fajar Nugroho",
            join=False,
            init_script=COLLECT_PEER_CONNECTIONS + COLLECT_WORKERS + ONLY_ENCODED_STREAMS,
        )
        if not fajar.page.evaluate("typeof RTCRtpSender.prototype.createEncodedStreams === 'function'"):
            pytest.skip("this Chromium has no createEncodedStreams")
        fajar.join()
        require_media(fajar)
        assert fajar.page.evaluate(
            "window.__pcs.every((pc) => pc.getConfiguration().encodedInsertableStreams)"
        )
        wait_for_video(fajar, "ana", timeout_ms=30_000)
        expect(fajar.tile("ana")).to_have_attribute("data-e2ee", "ok")
        wait_for_video(trio["ana"], "fajar", timeout_ms=30_000)
        expect(trio["ana"].tile("fajar")).to_have_attribute("data-e2ee", "ok")
    finally:
        crowd.close(failed=False)


NO_ENCODED_TRANSFORMS = """
(() => {
  delete window.RTCRtpScriptTransform;
  delete RTCRtpSender.prototype.createEncodedStreams;
  delete RTCRtpReceiver.prototype.createEncodedStreams;
})();
"""


def test_a_browser_without_encoded_transforms_is_refused(browser: Any, media_server: Server) -> None:
    media_server.create_room("e2ee-old-browser", e2ee=True)
    crowd = Crowd(browser, media_server, "e2ee-refused")
    try:
        old = crowd.open(
            "e2ee-old-browser",
            "eko",
            name="Eko",
            join=False,
            init_script=COLLECT_PEER_CONNECTIONS + NO_ENCODED_TRANSFORMS,
        )
        old.page.get_by_test_id("join").click()
        expect(old.end_screen()).to_have_attribute("data-reason", "e2ee_unsupported")
        expect(old.page.locator("#end-title")).to_have_text("This browser cannot join an encrypted meeting")
        assert old.page.evaluate("window.__pcs.length") == 0, "it started media"
    finally:
        crowd.close(failed=False)


def test_a_server_that_swaps_a_public_key_shows_different_safety_codes(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    srv = Server(
        tmp_path_factory.mktemp("keyswap"),
        command=[sys.executable, "-m", "tests.browser.keyswap"],
        env={"KEYSWAP_IDENTITY": "budi"},
    )
    srv.start()
    crowd = Crowd(browser, srv, "e2ee-keyswap")
    try:
        srv.create_room("swapped", e2ee=True)
        ana = open_e2ee(crowd, "swapped", "ana", "Ana Putri")
        budi = open_e2ee(crowd, "swapped", "budi", "Budi Santoso")
        citra = open_e2ee(crowd, "swapped", "citra", "Citra Dewi")
        for person in (ana, budi, citra):
            open_safety(person)
        # Ana and Citra were given the same (forged) key for Budi; Budi computes with his own
        code = same_codes([ana, citra])
        budi.poll(SAFETY_CODE, lambda c: c != "", 15, "a safety code")
        budi.page.wait_for_timeout(1000)
        assert safety_code(budi) != code
        assert safety_code(ana) == code
    finally:
        crowd.close(failed=False)
        srv.stop()


def test_a_reconnect_brings_new_keys_and_the_media_back(trio: dict[str, Person]) -> None:
    ana, budi, citra = trio["ana"], trio["budi"], trio["citra"]
    before = same_codes([ana, budi, citra])
    budi.context.set_offline(True)
    expect(budi.page.get_by_test_id("banner")).to_contain_text("Reconnecting", timeout=25_000)
    budi.context.set_offline(False)
    expect(budi.page.get_by_test_id("banner")).to_be_hidden(timeout=25_000)
    after = same_codes([ana, budi, citra], timeout=20)
    assert after != before, "a new session has a new identity key, so a new code"
    for me, person in trio.items():
        for other in trio.keys() - {me}:
            expect(person.tile(other)).to_have_attribute("data-e2ee", "ok", timeout=30_000)
    # the mark Ana made belonged to Budi's old key
    ana.open_people()
    expect(ana.row("budi")).to_have_attribute("data-verified", "false")
