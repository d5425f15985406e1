"""Modular sequence-number and timestamp arithmetic.

RTP carries 16-bit sequence numbers and 32-bit timestamps that wrap around. Inside the core we
work on *extended* counters: unbounded Python ints that keep increasing across wraps, so ordinary
comparison and subtraction work. Values are wrapped back to 16/32 bits only when a header is
written (``& SEQ_MASK`` / ``& TS_MASK``).
"""

from __future__ import annotations

SEQ_BITS = 16
SEQ_MOD = 1 << SEQ_BITS
SEQ_MASK = SEQ_MOD - 1
TS_BITS = 32
TS_MOD = 1 << TS_BITS
TS_MASK = TS_MOD - 1


def unwrap_near(value: int, reference: int, bits: int = SEQ_BITS) -> int:
    """Extended value of the ``bits``-wide ``value`` that lies closest to extended ``reference``.

    Used to interpret a 16-bit sequence number received in feedback (for example a NACK) against
    the extended counter of what we sent.
    """
    mod = 1 << bits
    half = mod >> 1
    d = (value - reference) & (mod - 1)
    if d >= half:
        d -= mod
    return reference + d


class SeqUnwrapper:
    """Turns a stream of 16-bit sequence numbers into extended ones.

    The first value maps to itself. Later values are placed at the extended value closest to the
    highest one seen so far, so wrap-around moves forward and late (reordered) packets map to
    values below the highest. Values from before the first one may come out negative.
    """

    __slots__ = ("_highest",)

    def __init__(self) -> None:
        self._highest: int | None = None

    @property
    def highest(self) -> int | None:
        """Highest extended value seen so far, or None before the first value."""
        return self._highest

    def unwrap(self, value: int) -> int:
        """Extended value for ``value``; updates the highest value seen."""
        highest = self._highest
        if highest is None:
            self._highest = value
            return value
        d = (value - highest) & SEQ_MASK
        if d >= 0x8000:
            return highest + d - SEQ_MOD
        ext = highest + d
        self._highest = ext
        return ext
