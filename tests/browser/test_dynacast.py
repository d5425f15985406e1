"""What Chromium publishers send when the server asks for less: a camera nobody watches stops
sending and starts again when watched (dynacast); a silent microphone sends about 5 packets a second
instead of 50 (Opus DTX)."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHROMIUM_ARGS, Server
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


AUDIO_SENT = """
async () => {
  let packets = 0;
  for (const pc of window.__pcs) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'audio') packets += s.packetsSent || 0; });
  }
  return packets;
}
"""


def camera(person: Person) -> dict[str, Any]:
    state: dict[str, Any] = person.page.evaluate(CAMERA_SENDING) or {"active": [], "packets": 0}
    return state


def poll(person: Person, ok: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
    state: dict[str, Any] = person.poll(CAMERA_SENDING, lambda c: c is not None and ok(c), timeout, what)
    return state


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


def silence(path: Path, seconds: int = 5) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(bytes(2 * 48000 * seconds))
    return path


def audio_packets_in(person: Person, seconds: float) -> int:
    person.poll(AUDIO_SENT, lambda n: n > 0, 20, "the microphone sends")
    person.page.wait_for_timeout(2000)  # the encoder settles into silence
    before: int = person.page.evaluate(AUDIO_SENT)
    person.page.wait_for_timeout(int(seconds * 1000))
    after: int = person.page.evaluate(AUDIO_SENT)
    return after - before


def test_a_silent_microphone_sends_a_tenth_of_its_packets_with_dtx(
    playwright_session: Any, chromium_path: str, tmp_path: Path
) -> None:
    quiet = playwright_session.chromium.launch(
        executable_path=chromium_path,
        headless=True,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={silence(tmp_path / 'silence.wav')}"],
    )
    servers = {
        dtx: Server(tmp_path / str(dtx), media=True, env={"CONF_SFU_OPUS_DTX": str(dtx).lower()})
        for dtx in (True, False)
    }
    crowd = Crowd(quiet, servers[True], "dtx")
    failed = True
    try:
        sent = {}
        for dtx, srv in servers.items():
            (tmp_path / str(dtx)).mkdir()
            srv.start()
            person = crowd.open("dtx", f"quiet-{dtx}", server=srv, init_script=COLLECT_PEER_CONNECTIONS)
            require_media(person)
            sent[dtx] = audio_packets_in(person, 4.0)
        assert sent[False] >= 150, sent  # 50 a second without DTX, silence or not
        assert sent[True] <= 30, sent  # ~5 a second with it (Chromium 156: 19-20 in 4 s)
        failed = False
    finally:
        crowd.close(failed)
        for srv in servers.values():
            srv.stop()
        quiet.close()
