"""One subscriber's copy of one published track: rewrite, retransmit.

A ``DownTrack`` writes the packets of its outgoing stream: it holds the stream's ``RtpMunger``
(the numbering) and rewrites the header with the subscriber's SSRC, payload type and extension
ids (the part after the fixed header is built once per source packet and id map, see
``ExtensionRemapper.tail``). ``write`` runs once per forwarded packet and subscriber. Nothing is
stored per subscriber: a NACK is answered by finding the source packet among what the SFU
received (a ``SourceLookup``, the up-track's per-layer history) and sending it again with the
numbers this subscriber saw (over RTX when negotiated); a packet the SFU does not have (lost
upstream, or too old) is asked for from the publisher. Sender reports of the publisher are
translated so the subscriber keeps lip sync. Which packets reach ``write`` at all is decided by
the layer selector / audio policy. ``now`` is float seconds.

In a fan-out, ``write_next`` writes a packet for a down-track that follows the stream's
``StepChain`` (see ``sfu.core.munger``): its numbers are the chain's minus the offsets its munger
gave when it began to follow, and nothing changes but the step it took last. Before the munger
is used again, it catches up with that step.
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
from sfu.core.seqnum import SEQ_MASK, TS_MASK, unwrap_near

SourceLookup = Callable[[int, int, float], "RtpView | None"]
"""(source SSRC, incoming 16-bit sequence number, now) -> the source packet as received, if it is
still kept and recent enough to be worth sending again."""

_TOO_LONG = drop(DropReason.TOO_LONG)


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


class DownTrack:
    """Forwards packets of one track to one subscriber."""

    __slots__ = (
        "_extensions",
        "_munger",
        "_params",
        "_pt",
        "_rtx_sequence",
        "_seq_offset",
        "_ssrc",
        "_start",
        "_step",
        "_throttle",
        "_ts_offset",
    )

    def __init__(self, params: DownTrackParams, extensions: ExtensionRemapper | None = None) -> None:
        self._munger = RtpMunger(
            params.clock_rate, first_sequence=params.first_sequence, first_timestamp=params.first_timestamp
        )
        self._params = params
        self._ssrc = params.ssrc
        self._pt = params.payload_type & 0x7F
        self._extensions = extensions if extensions is not None else ExtensionRemapper({})
        self._throttle = ResendThrottle(params.history_size)
        self._rtx_sequence = params.rtx_first_sequence & SEQ_MASK  # extended: the next RTX packet's
        # following a chain: the step it began from and the step it took last (None: it does not
        # follow), and the munger's offsets from the chain's numbers to the outgoing ones
        self._start: Step | None = None
        self._step: Step | None = None
        self._seq_offset = 0
        self._ts_offset = 0

    @property
    def params(self) -> DownTrackParams:
        return self._params

    @property
    def source(self) -> int | None:
        """The source (SSRC) being forwarded, None before the first packet."""
        return self._munger.source

    @property
    def highest_sequence(self) -> int | None:
        """Extended outgoing sequence number of the newest packet written."""
        self._catch_up()
        return self._munger.highest_sequence

    @property
    def highest_timestamp(self) -> int:
        """Extended outgoing timestamp of the newest packet written."""
        self._catch_up()
        return self._munger.highest_timestamp

    @property
    def packets_sent(self) -> int:
        start, step = self._start, self._step
        following = 0 if start is None or step is None else step.packets - start.packets
        return self._munger.packets + following

    @property
    def octets_sent(self) -> int:
        start, step = self._start, self._step
        following = 0 if start is None or step is None else step.octets - start.octets
        return self._munger.octets + following

    @property
    def following(self) -> bool:
        """Whether this down-track follows its stream's ``StepChain`` (its next packet may be a
        fast step)."""
        return self._start is not None

    def _catch_up(self) -> None:
        """Stop following: the munger's state becomes that after the chain's last step taken."""
        start, step = self._start, self._step
        if start is not None and step is not None:
            self._munger.catch_up(start, step)
        self._start = self._step = None

    def set_extensions(self, extensions: ExtensionRemapper | None) -> None:
        """Use another extension id map (the slot now carries a source negotiated differently)."""
        self._extensions = extensions if extensions is not None else ExtensionRemapper({})

    def write(self, view: RtpView, now: float, buffer: memoryview, *, switched: bool = False) -> int | Drop:
        """``view`` rewritten for this subscriber into ``buffer`` (the SFU's SRTP buffer for this
        subscriber, so the packet is protected where it lies): its size, or why not.
        ``switched``: the layer selector says this packet starts a newly selected stream
        (resynchronises numbering even on the same SSRC). A packet too long for ``buffer`` is
        dropped; its number stays a gap, as a lost packet's would."""
        if self._start is not None:
            self._catch_up()
        extensions = self._extensions
        if extensions.tail_view is view:  # every subscriber of this id map after the first
            first, tail = extensions.last_tail
        else:
            first, tail = extensions.tail(view)
        munger = self._munger
        if switched:
            munger.resync()
        size = FIXED_HEADER_SIZE + len(tail)
        if size > len(buffer):
            return _TOO_LONG
        numbers = munger.process(
            view.ssrc, view.sequence, view.timestamp, now, view.payload_end - view.header_length
        )
        if isinstance(numbers, Drop):
            return numbers
        sequence, timestamp, _ = numbers
        marker_and_pt = (view.data[1] & 0x80) | self._pt
        pack_fixed_header_into(buffer, 0, first, marker_and_pt, sequence, timestamp, self._ssrc)
        buffer[FIXED_HEADER_SIZE:size] = tail
        return size

    def write_next(self, view: RtpView, prev: Step, step: Step, buffer: memoryview) -> int | Drop:
        """``write`` for a packet of a stream whose ``StepChain`` went from ``prev`` to ``step``
        with it. A down-track that followed ``prev`` only takes the step; any other writes the
        packet its own way and then follows ``step`` if its state is that step's."""
        extensions = self._extensions
        if extensions.tail_view is view:
            first, tail = extensions.last_tail
        else:
            first, tail = extensions.tail(view)
        size = FIXED_HEADER_SIZE + len(tail)
        if size > len(buffer):
            return _TOO_LONG  # still at ``prev``: the packet is a gap
        if self._step is not prev:
            written = self.write(view, step.now, buffer)
            if not isinstance(written, Drop):
                self._follow(step)
            return written
        self._step = step
        pack_fixed_header_into(
            buffer,
            0,
            first,
            (view.data[1] & 0x80) | self._pt,
            (step.sequence - self._seq_offset) & SEQ_MASK,
            (step.packet_timestamp - self._ts_offset) & TS_MASK,
            self._ssrc,
        )
        buffer[FIXED_HEADER_SIZE:size] = tail
        return size

    def _follow(self, step: Step) -> None:
        """Follow the chain from ``step`` on if the munger's state is that step's."""
        offsets = self._munger.chain_offsets(step)
        if offsets is not None:
            self._start = self._step = step
            self._seq_offset, self._ts_offset = offsets

    def skip(self, view: RtpView) -> None:
        """``view`` is deliberately not forwarded (padding, dropped temporal layer, silence)."""
        self._catch_up()
        self._munger.skip_sequence(view.ssrc, view.sequence)

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
        self._catch_up()
        munger = self._munger
        highest = munger.highest_sequence
        if highest is None:
            return []
        actions: list[SendRtp | SendNack] = []
        upstream: dict[int, list[int]] = {}
        for seq in lost:
            seq &= SEQ_MASK
            origin = munger.origin(seq)
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
        self._catch_up()
        munger = self._munger
        timestamp = munger.translate_timestamp(report.ssrc, report.rtp_timestamp)
        if timestamp is None:
            return None
        return SenderReport(
            ssrc=self._params.ssrc,
            ntp_timestamp=report.ntp_timestamp,
            rtp_timestamp=timestamp,
            packet_count=munger.packets & 0xFFFFFFFF,
            octet_count=munger.octets & 0xFFFFFFFF,
        )

    def _retransmission(self, view: RtpView, sequence: int, timestamp: int) -> bytes:
        """Source packet ``view`` again with the 16/32-bit numbers it went out with, over RTX
        when negotiated (the RTX stream's own sequence number, wrapped only in its header)."""
        first, tail = self._extensions.tail(view)
        marker_and_pt = (view.data[1] & 0x80) | self._pt
        packet = pack_fixed_header(first, marker_and_pt, sequence, timestamp, self._ssrc) + tail
        params = self._params
        if params.rtx_ssrc is None or params.rtx_payload_type is None:
            return packet
        rtx_sequence = self._rtx_sequence
        self._rtx_sequence = rtx_sequence + 1
        return build_rtx(
            RtpView(packet), ssrc=params.rtx_ssrc, payload_type=params.rtx_payload_type, sequence=rtx_sequence
        )
