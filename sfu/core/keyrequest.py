"""Keyframe requests (PLI) towards publishers, throttled per source.

Many subscribers may want a keyframe of the same source at once (joins, layer switches, their own
PLIs). The publisher gets at most one PLI per ``min_interval`` (300 ms) per source SSRC. While a
keyframe is awaited the request is repeated every interval (``poll``), because a PLI or the
keyframe itself can be lost; it stops as soon as a keyframe of that source arrives, or after
``give_up_after`` seconds without one. ``now`` is float seconds.
"""

from __future__ import annotations

from sfu.core.actions import SendPli

DEFAULT_MIN_INTERVAL = 0.3
DEFAULT_GIVE_UP_AFTER = 10.0


class KeyframeRequester:
    """PLI throttle and retry for all the sources of one publisher (or one room)."""

    __slots__ = ("_awaiting", "_give_up_after", "_last_sent", "_min_interval")

    def __init__(
        self, min_interval: float = DEFAULT_MIN_INTERVAL, give_up_after: float = DEFAULT_GIVE_UP_AFTER
    ) -> None:
        self._min_interval = min_interval
        self._give_up_after = give_up_after
        self._last_sent: dict[int, float] = {}  # ssrc -> time of the last PLI
        self._awaiting: dict[int, float] = {}  # ssrc -> time of the most recent request

    def request(self, ssrc: int, now: float) -> SendPli | None:
        """Someone needs a keyframe of ``ssrc``: a PLI to send now, or None when one went out
        less than ``min_interval`` ago (the request stays pending and ``poll`` repeats it)."""
        self._awaiting[ssrc] = now
        last = self._last_sent.get(ssrc)
        if last is not None and now - last < self._min_interval:
            return None
        self._last_sent[ssrc] = now
        return SendPli(ssrc)

    def on_keyframe(self, ssrc: int) -> None:
        """A keyframe of ``ssrc`` arrived: stop asking."""
        self._awaiting.pop(ssrc, None)

    def awaiting(self, ssrc: int) -> bool:
        return ssrc in self._awaiting

    def poll(self, now: float) -> list[SendPli]:
        """PLIs to repeat for keyframes still awaited (call from the periodic RTCP timer)."""
        out: list[SendPli] = []
        expired: list[int] = []
        for ssrc, requested_at in self._awaiting.items():
            if now - requested_at > self._give_up_after:
                expired.append(ssrc)
                continue
            last = self._last_sent.get(ssrc)
            if last is None or now - last >= self._min_interval:
                self._last_sent[ssrc] = now
                out.append(SendPli(ssrc))
        for ssrc in expired:
            del self._awaiting[ssrc]
        return out

    def forget(self, ssrc: int) -> None:
        """The source went away."""
        self._awaiting.pop(ssrc, None)
        self._last_sent.pop(ssrc, None)
