"""One synthetic participant: joins through ``/ws``, publishes pre-encoded media on its publish
connection (it offers; crafted RTP by default, aiortc's own sender with ``--sender aiortc``),
answers the server's offers on its subscribe connection, chooses what to watch with
``update_subscription``, and counts what arrives.

A counting subscriber never decodes: ``confctl.loadtest.glue.take_over_media`` hands its decrypted RTP to a
``ReceiveCounter`` and keeps aiortc's decoders from starting; once the connection is up,
``glue.tap_rtp_datagrams`` hands the counter the SRTP datagrams straight from the socket
instead (the header it reads is in the clear), so counting costs no decryption and no trip
through aiortc's receive path. A decoding subscriber reads its tracks through aiortc as a real
client would, and counts decoded frames.

With ``--e2ee`` it takes part in the room's key exchange as a browser does
(``confctl.loadtest.keyexchange``): publishers encrypt every frame before packetizing it, and a
decoding subscriber decrypts each frame before aiortc decodes it. Counting subscribers exchange
keys too but count packets without opening them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from confctl.loadtest import sdpinfo
from confctl.loadtest.clips import ClipSet
from confctl.loadtest.glue import gather_on_loopback, take_over_media, tap_rtp_datagrams
from confctl.loadtest.keyexchange import KeyExchange, decrypt_before_decoding
from confctl.loadtest.plan import Options, Role
from confctl.loadtest.publishing import CraftedMedia, add_aiortc_tracks
from confctl.loadtest.rawmedia import Pacer
from confctl.loadtest.rtpstats import ReceiveCounter, ReceiveTotals
from confctl.loadtest.signaling import Signaling, SignalingError

MAX_VIDEO_SUBSCRIPTIONS = 25  # the server's default cap (sfu.max_video_subscriptions)
SUBSCRIPTION_DEBOUNCE = 0.05


@dataclass
class Environment:
    """What the participants of one process share."""

    session: aiohttp.ClientSession
    url: str
    tls: ssl.SSLContext | None
    options: Options
    clips: ClipSet
    pacer: Pacer


def _ignore(data: bytes) -> None:
    """RTCP to a subscriber and RTP to a publisher are not needed."""


class Participant:
    def __init__(self, role: Role, token: str, env: Environment) -> None:
        self.role = role
        self._token = token
        self._env = env
        self._signaling = Signaling(env.session, env.url, env.tls)
        self.sid = ""
        self.started_at: float | None = None
        self.joined_at: float | None = None
        self.failure: str | None = None
        self.errors: dict[str, int] = {}
        self.leaving = False
        self._publish_pc: RTCPeerConnection | None = None
        self._subscribe_pc: RTCPeerConnection | None = None
        self._pcs_connected: dict[str, float] = {}
        self._answer: asyncio.Future[str] | None = None
        self.counter = ReceiveCounter()
        self._crafted: CraftedMedia | None = None
        self._videos: dict[str, str] = {}  # video track id -> publisher sid, in announcement order
        self._subscribed: dict[str, tuple[int, int] | None] = {}
        self._speaker: str | None = None  # sid shown large
        self._update_pending = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.frames_decoded = 0
        self._first_frame_at: float | None = None
        self._stock_sent = 0
        self._decoded = ReceiveTotals()
        self.keys: KeyExchange | None = None  # in an E2EE room with --e2ee
        self.frame_sink: Callable[[Any], None] | None = None  # sees every decoded frame

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Join and take part until the connection ends; failures are recorded, never raised."""
        self.started_at = time.monotonic()
        try:
            await self._signaling.connect()
            await self._signaling.send(
                {"type": "join", "v": 1, "token": self._token, "room": self._env.options.room}
            )
            async for message in self._signaling.messages():
                await self._on_message(message)
            if not self.leaving:
                self._fail(f"signaling closed (code {self._signaling.close_code})")
        except SignalingError as exc:
            self._fail(str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(f"{type(exc).__name__}: {exc}")

    def _fail(self, reason: str) -> None:
        if self.failure is None and not self.leaving:
            self.failure = " ".join(reason.split())[:200]

    @property
    def expected_connections(self) -> int:
        return int(self.role.publishes) + int(self.role.subscribe)

    @property
    def connected_at(self) -> float | None:
        """When the last of its peer connections became connected."""
        if len(self._pcs_connected) < self.expected_connections:
            return None
        return max(self._pcs_connected.values(), default=self.joined_at)

    async def leave(self) -> None:
        self.leaving = True
        with contextlib.suppress(SignalingError):
            await self._signaling.send({"type": "leave"})
        await self.close()

    async def close(self) -> None:
        self.leaving = True
        if self._crafted is not None:
            self._crafted.stop()
        if self.keys is not None:
            self.keys.close()
        for task in list(self._tasks):
            task.cancel()
        await self._signaling.close()
        for pc in (self._publish_pc, self._subscribe_pc):
            if pc is not None:
                with contextlib.suppress(Exception):
                    await pc.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _watch(self, pc: RTCPeerConnection, name: str) -> None:
        @pc.on("connectionstatechange")
        def _changed() -> None:
            if pc.connectionState == "connected" and name not in self._pcs_connected:
                self._pcs_connected[name] = time.monotonic()
                if name == "subscribe" and not self.role.decode:
                    tap_rtp_datagrams(pc, self.counter.on_rtp)  # count at the socket from now on
            elif pc.connectionState == "failed" and not self.leaving:
                self._fail(f"{name} connection failed")

    # --- server messages ------------------------------------------------------------------------

    async def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "joined":
            self.sid = str(msg.get("sid", ""))
            self.joined_at = time.monotonic()
            if self._env.options.e2ee:
                if not (msg.get("room") or {}).get("e2ee"):
                    self._fail("--e2ee: the room is not end-to-end encrypted")
                    await self._signaling.close()
                    return
                self.keys = KeyExchange(self.sid, self.role.identity, self._signaling.send)
                await self.keys.start(msg)
            if self.role.publishes:
                self._spawn(self._publish())
        elif kind == "subscribe_offer":
            await self._answer_offer(str(msg.get("sdp", "")))
        elif kind == "publish_answer":
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(str(msg.get("sdp", "")))
        elif kind == "publish_layers":
            if self._crafted is not None:
                self._crafted.set_layers(msg.get("mid"), msg.get("layers"), asyncio.get_running_loop().time())
        elif kind == "track_published":
            track = msg.get("track") or {}
            if track.get("kind") == "video" and track.get("sid") != self.sid:
                self._videos[str(track.get("id"))] = str(track.get("sid"))
                self._subscriptions_changed()
        elif kind == "track_unpublished":
            if self._videos.pop(str(msg.get("id")), None) is not None:
                self._subscribed.pop(str(msg.get("id")), None)
                self._subscriptions_changed()
        elif kind == "speakers":
            speakers = [s.get("sid") for s in msg.get("speakers") or [] if s.get("sid") != self.sid]
            if self._env.options.speaker_view and speakers and speakers[0] != self._speaker:
                self._speaker = str(speakers[0])
                self._subscriptions_changed()
        elif kind == "error":
            code = str(msg.get("code", "error"))
            if self.joined_at is None:
                self._fail(f"join refused: {code}: {msg.get('message', '')}")
            else:
                self.errors[code] = self.errors.get(code, 0) + 1
        elif kind in ("kicked", "room_closed"):
            self._fail(f"{kind}: {msg.get('reason', '')}")
        if self.keys is not None and kind != "joined":
            await self.keys.handle(msg)

    # --- publishing -----------------------------------------------------------------------------

    async def _publish(self) -> None:
        try:
            if self._env.options.sender == "aiortc" and not self._env.options.simulcast:
                await self._publish_aiortc()
            else:
                await self._publish_crafted()
        except asyncio.CancelledError:
            raise
        except SignalingError as exc:
            self._fail(str(exc))
        except Exception as exc:
            self._fail(f"publish: {type(exc).__name__}: {exc}")

    def _entries(self, pc: RTCPeerConnection) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        top = self._env.clips.top
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "video" and top is not None:
                entries.append(
                    {"mid": transceiver.mid, "source": "camera", "width": top.width, "height": top.height}
                )
            else:
                entries.append({"mid": transceiver.mid, "source": "microphone"})
        return entries

    async def _negotiate_publish(
        self, pc: RTCPeerConnection, rewrite: Callable[[str], str] | None = None
    ) -> str:
        offer = await pc.createOffer()
        gather_on_loopback(pc)
        await pc.setLocalDescription(offer)
        sdp = pc.localDescription.sdp
        if rewrite is not None:
            sdp = rewrite(sdp)
        self._answer = asyncio.get_running_loop().create_future()
        await self._signaling.send({"type": "publish_offer", "sdp": sdp, "tracks": self._entries(pc)})
        answer = await self._answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return sdp

    async def _publish_aiortc(self) -> None:
        pc = self._publish_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._watch(pc, "publish")
        add_aiortc_tracks(pc, self.role, self._env.clips)
        await self._negotiate_publish(pc)

    async def _publish_crafted(self) -> None:
        env = self._env
        pc = self._publish_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._watch(pc, "publish")
        encrypt = self.keys.encrypt if self.keys is not None else None
        crafted = self._crafted = CraftedMedia(self.role, env.options, env.clips, env.pacer, encrypt)
        crafted.add_transceivers(pc)
        await self._negotiate_publish(pc, crafted.offer)
        crafted.start(pc)

    # --- subscribing ----------------------------------------------------------------------------

    async def _answer_offer(self, sdp: str) -> None:
        pc = self._subscribe_pc
        if pc is None:
            # max-bundle as browsers do: aiortc's "balanced" policy mis-bundles two same-kind
            # m-lines added by one renegotiation
            pc = self._subscribe_pc = RTCPeerConnection(
                RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
            )
            self._watch(pc, "subscribe")
            if self.role.decode:
                pc.on("track", self._on_track)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if not self.role.decode:
            take_over_media(pc, self.counter.on_rtp, _ignore)
        elif self.keys is not None:
            decrypt_before_decoding(pc, self.keys)
        self.counter.set_streams(
            sdpinfo.ssrc_kinds(sdp), sdpinfo.ssrc_extension_ids(sdp, sdpinfo.URI_ABS_SEND_TIME)
        )
        answer = await pc.createAnswer()
        gather_on_loopback(pc)
        await pc.setLocalDescription(answer)
        await self._signaling.send({"type": "subscribe_answer", "sdp": pc.localDescription.sdp})

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._spawn(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames_decoded += 1
                if self.frame_sink is not None:
                    self.frame_sink(frame)
                if self._first_frame_at is None:
                    self._first_frame_at = time.monotonic()

    def _subscriptions_changed(self) -> None:
        if self.role.subscribe and not self._update_pending:
            self._update_pending = True
            self._spawn(self._update_subscriptions())

    def _wanted(self) -> dict[str, tuple[int, int] | None]:
        options = self._env.options
        tracks = list(self._videos)
        if options.tiles is None:
            wanted: dict[str, tuple[int, int] | None] = dict.fromkeys(tracks[:MAX_VIDEO_SUBSCRIPTIONS])
        else:
            wanted = dict.fromkeys(tracks[: options.tiles], options.tile_size)
        if options.speaker_view and self._speaker is not None:
            large = next((t for t, sid in self._videos.items() if sid == self._speaker), None)
            if large is not None:
                wanted[large] = options.speaker_size
        return wanted

    async def _update_subscriptions(self) -> None:
        await asyncio.sleep(SUBSCRIPTION_DEBOUNCE)  # one message for a burst of announcements
        self._update_pending = False
        wanted = self._wanted()
        changes: list[dict[str, Any]] = []
        for track_id, size in wanted.items():
            if track_id in self._subscribed and self._subscribed[track_id] == size:
                continue
            change: dict[str, Any] = {"id": track_id, "subscribe": True}
            if size is not None:
                change["max_width"], change["max_height"] = size
            changes.append(change)
        changes.extend({"id": t, "subscribe": False} for t in self._subscribed if t not in wanted)
        if not changes:
            return
        self._subscribed = wanted
        try:
            await self._signaling.send({"type": "update_subscription", "tracks": changes})
        except SignalingError as exc:
            self._fail(str(exc))

    # --- figures --------------------------------------------------------------------------------

    async def refresh_stats(self) -> None:
        """Read aiortc's own counters where packets do not pass through our hands."""
        pc = self._publish_pc
        if pc is not None and self._crafted is None:
            sent = 0
            for transceiver in pc.getTransceivers():
                for stat in (await transceiver.sender.getStats()).values():
                    if getattr(stat, "type", "") == "outbound-rtp":
                        sent += int(getattr(stat, "packetsSent", 0))
            self._stock_sent = sent
        pc = self._subscribe_pc
        if pc is not None and self.role.decode:
            audio = video = lost = 0
            for transceiver in pc.getTransceivers():
                for stat in (await transceiver.receiver.getStats()).values():
                    if getattr(stat, "type", "") == "inbound-rtp":
                        got = int(getattr(stat, "packetsReceived", 0))
                        lost += max(0, int(getattr(stat, "packetsLost", 0)))
                        if transceiver.kind == "video":
                            video += got
                        else:
                            audio += got
            self._decoded = ReceiveTotals(audio, video, audio + video + lost, audio + video)

    @property
    def sent(self) -> int:
        return self._crafted.sent if self._crafted is not None else self._stock_sent

    def received(self) -> ReceiveTotals:
        return self._decoded if self.role.decode else self.counter.totals()

    @property
    def first_media_at(self) -> float | None:
        return self._first_frame_at if self.role.decode else self.counter.first_at
