"""Sequence number and timestamp rewriting for one outgoing stream: the numbering's one home.

A subscriber must see one continuous RTP stream even though what it receives may switch between
publisher streams (simulcast layers, or a new publisher track after a re-publish). ``RtpMunger``
maps each forwarded packet to the outgoing numbering:

- Sequence numbers are contiguous across switches and across packets the forwarder chose not to
  send (``skip_sequence``), while gaps caused by real loss are kept so the receiver NACKs them.
- Timestamps keep advancing across a switch: the new stream's offset is chosen so that its first
  packet lands ``now - last_forward_time`` (in clock-rate ticks, at least ``min_timestamp_step``)
  after the last forwarded one.
- Late packets from before a switch point are dropped; reordered packets get the number they
  would have had in order.
- ``origin`` maps an outgoing sequence number back to (source, incoming sequence number, timestamp
  offset): a NACKed packet is found among the source's packets and sent again with the numbers
  it had, or the NACK is forwarded upstream.
- It counts the packets and payload octets it numbered (for sender reports).

Everything inside is extended (unwrapped); 16/32-bit values only come out for the header. ``now``
is float seconds. The caller guarantees that a packet from a new source is a valid switch point
(the first packet of a keyframe): the layer selector only passes such packets.

**The numbering step** is ``extend``: a packet's 16/32-bit numbers placed against the highest
extended ones of its stream. ``RtpMunger.process`` and ``StepChain.advance`` both take it there,
and nowhere else is it written.

**Following a chain.** Every steady subscriber of a stream repeats the same in-order step with
its own offsets. A ``StepChain`` takes that step once per packet and gives it as a ``Step``. A
munger whose state is that of one of the chain's steps gives its ``chain_offsets``: the chain's
next packets are numbered the chain's numbers minus these, so a fan-out writes each copy with
two subtractions and leaves the munger alone (``DownTrack.write_next``). Before the munger
numbers anything again, it ``catch_up``s: its state becomes that after the chain's packets it
was followed through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from sfu.core.actions import Drop, DropReason, drop
from sfu.core.seqnum import SEQ_BITS, SEQ_MASK, SEQ_MOD, TS_BITS, TS_MASK, TS_MOD, unwrap_near

_DUPLICATE = drop(DropReason.DUPLICATE)
_BEFORE_SWITCH = drop(DropReason.BEFORE_SWITCH)

_new_munged = tuple.__new__  # builds a Munged without the named tuple's Python-level __new__


def extend(highest: int, highest_timestamp: int, sequence: int, timestamp: int) -> tuple[int, int, int]:
    """The numbering step: a packet's 16-bit ``sequence`` and 32-bit ``timestamp``, each placed
    closest to the extended ``highest`` sequence number and ``highest_timestamp`` of its stream.

    Returns (the packet's extended sequence number, the highest extended timestamp once this
    packet is counted, the packet's extended timestamp). The packet is the next in order when its
    sequence number is above ``highest`` (by less than half the range), a duplicate when equal,
    late when below."""
    d = (sequence - highest) & SEQ_MASK
    if d >= 0x8000:
        d -= SEQ_MOD
    dt = (timestamp - highest_timestamp) & TS_MASK
    if dt < 0x80000000:
        highest_timestamp += dt
        return highest + d, highest_timestamp, highest_timestamp
    return highest + d, highest_timestamp, highest_timestamp + dt - TS_MOD


class Segment(NamedTuple):
    """A stretch of the outgoing stream numbered with the same offsets: from outgoing extended
    sequence number ``out_start`` (incoming ``in_start`` of ``source``) on, outgoing = incoming -
    ``offset`` and outgoing timestamp = incoming - ``ts_offset``. ``run`` counts the munger's
    switches: late packets are only numbered within the current run."""

    run: int
    source: int
    in_start: int
    out_start: int
    offset: int
    ts_offset: int


@dataclass(slots=True)
class Step:
    """One in-order packet of a stream, as a ``StepChain`` saw it. Never changed once made (a
    frozen dataclass would cost four times as much to build, once per packet)."""

    source: int
    sequence: int  # extended incoming sequence number
    timestamp: int  # highest extended incoming timestamp so far
    packet_timestamp: int  # this packet's extended timestamp (below ``timestamp`` if it went back)
    now: float  # arrival time
    packets: int  # packets of the chain so far
    octets: int  # payload octets of the chain so far


NO_STEP = Step(-1, 0, 0, 0, 0.0, 0, 0)
"""The step before a chain's first: nobody follows it."""


class StepChain:
    """The in-order step of one stream's packets, taken once for all its followers."""

    __slots__ = ("step",)

    def __init__(self) -> None:
        self.step = NO_STEP

    def advance(
        self, source: int, sequence: int, timestamp: int, now: float, octets: int
    ) -> tuple[Step, Step]:
        """(the step before this packet, this packet's step). A packet that is not the next in
        order (the first of a source, a late one, a duplicate) starts the chain again from
        itself, after ``NO_STEP``: nobody follows it straight on, every munger takes it its own
        way and follows the new chain if that leaves it in the new chain's state."""
        prev = self.step
        if source == prev.source:
            ext, highest_ts, packet_ts = extend(prev.sequence, prev.timestamp, sequence, timestamp)
            if ext > prev.sequence:
                step = Step(source, ext, highest_ts, packet_ts, now, prev.packets + 1, prev.octets + octets)
                self.step = step
                return prev, step
        self.step = Step(source, sequence, timestamp, timestamp, now, 1, octets)
        return NO_STEP, self.step


class Munged(NamedTuple):
    """Where a forwarded packet goes in the outgoing stream."""

    sequence: int  # 16-bit, for the header
    timestamp: int  # 32-bit, for the header
    ext_sequence: int  # extended outgoing sequence number


class RtpMunger:
    """Rewrites (source, seq, ts) of forwarded packets into one continuous outgoing stream."""

    __slots__ = (
        "_clock_rate",
        "_first_seq",
        "_first_ts",
        "_highest_in",
        "_highest_out",
        "_highest_out_ts",
        "_in_ts",
        "_last_time",
        "_max_segments",
        "_min_step",
        "_octets",
        "_packets",
        "_resync",
        "_run",
        "_segments",
        "_seq_offset",
        "_source",
        "_ts_offset",
    )

    def __init__(
        self,
        clock_rate: int,
        *,
        first_sequence: int,
        first_timestamp: int,
        min_timestamp_step: int = 1,
        max_segments: int = 64,
    ) -> None:
        """``first_sequence``/``first_timestamp`` start the outgoing stream (RFC 3550 asks for
        random values: the adapter draws them)."""
        if clock_rate <= 0:
            raise ValueError("clock rate must be positive")
        self._clock_rate = clock_rate
        self._first_seq = first_sequence & SEQ_MASK
        self._first_ts = first_timestamp & TS_MASK
        self._min_step = max(1, min_timestamp_step)
        self._max_segments = max(2, max_segments)
        self._source: int | None = None
        self._resync = False
        self._run = 0
        self._in_ts = 0  # extended incoming timestamp, the highest of the current run
        self._seq_offset = 0
        self._ts_offset = 0
        self._highest_in = 0
        self._highest_out: int | None = None
        self._highest_out_ts = 0
        self._last_time = 0.0
        self._segments: list[Segment] = []
        self._packets = 0
        self._octets = 0  # payload octets

    @property
    def source(self) -> int | None:
        """The source (e.g. SSRC) currently forwarded, None before the first packet."""
        return self._source

    @property
    def highest_sequence(self) -> int | None:
        """Extended outgoing sequence number of the newest forwarded packet."""
        return self._highest_out

    @property
    def highest_timestamp(self) -> int:
        """Extended outgoing timestamp of the newest forwarded packet."""
        return self._highest_out_ts

    @property
    def packets(self) -> int:
        """Packets numbered so far."""
        return self._packets

    @property
    def octets(self) -> int:
        """Payload octets of the packets numbered so far."""
        return self._octets

    def chain_offsets(self, step: Step) -> tuple[int, int] | None:
        """If this munger's state is ``step``'s (it has just numbered the step's packet in order,
        or switched to it): the (sequence number, timestamp) offsets that number the chain's
        next packets, each the chain's extended number minus its offset. None otherwise."""
        if (
            step.source != self._source
            or self._resync
            or step.now != self._last_time
            or self._highest_out is None
        ):
            return None
        # the chain's numbers are extended from its own first packet: whole wraps apart from ours
        dseq, dts = step.sequence - self._highest_in, step.timestamp - self._in_ts
        if (
            dseq & SEQ_MASK
            or dts & TS_MASK
            or self._highest_out != self._highest_in - self._seq_offset
            or self._highest_out_ts != step.packet_timestamp - dts - self._ts_offset
        ):
            return None
        return self._seq_offset + dseq, self._ts_offset + dts

    def catch_up(self, start: Step, end: Step) -> None:
        """The chain's packets after ``start`` up to ``end`` were numbered with
        ``chain_offsets(start)``, taken when this munger was in ``start``'s state: it is now in
        the state it would be in had it numbered them itself."""
        dseq, dts = start.sequence - self._highest_in, start.timestamp - self._in_ts
        self._highest_in = highest_in = end.sequence - dseq
        self._in_ts = end.timestamp - dts
        self._highest_out = highest_in - self._seq_offset
        self._highest_out_ts = end.packet_timestamp - dts - self._ts_offset
        self._last_time = end.now
        self._packets += end.packets - start.packets
        self._octets += end.octets - start.octets

    def process(
        self, source: int, sequence: int, timestamp: int, now: float, octets: int = 0
    ) -> Munged | Drop:
        """Outgoing numbering for a packet to forward (of ``octets`` payload octets), or a
        ``Drop`` (duplicate / before switch)."""
        if source != self._source or self._resync:
            return self._start_run(source, sequence, timestamp, now, octets)
        highest_in = self._highest_in
        in_ext, self._in_ts, in_ts = extend(highest_in, self._in_ts, sequence, timestamp)
        if in_ext > highest_in:
            out_ext = in_ext - self._seq_offset
            out_ts = in_ts - self._ts_offset
            self._highest_in = in_ext
            self._highest_out = out_ext
            self._highest_out_ts = out_ts
            self._last_time = now
            self._packets += 1
            self._octets += octets
            return _new_munged(Munged, (out_ext & SEQ_MASK, out_ts & TS_MASK, out_ext))
        if in_ext == highest_in:
            return _DUPLICATE
        offset = self._offset_for(in_ext)
        if offset is None:
            return _BEFORE_SWITCH
        out_ext = in_ext - offset
        self._packets += 1
        self._octets += octets
        return Munged(out_ext & SEQ_MASK, (in_ts - self._ts_offset) & TS_MASK, out_ext)

    def skip_sequence(self, source: int, sequence: int) -> None:
        """A packet of the current source that is deliberately not forwarded (e.g. padding only,
        a dropped temporal layer, silence): the outgoing stream closes the gap it would leave.

        Only an in-order packet can be skipped; a late one already has a number reserved and its
        gap stays (the receiver may NACK it).
        """
        if source != self._source or self._resync:
            return
        d = (sequence - self._highest_in) & SEQ_MASK
        if not 0 < d < 0x8000:
            return
        in_ext = self._highest_in + d
        old_offset = self._seq_offset
        self._seq_offset = old_offset + 1
        self._highest_in = in_ext
        segment = Segment(self._run, source, in_ext + 1, in_ext - old_offset, old_offset + 1, self._ts_offset)
        last = self._segments[-1]
        if last.run == self._run and last.out_start == segment.out_start:
            self._segments[-1] = segment  # consecutive skips: nothing was sent in between
        else:
            self._add_segment(segment)

    def resync(self) -> None:
        """Treat the next packet as a switch point even if its source is unchanged (for example
        when forwarding resumes after a pause: its timestamps restart from the arrival time)."""
        self._resync = True

    def origin(self, sequence: int) -> tuple[int, int, int] | None:
        """(source, incoming 16-bit sequence number, timestamp offset) behind outgoing
        ``sequence``: the packet went out with timestamp ``(incoming - offset) & 0xFFFFFFFF``.
        None if it was never sent or is too old to tell."""
        if self._highest_out is None:
            return None
        out_ext = unwrap_near(sequence, self._highest_out, SEQ_BITS)
        if out_ext > self._highest_out:
            return None
        for segment in reversed(self._segments):
            if out_ext >= segment.out_start:
                return segment.source, (out_ext + segment.offset) & SEQ_MASK, segment.ts_offset
        return None

    def translate_timestamp(self, source: int, timestamp: int) -> int | None:
        """Outgoing 32-bit timestamp for a timestamp of ``source`` (e.g. from its sender report),
        or None when that source is not the one being forwarded."""
        if source != self._source or self._resync:
            return None
        return (unwrap_near(timestamp, self._in_ts, TS_BITS) - self._ts_offset) & TS_MASK

    def _start_run(self, source: int, sequence: int, timestamp: int, now: float, octets: int) -> Munged:
        self._run += 1
        self._source = source
        self._resync = False
        in_ext = sequence
        in_ts = self._in_ts = timestamp
        if self._highest_out is None:
            out_ext = self._first_seq
            out_ts = self._first_ts
        else:
            out_ext = self._highest_out + 1
            step = int((now - self._last_time) * self._clock_rate)
            out_ts = self._highest_out_ts + max(step, self._min_step)
        self._seq_offset = in_ext - out_ext
        self._ts_offset = in_ts - out_ts
        self._highest_in = in_ext
        self._highest_out = out_ext
        self._highest_out_ts = out_ts
        self._last_time = now
        self._packets += 1
        self._octets += octets
        self._add_segment(Segment(self._run, source, in_ext, out_ext, self._seq_offset, self._ts_offset))
        return Munged(out_ext & SEQ_MASK, out_ts & TS_MASK, out_ext)

    def _offset_for(self, in_ext: int) -> int | None:
        run = self._run
        for segment in reversed(self._segments):
            if segment.run != run:
                return None
            if in_ext >= segment.in_start:
                return segment.offset
        return None

    def _add_segment(self, segment: Segment) -> None:
        segments = self._segments
        segments.append(segment)
        if len(segments) > self._max_segments:
            del segments[0]
