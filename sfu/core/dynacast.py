"""Which layers of a published video track the publisher should send ("dynacast").

A browser's camera sends every simulcast layer whether anyone watches it or not. In a meeting of
100 with 25 cameras and a 9-tile page, most of those layers reach nobody: they cost each
publisher its uplink and encoder, and the SFU the decryption of every packet. So the SFU tells
each publisher which layers some subscriber wants (``publish_layers``, docs/PROTOCOL.md) and the
client turns the others off (``RTCRtpEncodingParameters.active``), as LiveKit's dynacast and
Jitsi's sender constraints do. A track with one layer is paused as a whole when nobody watches.

``LayerDemand`` holds the decision for one track. ``update`` is given the layers the track's
subscribers want now (each selector's ``wanted`` layer: what size and bandwidth call for,
whether or not that layer flows) and returns the layers to send when that changes. A layer is
turned on at once; it is turned off only after nobody wanted it for ``pause_delay`` seconds, so
a subscriber paging back and forth or a flapping bandwidth estimate does not restart the
publisher's encoder each time. A new track starts with every layer on (what the publisher sends
before it hears anything) and the same grace. ``now`` is float seconds.
"""

from __future__ import annotations

from collections.abc import Iterable


class LayerDemand:
    """The layers one publisher should send of one video track."""

    __slots__ = ("_active", "_layers", "_pause_delay", "_wanted_at")

    def __init__(self, layers: Iterable[str], now: float, *, pause_delay: float) -> None:
        if pause_delay < 0:
            raise ValueError("pause_delay must not be negative")
        self._pause_delay = pause_delay
        self._layers: tuple[str, ...] = ()
        self._active: tuple[str, ...] = ()
        self._wanted_at: dict[str, float] = {}
        self.set_layers(layers, now)

    @property
    def layers(self) -> tuple[str, ...]:
        return self._layers

    @property
    def active(self) -> tuple[str, ...]:
        """The layers the publisher was last told to send (in the order of ``layers``)."""
        return self._active

    @property
    def paused(self) -> int:
        """How many of ``layers`` the publisher was told not to send."""
        return len(self._layers) - len(self._active)

    def set_layers(self, layers: Iterable[str], now: float) -> None:
        """The track's layers changed (renegotiation): a new layer is on, as the publisher starts
        it, with the same grace as a new track; a known one keeps its state."""
        names = tuple(dict.fromkeys(layers))
        wanted_at = {rid: self._wanted_at.get(rid, now) for rid in names}
        active = set(self._active) | (set(names) - set(self._layers))
        self._layers = names
        self._wanted_at = wanted_at
        self._active = tuple(rid for rid in names if rid in active)

    def update(self, wanted: Iterable[str], now: float) -> tuple[str, ...] | None:
        """``wanted``: the layers some subscriber wants now (unknown names are ignored). The
        layers to send, in the order of ``layers``, if that differs from ``active``; else None."""
        wanted_at = self._wanted_at
        for rid in wanted:
            if rid in wanted_at:
                wanted_at[rid] = now
        delay = self._pause_delay
        active = tuple(rid for rid in self._layers if now - wanted_at[rid] < delay)
        if active == self._active:
            return None
        self._active = active
        return active
