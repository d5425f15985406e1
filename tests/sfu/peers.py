"""Client-side peers for the SFU tests: real aiortc connections on 127.0.0.1 driving the
``SfuController`` through its MediaController interface, as a browser would through signaling.

A ``Peer`` collects the server messages sent to it, publishes synthetic media (aiortc encodes on
the client side; only the server must never decode), answers ``subscribe_offer``s and decodes
what it receives, recording frame sizes per remote track.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from confserver.contract import parse_media
from confserver.errors import ServiceError
from confserver.media import MediaController
from sfu.glue.gathering import prepare_gathering
from sfu.glue.receive import take_over_media
from sfu.ports import GatherPolicy, PortRange

LOOPBACK = GatherPolicy(addresses=("127.0.0.1",))
ALL_PERMISSIONS = frozenset({"publish_audio", "publish_video", "publish_screen", "subscribe", "chat"})
VIEWER = frozenset({"subscribe", "chat"})
CLOSE_TIMEOUT = 5.0


def _ignore(data: bytes) -> None:
    pass


class PatternTrack(VideoStreamTrack):
    """Synthetic video of a given size: a moving gradient, so frames differ."""

    @property
    def produced(self) -> int:
        return self._n

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self._n = 0  # frames produced

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=self.width, height=self.height)
        self._n += 1
        y = frame.planes[0]
        row = bytes((x + self._n * 4) & 0xFF for x in range(y.line_size))
        y.update(row * self.height)
        for p in frame.planes[1:]:
            p.update(bytes([128]) * p.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneTrack(AudioStreamTrack):
    """A 440 Hz tone at 48 kHz (audible: the SFU forwards only the loudest sources)."""

    RATE = 48000
    SAMPLES = 960

    def __init__(self, amplitude: float = 0.3) -> None:
        super().__init__()
        wave = array.array(
            "h",
            (
                int(amplitude * 32767 * math.sin(2 * math.pi * 440 * i / self.RATE))
                for i in range(self.RATE // 10)
            ),
        )
        self._wave = wave.tobytes()
        self._ts = 0
        self._start = 0.0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._ts:
            wait = self._start + self._ts / self.RATE - time.time()
            await asyncio.sleep(wait)
        else:
            self._start = time.time()
        frame = AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        offset = (self._ts % (self.RATE // 10)) * 2
        chunk = (self._wave + self._wave)[offset : offset + self.SAMPLES * 2]
        frame.planes[0].update(chunk)
        frame.pts = self._ts
        frame.sample_rate = self.RATE
        frame.time_base = fractions.Fraction(1, self.RATE)
        self._ts += self.SAMPLES
        return frame


@dataclass
class Received:
    """What a peer decoded from one remote track."""

    kind: str
    sizes: list[tuple[int, int]] = field(default_factory=list)
    frames: int = 0
    first_at: float | None = None


class Peer:
    def __init__(
        self,
        sfu: MediaController,
        room: str,
        sid: str,
        *,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        decode: bool = True,
        accept_vp9: bool = False,
        ice_servers: list[RTCIceServer] | None = None,
        relay_only: bool = False,
    ) -> None:
        # no STUN/TURN unless a test gives its own loopback TURN server
        self._ice = {
            "iceServers": ice_servers or [],
            "iceTransportPolicy": RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
        }
        self._relay_only = relay_only
        self.accept_vp9 = accept_vp9  # answer VP9 too, as a browser would (aiortc cannot decode it)
        self.sfu = sfu
        self.room = room
        self.sid = sid
        self.identity = "id-" + sid
        self.permissions = permissions
        self.decode = decode
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()  # for expect()
        self._to_pump = asyncio.Event()  # for the message loop
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self.track_map: dict[str, str] = {}
        self.audio_slots: list[str] = []
        self.received: dict[str, Received] = {}  # by subscribe-connection mid
        self._tasks: list[asyncio.Task[None]] = []
        self._handled = 0
        self.errors: list[BaseException] = []
        self.video_source: PatternTrack | None = None
        self.published: list[dict[str, Any]] = []  # the publish offer's tracks entries
        self.rtp_packets: dict[int, int] = {}  # payload type -> packets (decode=False)
        self.raw: list[bytes] = []  # the RTP packets received (decode=False)
        self.resets = 0  # media_reset messages handled

    # --- signaling -----------------------------------------------------------------------------

    def send(self, msg: Mapping[str, Any]) -> None:
        self.messages.append(dict(msg))
        self._arrived.set()
        self._to_pump.set()

    async def join(self) -> None:
        await self.sfu.participant_joined(
            self.room, self.sid, self.permissions, self.send, identity=self.identity
        )
        self._tasks.append(asyncio.create_task(self._pump()))

    async def request(self, mtype: str, **body: Any) -> None:
        await self.sfu.handle(self.room, self.sid, parse_media({"type": mtype, **body}))

    def of_type(self, mtype: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == mtype]

    async def expect(self, mtype: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for m in self.messages:
                if m["type"] == mtype and all(m.get(k) == v for k, v in match.items()):
                    return m
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"{self.sid}: no {mtype}; saw {[m['type'] for m in self.messages[-12:]]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def _pump(self) -> None:
        """Answer subscribe offers and note track maps, in order, like a client's message loop."""
        while True:
            while self._handled < len(self.messages):
                msg = self.messages[self._handled]
                self._handled += 1
                try:
                    if msg["type"] == "media_reset":
                        await self.reset_media()
                    elif msg["type"] == "subscribe_offer":
                        await self._answer(msg["sdp"])
                    elif msg["type"] == "track_map":
                        self.track_map = dict(msg["mids"])
                        self.audio_slots = list(msg.get("audio_slots", []))
                except Exception as exc:  # surfaced by the tests through self.errors
                    self.errors.append(exc)
            self._to_pump.clear()
            if self._handled >= len(self.messages):
                await self._to_pump.wait()

    async def reset_media(self) -> None:
        """``media_reset``: the server's media side for this peer is new; close both connections
        and forget what they carried (the peer publishes and subscribes again)."""
        old = (self.publish_pc, self.subscribe_pc)
        self.publish_pc = self.subscribe_pc = None
        self.track_map = {}
        self.audio_slots = []
        self.received = {}
        self.published = []
        for pc in old:
            if pc is not None:
                await close_within(pc, CLOSE_TIMEOUT)
        self.resets += 1  # done: the peer may publish again

    # --- publishing ----------------------------------------------------------------------------

    async def publish(
        self, *, video: tuple[int, int] | None = (320, 240), audio: bool = True, source: str = "camera"
    ) -> dict[str, str]:
        """Publish; returns {source: mid}."""
        pc = self.publish_pc
        if pc is None:
            pc = self.publish_pc = RTCPeerConnection(RTCConfiguration(**self._ice))
        entries = self.published  # every sending m-line, the earlier ones included
        transceivers = []
        if video is not None:
            self.video_source = PatternTrack(*video)
            transceivers.append((pc.addTransceiver(self.video_source, direction="sendonly"), source, video))
        if audio:
            transceivers.append((pc.addTransceiver(ToneTrack(), direction="sendonly"), "microphone", None))
        offer = await pc.createOffer()
        if not self._relay_only:  # relay-only peers gather through TURN with aioice's own gatherer
            prepare_gathering(pc, LOOPBACK, PortRange())
        await pc.setLocalDescription(offer)
        for transceiver, src, size in transceivers:
            entry: dict[str, Any] = {"mid": transceiver.mid, "source": src}
            if size is not None:
                entry["width"], entry["height"] = size
            entries.append(entry)
        before = len(self.of_type("publish_answer"))
        await self.request("publish_offer", sdp=pc.localDescription.sdp, tracks=entries)
        answer = self.of_type("publish_answer")[before]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        return {e["source"]: e["mid"] for e in entries}

    # --- subscribing ---------------------------------------------------------------------------

    async def _answer(self, sdp: str) -> None:
        pc = self.subscribe_pc
        if pc is None:
            # max-bundle as browsers do: aiortc's "balanced" policy mis-bundles two same-kind m-lines
            # added by one renegotiation (the second stays on a discarded transport)
            pc = self.subscribe_pc = RTCPeerConnection(
                RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE, **self._ice)
            )
            pc.on("track", self._on_track)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if not self.decode:
            take_over_media(pc, self._count_rtp, _ignore)
        answer = await pc.createAnswer()
        if not self._relay_only:  # relay-only peers gather through TURN with aioice's own gatherer
            prepare_gathering(pc, LOOPBACK, PortRange())
        await pc.setLocalDescription(answer)
        local = pc.localDescription.sdp
        if self.accept_vp9:
            local = accept_offered_codec(local, sdp, "VP9")
        try:
            await self.request("subscribe_answer", sdp=local)
        except ServiceError as exc:
            self.errors.append(exc)

    def _count_rtp(self, data: bytes) -> None:
        self.rtp_packets[data[1] & 0x7F] = self.rtp_packets.get(data[1] & 0x7F, 0) + 1
        self.raw.append(data)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if not self.decode:
            return
        self._tasks.append(asyncio.create_task(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        mid = None
        while mid is None:  # the transceiver gets its mid when the answer is set
            pc = self.subscribe_pc
            mid = (
                next((t.mid for t in pc.getTransceivers() if t.receiver.track is track), None) if pc else None
            )
            if mid is None:
                await asyncio.sleep(0.01)
        got = self.received.setdefault(mid, Received(track.kind))
        try:
            while True:
                frame = await track.recv()
                got.frames += 1
                if got.first_at is None:
                    got.first_at = asyncio.get_running_loop().time()
                if isinstance(frame, VideoFrame):
                    got.sizes.append((frame.width, frame.height))
        except MediaStreamError:
            return

    def video_for(self, track_id: str) -> Received | None:
        mid = next((m for m, t in self.track_map.items() if t == track_id), None)
        return self.received.get(mid) if mid is not None else None

    def audio_frames(self) -> int:
        return sum(r.frames for m, r in self.received.items() if r.kind == "audio")

    async def subscribe(self, *track_ids: str, **limits: Any) -> None:
        await self.request(
            "update_subscription", tracks=[{"id": t, "subscribe": True, **limits} for t in track_ids]
        )

    # --- end -----------------------------------------------------------------------------------

    async def leave(self) -> None:
        await self.sfu.participant_left(self.room, self.sid)
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        old = (self.publish_pc, self.subscribe_pc)
        self.publish_pc = self.subscribe_pc = None
        for pc in old:
            if pc is not None:
                await close_within(pc, CLOSE_TIMEOUT)


async def close_within(pc: RTCPeerConnection, seconds: float) -> None:
    """Close ``pc``, giving up after ``seconds``: aiortc's close can wait on a remote end that is
    gone (a media worker killed with SIGKILL), and a test must not hang on it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pc.close(), seconds)


def accept_offered_codec(answer: str, offer: str, name: str) -> str:
    """``answer`` with the offer's ``name`` codec added to every video m-line (on the payload type
    the offer chose for it), as a browser that supports it would answer."""
    found = re.search(rf"a=rtpmap:(\d+) {name}/90000", offer)
    if found is None:
        return answer
    pt = found.group(1)
    out: list[str] = []
    for line in answer.split("\r\n"):
        if line.startswith("m=video"):
            out += [f"{line} {pt}", f"a=rtpmap:{pt} {name}/90000"]
        else:
            out.append(line)
    return "\r\n".join(out)


async def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.05, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met in {timeout}s: {what}")
        await asyncio.sleep(interval)
