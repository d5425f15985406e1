"""One sending m-line of a subscribe connection, and the down-track that feeds it.

A slot is negotiated once (its SSRCs, payload types and header extension ids come from the
offer and the subscriber's answer) and then carries whichever source it is bound to: a video
subscription, or one of the room's loudest audio sources. Its ``DownTrack`` outlives the
bindings, so the subscriber sees one continuous RTP stream per m-line (sequence numbers stay
contiguous, timestamps keep advancing) whatever the SFU switches behind it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sfu.core.actions import Drop, DropReason
from sfu.core.downtrack import DownTrack, DownTrackParams
from sfu.core.munger import StepChain
from sfu.core.rtp import ExtensionRemapper, RtpView
from sfu.glue.send import RtpWriter
from sfu.metrics import Counters
from sfu.sdp import FORWARDED_EXTENSIONS, Codec

if TYPE_CHECKING:
    from sfu.forwarder import VideoForwarder
    from sfu.uptrack import UpTrack


@dataclass(frozen=True)
class SlotParams:
    """What the subscriber accepted for one m-line."""

    mid: str
    kind: str
    ssrc: int
    rtx_ssrc: int | None
    codecs: tuple[Codec, ...]
    extensions: Mapping[str, int]


def codecs_match(pub: Codec, sub: Codec) -> bool:
    if pub.name.lower() != sub.name.lower() or pub.clock_rate != sub.clock_rate:
        return False
    if pub.name.lower() == "h264":
        a, b = pub.fmtp_params(), sub.fmtp_params()
        return a.get("packetization-mode", "0") == b.get("packetization-mode", "0")
    if pub.name.lower() == "vp9":
        return pub.fmtp_params().get("profile-id", "0") == sub.fmtp_params().get("profile-id", "0")
    return True


def pick_codec(pub: Codec, offered: tuple[Codec, ...]) -> Codec | None:
    """The subscriber's codec for the publisher's: same parameters first, then compatible."""
    candidates = [c for c in offered if not c.is_rtx and codecs_match(pub, c)]
    exact = [c for c in candidates if c.fmtp_params() == pub.fmtp_params()]
    chosen = exact or candidates
    return chosen[0] if chosen else None


class Slot:
    __slots__ = (
        "_history",
        "_pub_pt",
        "counters",
        "downtrack",
        "forwarder",
        "kind",
        "mid",
        "params",
        "track",
        "writer",
    )

    def __init__(self, kind: str, counters: Counters, history: int) -> None:
        self.kind = kind
        self.counters = counters
        self.mid: str | None = None
        self.params: SlotParams | None = None
        self.writer: RtpWriter | None = None
        self.downtrack: DownTrack | None = None
        self.track: UpTrack | None = None
        self.forwarder: VideoForwarder | None = None
        self._pub_pt = -1
        self._history = history

    @property
    def negotiated(self) -> bool:
        return self.params is not None

    @property
    def free(self) -> bool:
        return self.track is None and self.forwarder is None

    def set_negotiated(self, params: SlotParams, writer: RtpWriter) -> None:
        if self.params is not None and (
            self.params.ssrc != params.ssrc or self.params.codecs != params.codecs
        ):
            self.downtrack = None  # renegotiated differently: start a new stream
            self._pub_pt = -1
        self.mid = params.mid
        self.params = params
        self.writer = writer

    def bind(self, track: UpTrack) -> None:
        self.track = track
        self._pub_pt = -1

    def unbind(self) -> None:
        self.track = None
        self.forwarder = None

    def forward(self, view: RtpView, now: float, *, switched: bool = False) -> None:
        if forward_to((self,), view, now, switched=switched):
            size = view.payload_end - view.header_length
            self.counters.count_out(self.kind == "video", 1, size)

    def skip(self, view: RtpView) -> None:
        if self.downtrack is not None:
            self.downtrack.skip(view)

    def _prepare(self, pub_pt: int) -> bool:
        """Point the down-track at the subscriber's payload type for the publisher's ``pub_pt``."""
        track, params = self.track, self.params
        if track is None or params is None:
            return False
        pub = track.codecs.get(pub_pt)
        if pub is None:
            return False
        sub = pick_codec(pub, params.codecs)
        if sub is None:
            return False
        rtx = next((c for c in params.codecs if c.is_rtx and c.apt == sub.payload_type), None)
        remapper = _remapper(track, params.extensions)
        old = self.downtrack
        if old is None or old.params.payload_type != sub.payload_type:
            first_seq, first_ts = secrets.randbelow(0x8000), secrets.randbelow(1 << 32)
            if old is not None and old.highest_sequence is not None:
                first_seq = old.highest_sequence + 1
                first_ts = old.highest_timestamp + sub.clock_rate // 10
            self.downtrack = DownTrack(
                DownTrackParams(
                    ssrc=params.ssrc,
                    payload_type=sub.payload_type,
                    clock_rate=sub.clock_rate,
                    first_sequence=first_seq,
                    first_timestamp=first_ts,
                    rtx_ssrc=params.rtx_ssrc if rtx is not None else None,
                    rtx_payload_type=rtx.payload_type if rtx is not None else None,
                    rtx_first_sequence=secrets.randbelow(0x8000),
                    history_size=self._history,
                ),
                remapper,
            )
        else:
            old.set_extensions(remapper)
        self._pub_pt = pub_pt
        return True


def forward_to(
    slots: Iterable[Slot],
    view: RtpView,
    now: float,
    *,
    switched: bool = False,
    chain: StepChain | None = None,
) -> int:
    """Forward ``view`` into each of ``slots`` (a track's fan-out, in one frame: this runs once
    per packet and subscriber): how many it was sent to. ``chain``: the stream's ``StepChain``,
    when every slot takes each of its packets (a steady fan-out), so the down-tracks that follow
    it only take its step. Drops are counted on the slots' counters; the packets sent are for
    the caller to count."""
    pt = view.payload_type
    if chain is not None and not switched:
        octets = view.payload_end - view.header_length
        prev, step = chain.advance(view.ssrc, view.sequence, view.timestamp, now, octets)
    else:
        step = None
    sent = 0
    for slot in slots:
        if pt != slot._pub_pt and not slot._prepare(pt):
            slot.counters.drop(DropReason.CODEC_NOT_NEGOTIATED)
            continue
        downtrack, writer = slot.downtrack, slot.writer
        if downtrack is None or writer is None:
            slot.counters.drop(DropReason.NOT_NEGOTIATED)
            continue
        buffer = writer.buffer
        if buffer is None:
            buffer = writer.prepare()
            if buffer is None:
                slot.counters.drop(DropReason.NOT_SENT)  # not connected (yet)
                continue
        if step is None:
            written = downtrack.write(view, now, buffer, switched=switched)
        else:
            written = downtrack.write_next(view, prev, step, buffer)
        if isinstance(written, Drop):
            slot.counters.drop(written.reason)
        elif writer.emit(written):
            sent += 1
        else:
            slot.counters.drop(DropReason.NOT_SENT)
    return sent


MAX_SHARED_REMAPPERS = 32
"""Distinct subscriber extension-id maps whose remappers a track keeps and shares (browsers use a
handful); a subscriber with yet another map gets its own, unshared."""


def _remapper(track: UpTrack, subscriber: Mapping[str, int]) -> ExtensionRemapper:
    """One remapper per (track, subscriber id map), shared so each packet's rewritten tail is
    built once for all the subscribers with that map."""
    pub = {u: i for u, i in track.extensions.items() if u in FORWARDED_EXTENSIONS}
    sub = {u: i for u, i in subscriber.items() if u in FORWARDED_EXTENSIONS}
    id_map = tuple(sorted((pid, sub[u]) for u, pid in pub.items() if u in sub))
    cache = track.remappers
    found = cache.get(id_map)
    if found is None:
        found = ExtensionRemapper(dict(id_map))
        if len(cache) < MAX_SHARED_REMAPPERS:  # the maps come from clients' descriptions: bounded
            cache[id_map] = found
    return found
