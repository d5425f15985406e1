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


def seq_delta(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 16-bit sequence numbers, in ``[-32768, 32767]``."""
    d = (a - b) & SEQ_MASK
    return d - SEQ_MOD if d >= 0x8000 else d


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number ``a`` comes after ``b`` (RFC 1982 serial arithmetic)."""
    return 0 < ((a - b) & SEQ_MASK) < 0x8000


def ts_delta(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 32-bit RTP timestamps."""
    d = (a - b) & TS_MASK
    return d - TS_MOD if d >= 0x80000000 else d


def ts_newer(a: int, b: int) -> bool:
    """True when 32-bit timestamp ``a`` comes after ``b``."""
    return 0 < ((a - b) & TS_MASK) < 0x80000000


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


class _Unwrapper:
    """Turns a stream of ``bits``-wide values into extended values.

    The first value maps to itself. Later values are placed at the extended value closest to the
    highest one seen so far, so wrap-around moves forward and late (reordered) packets map to
    values below the highest. Values from before the first one may come out negative.
    """

    __slots__ = ("_half", "_highest", "_mask", "_mod")

    def __init__(self, bits: int) -> None:
        self._mod = 1 << bits
        self._mask = self._mod - 1
        self._half = self._mod >> 1
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
        d = (value - highest) & self._mask
        if d >= self._half:
            return highest + d - self._mod
        ext = highest + d
        self._highest = ext
        return ext

    def peek(self, value: int) -> int:
        """Extended value for ``value`` without updating any state."""
        highest = self._highest
        if highest is None:
            return value
        d = (value - highest) & self._mask
        if d >= self._half:
            d -= self._mod
        return highest + d

    def reset(self) -> None:
        """Forget everything; the next value maps to itself again."""
        self._highest = None


class SeqUnwrapper(_Unwrapper):
    """Extends 16-bit RTP sequence numbers; see ``_Unwrapper``."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(SEQ_BITS)


class TsUnwrapper(_Unwrapper):
    """Extends 32-bit RTP timestamps; see ``_Unwrapper``."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(TS_BITS)
