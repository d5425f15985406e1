"""A participant's subscribe connection: the SFU offers, the client answers, the SFU sends.

The connection has ``max_audio_streams`` audio slots from the start (the room's loudest sources
rotate through them) and one video slot per subscribed video track. A slot freed by an
unsubscription is reused by the next subscription without renegotiating; new m-lines are added
only when there are more subscriptions than slots. Negotiations are serialized: while an offer
is out, further needs are remembered and offered after the answer. After each answer, and
whenever a slot changes track, the client gets ``track_map``.

RTCP from the subscriber: NACK is answered from the slot's history (or asked upstream), PLI/FIR
becomes a throttled keyframe request to the publisher, REMB caps the simulcast layers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiortc import RTCSessionDescription

from confserver.errors import ServiceError
from sfu.context import MediaContext
from sfu.core.actions import SendNack, SendRtp
from sfu.core.rtcp import Fir, Nack, Pli, Remb, RtcpParseError, parse_rtcp
from sfu.core.simulcast import LayerLimits
from sfu.deadline import close_connection, within
from sfu.forwarder import VideoForwarder
from sfu.glue.negotiation import MediaHooks, negotiate
from sfu.glue.receive import add_sending_transceiver, take_over_media
from sfu.glue.send import RtpWriter
from sfu.sdp import SdpError, SessionInfo, check_bundle, parse_sdp
from sfu.slot import Slot, SlotParams
from sfu.uptrack import UpTrack

log = logging.getLogger("sfu.subscriber")

REPORT_INTERVAL = 1.0

SendFn = Callable[[Mapping[str, Any]], None]


def _ignore_rtp(data: bytes) -> None:
    """A subscriber sends no media on this connection."""


class Subscriber:
    def __init__(self, *, sid: str, send: SendFn, ctx: MediaContext) -> None:
        self.sid = sid
        self._send = send
        self._ctx = ctx
        self._clock = ctx.clock
        self._counters = ctx.counters
        self.pc = ctx.new_peer_connection()
        self._pc_open = True
        history = ctx.cfg.nack_history_packets
        self.audio: list[Slot] = []
        self.video: list[Slot] = []
        for _ in range(ctx.cfg.max_audio_streams):
            self._add_slot("audio", history)
        self.forwarders: dict[str, VideoForwarder] = {}  # by track id
        self._waiting: list[VideoForwarder] = []  # subscribed, no slot yet
        self._by_ssrc: dict[int, Slot] = {}
        self._writer: RtpWriter | None = None
        self._offer: SessionInfo | None = None
        self._in_flight = False
        self._pending = False
        self._last_report = 0.0
        self.remote_candidates = 0  # trickled by the client
        self.ready = False  # a first answer was applied: audio slots can carry sources
        self.closed = False

    def _add_slot(self, kind: str, history: int) -> Slot:
        add_sending_transceiver(self.pc, kind)
        slot = Slot(kind, self._counters, history)
        (self.audio if kind == "audio" else self.video).append(slot)
        return slot

    def _slots(self) -> list[Slot]:
        """Slots in transceiver order."""
        by_order: list[Slot] = []
        audio, video = iter(self.audio), iter(self.video)
        for transceiver in self.pc.getTransceivers():
            slot = next(audio) if transceiver.kind == "audio" else next(video)
            by_order.append(slot)
        return by_order

    # --- negotiation ---------------------------------------------------------------------------

    async def negotiate(self) -> None:
        """Send an offer if one is needed (or remember to, while another is out)."""
        if self.closed:
            return
        if self._in_flight:
            self._pending = True
            return
        # no offer is out: every negotiated free slot is taken already, so each waiting
        # subscription needs a new m-line
        unplaced = len(self._waiting)
        if self._offer is not None and unplaced == 0:
            return
        for _ in range(unplaced):
            self._add_slot("video", self._ctx.cfg.nack_history_packets)
        if not self.pc.getTransceivers():
            return
        self._in_flight = True
        ctx = self._ctx
        try:
            media = MediaHooks(_ignore_rtp, self.on_rtcp)
            sdp = await negotiate(self.pc, media, ctx.gather, ctx.ports, ctx.deadlines.media)
            self._offer = parse_sdp(sdp)
        except BaseException:
            self._in_flight = False
            raise
        for slot, transceiver in zip(self._slots(), self.pc.getTransceivers(), strict=True):
            slot.mid = transceiver.mid
        self._send({"type": "subscribe_offer", "sdp": sdp})

    async def on_answer(self, sdp: str) -> None:
        offer = self._offer
        if not self._in_flight or offer is None:
            raise ServiceError("unexpected_answer", "no subscribe offer is waiting for an answer")
        try:
            info = parse_sdp(sdp)
            check_bundle(info)
        except SdpError as exc:
            raise ServiceError("bad_sdp", f"subscribe answer: {exc}") from None
        if [(m.kind, m.mid) for m in info.media] != [(m.kind, m.mid) for m in offer.media]:
            raise ServiceError("bad_sdp", "the answer's m-lines do not match the offer")
        try:
            await within(
                self._ctx.deadlines.media,
                self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer")),
                "applying the subscribe answer",
            )
        except ServiceError:
            raise
        except Exception as exc:
            raise ServiceError("bad_sdp", f"the answer was refused: {exc}") from None
        take_over_media(self.pc, _ignore_rtp, self.on_rtcp)
        writer = RtpWriter.for_connection(self.pc, self._ctx.filters.outgoing, connect=True)
        self._writer = writer
        slots = {s.mid: s for s in self._slots()}
        by_ssrc: dict[int, Slot] = {}
        for section in info.media:
            slot = slots.get(section.mid)
            ours = offer.section(section.mid)
            if slot is None or ours is None or not ours.ssrcs or writer is None:
                continue
            if section.port == 0 or not section.receives:
                continue  # refused m-line: never used
            rtx = next((r for m, r in ours.fid_groups if m == ours.ssrcs[0]), None)
            slot.set_negotiated(
                SlotParams(
                    section.mid, section.kind, ours.ssrcs[0], rtx, section.codecs, dict(section.extensions)
                ),
                writer,
            )
            by_ssrc[ours.ssrcs[0]] = slot
            if rtx is not None:
                by_ssrc[rtx] = slot
        self._by_ssrc = by_ssrc
        self._in_flight = False
        self.ready = True
        self._place_waiting(self._clock())
        self.send_track_map()
        if self._pending:
            self._pending = False
            await self.negotiate()

    def send_track_map(self) -> None:
        mids = {
            s.mid: s.forwarder.track.id
            for s in self.video
            if s.mid and s.forwarder is not None and s.negotiated
        }
        audio = [s.mid for s in self.audio if s.mid and s.negotiated]
        self._send({"type": "track_map", "mids": mids, "audio_slots": audio})

    # --- video subscriptions ---------------------------------------------------------------------

    @property
    def video_subscriptions(self) -> Mapping[str, VideoForwarder]:
        return self.forwarders

    def subscribe(self, track: UpTrack, limits: LayerLimits) -> bool:
        """Subscribe or update limits; True when a new slot needs a negotiation."""
        now = self._clock()
        fwd = self.forwarders.get(track.id)
        if fwd is not None:
            fwd.set_limits(limits, now)
            return False
        ctx = self._ctx
        fwd = VideoForwarder(track, self.sid, limits, now, ctx.metrics.keyframe_wait, ctx.shed_layers)
        self.forwarders[track.id] = fwd
        self._waiting.append(fwd)
        placed = self._place_waiting(now)
        return not placed

    def unsubscribe(self, track_id: str) -> bool:
        """Stop forwarding; True when a slot was freed (the track map changed)."""
        fwd = self.forwarders.pop(track_id, None)
        if fwd is None:
            return False
        if fwd in self._waiting:
            self._waiting.remove(fwd)
            return False
        fwd.detach()
        self._place_waiting(self._clock())
        return True

    def _place_waiting(self, now: float) -> bool:
        """Put waiting subscriptions into free negotiated video slots; True if all were placed."""
        while self._waiting:
            slot = next((s for s in self.video if s.negotiated and s.free), None)
            if slot is None:
                return False
            self._waiting.pop(0).attach(slot, now)
        return True

    # --- audio slots ---------------------------------------------------------------------------

    def assign_audio(self, track: UpTrack, still_forwarded: Callable[[UpTrack], bool]) -> None:
        """Give ``track`` (one of the room's loudest) an audio slot."""
        if not self.ready or track.owner == self.sid or any(s.track is track for s in self.audio):
            return
        slot = next((s for s in self.audio if s.negotiated and s.track is None), None)
        if slot is None:
            slot = next(
                (
                    s
                    for s in self.audio
                    if s.negotiated and s.track is not None and not still_forwarded(s.track)
                ),
                None,
            )
            if slot is None:
                return
            self.release_audio(slot.track)  # type: ignore[arg-type]
        slot.bind(track)
        track.add_audio_slot(slot)

    def release_audio(self, track: UpTrack) -> None:
        for slot in self.audio:
            if slot.track is track:
                slot.unbind()
        track.prune_audio_slots()

    def forget_track(self, track: UpTrack) -> bool:
        """The track was unpublished; True when the track map changed."""
        self.release_audio(track)
        return self.unsubscribe(track.id)

    # --- RTCP from the subscriber --------------------------------------------------------------

    def on_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_rtcp(data)
        except RtcpParseError:
            return
        now = self._clock()
        for packet in packets:
            if isinstance(packet, Nack):
                self._on_nack(packet, now)
            elif isinstance(packet, Pli):
                self._on_keyframe_request(packet.media_ssrc, now)
            elif isinstance(packet, Fir):
                for ssrc, _seq in packet.entries:
                    self._on_keyframe_request(ssrc, now)
            elif isinstance(packet, Remb):
                self._on_remb(packet.bitrate, now)

    def _on_nack(self, nack: Nack, now: float) -> None:
        slot = self._by_ssrc.get(nack.media_ssrc)
        writer = self._writer
        if slot is None or slot.downtrack is None or writer is None:
            return
        source = slot.track.source_packet if slot.track is not None else None
        for action in slot.downtrack.on_nack(nack.lost, now, source=source):
            if isinstance(action, SendRtp):
                if writer.send_rtp(action.packet):
                    self._counters.nacks += 1
            elif isinstance(action, SendNack) and slot.track is not None:
                slot.track.upstream.send_nack(action.media_ssrc, list(action.lost))

    def _on_keyframe_request(self, ssrc: int, now: float) -> None:
        slot = self._by_ssrc.get(ssrc)
        if slot is None or slot.downtrack is None or slot.track is None:
            return
        source = slot.downtrack.source
        if source is not None:
            slot.track.upstream.request_keyframe(source, now)

    def _on_remb(self, bitrate: int, now: float) -> None:
        active = [f for f in self.forwarders.values() if f.slot is not None and not f.limits.paused]
        if not active:
            return
        share = bitrate // len(active)
        for fwd in active:
            if len(fwd.track.layers) > 1:
                fwd.on_bitrate(share, now)

    # --- timers --------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if now - self._last_report < REPORT_INTERVAL:
            return
        self._last_report = now
        writer = self._writer
        if writer is None:
            return
        for slot in (*self.audio, *self.video):
            downtrack, track = slot.downtrack, slot.track
            if downtrack is None or track is None or downtrack.source is None:
                continue
            report = track.sender_report(downtrack.source)
            if report is None:
                continue
            translated = downtrack.translate_sender_report(report)
            if translated is not None:
                writer.send_rtcp(bytes(translated))
        for fwd in self.forwarders.values():
            fwd.update(now)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fwd in list(self.forwarders.values()):
            fwd.detach()
        self.forwarders.clear()
        self._waiting.clear()
        for slot in self.audio:
            if slot.track is not None:
                self.release_audio(slot.track)
        await close_connection(self.pc, self._ctx.deadlines.close)
        if self._pc_open:
            self._pc_open = False
            self._ctx.closed_peer_connection()
