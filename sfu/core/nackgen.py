"""Loss detection on an incoming stream and the NACKs the SFU sends to its publisher.

A gap in the sequence numbers marks packets missing. Each missing packet is NACKed at once,
then again every ``retry_interval`` until it arrives (a retransmission or a late packet), or it
was asked for ``max_tries`` times, or it is older than ``max_age``. A gap wider than
``max_gap`` is not worth repairing (the publisher restarted or the path broke): it is forgotten
and the subscribers recover with a keyframe instead. ``now`` is float seconds.
"""

from __future__ import annotations

from sfu.core.seqnum import SEQ_MASK, SeqUnwrapper

DEFAULT_RETRY_INTERVAL = 0.1
DEFAULT_MAX_TRIES = 5
DEFAULT_MAX_AGE = 1.0
DEFAULT_MAX_GAP = 256

# ext seq -> (first noticed, last asked, tries)
_Missing = tuple[float, float, int]


class NackGenerator:
    """Tracks missing sequence numbers of one SSRC."""

    __slots__ = ("_max_age", "_max_gap", "_max_tries", "_missing", "_retry", "_seq")

    def __init__(
        self,
        *,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        max_tries: int = DEFAULT_MAX_TRIES,
        max_age: float = DEFAULT_MAX_AGE,
        max_gap: int = DEFAULT_MAX_GAP,
    ) -> None:
        self._seq = SeqUnwrapper()
        self._missing: dict[int, _Missing] = {}
        self._retry = retry_interval
        self._max_tries = max_tries
        self._max_age = max_age
        self._max_gap = max_gap

    @property
    def missing(self) -> list[int]:
        """Extended sequence numbers currently missing, ascending."""
        return sorted(self._missing)

    def on_packet(self, sequence: int, now: float) -> bool:
        """Account one received packet; True when it revealed new missing packets (NACK now)."""
        highest = self._seq.highest
        ext = self._seq.unwrap(sequence)
        if highest is None:
            return False
        if ext <= highest:
            self._missing.pop(ext, None)
            return False
        gap = ext - highest - 1
        if gap == 0:
            return False
        if gap > self._max_gap:
            self._missing.clear()
            return False
        for seq in range(highest + 1, ext):
            self._missing[seq] = (now, -1.0, 0)
        if len(self._missing) > self._max_gap:
            for seq in sorted(self._missing)[: len(self._missing) - self._max_gap]:
                del self._missing[seq]
        return True

    def due(self, now: float) -> list[int]:
        """16-bit sequence numbers to NACK now (ascending); marks them asked."""
        if not self._missing:
            return []
        out: list[int] = []
        expired: list[int] = []
        for seq, (first, last, tries) in self._missing.items():
            if tries >= self._max_tries or now - first > self._max_age:
                expired.append(seq)
                continue
            if tries == 0 or now - last >= self._retry:
                self._missing[seq] = (first, now, tries + 1)
                out.append(seq)
        for seq in expired:
            del self._missing[seq]
        out.sort()
        return [s & SEQ_MASK for s in out]
