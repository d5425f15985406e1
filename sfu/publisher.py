"""A participant's publish connection: the client offers, the SFU answers and receives.

Every decrypted RTP packet is parsed once, routed to its track and layer (MID/RID extension,
learned SSRC, signalled SSRC, payload type) and handed to the ``UpTrack``. RTCP from the
publisher (sender reports) is kept for lip sync. Upstream feedback goes out on this connection:
PLI (throttled and repeated by the ``KeyframeRequester``), NACK for lost packets, receiver
reports once a second. A new offer with new ICE credentials is an ICE restart. With ``send``
given, the publisher is told which layers of its video tracks some subscriber wants
(``publish_layers``, see ``sfu.core.dynacast``), checked every ``DEMAND_INTERVAL``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from confserver.contract import PublishedTrack
from confserver.errors import ServiceError
from sfu.context import MediaContext, new_id, random_ssrc
from sfu.core.actions import DropReason
from sfu.core.dynacast import LayerDemand
from sfu.core.keyrequest import KeyframeRequester
from sfu.core.routing import IncomingRouter, Route, TrackRouting
from sfu.core.rtcp import Nack, Pli, ReceiverReport, RtcpParseError, SenderReport, parse_rtcp
from sfu.core.rtp import RtpParseError, RtpView
from sfu.deadline import close_connection, within
from sfu.glue.gathering import release_sockets
from sfu.glue.icerestart import IceRestart
from sfu.glue.negotiation import MediaHooks, RemoteOffer, negotiate
from sfu.glue.send import RtpWriter
from sfu.sdp import (
    URI_AUDIO_LEVEL,
    URI_MID,
    URI_RID,
    URI_RRID,
    MediaSection,
    SdpError,
    SessionInfo,
    parse_sdp,
)
from sfu.sdpanswer import complete_simulcast_answer, request_opus_dtx
from sfu.uptrack import AudioPolicy, UpTrack

log = logging.getLogger("sfu.publisher")

REPORT_INTERVAL = 1.0
DEMAND_INTERVAL = 0.25  # how often the layers wanted of each video track are gathered


class Publisher:
    def __init__(
        self,
        *,
        sid: str,
        identity: str,
        ctx: MediaContext,
        audio_policy: AudioPolicy,
        send: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.sid = sid
        self.identity = identity
        self._ctx = ctx
        self._audio_policy = audio_policy
        self._clock: Callable[[], float] = ctx.clock
        self._counters = ctx.counters
        self.pc = ctx.new_peer_connection()
        self._pc_open = True
        self.tracks: dict[str, UpTrack] = {}  # by mid
        self._audio: tuple[UpTrack, ...] = ()  # the audio ones
        self._ids: dict[str, str] = {}  # mid -> track id, stable across renegotiations
        self.router = IncomingRouter()
        self._routing: list[TrackRouting] = []
        self.keyframes = KeyframeRequester(ctx.cfg.pli_interval)
        self._writer: RtpWriter | None = None
        self._rtcp_ssrc = random_ssrc()
        self._remote_ufrags: frozenset[str] = frozenset()
        self._restart: IceRestart | None = None
        self._last_report = 0.0
        self._send = send
        self._demands: dict[str, LayerDemand] = {}  # by mid, video tracks only
        self._last_demand = 0.0
        self.offer: SessionInfo | None = None  # the last offer applied
        self.remote_candidates = 0  # trickled since the last ICE (re)start
        self.closed = False

    # --- negotiation ---------------------------------------------------------------------------

    async def answer(
        self, info: SessionInfo, sdp: str, wanted: list[PublishedTrack]
    ) -> tuple[str, list[UpTrack], list[UpTrack]]:
        """Apply a client offer (``info`` is ``sdp`` parsed, checked with ``check_bundle``);
        returns (answer sdp, tracks added, tracks removed). Every await on aiortc has the
        media deadline (``media_timeout``)."""
        pc = self.pc
        seconds = self._ctx.deadlines.media
        ufrags = info.ice_ufrags()
        restart: IceRestart | None = None
        if self._remote_ufrags and ufrags != self._remote_ufrags and pc.connectionState != "new":
            if self._restart is not None:
                restart, self._restart = self._restart, None
                await within(seconds, restart.cancel(), "ending the previous ICE restart")
            begun = IceRestart.begin(pc, self._ctx.gather, self._ctx.ports)
            restart = await within(seconds, begun, "gathering for an ICE restart")
            self.remote_candidates = 0
        media = MediaHooks(self.on_rtp, self.on_rtcp, self._ctx.filters.incoming, self.skip_silence)
        try:
            local = await negotiate(
                pc, media, self._ctx.gather, self._ctx.ports, seconds, RemoteOffer(sdp, info)
            )
        except BaseException:
            if restart is not None:  # its new agent and sockets must not outlive the failure
                try:
                    await within(self._ctx.deadlines.close, restart.cancel(), "ending the ICE restart")
                except ServiceError:
                    log.warning("an abandoned ICE restart did not end in time")
            raise
        if restart is not None:
            first = info.media[0]
            restart.start(first.ice_ufrag, first.ice_pwd)
            self._restart = restart
        self._remote_ufrags = ufrags
        self.offer = info
        try:
            accepted = parse_sdp(local)
        except SdpError as exc:  # our own answer: a bug, not the client's fault
            raise ServiceError("internal", f"could not read the answer: {exc}") from None
        added, removed = self._apply(info, accepted, wanted)
        self._writer = RtpWriter.for_connection(pc)
        final = complete_simulcast_answer(local, info)
        return request_opus_dtx(final) if self._ctx.cfg.opus_dtx else final, added, removed

    def _apply(
        self, offer: SessionInfo, answer: SessionInfo, wanted: list[PublishedTrack]
    ) -> tuple[list[UpTrack], list[UpTrack]]:
        by_mid = {t.mid: t for t in wanted}
        # track ids stay stable for the m-lines still offered; the others are forgotten, so the
        # map is never larger than an offer (sdp.MAX_MEDIA m-lines)
        self._ids = {mid: tid for mid, tid in self._ids.items() if offer.section(mid) is not None}
        added: list[UpTrack] = []
        removed = [t for mid, t in self.tracks.items() if mid not in by_mid]
        for gone in removed:
            del self.tracks[gone.mid]
        routing: list[TrackRouting] = []
        ext_mid = ext_rid = ext_rrid = 0
        for entry in wanted:
            offered = offer.section(entry.mid)
            accepted = answer.section(entry.mid)
            if offered is None or accepted is None:
                continue
            track: UpTrack | None = self.tracks.get(entry.mid)
            if track is not None and track.source != entry.source:
                removed.append(track)  # the m-line now carries another source: a new track
                self._ids.pop(entry.mid, None)
                track = None
            if track is None:
                track_id = self._ids.setdefault(entry.mid, new_id("TR_"))
                track = UpTrack(
                    track_id=track_id,
                    owner=self.sid,
                    identity=self.identity,
                    mid=entry.mid,
                    kind=entry.kind,
                    source=entry.source,
                    upstream=self,
                    counters=self._counters,
                    audio_policy=self._audio_policy if entry.kind == "audio" else None,
                    history_size=self._ctx.cfg.nack_history_packets,
                )
                self.tracks[entry.mid] = track
                added.append(track)
            extensions = dict(offered.extensions)
            track.configure(accepted.codecs, extensions, extensions.get(URI_AUDIO_LEVEL, 0))
            track.set_layers(offered.rids, entry.width, entry.height)
            ext_mid = ext_mid or extensions.get(URI_MID, 0)
            ext_rid = ext_rid or extensions.get(URI_RID, 0)
            ext_rrid = ext_rrid or extensions.get(URI_RRID, 0)
            routing.append(_routing(offered, accepted))
        self.router.configure(mid_ext=ext_mid, rid_ext=ext_rid, rrid_ext=ext_rrid)
        self.router.set_tracks(routing)
        self._routing = routing
        self._audio = tuple(t for t in self.tracks.values() if t.kind == "audio")
        return added, removed

    def unpublish(self, track_id: str) -> UpTrack | None:
        for mid, track in self.tracks.items():
            if track.id == track_id:
                del self.tracks[mid]
                self._audio = tuple(t for t in self._audio if t is not track)
                self._routing = [r for r in self._routing if r.mid != mid]
                self.router.set_tracks(self._routing)
                return track
        return None

    # --- the packet path -----------------------------------------------------------------------

    def on_rtp(self, data: bytes) -> None:
        now = self._clock()
        try:
            view = RtpView(data)
        except RtpParseError:
            self._counters.drop(DropReason.MALFORMED)
            return
        route = self.router.route(view.ssrc, view.payload_type, view.extensions)
        track = self.tracks.get(route.track) if route is not None else None
        if track is None or route is None:
            self._counters.drop(DropReason.UNROUTABLE)
            return
        track.on_rtp(view, route.layer, route.rtx, now)

    def skip_silence(self, data: bytes) -> bool:
        """An SRTP packet before decryption: True when it is silence of one of this publisher's
        audio tracks that the room does not forward (``UpTrack.skip_silence``): not decrypted."""
        audio = self._audio
        if not audio or len(data) < 12:
            return False
        ssrc = int.from_bytes(data[8:12], "big")
        for track in audio:
            if track.skip_silence(ssrc, data, self._clock):
                return True
        return False

    def on_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_rtcp(data)
        except RtcpParseError:
            return
        now = self._clock()
        for packet in packets:
            if isinstance(packet, SenderReport):
                for track in self.tracks.values():
                    track.on_sender_report(packet, now)

    # --- upstream feedback (Upstream protocol of UpTrack) --------------------------------------

    def request_keyframe(self, ssrc: int, now: float) -> None:
        pli = self.keyframes.request(ssrc, now)
        if pli is not None:
            self._send_pli(pli.media_ssrc)

    def keyframe_arrived(self, ssrc: int) -> None:
        self.keyframes.on_keyframe(ssrc)

    def send_nack(self, ssrc: int, lost: list[int]) -> None:
        writer = self._writer
        if writer is not None and lost and not self._ctx.shedding():  # behind: no resends asked for
            writer.send_rtcp(bytes(Nack(self._rtcp_ssrc, ssrc, tuple(lost[:128]))))

    def _send_pli(self, ssrc: int) -> None:
        writer = self._writer
        if writer is not None and writer.send_rtcp(bytes(Pli(self._rtcp_ssrc, ssrc))):
            self._counters.plis += 1

    # --- timers (called by the controller's single ticker) -------------------------------------

    def tick(self, now: float) -> None:
        for pli in self.keyframes.poll(now):
            self._send_pli(pli.media_ssrc)
        for track in self.tracks.values():
            for layer in track.layers.values():
                if layer.nacks is not None and layer.ssrc is not None:
                    due = layer.nacks.due(now)
                    if due:
                        self.send_nack(layer.ssrc, due)
        if now - self._last_report >= REPORT_INTERVAL:
            elapsed = now - self._last_report
            self._last_report = now
            self._report(now, elapsed)
        if self._send is not None and now - self._last_demand >= DEMAND_INTERVAL:
            self._last_demand = now
            self._update_demand(now)

    def _update_demand(self, now: float) -> None:
        """Tell the client which layers of each video track to send, when that changed."""
        demands = self._demands
        gauge = self._ctx.metrics.paused_layers
        for mid in [m for m in demands if m not in self.tracks]:
            gauge.dec(demands.pop(mid).paused)
        for mid, track in self.tracks.items():
            if track.kind != "video":
                continue
            rids = tuple(track.layers)
            demand = demands.get(mid)
            paused = 0 if demand is None else demand.paused
            if demand is None:
                demand = demands[mid] = LayerDemand(rids, now, pause_delay=self._ctx.cfg.dynacast_pause_delay)
            elif demand.layers != rids:
                demand.set_layers(rids, now)
            active = demand.update([w for f in track.forwarders if (w := f.selector.wanted) is not None], now)
            gauge.inc(demand.paused - paused)
            if active is not None and self._send is not None:
                self._send({"type": "publish_layers", "track": track.id, "mid": mid, "layers": list(active)})

    def _report(self, now: float, elapsed: float) -> None:
        blocks = []
        for track in self.tracks.values():
            simulcast = len(track.layers) > 1
            for layer in track.layers.values():
                if layer.octets and elapsed > 0:  # a paused layer keeps its last rate, for selectors
                    layer.bitrate = int(layer.octets * 8 / elapsed)
                layer.octets = 0
                if layer.stats is not None:
                    block = layer.stats.report_block(now)
                    if block is not None:
                        blocks.append(block)
            if simulcast:
                for fwd in track.forwarders:
                    fwd.refresh_layers(now)
        writer = self._writer
        if writer is None:
            return
        for start in range(0, len(blocks), 31):
            writer.send_rtcp(bytes(ReceiverReport(self._rtcp_ssrc, tuple(blocks[start : start + 31]))))

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ctx.metrics.paused_layers.dec(sum(d.paused for d in self._demands.values()))
        self._demands.clear()
        deadline = self._ctx.deadlines.close
        if self._restart is not None:
            restart, self._restart = self._restart, None
            try:
                await within(deadline, restart.cancel(), "ending an ICE restart")
            except ServiceError:
                log.warning("an ICE restart did not end within %g s", deadline)
                release_sockets(self.pc)
        await close_connection(self.pc, deadline)
        if self._pc_open:
            self._pc_open = False
            self._ctx.closed_peer_connection()


def _routing(offered: MediaSection, accepted: MediaSection) -> TrackRouting:
    media_pts = frozenset(c.payload_type for c in accepted.codecs if not c.is_rtx)
    rtx_pts = frozenset(c.payload_type for c in accepted.codecs if c.is_rtx)
    ssrcs: dict[int, Route] = {}
    if not offered.rids:
        rtx = {rtx_ssrc for _media, rtx_ssrc in offered.fid_groups}
        for ssrc in offered.ssrcs:
            ssrcs[ssrc] = Route(offered.mid, "", ssrc in rtx)
    return TrackRouting(
        mid=offered.mid,
        payload_types=media_pts,
        rtx_payload_types=rtx_pts,
        simulcast=bool(offered.rids),
        ssrcs=ssrcs or None,
    )
