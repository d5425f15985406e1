"""Sequence number and timestamp rewriting for one down-track.

A subscriber must see one continuous RTP stream even though what it receives may switch between
publisher streams (simulcast layers, or a new publisher track after a re-publish). ``RtpMunger``
maps each forwarded packet to the outgoing numbering:

- Sequence numbers are contiguous across switches and across packets the forwarder chose not to
  send (``skip``), while gaps caused by real loss are kept so the receiver NACKs them.
- Timestamps keep advancing across a switch: the new stream's offset is chosen so that its first
  packet lands ``now - last_forward_time`` (in clock-rate ticks, at least ``min_timestamp_step``)
  after the last forwarded one.
- Late packets from before a switch point are dropped; reordered packets get the number they
  would have had in order.
- ``origin`` maps an outgoing sequence number back to (source, incoming sequence number, timestamp
  offset): a NACKed packet is found among the source's packets and sent again with the numbers
  it had, or the NACK is forwarded upstream.

Everything inside is extended (unwrapped); 16/32-bit values only come out in ``Munged``. ``now``
is float seconds. The caller guarantees that a packet from a new source is a valid switch point
(the first packet of a keyframe): the layer selector only passes such packets.

**Following a chain.** Every steady subscriber of a stream repeats the same in-order step (the
incoming numbers' unwrapping) with its own offsets. A ``StepChain`` takes that step once per
packet and gives it as a ``Step``; a munger whose state is that of the chain's previous step
``follow``s the new one instead of updating its own fields, so a fan-out writes each copy with
two subtractions (``DownTrack.write_next``). Its own fields are brought up to date from the step
it last followed before anything else reads or changes them (``_sync``).
"""

from __future__ import annotations

from typing import NamedTuple

from sfu.core.actions import Drop, DropReason, drop
from sfu.core.seqnum import SEQ_BITS, SEQ_MASK, SEQ_MOD, TS_BITS, TS_MASK, TS_MOD, unwrap_near

_DUPLICATE = drop(DropReason.DUPLICATE)
_BEFORE_SWITCH = drop(DropReason.BEFORE_SWITCH)

_new_munged = tuple.__new__  # builds a Munged without the named tuple's Python-level __new__

# (run, source, first incoming ext seq, first outgoing ext seq, seq offset = in - out, ts offset)
_Segment = tuple[int, int, int, int, int, int]

Step = tuple[int, int, int, int, float, int, int]
"""One in-order packet of a stream, as a ``StepChain`` saw it: (source, extended incoming sequence
number, highest extended incoming timestamp, the packet's extended timestamp, arrival time,
packets and payload octets of the chain so far)."""

NO_STEP: Step = (-1, 0, 0, 0, 0.0, 0, 0)
"""The step before a chain's first: nobody follows it."""


class StepChain:
    """The in-order step of one stream's packets, taken once for all its followers."""

    __slots__ = ("step",)

    def __init__(self) -> None:
        self.step: Step = NO_STEP

    def advance(
        self, source: int, sequence: int, timestamp: int, now: float, octets: int
    ) -> tuple[Step, Step]:
        """(the step before this packet, this packet's step). A packet that is not the next in
        order (the first of a source, a late one, a duplicate) starts the chain again from
        itself, after ``NO_STEP``: nobody follows it straight on, every munger takes it its own
        way and follows the new chain if that leaves it in the new chain's state."""
        prev = self.step
        highest_in = prev[1]
        d = (sequence - highest_in) & SEQ_MASK
        if source != prev[0] or not 0 < d < 0x8000:
            step = self.step = (source, sequence, timestamp, timestamp, now, 1, octets)
            return NO_STEP, step
        in_ts = used = prev[2]
        dt = (timestamp - in_ts) & TS_MASK
        if dt < 0x80000000:
            in_ts = used = in_ts + dt
        else:
            used += dt - TS_MOD
        step = self.step = (source, highest_in + d, in_ts, used, now, prev[5] + 1, prev[6] + octets)
        return prev, step


class Munged(NamedTuple):
    """Where a forwarded packet goes in the outgoing stream."""

    sequence: int  # 16-bit, for the header
    timestamp: int  # 32-bit, for the header
    ext_sequence: int  # extended outgoing sequence number (the packet history key)


class RtpMunger:
    """Rewrites (source, seq, ts) of forwarded packets into one continuous outgoing stream."""

    __slots__ = (
        "_clock_rate",
        "_dseq",
        "_dts",
        "_first_seq",
        "_first_ts",
        "_highest_in",
        "_highest_out",
        "_highest_out_ts",
        "_in_ts",
        "_last_time",
        "_max_segments",
        "_min_step",
        "_resync",
        "_run",
        "_segments",
        "_seq_offset",
        "_source",
        "_step",
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
        self._segments: list[_Segment] = []
        self._step: Step | None = None  # followed: the fields above are as of this step
        self._dseq = 0  # the step's incoming numbers minus this munger's (multiples of 2^16, 2^32)
        self._dts = 0

    @property
    def source(self) -> int | None:
        """The source (e.g. SSRC) currently forwarded, None before the first packet."""
        return self._source

    @property
    def highest_sequence(self) -> int | None:
        """Extended outgoing sequence number of the newest forwarded packet."""
        self._sync()
        return self._highest_out

    @property
    def highest_timestamp(self) -> int:
        """Extended outgoing timestamp of the newest forwarded packet."""
        self._sync()
        return self._highest_out_ts

    @property
    def following(self) -> bool:
        """Whether this munger follows a ``StepChain`` (its next packet may be a fast step)."""
        return self._step is not None

    def follow(self, step: Step) -> bool:
        """Follow a chain from ``step`` on, if this munger's state is that step's (it has just
        forwarded the step's packet in order, or switched to it): True if it does."""
        if self._step is not None:
            self._sync()
        source, in_ext, in_ts, used, now = step[0], step[1], step[2], step[3], step[4]
        if source != self._source or self._resync or now != self._last_time or self._highest_out is None:
            return False
        dseq, dts = in_ext - self._highest_in, in_ts - self._in_ts
        if (
            dseq & SEQ_MASK
            or dts & TS_MASK
            or self._highest_out != self._highest_in - self._seq_offset
            or self._highest_out_ts != used - dts - self._ts_offset
        ):
            return False
        self._step, self._dseq, self._dts = step, dseq, dts
        return True

    def _sync(self) -> None:
        """Stop following: this munger's own fields as of the step it followed last."""
        step = self._step
        if step is None:
            return
        self._step = None
        self._highest_in = highest_in = step[1] - self._dseq
        self._in_ts = step[2] - self._dts
        self._highest_out = highest_in - self._seq_offset
        self._highest_out_ts = step[3] - self._dts - self._ts_offset
        self._last_time = step[4]

    def process(self, source: int, sequence: int, timestamp: int, now: float) -> Munged | Drop:
        """Outgoing numbering for a packet to forward, or a ``Drop`` (duplicate / before switch)."""
        if self._step is not None:
            self._sync()
        if source != self._source or self._resync:
            return self._start_run(source, sequence, timestamp, now)
        # Unwrapping inlined: each value is placed closest to the highest one of the run. The
        # forwarding path's copy of this in-order step is ``DownTrack.write`` (a test keeps the
        # two equal).
        highest_in = self._highest_in
        d = (sequence - highest_in) & SEQ_MASK
        in_ts = self._in_ts
        dt = (timestamp - in_ts) & TS_MASK
        if dt < 0x80000000:
            in_ts += dt
            self._in_ts = in_ts
        else:
            in_ts += dt - TS_MOD
        if 0 < d < 0x8000:
            in_ext = highest_in + d
            out_ext = in_ext - self._seq_offset
            out_ts = in_ts - self._ts_offset
            self._highest_in = in_ext
            self._highest_out = out_ext
            self._highest_out_ts = out_ts
            self._last_time = now
            return _new_munged(Munged, (out_ext & SEQ_MASK, out_ts & TS_MASK, out_ext))
        if d == 0:
            return _DUPLICATE
        offset = self._offset_for(highest_in + d - SEQ_MOD)
        if offset is None:
            return _BEFORE_SWITCH
        out_ext = highest_in + d - SEQ_MOD - offset
        out_ts = in_ts - self._ts_offset
        return Munged(out_ext & SEQ_MASK, out_ts & TS_MASK, out_ext)

    def skip_sequence(self, source: int, sequence: int) -> None:
        """A packet of the current source that is deliberately not forwarded (e.g. padding only,
        a dropped temporal layer, silence): the outgoing stream closes the gap it would leave.

        Only an in-order packet can be skipped; a late one already has a number reserved and its
        gap stays (the receiver may NACK it).
        """
        self._sync()
        if source != self._source or self._resync:
            return
        d = (sequence - self._highest_in) & SEQ_MASK
        if not 0 < d < 0x8000:
            return
        in_ext = self._highest_in + d
        old_offset = self._seq_offset
        self._seq_offset = old_offset + 1
        self._highest_in = in_ext
        segment = (self._run, source, in_ext + 1, in_ext - old_offset, old_offset + 1, self._ts_offset)
        last = self._segments[-1]
        if last[0] == self._run and last[3] == segment[3]:
            self._segments[-1] = segment  # consecutive skips: nothing was sent in between
        else:
            self._add_segment(segment)

    def resync(self) -> None:
        """Treat the next packet as a switch point even if its source is unchanged (for example
        when forwarding resumes after a pause: its timestamps restart from the arrival time)."""
        self._sync()
        self._resync = True

    def incoming_for(self, sequence: int) -> tuple[int, int] | None:
        """(source, incoming 16-bit sequence number) behind outgoing ``sequence``, or None if it
        was never sent or is too old to tell."""
        found = self.origin(sequence)
        return None if found is None else (found[0], found[1])

    def origin(self, sequence: int) -> tuple[int, int, int] | None:
        """(source, incoming 16-bit sequence number, timestamp offset) behind outgoing
        ``sequence``: the packet went out with timestamp ``(incoming - offset) & 0xFFFFFFFF``.
        None if it was never sent or is too old to tell."""
        self._sync()
        if self._highest_out is None:
            return None
        out_ext = unwrap_near(sequence, self._highest_out, SEQ_BITS)
        if out_ext > self._highest_out:
            return None
        for _run, source, _in_start, out_start, offset, ts_offset in reversed(self._segments):
            if out_ext >= out_start:
                return source, (out_ext + offset) & SEQ_MASK, ts_offset
        return None

    def translate_timestamp(self, source: int, timestamp: int) -> int | None:
        """Outgoing 32-bit timestamp for a timestamp of ``source`` (e.g. from its sender report),
        or None when that source is not the one being forwarded."""
        self._sync()
        if source != self._source or self._resync:
            return None
        return (unwrap_near(timestamp, self._in_ts, TS_BITS) - self._ts_offset) & TS_MASK

    def _start_run(self, source: int, sequence: int, timestamp: int, now: float) -> Munged:
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
        self._add_segment((self._run, source, in_ext, out_ext, self._seq_offset, self._ts_offset))
        return Munged(out_ext & SEQ_MASK, out_ts & TS_MASK, out_ext)

    def _offset_for(self, in_ext: int) -> int | None:
        run = self._run
        for seg_run, _source, in_start, _out_start, offset, _ts in reversed(self._segments):
            if seg_run != run:
                return None
            if in_ext >= in_start:
                return offset
        return None

    def _add_segment(self, segment: _Segment) -> None:
        segments = self._segments
        segments.append(segment)
        if len(segments) > self._max_segments:
            del segments[0]
