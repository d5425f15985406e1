"""Audio: the loudest N sources reach everyone through N slots, silence is dropped, speakers
are announced, and muting stops forwarding."""

from __future__ import annotations

import asyncio
import fractions
from typing import Any

import av
import pytest
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from sfu.controller import SfuController
from sfu.glue.gathering import prepare_gathering
from sfu.glue.srtp import SrtpSession
from sfu.ports import PortRange
from sfu.uptrack import VERIFY_EVERY
from tests.sfu.conftest import config
from tests.sfu.peers import LOOPBACK, Peer, ToneTrack, wait_until
from tests.sfu.test_forwarding import video_track_of


class PreEncodedOpus(MediaStreamTrack):
    """Opus packets handed to aiortc's sender as they are (``av.Packet``): the sender only
    packetizes them and writes no audio level, though the extension is negotiated."""

    kind = "audio"
    FRAME = bytes([0xFC]) + b"\x5a" * 60  # one 20 ms Opus frame; never decoded by the SFU

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._time_base = fractions.Fraction(1, 48000)

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._count:
            await asyncio.sleep(0.02)
        packet = av.Packet(self.FRAME)
        packet.pts = self._count * 960
        packet.time_base = self._time_base
        self._count += 1
        return packet


async def publish_audio(peer: Peer, track: MediaStreamTrack) -> None:
    """Publish one microphone track (a tone, or aiortc's silence)."""
    pc = peer.publish_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver(track, direction="sendonly")
    offer = await pc.createOffer()
    prepare_gathering(pc, LOOPBACK, PortRange())
    await pc.setLocalDescription(offer)
    await peer.request(
        "publish_offer",
        sdp=pc.localDescription.sdp,
        tracks=[{"mid": transceiver.mid, "source": "microphone"}],
    )
    answer = peer.of_type("publish_answer")[-1]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))


@pytest.mark.parametrize("sfu_config", [config(max_audio_streams=2)])
async def test_only_the_loudest_sources_reach_listeners_and_silence_is_dropped(sfu: SfuController) -> None:
    speakers = [Peer(sfu, "talk", f"s{i}", decode=False) for i in range(3)]
    quiet = Peer(sfu, "talk", "quiet", decode=False)
    listener = Peer(sfu, "talk", "listener", decode=False)
    everyone = [*speakers, quiet, listener]
    try:
        for p in everyone:
            await p.join()
        for p, amplitude in zip(speakers, (0.5, 0.3, 0.2), strict=True):
            await publish_audio(p, ToneTrack(amplitude))
        await publish_audio(quiet, AudioStreamTrack())
        await wait_until(
            lambda: sum(listener.rtp_packets.values()) >= 100, 8, what="audio reaches the listener"
        )
        event = await listener.expect("speakers", timeout=5)
        await asyncio.sleep(1.0)
        events = listener.of_type("speakers")
        named = {s["sid"] for e in events for s in e["speakers"]}
        assert "quiet" not in named and named <= {"s0", "s1", "s2"}
        assert all(len(e["speakers"]) <= 2 for e in events)
        assert all(0 < s["level"] <= 1 for s in event["speakers"])
        assert len(listener.audio_slots) == 2
        assert len(listener.subscribe_pc.getTransceivers()) == 2  # two slots, not one m-line per microphone
        sfu.metrics.flush()
        assert (
            sfu.metrics.registry.get_sample_value("conf_sfu_dropped_packets_total", {"reason": "silent"}) > 0
        )
    finally:
        for p in everyone:
            await p.close()


async def test_audio_without_a_level_is_forwarded_as_unmeasured_not_dropped_as_silent(
    sfu: SfuController,
) -> None:
    talker = Peer(sfu, "prerecorded", "talker", decode=False)
    listener = Peer(sfu, "prerecorded", "listener", decode=False)
    try:
        await talker.join()
        await listener.join()
        await publish_audio(talker, PreEncodedOpus())
        publisher = sfu._rooms["prerecorded"].members["talker"].publisher
        assert publisher is not None
        (track,) = publisher.tracks.values()
        assert track._audio_level_id  # the extension is negotiated; the packets carry no level
        await wait_until(
            lambda: sum(listener.rtp_packets.values()) >= 20, 5, what="level-less audio reaches the listener"
        )
        assert track.audio_forwarded
    finally:
        await talker.close()
        await listener.close()


async def test_speakers_events_come_at_most_about_three_a_second(sfu: SfuController) -> None:
    a, b, c = (Peer(sfu, "rate", n, decode=False) for n in ("a", "b", "c"))
    for p in (a, b, c):
        await p.join()
    await publish_audio(a, ToneTrack(0.4))
    await publish_audio(b, ToneTrack(0.4))
    await c.expect("speakers", timeout=5)
    start = len(c.of_type("speakers"))
    await asyncio.sleep(2.0)
    assert len(c.of_type("speakers")) - start <= 7
    for p in (a, b, c):
        await p.close()


async def test_muting_stops_forwarding_and_unmuting_resumes_with_a_keyframe(sfu: SfuController) -> None:
    alice, bob = Peer(sfu, "mute", "alice"), Peer(sfu, "mute", "bob")
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=(160, 120), audio=True)
        video = video_track_of(bob, "alice")
        await bob.subscribe(video)
        got = None
        await wait_until(lambda: (r := bob.video_for(video)) is not None and r.frames >= 5, 5, what="video")
        await wait_until(lambda: bob.audio_frames() >= 10, 5, what="audio")
        got = bob.video_for(video)
        assert got is not None

        await sfu.set_muted("mute", "alice", "audio", True)
        await bob.expect("track_muted", muted=True)
        await asyncio.sleep(0.3)
        heard = bob.audio_frames()
        await asyncio.sleep(0.6)
        assert bob.audio_frames() - heard <= 2  # at most a frame still in flight
        assert got.frames > 0

        await sfu.set_muted("mute", "alice", "video", True)
        await asyncio.sleep(0.3)
        seen = got.frames
        await asyncio.sleep(0.6)
        assert got.frames - seen <= 1

        await sfu.set_muted("mute", "alice", "video", False)
        await bob.expect("track_muted", muted=False)
        await wait_until(lambda: got.frames >= seen + 10, 3, what="video resumes")
        await sfu.set_muted("mute", "alice", "audio", False)
        await wait_until(lambda: bob.audio_frames() >= heard + 10, 3, what="audio resumes")
    finally:
        await alice.close()
        await bob.close()


async def test_silence_is_dropped_before_decryption_and_still_counted_as_received(
    sfu: SfuController, monkeypatch: pytest.MonkeyPatch
) -> None:
    decrypted: list[int] = []  # SSRCs of the SRTP packets the server decrypted
    unprotect = SrtpSession.unprotect

    def counting(self: SrtpSession, data: bytes) -> bytes | None:
        decrypted.append(int.from_bytes(data[8:12], "big"))
        return unprotect(self, data)

    monkeypatch.setattr(SrtpSession, "unprotect", counting)
    quiet, listener = Peer(sfu, "hush", "quiet", decode=False), Peer(sfu, "hush", "listener", decode=False)
    try:
        await quiet.join()
        await listener.join()
        await publish_audio(quiet, AudioStreamTrack())  # aiortc's silence: level 127 in every packet
        publisher = sfu._rooms["hush"].members["quiet"].publisher
        assert publisher is not None
        (track,) = publisher.tracks.values()
        layer = track.layers[""]
        await wait_until(
            lambda: layer.stats is not None and layer.stats.received >= 200, 10, what="200 silent packets"
        )
        stats = layer.stats
        assert stats is not None and layer.ssrc is not None
        received = stats.received
        sent = decrypted.count(layer.ssrc)
        assert sent <= received / VERIFY_EVERY + 3  # one in VERIFY_EVERY, and the stream's first
        assert sent >= 2  # ... which keeps libsrtp in step with the stream
        block = stats.report_block(0.0)
        assert block is not None and block.packets_lost == 0  # skipped is not lost
        assert not track.audio_forwarded and sum(listener.rtp_packets.values()) == 0
        sfu.metrics.flush()
        silent = sfu.metrics.registry.get_sample_value("conf_sfu_dropped_packets_total", {"reason": "silent"})
        assert silent is not None and silent >= received - 2
    finally:
        await quiet.close()
        await listener.close()
