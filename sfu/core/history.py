"""Packet history for answering NACKs with retransmissions.

``PacketHistory`` is a ring buffer keyed by an *extended* sequence number. The SFU keeps one per
received stream (each simulcast layer): the source packets as they arrived, shared by every
subscriber, so a subscriber's NACK is answered by sending the source packet again with the
numbers that subscriber saw (see ``DownTrack.on_nack``); nothing is copied per subscriber.
Packets older than ``max_age`` are no longer offered: the receiver has given up on them by then.

``ResendThrottle`` (one per down-track) limits the retransmissions of one outgoing packet to one
per round-trip time (100 ms when the RTT is unknown) and to a maximum count. ``now`` is float
seconds.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from sfu.core.seqnum import SEQ_BITS, unwrap_near

DEFAULT_SIZE = 512
DEFAULT_RESEND_INTERVAL = 0.1
MIN_RESEND_INTERVAL = 0.01
DEFAULT_MAX_RESENDS = 8

T = TypeVar("T")


class ResendThrottle:
    """How often each packet (by extended sequence number) may be sent again."""

    __slots__ = ("_max_resends", "_resend_interval", "_resent", "_size")

    def __init__(
        self,
        size: int = DEFAULT_SIZE,
        *,
        resend_interval: float = DEFAULT_RESEND_INTERVAL,
        max_resends: int = DEFAULT_MAX_RESENDS,
    ) -> None:
        self._size = max(1, size)
        self._resend_interval = resend_interval
        self._max_resends = max_resends
        # ext_seq -> (last resend time, resend count); only packets that were ever resent.
        self._resent: dict[int, tuple[float, int]] = {}

    def allow(self, ext_seq: int, now: float, rtt: float | None = None) -> bool:
        """True (and counted) when ``ext_seq`` may be retransmitted now."""
        interval = self._resend_interval if rtt is None else max(rtt, MIN_RESEND_INTERVAL)
        previous = self._resent.get(ext_seq)
        if previous is None:
            count = 1
            if len(self._resent) >= self._size:
                self._prune(ext_seq)
        else:
            last, count = previous
            if now - last < interval or count >= self._max_resends:
                return False
            count += 1
        self._resent[ext_seq] = (now, count)
        return True

    def _prune(self, newest: int) -> None:
        oldest = max(newest, max(self._resent, default=newest)) - self._size
        for key in [k for k in self._resent if k <= oldest]:
            del self._resent[key]
        if len(self._resent) >= self._size:
            self._resent.clear()


class PacketHistory(Generic[T]):
    """Ring buffer of packets by extended sequence number."""

    __slots__ = ("_entries", "_highest", "_max_age", "_size")

    def __init__(self, size: int = DEFAULT_SIZE, *, max_age: float | None = 1.0) -> None:
        if size <= 0:
            raise ValueError("history size must be positive")
        self._size = size
        self._entries: list[tuple[int, T, float] | None] = [None] * size
        self._highest: int | None = None
        self._max_age = max_age

    @property
    def size(self) -> int:
        return self._size

    @property
    def highest(self) -> int | None:
        """Highest extended sequence number stored, or None when empty."""
        return self._highest

    def put(self, ext_seq: int, packet: T, now: float) -> None:
        """Remember ``packet`` with extended sequence number ``ext_seq``, stored at ``now``."""
        self._entries[ext_seq % self._size] = (ext_seq, packet, now)
        if self._highest is None or ext_seq > self._highest:
            self._highest = ext_seq

    def get(self, ext_seq: int) -> T | None:
        """The stored packet, or None if it was never stored or has been overwritten."""
        entry = self._entries[ext_seq % self._size]
        if entry is None or entry[0] != ext_seq:
            return None
        return entry[1]

    def recent(self, ext_seq: int, now: float) -> T | None:
        """The stored packet if it is not older than ``max_age``, else None."""
        entry = self._entries[ext_seq % self._size]
        if entry is None or entry[0] != ext_seq:
            return None
        if self._max_age is not None and now - entry[2] > self._max_age:
            return None
        return entry[1]

    def extend(self, seq16: int) -> int | None:
        """Extended sequence number for a 16-bit one (e.g. from feedback), relative to the
        highest stored."""
        if self._highest is None:
            return None
        return unwrap_near(seq16, self._highest, SEQ_BITS)

    def clear(self) -> None:
        """Forget every packet."""
        self._entries = [None] * self._size
        self._highest = None
