"""A published track: what arrives from the publisher, fanned out to the subscribers' slots.

Per incoming packet (already parsed once, and routed to this track and layer): retransmissions
are unwrapped, reception statistics and loss detection updated (NACKs upstream at once), the
packet kept in the layer's history (subscribers' NACKs are answered from it, see
``source_packet``), then

- video: the layer's liveness and keyframe detection once, then only the subscriptions
  (``VideoForwarder``) listening to this layer (forwarding it, or awaiting its keyframe) decide
  with their layer selectors whether to forward to their slots;
- audio: the room's active-speaker policy decides whether this source is among the loudest N;
  if so the packet goes to the audio slot each subscriber gave this source, else it is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sfu.core.actions import DropReason
from sfu.core.audio import AudioConfig
from sfu.core.history import DEFAULT_SIZE, PacketHistory
from sfu.core.keyframe import KeyframeDetector, always_keyframe, keyframe_detector
from sfu.core.munger import StepChain
from sfu.core.nackgen import NackGenerator
from sfu.core.receivestats import ReceiveStats
from sfu.core.rtcp import SenderReport
from sfu.core.rtp import ExtensionRemapper, RtpParseError, RtpView, clear_header, unwrap_rtx
from sfu.core.seqnum import SeqUnwrapper
from sfu.core.simulcast import LayerInfo, LayerLiveness
from sfu.metrics import Counters
from sfu.sdp import Codec
from sfu.slot import forward_to

if TYPE_CHECKING:
    from sfu.forwarder import Listening, VideoForwarder
    from sfu.slot import Slot

DEFAULT_TOP = (1280, 720)
UNMEASURED_LEVEL = 50
"""-dBov assumed for a packet that carries no audio level (the extension not negotiated, or a
sender that writes it only for audio it encodes itself, as aiortc's): loud enough to be
forwarded when a slot is free, never louder than someone who measurably speaks up."""
QUIET_LEVEL = AudioConfig().silence_level
"""-dBov: audio quieter than this may be dropped before decryption (``UpTrack.skip_silence``)."""
VERIFY_EVERY = 64
"""Of the silent packets dropped before decryption, one in this many is decrypted anyway."""
SRTP_TAG_SIZE = 16  # AES-GCM's tag: the payload size counted for a packet never decrypted


class Upstream(Protocol):
    """The publisher side, as a track needs it."""

    def request_keyframe(self, ssrc: int, now: float) -> None: ...
    def send_nack(self, ssrc: int, lost: list[int]) -> None: ...
    def keyframe_arrived(self, ssrc: int) -> None: ...


class Layer:
    """One simulcast layer (or the only stream): its SSRCs and reception state."""

    __slots__ = (
        "bitrate",
        "chain",
        "height",
        "history",
        "last_packet_at",
        "last_sr",
        "nacks",
        "octets",
        "rid",
        "rtx_ssrc",
        "ssrc",
        "stats",
        "unwrap",
        "width",
    )

    def __init__(self, rid: str, width: int, height: int, history_size: int = DEFAULT_SIZE) -> None:
        self.rid = rid
        self.width = width
        self.height = height
        self.ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        self.stats: ReceiveStats | None = None
        self.nacks: NackGenerator | None = None
        self.last_sr: SenderReport | None = None
        self.octets = 0
        self.bitrate = 0
        self.last_packet_at: float | None = None
        self.chain = StepChain()  # the in-order step of its packets, for the steady fan-out
        # the packets as received, not their views: a tuple of bytes and numbers is not tracked by
        # the garbage collector, so seconds of kept packets are not promoted to its oldest
        # generation, which would trigger a full collection (a pause) every few tens of seconds
        self.history: PacketHistory[bytes] = PacketHistory(history_size)
        self.unwrap = SeqUnwrapper()

    def info(self) -> LayerInfo:
        return LayerInfo(self.rid, self.width, self.height, self.bitrate, self.last_packet_at)


AudioPolicy = Callable[["UpTrack", int, float], bool]
"""(track, level -dBov, now) -> forward this packet; the room's active-speaker policy."""


class UpTrack:
    """One published track. Who takes its packets is its own index, changed through its
    methods: the video subscriptions (``add_forwarder``/``remove_forwarder``), per layer the
    ones that decide and the slots fed directly (``listen``), the audio slots
    (``add_audio_slot``/``prune_audio_slots``); ``unpublish`` empties it. The lists are replaced,
    never changed in place, so a packet's fan-out can re-index as it goes."""

    __slots__ = (
        "_audio_level_id",
        "_audio_slots",
        "_detectors",
        "_direct",
        "_forwarders",
        "_history_size",
        "_listeners",
        "_rtx_apt",
        "audio_forwarded",
        "audio_policy",
        "codecs",
        "counters",
        "extensions",
        "id",
        "identity",
        "kind",
        "layers",
        "liveness",
        "mid",
        "muted",
        "owner",
        "remappers",
        "source",
        "upstream",
    )

    def __init__(
        self,
        *,
        track_id: str,
        owner: str,
        identity: str,
        mid: str,
        kind: str,
        source: str,
        upstream: Upstream,
        counters: Counters,
        audio_policy: AudioPolicy | None = None,
        history_size: int = DEFAULT_SIZE,
    ) -> None:
        self.id = track_id
        self.owner = owner
        self.identity = identity
        self.mid = mid
        self.kind = kind
        self.source = source
        self.upstream = upstream
        self.counters = counters
        self.audio_policy = audio_policy
        self.muted = False
        self._history_size = history_size
        self.codecs: dict[int, Codec] = {}
        self.extensions: dict[str, int] = {}
        self.layers: dict[str, Layer] = {"": Layer("", *DEFAULT_TOP, history_size)}
        self._forwarders: tuple[VideoForwarder, ...] = ()
        # rid -> the forwarders that must decide on its packets, and the slots its packets go
        # into directly (steady forwarders)
        self._listeners: dict[str, list[VideoForwarder]] = {}
        self._direct: dict[str, list[Slot]] = {}
        self.liveness = LayerLiveness()
        self._audio_slots: list[Slot] = []
        self.audio_forwarded = False
        self.remappers: dict[tuple[tuple[int, int], ...], ExtensionRemapper] = {}
        self._rtx_apt: dict[int, int] = {}
        self._detectors: dict[int, KeyframeDetector] = {}
        self._audio_level_id = 0

    # --- configuration (from the negotiated session description) -------------------------------

    def configure(self, codecs: tuple[Codec, ...], extensions: dict[str, int], audio_level_id: int) -> None:
        self.codecs = {c.payload_type: c for c in codecs if not c.is_rtx}
        self._rtx_apt = {c.payload_type: c.apt for c in codecs if c.is_rtx and c.apt is not None}
        self._detectors = {pt: _detector(self.kind, c.name) for pt, c in self.codecs.items()}
        self.extensions = extensions
        self._audio_level_id = audio_level_id

    def set_layers(self, rids: tuple[str, ...], width: int | None, height: int | None) -> None:
        """Layers lowest first; the highest has the announced size, each lower one half of it."""
        top_w, top_h = (width or DEFAULT_TOP[0]), (height or DEFAULT_TOP[1])
        names = rids or ("",)
        layers: dict[str, Layer] = {}
        for i, rid in enumerate(names):
            shift = len(names) - 1 - i
            old = self.layers.get(rid)
            layer = old if old is not None else Layer(rid, 0, 0, self._history_size)
            layer.width, layer.height = max(1, top_w >> shift), max(1, top_h >> shift)
            layers[rid] = layer
        self.layers = layers

    def layer_infos(self) -> list[LayerInfo]:
        return [layer.info() for layer in self.layers.values()]

    def announce(self) -> dict[str, object]:
        """The ``track`` object of ``track_published``."""
        return {
            "id": self.id,
            "sid": self.owner,
            "identity": self.identity,
            "kind": self.kind,
            "source": self.source,
            "layers": [{"rid": la.rid, "width": la.width, "height": la.height} for la in self.layers.values()]
            if self.kind == "video"
            else [],
            "muted": self.muted,
        }

    def layer_of_ssrc(self, ssrc: int) -> Layer | None:
        for layer in self.layers.values():
            if layer.ssrc == ssrc:
                return layer
        return None

    def source_packet(self, ssrc: int, sequence: int, now: float) -> RtpView | None:
        """A packet of stream ``ssrc`` as received, if the history still has it and it is recent
        (a ``SourceLookup`` for the down-tracks' NACK answers)."""
        layer = self.layer_of_ssrc(ssrc)
        if layer is None:
            return None
        history = layer.history
        ext = history.extend(sequence)
        data = history.recent(ext, now) if ext is not None else None
        return RtpView(data) if data is not None else None

    def ssrc_of(self, rid: str | None) -> int | None:
        layer = self.layers.get(rid if rid is not None else "")
        return layer.ssrc if layer is not None else None

    # --- who takes the packets ------------------------------------------------------------------

    @property
    def forwarders(self) -> tuple[VideoForwarder, ...]:
        """The video subscriptions of this track."""
        return self._forwarders

    def add_forwarder(self, fwd: VideoForwarder) -> None:
        """``fwd`` subscribes to this track (it indexes itself with ``listen``)."""
        if fwd not in self._forwarders:
            self._forwarders = (*self._forwarders, fwd)

    def remove_forwarder(self, fwd: VideoForwarder) -> None:
        self._forwarders = tuple(f for f in self._forwarders if f is not fwd)

    def add_audio_slot(self, slot: Slot) -> None:
        """``slot`` (bound to this track) takes its forwarded audio."""
        self._audio_slots = [*self._audio_slots, slot]

    def prune_audio_slots(self) -> None:
        """Keep only the audio slots still bound to this track."""
        self._audio_slots = [s for s in self._audio_slots if s.track is self]

    def unpublish(self) -> None:
        """The track is gone: nothing takes its packets any more."""
        self._forwarders = ()
        self._listeners = {}
        self._direct = {}
        self._audio_slots = []

    def listen(self, fwd: VideoForwarder, old: Listening, new: Listening) -> None:
        """``fwd`` now takes packets as ``new`` says instead of ``old``."""
        listeners = self._listeners
        for rid in old.deciding:
            if rid not in new.deciding:
                remaining = [f for f in listeners.get(rid, ()) if f is not fwd]
                if remaining:
                    listeners[rid] = remaining
                else:
                    listeners.pop(rid, None)
        for rid in new.deciding:
            if rid not in old.deciding:
                listeners[rid] = [*listeners.get(rid, ()), fwd]
        if (old.direct, old.slot) == (new.direct, new.slot):
            return
        direct = self._direct
        if old.direct is not None:
            slots = [s for s in direct.get(old.direct, ()) if s is not old.slot]
            if slots:
                direct[old.direct] = slots
            else:
                direct.pop(old.direct, None)
        if new.direct is not None and new.slot is not None:
            direct[new.direct] = [*direct.get(new.direct, ()), new.slot]

    def request_keyframe(self, rid: str | None, now: float) -> None:
        ssrc = self.ssrc_of(rid)
        if ssrc is not None:
            self.upstream.request_keyframe(ssrc, now)

    # --- the packet path -----------------------------------------------------------------------

    def on_rtp(self, view: RtpView, rid: str, rtx: bool, now: float) -> None:
        layer = self.layers.get(rid)
        if layer is None:
            self.counters.drop(DropReason.UNKNOWN_LAYER)
            return
        if rtx:
            apt = self._rtx_apt.get(view.payload_type)
            if apt is None or layer.ssrc is None:
                self.counters.drop(DropReason.UNKNOWN_RTX)
                return
            layer.rtx_ssrc = view.ssrc
            if view.payload_end - view.header_length <= 2:
                return  # RTX padding (bandwidth probing): nothing to repair
            try:
                view = RtpView(unwrap_rtx(view, ssrc=layer.ssrc, payload_type=apt))
            except RtpParseError:
                self.counters.drop(DropReason.MALFORMED)
                return
        elif view.ssrc != layer.ssrc:
            self._new_stream(layer, view.ssrc)
        stats = layer.stats
        nacks = layer.nacks
        if stats is None or nacks is None:
            return
        seq = view.sequence
        layer.history.put(layer.unwrap.unwrap(seq), view.data, now)
        size = view.payload_end - view.header_length
        self._received(layer, stats, nacks, view.ssrc, seq, view.timestamp, size, now, rtx)
        if self.kind == "video":
            self.counters.packets_in_video += 1
            self.counters.bytes_in_video += size
            if self.muted:
                self.counters.drop(DropReason.MUTED)
                return
            self._video(view, rid, size, now, layer.chain)
        else:
            self.counters.packets_in_audio += 1
            self.counters.bytes_in_audio += size
            if self.muted:
                self.counters.drop(DropReason.MUTED)
                return
            self._audio(view, now, layer.chain)

    def _received(
        self,
        layer: Layer,
        stats: ReceiveStats,
        nacks: NackGenerator,
        ssrc: int,
        seq: int,
        timestamp: int,
        size: int,
        now: float,
        rtx: bool,
    ) -> None:
        stats.on_packet(seq, timestamp, now, retransmission=rtx)
        if nacks.on_packet(seq, now):
            self.upstream.send_nack(ssrc, nacks.due(now))
        layer.octets += size
        layer.last_packet_at = now

    def skip_silence(self, ssrc: int, data: bytes, clock: Callable[[], float]) -> bool:
        """``data``, an SRTP packet of stream ``ssrc``, before decryption: True when it is silence
        of this audio track that the room does not forward, so it need not be decrypted. It is
        accounted as received (statistics, NACK generation, counters) from its clear header;
        nothing unauthenticated is forwarded. Not skipped (decrypted and handled as usual): another
        stream, a source being forwarded, a muted track, every ``VERIFY_EVERY``-th packet (libsrtp
        must see the stream to keep its rollover counter and replay window), a level louder than
        ``QUIET_LEVEL`` (an unauthenticated header can only push a source towards silence), and a
        packet with which the policy starts forwarding the source (it sees it again after
        decryption, at the same level, which changes nothing)."""
        layer = self.layers.get("")
        policy = self.audio_policy
        if layer is None or layer.ssrc != ssrc or policy is None or self.audio_forwarded or self.muted:
            return False
        stats, nacks = layer.stats, layer.nacks
        header = clear_header(data, self._audio_level_id) if self._audio_level_id else None
        if header is None or stats is None or nacks is None:
            return False
        _, seq, timestamp, header_length, raw = header
        if not raw or (raw[0] & 0x7F) <= QUIET_LEVEL or seq % VERIFY_EVERY == 0:
            return False
        now = clock()
        if policy(self, raw[0] & 0x7F, now):
            return False
        size = max(0, len(data) - header_length - SRTP_TAG_SIZE)
        self._received(layer, stats, nacks, ssrc, seq, timestamp, size, now, False)
        self.counters.packets_in_audio += 1
        self.counters.bytes_in_audio += size
        self.counters.drop(DropReason.SILENT)
        return True

    def _new_stream(self, layer: Layer, ssrc: int) -> None:
        clock = next((c.clock_rate for c in self.codecs.values()), 90000)
        layer.ssrc = ssrc
        layer.history.clear()
        layer.unwrap = SeqUnwrapper()
        layer.stats = ReceiveStats(ssrc, clock)
        layer.nacks = NackGenerator()
        layer.chain = StepChain()
        layer.last_sr = None
        for fwd in self._forwarders:
            fwd.stream_changed()

    def _video(self, view: RtpView, rid: str, size: int, now: float, chain: StepChain) -> None:
        if self.liveness.seen(rid, now):
            for fwd in self._forwarders:
                fwd.update(now)
        listeners = self._listeners.get(rid, ())
        direct = self._direct.get(rid, ())
        if size == 0:
            for slot in direct:
                slot.skip(view)
            for fwd in listeners:
                fwd.skip(view, rid)
            return
        detector = self._detectors.get(view.payload_type)
        if detector is None:
            self.counters.drop(DropReason.UNKNOWN_PAYLOAD_TYPE)
            return
        is_key = detector(view.payload)
        if is_key:
            self.upstream.keyframe_arrived(view.ssrc)
        if direct:
            sent = forward_to(direct, view, now, chain=chain)
            if sent:
                self.counters.count_out(True, sent, size)
        for fwd in listeners:
            fwd.on_packet(view, rid, is_key, now)

    def _audio(self, view: RtpView, now: float, chain: StepChain) -> None:
        raw = view.extensions.get(self._audio_level_id) if self._audio_level_id else None
        level = raw[0] & 0x7F if raw else UNMEASURED_LEVEL  # no level: unmeasured, not silent
        policy = self.audio_policy
        if policy is not None and not policy(self, level, now):
            self.counters.drop(DropReason.SILENT)
            return
        sent = forward_to(self._audio_slots, view, now, chain=chain)
        if sent:
            self.counters.count_out(False, sent, view.payload_end - view.header_length)

    def on_sender_report(self, report: SenderReport, now: float) -> None:
        layer = self.layer_of_ssrc(report.ssrc)
        if layer is None or layer.stats is None:
            return
        layer.last_sr = report
        layer.stats.on_sender_report(report.ntp_middle, now)

    def sender_report(self, ssrc: int) -> SenderReport | None:
        layer = self.layer_of_ssrc(ssrc)
        return layer.last_sr if layer is not None else None


def _detector(kind: str, codec_name: str) -> KeyframeDetector:
    if kind == "audio":
        return always_keyframe
    try:
        return keyframe_detector("video/" + codec_name)
    except ValueError:
        return always_keyframe
