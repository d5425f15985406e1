"""Counting received RTP without decoding it: packets per kind, and loss from sequence gaps.

Streams are told apart by SSRC, as the server's offer announces them (a payload type number may
mean different codecs on different m-lines). Each SSRC's sequence numbers are extended to 64
bits; ``expected`` is the extended highest minus the first plus one, ``lost`` is expected minus
received (RFC 3550, section 6.4.1). Retransmissions (RTX SSRCs) are counted apart and do not
fill gaps: the loss figure is loss on the way, before any repair.

Only the fixed header is read, so the counter takes decrypted RTP and still-encrypted SRTP alike
(the header is in the clear; the trailing auth tag is never looked at, and no bytes are counted).
A counting subscriber switches from the first to the second once connected
(``sfu.glue.tap_rtp_datagrams``): packets still queued on the decrypting path then arrive after
newer ones from the socket, so a late packet from before a stream's first one moves the start
back instead of counting as a duplicate.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_HEADER = struct.Struct("!2xH4xI")  # sequence, ssrc


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

    @property
    def packets(self) -> int:
        return self.audio + self.video

    def __add__(self, other: ReceiveTotals) -> ReceiveTotals:
        return ReceiveTotals(
            self.audio + other.audio,
            self.video + other.video,
            self.expected + other.expected,
            self.received + other.received,
            self.retransmissions + other.retransmissions,
            self.other + other.other,
        )


class ReceiveCounter:
    """Feed every RTP packet of a connection to ``on_rtp``: decrypted, or SRTP as received."""

    __slots__ = ("_clock", "_kinds", "_streams", "audio", "first_at", "other", "retransmissions", "video")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._kinds: dict[int, str] = {}
        self._streams: dict[int, StreamStats] = {}
        self.audio = 0
        self.video = 0
        self.retransmissions = 0
        self.other = 0
        self.first_at: float | None = None  # when the first media packet arrived

    def set_streams(self, kinds: Mapping[int, str]) -> None:
        """SSRC -> ``audio``, ``video`` or ``rtx``, from the server's offer."""
        self._kinds = dict(kinds)

    def on_rtp(self, data: bytes) -> None:
        if len(data) < 12:
            self.other += 1
            return
        sequence, ssrc = _HEADER.unpack_from(data)
        kind = self._kinds.get(ssrc)
        if kind == "video":
            self.video += 1
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

    def totals(self) -> ReceiveTotals:
        expected = received = 0
        for stream in self._streams.values():
            expected += stream.expected
            received += stream.received
        return ReceiveTotals(self.audio, self.video, expected, received, self.retransmissions, self.other)
