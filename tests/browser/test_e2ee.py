"""End-to-end encrypted meetings in Chromium: media through the SFU encrypted in each browser, the
same safety code everywhere, frames nobody can decode without the keys, a refused browser without
encoded transforms, and a server that swaps a public key caught by the safety code.

These tests need the media service, like test_media.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
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
