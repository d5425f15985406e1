"""Counting received RTP without decoding it: packets per kind, and loss from sequence gaps.

Streams are told apart by SSRC, as the server's offer announces them (a payload type number may
mean different codecs on different m-lines). Each SSRC's sequence numbers are extended to 64
bits; ``expected`` is the extended highest minus the first plus one, ``lost`` is expected minus
received (RFC 3550, section 6.4.1). Retransmissions (RTX SSRCs) are counted apart and do not
fill gaps: the loss figure is loss on the way, before any repair.

Only the fixed header is read, so the counter takes decrypted RTP and still-encrypted SRTP alike
(the header is in the clear; the trailing auth tag is never looked at, and no bytes are counted).
A counting subscriber switches from the first to the second once connected
(``confctl.loadtest.glue.tap_rtp_datagrams``): packets still queued on the decrypting path then arrive after
newer ones from the socket, so a late packet from before a stream's first one moves the start
back instead of counting as a duplicate.

Delay: crafted video carries the abs-send-time header extension (24 bits, 6.18 seconds of
``time.monotonic()``, one clock for every process of the machine), which the server forwards
as it is and SRTP leaves in the clear. For one video packet in ``DELAY_SAMPLE`` the counter
takes the time from the generator's send to its own socket callback: the server's reading,
forwarding and queueing, the kernel's delivery, and the receiving process's own wait for its
event loop. Samples go into a histogram whose bins are 0.1 ms wide below 10 ms, 1 ms below
100 ms, 10 ms below 1 s and 100 ms above (each figure is a bin's lower edge: within 10 %).
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

_HEADER = struct.Struct("!2xH4xI")  # sequence, ssrc

ABS_SEND_TIME_UNITS = 1 << 18
"""abs-send-time units per second (6.18 fixed point; the 24-bit value wraps every 64 s)."""
DELAY_SAMPLE = 16
"""One received video packet in this many is a delay sample (reading the extension costs)."""
_WRAP = 1 << 24


def abs_send_time(seconds: float) -> bytes:
    """The 3-byte abs-send-time value of a ``time.monotonic()`` reading."""
    return (int(seconds * ABS_SEND_TIME_UNITS) % _WRAP).to_bytes(3, "big")


def extension(data: bytes, ext_id: int) -> bytes | None:
    """The value of one-byte header extension ``ext_id`` (RFC 8285) in RTP packet ``data``,
    None when it has none."""
    if not data[0] & 0x10:
        return None
    start = 12 + 4 * (data[0] & 0x0F)
    if len(data) < start + 4 or data[start] != 0xBE or data[start + 1] != 0xDE:
        return None
    end = min(len(data), start + 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big"))
    pos = start + 4
    while pos < end:
        byte = data[pos]
        if byte == 0:  # padding
            pos += 1
            continue
        size = (byte & 0x0F) + 1
        if byte >> 4 == ext_id:
            return data[pos + 1 : pos + 1 + size] if pos + 1 + size <= end else None
        if byte >> 4 == 15:
            return None
        pos += 1 + size
    return None


def delay_bin(ms: float) -> int:
    """The histogram bin of a delay: its lower edge in tenths of a millisecond."""
    if ms < 10:
        return int(ms * 10)
    if ms < 100:
        return int(ms) * 10
    if ms < 1000:
        return int(ms / 10) * 100
    return int(ms / 100) * 1000


def quantiles(bins: Iterable[tuple[float, float]]) -> dict[str, float] | None:
    """p50, p95 and p99 (nearest rank) of histogram ``bins``, (value, samples) pairs in
    ascending value, each the value of the bin it falls in; and the samples. None without
    samples."""
    pairs = [(value, count) for value, count in bins if count > 0]
    total = sum(count for _, count in pairs)
    if total <= 0:
        return None
    out: dict[str, float] = {}
    for name, p in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        rank, seen = max(1, math.ceil(round(p * total, 6))), 0.0
        for value, count in pairs:
            seen += count
            if seen >= rank:
                out[name] = value
                break
    out["samples"] = total
    return out


def delay_percentiles(bins: Mapping[int, int]) -> dict[str, float] | None:
    """p50, p95, p99 and max (nearest rank, bins' lower edges) in ms, and the samples; None
    without samples."""
    out = quantiles((edge / 10, bins[edge]) for edge in sorted(bins))
    if out is not None:
        out["max"] = max(edge for edge, count in bins.items() if count > 0) / 10
    return out


class StreamStats:
    """One SSRC."""

    __slots__ = ("first", "highest", "received")

    def __init__(self, sequence: int) -> None:
        self.first = sequence
        self.highest = sequence
        self.received = 0

    def on_sequence(self, sequence: int) -> None:
        self.received += 1
        delta = (sequence - self.highest) & 0xFFFF
        if 0 < delta < 0x8000:
            self.highest += delta
        elif delta:  # a late (reordered) packet; it was counted lost only while missing
            extended = self.highest - (0x10000 - delta)
            if extended < self.first:  # from before the first packet seen: the stream began earlier
                self.first = extended
        # else: a duplicate of the highest

    @property
    def expected(self) -> int:
        return self.highest - self.first + 1


@dataclass(frozen=True)
class ReceiveTotals:
    audio: int = 0
    video: int = 0
    expected: int = 0  # media packets the senders numbered
    received: int = 0  # media packets received (audio + video, no retransmissions)
    retransmissions: int = 0
    other: int = 0  # SSRCs the offer did not announce
    delays: Mapping[int, int] = field(default_factory=dict)  # delay_bin -> samples

    @property
    def packets(self) -> int:
        return self.audio + self.video

    def __add__(self, other: ReceiveTotals) -> ReceiveTotals:
        delays = dict(self.delays)
        for edge, count in other.delays.items():
            delays[edge] = delays.get(edge, 0) + count
        return ReceiveTotals(
            self.audio + other.audio,
            self.video + other.video,
            self.expected + other.expected,
            self.received + other.received,
            self.retransmissions + other.retransmissions,
            self.other + other.other,
            delays,
        )

    def delays_since(self, before: ReceiveTotals) -> dict[int, int]:
        """The delay samples taken after ``before`` (an earlier total of the same counters)."""
        return {k: v - before.delays.get(k, 0) for k, v in self.delays.items() if v > before.delays.get(k, 0)}


class ReceiveCounter:
    """Feed every RTP packet of a connection to ``on_rtp``: decrypted, or SRTP as received."""

    __slots__ = (
        "_clock",
        "_delay_ids",
        "_kinds",
        "_streams",
        "audio",
        "delays",
        "first_at",
        "other",
        "retransmissions",
        "video",
    )

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._kinds: dict[int, str] = {}
        self._delay_ids: dict[int, int] = {}  # SSRC -> abs-send-time extension id
        self.delays: dict[int, int] = {}  # delay_bin -> samples
        self._streams: dict[int, StreamStats] = {}
        self.audio = 0
        self.video = 0
        self.retransmissions = 0
        self.other = 0
        self.first_at: float | None = None  # when the first media packet arrived

    def set_streams(self, kinds: Mapping[int, str], delay_ids: Mapping[int, int] | None = None) -> None:
        """SSRC -> ``audio``, ``video`` or ``rtx``, from the server's offer, and SSRC -> the
        abs-send-time extension id of the video streams that carry it."""
        self._kinds = dict(kinds)
        self._delay_ids = dict(delay_ids or {})

    def on_rtp(self, data: bytes) -> None:
        if len(data) < 12:
            self.other += 1
            return
        sequence, ssrc = _HEADER.unpack_from(data)
        kind = self._kinds.get(ssrc)
        if kind == "video":
            self.video += 1
            if not self.video % DELAY_SAMPLE:
                self._sample_delay(data, ssrc)
        elif kind == "audio":
            self.audio += 1
        elif kind == "rtx":
            self.retransmissions += 1
            return
        else:
            self.other += 1
            return
        if self.first_at is None:
            self.first_at = self._clock()
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = StreamStats(sequence)
        stream.on_sequence(sequence)

    def _sample_delay(self, data: bytes, ssrc: int) -> None:
        ext_id = self._delay_ids.get(ssrc)
        value = extension(data, ext_id) if ext_id else None
        if value is None or len(value) != 3:
            return
        now = int(self._clock() * ABS_SEND_TIME_UNITS)
        units = (now - int.from_bytes(value, "big")) % _WRAP
        if units >= _WRAP // 2:  # over 32 s, or sent after it arrived: not a clock this counter shares
            return
        edge = delay_bin(units * 1000 / ABS_SEND_TIME_UNITS)
        self.delays[edge] = self.delays.get(edge, 0) + 1

    def totals(self) -> ReceiveTotals:
        expected = received = 0
        for stream in self._streams.values():
            expected += stream.expected
            received += stream.received
        return ReceiveTotals(
            self.audio, self.video, expected, received, self.retransmissions, self.other, dict(self.delays)
        )
