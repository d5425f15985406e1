"""One subscriber's copy of one published track: rewrite, retransmit.

A ``DownTrack`` is the ``RtpMunger`` of its outgoing stream (numbering) that also writes the
packets: the header is rewritten with the subscriber's SSRC, payload type and extension ids (the
part after the fixed header is built once per source packet and id map, see
``ExtensionRemapper.tail``). ``write`` runs once per forwarded packet and subscriber, so it does
its work in one frame: the munger's in-order step is inlined there, every other case goes
through ``RtpMunger.process``. Nothing is
stored per subscriber: a NACK is answered by finding the source packet among what the SFU
received (a ``SourceLookup``, the up-track's per-layer history) and sending it again with the
numbers this subscriber saw (over RTX when negotiated); a packet the SFU does not have (lost
upstream, or too old) is asked for from the publisher. Sender reports of the publisher are
translated so the subscriber keeps lip sync. Which packets reach ``forward`` at all is decided
by the layer selector / audio policy. ``now`` is float seconds.

In a fan-out, ``write_next`` writes a packet for a down-track that follows the stream's
``StepChain`` (see ``sfu.core.munger``): its numbers are the chain's minus its own offsets, and
nothing of its own changes but the step it follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sfu.core.actions import Drop, DropReason, SendNack, SendRtp, drop
from sfu.core.history import DEFAULT_SIZE, ResendThrottle
from sfu.core.munger import RtpMunger, Step
from sfu.core.rtcp import SenderReport
from sfu.core.rtp import (
    FIXED_HEADER_SIZE,
    ExtensionRemapper,
    RtpView,
    build_rtx,
    pack_fixed_header,
    pack_fixed_header_into,
)
from sfu.core.seqnum import SEQ_MASK, TS_MASK, TS_MOD, unwrap_near

SourceLookup = Callable[[int, int, float], "RtpView | None"]
"""(source SSRC, incoming 16-bit sequence number, now) -> the source packet as received, if it is
still kept and recent enough to be worth sending again."""

_TOO_LONG = drop(DropReason.TOO_LONG)
_MAX_DATAGRAM = 1 << 16  # no UDP datagram is longer: ``forward``'s buffer


@dataclass(frozen=True, slots=True)
class DownTrackParams:
    """What was negotiated with the subscriber for this track, plus the random starting points."""

    ssrc: int
    payload_type: int
    clock_rate: int
    first_sequence: int
    first_timestamp: int
    rtx_ssrc: int | None = None
    rtx_payload_type: int | None = None
    rtx_first_sequence: int = 0
    history_size: int = DEFAULT_SIZE  # retransmissions remembered for throttling


class DownTrack(RtpMunger):
    """Forwards packets of one track to one subscriber."""

    __slots__ = (
        "_extensions",
        "_obase",
        "_octets",
        "_packets",
        "_params",
        "_pbase",
        "_pt",
        "_rtx_seq",
        "_ssrc",
        "_throttle",
    )

    def __init__(self, params: DownTrackParams, extensions: ExtensionRemapper | None = None) -> None:
        super().__init__(
            params.clock_rate, first_sequence=params.first_sequence, first_timestamp=params.first_timestamp
        )
        self._params = params
        self._ssrc = params.ssrc
        self._pt = params.payload_type & 0x7F
        self._extensions = extensions if extensions is not None else ExtensionRemapper({})
        self._throttle = ResendThrottle(params.history_size)
        self._rtx_seq = (params.rtx_first_sequence - 1) & SEQ_MASK
        self._packets = 0
        self._octets = 0  # payload octets, for sender reports
        self._pbase = 0  # while following: the counts are these plus the step's
        self._obase = 0

    @property
    def packets_sent(self) -> int:
        step = self._step
        return self._packets if step is None else self._pbase + step[5]

    @property
    def octets_sent(self) -> int:
        step = self._step
        return self._octets if step is None else self._obase + step[6]

    @property
    def params(self) -> DownTrackParams:
        return self._params

    @property
    def extensions(self) -> ExtensionRemapper:
        return self._extensions

    def set_extensions(self, extensions: ExtensionRemapper | None) -> None:
        """Use another extension id map (the slot now carries a source negotiated differently)."""
        self._extensions = extensions if extensions is not None else ExtensionRemapper({})

    def forward(self, view: RtpView, now: float, *, switched: bool = False) -> bytes | Drop:
        """The rewritten packet to send, or why not. ``switched``: the layer selector says this
        packet starts a newly selected stream (resynchronises numbering even on the same SSRC)."""
        buffer = bytearray(_MAX_DATAGRAM)
        size = self.write(view, now, memoryview(buffer), switched=switched)
        return size if isinstance(size, Drop) else bytes(buffer[:size])

    def write(self, view: RtpView, now: float, buffer: memoryview, *, switched: bool = False) -> int | Drop:
        """``forward`` written into ``buffer`` (the SFU's SRTP buffer for this subscriber, so the
        packet is protected where it lies): its size, or why not. A packet too long for
        ``buffer`` is dropped; its number stays a gap, as a lost packet's would."""
        if self._step is not None:
            self._sync()
        extensions = self._extensions
        if extensions.tail_view is view:  # every subscriber of this id map after the first
            first, tail = extensions.last_tail
        else:
            first, tail = extensions.tail(view)
        if switched:
            self._resync = True
        size = FIXED_HEADER_SIZE + len(tail)
        if size > len(buffer):
            return _TOO_LONG
        sequence = view.sequence
        highest_in = self._highest_in
        d = (sequence - highest_in) & SEQ_MASK
        if 0 < d < 0x8000 and view.ssrc == self._source and not self._resync:
            # RtpMunger.process's in-order step, inlined
            in_ts = self._in_ts
            dt = (view.timestamp - in_ts) & TS_MASK
            if dt < 0x80000000:
                in_ts += dt
                self._in_ts = in_ts
            else:
                in_ts += dt - TS_MOD
            in_ext = highest_in + d
            out_ext = in_ext - self._seq_offset
            out_ts = in_ts - self._ts_offset
            self._highest_in = in_ext
            self._highest_out = out_ext
            self._highest_out_ts = out_ts
            self._last_time = now
            out_seq, out_ts = out_ext & SEQ_MASK, out_ts & TS_MASK
        else:
            result = self.process(view.ssrc, sequence, view.timestamp, now)
            if isinstance(result, Drop):
                return result
            out_seq, out_ts = result.sequence, result.timestamp
        self._packets += 1
        self._octets += view.payload_end - view.header_length
        marker_and_pt = (view.data[1] & 0x80) | self._pt
        pack_fixed_header_into(buffer, 0, first, marker_and_pt, out_seq, out_ts, self._ssrc)
        buffer[FIXED_HEADER_SIZE:size] = tail
        return size

    def write_next(self, view: RtpView, prev: Step, step: Step, buffer: memoryview) -> int | Drop:
        """``write`` for a packet of a stream whose ``StepChain`` went from ``prev`` to ``step``
        with it. A down-track that followed ``prev`` only takes the step; any other writes the
        packet its own way and then follows ``step`` if its state is that step's."""
        if self._step is not prev:
            size = self.write(view, step[4], buffer)
            if not isinstance(size, Drop):
                self.follow(step)
            return size
        extensions = self._extensions
        if extensions.tail_view is view:
            first, tail = extensions.last_tail
        else:
            first, tail = extensions.tail(view)
        size = FIXED_HEADER_SIZE + len(tail)
        if size > len(buffer):
            return _TOO_LONG  # still at ``prev``: the packet is a gap
        self._step = step
        pack_fixed_header_into(
            buffer,
            0,
            first,
            (view.data[1] & 0x80) | self._pt,
            (step[1] - self._seq_offset) & SEQ_MASK,
            (step[3] - self._ts_offset) & TS_MASK,
            self._ssrc,
        )
        buffer[FIXED_HEADER_SIZE:size] = tail
        return size

    def follow(self, step: Step) -> bool:
        if not super().follow(step):
            return False
        self._pbase = self._packets - step[5]
        self._obase = self._octets - step[6]
        return True

    def _sync(self) -> None:
        step = self._step
        if step is not None:
            self._packets = self._pbase + step[5]
            self._octets = self._obase + step[6]
            super()._sync()

    def _packet(self, view: RtpView, sequence: int, timestamp: int) -> bytes:
        """``view`` with this subscriber's header: 16/32-bit ``sequence``/``timestamp``."""
        first, tail = self._extensions.tail(view)
        marker_and_pt = (view.data[1] & 0x80) | self._pt
        return pack_fixed_header(first, marker_and_pt, sequence, timestamp, self._ssrc) + tail

    def skip(self, view: RtpView) -> None:
        """``view`` is deliberately not forwarded (padding, dropped temporal layer, silence)."""
        self.skip_sequence(view.ssrc, view.sequence)

    def on_nack(
        self,
        lost: Iterable[int],
        now: float,
        rtt: float | None = None,
        source: SourceLookup | None = None,
    ) -> list[SendRtp | SendNack]:
        """Answer a subscriber's NACK of outgoing 16-bit sequence numbers ``lost``: the source
        packets ``source`` still has are sent again (throttled per packet), the others are asked
        for upstream."""
        self._sync()
        highest = self._highest_out
        if highest is None:
            return []
        actions: list[SendRtp | SendNack] = []
        upstream: dict[int, list[int]] = {}
        for seq in lost:
            seq &= SEQ_MASK
            origin = self.origin(seq)
            if origin is None:
                continue
            ssrc, in_seq, ts_offset = origin
            view = source(ssrc, in_seq, now) if source is not None else None
            if view is None:
                upstream.setdefault(ssrc, []).append(in_seq)
            elif self._throttle.allow(unwrap_near(seq, highest), now, rtt):
                timestamp = (view.timestamp - ts_offset) & TS_MASK
                actions.append(SendRtp(self._retransmission(view, seq, timestamp), True))
        actions.extend(SendNack(ssrc, tuple(seqs)) for ssrc, seqs in upstream.items())
        return actions

    def translate_sender_report(self, report: SenderReport) -> SenderReport | None:
        """The publisher's sender report as this subscriber must see it, or None if the report is
        about a stream that is not the one being forwarded."""
        timestamp = self.translate_timestamp(report.ssrc, report.rtp_timestamp)
        if timestamp is None:
            return None
        return SenderReport(
            ssrc=self._params.ssrc,
            ntp_timestamp=report.ntp_timestamp,
            rtp_timestamp=timestamp,
            packet_count=self.packets_sent & 0xFFFFFFFF,
            octet_count=self.octets_sent & 0xFFFFFFFF,
        )

    def _retransmission(self, view: RtpView, sequence: int, timestamp: int) -> bytes:
        packet = self._packet(view, sequence, timestamp)
        params = self._params
        if params.rtx_ssrc is None or params.rtx_payload_type is None:
            return packet
        self._rtx_seq = (self._rtx_seq + 1) & SEQ_MASK
        rtx_pt, rtx_seq = params.rtx_payload_type, self._rtx_seq
        return build_rtx(RtpView(packet), ssrc=params.rtx_ssrc, payload_type=rtx_pt, sequence=rtx_seq)
