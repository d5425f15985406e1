"""Reception statistics of one incoming stream, for the receiver reports sent to its publisher.

RFC 3550 appendix A.3 (loss), A.8 (interarrival jitter) and section 6.4.1 (report blocks).
Publishers need receiver reports: browsers estimate round-trip time and loss from them, and
stop sending MID/RID header extensions once a stream is acknowledged. ``now`` is float seconds.
"""

from __future__ import annotations

from sfu.core.rtcp import ReportBlock
from sfu.core.seqnum import SeqUnwrapper


class ReceiveStats:
    """Counters for one SSRC; ``on_packet`` is called for every packet received."""

    __slots__ = (
        "_base",
        "_clock_rate",
        "_expected_prior",
        "_jitter",
        "_last_sr",
        "_last_sr_at",
        "_received",
        "_received_prior",
        "_seq",
        "_transit",
        "ssrc",
    )

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self._clock_rate = clock_rate
        self._seq = SeqUnwrapper()
        self._base: int | None = None
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0
        self._transit: float | None = None
        self._last_sr = 0
        self._last_sr_at: float | None = None

    @property
    def highest(self) -> int | None:
        """Extended highest sequence number received."""
        return self._seq.highest

    @property
    def received(self) -> int:
        return self._received

    def on_packet(self, sequence: int, timestamp: int, now: float, *, retransmission: bool = False) -> None:
        ext = self._seq.unwrap(sequence)
        if self._base is None:
            self._base = ext
        self._received += 1
        if retransmission:
            return  # a late copy says nothing about the path's jitter
        transit = now * self._clock_rate - timestamp
        previous = self._transit
        self._transit = transit
        if previous is not None:
            d = abs(transit - previous)
            if d < self._clock_rate * 10:  # ignore timestamp jumps (a new source, a wrap)
                self._jitter += (d - self._jitter) / 16.0

    def on_sender_report(self, ntp_middle: int, now: float) -> None:
        self._last_sr = ntp_middle
        self._last_sr_at = now

    def report_block(self, now: float) -> ReportBlock | None:
        """The report block for the next receiver report (None before the first packet).
        Updates the interval counters used for ``fraction_lost``."""
        highest = self._seq.highest
        if highest is None or self._base is None:
            return None
        expected = highest - self._base + 1
        lost = expected - self._received
        expected_interval = expected - self._expected_prior
        received_interval = self._received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self._received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0
        if self._last_sr_at is not None:
            dlsr = max(0, min(0xFFFFFFFF, int((now - self._last_sr_at) * 65536)))
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=highest & 0xFFFFFFFF,
            jitter=int(self._jitter) & 0xFFFFFFFF,
            last_sr=self._last_sr,
            delay_since_last_sr=dlsr,
        )
