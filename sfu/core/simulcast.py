"""Simulcast layer selection for one subscriber of one video track.

The policy, in order:

1. Nothing is forwarded while the subscriber has paused the track.
2. Size: the smallest layer that covers the subscriber's tile (width and height), or the largest
   layer if none does; never above an explicit ``max_layer``, nor above ``shed`` layers below the
   top while the server sheds load.
3. Bandwidth: never above the highest layer whose bitrate fits the subscriber's estimated
   available bitrate (REMB / loss based); when nothing fits, the lowest layer. Going down is
   immediate; going back up needs the estimate to exceed the higher layer's bitrate by
   ``upgrade_headroom`` without a break for ``upgrade_hold`` seconds (hysteresis: a flapping
   estimate does not flap the layer).
4. Liveness: a layer with no packet for ``stall_timeout`` seconds is not chosen; the highest live
   layer under the limits is, else the lowest live one. A layer that comes back after a stall is
   only chosen above the current one once it has flowed for ``resume_hold`` seconds (unless no
   other layer is live).

A switch takes effect only on a keyframe of the target layer: until then the current layer keeps
flowing (or nothing, at the start) and every decision asks for a keyframe of the target, which
the caller passes to a ``KeyframeRequester`` that throttles the PLIs. ``now`` is float seconds.

Liveness is a fact about the published track, not about one subscriber: ``LayerLiveness`` holds
it, and the selectors of one track's subscribers can share one (the track feeds it once per
packet). A selector then only needs the packets of the layers it forwards or waits for
(``listening``), so a packet of a layer nobody selected costs nothing per subscriber. A selector
created without a shared ``LayerLiveness`` feeds its own from every packet it is shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sfu.core.actions import DropReason


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One simulcast layer of a published track."""

    rid: str
    width: int
    height: int
    bitrate: int = 0  # estimated bits per second; 0 = unknown (always fits)
    last_packet_at: float | None = None


@dataclass(frozen=True, slots=True)
class LayerLimits:
    """What the subscriber asked for, and ``shed``: how many layers below the track's top the
    server holds every subscriber to while it cannot keep up (``sfu.core.loadshed``)."""

    max_width: int | None = None
    max_height: int | None = None
    max_layer: str | None = None
    paused: bool = False
    shed: int = 0


@dataclass(frozen=True, slots=True)
class SimulcastConfig:
    stall_timeout: float = 1.0
    resume_hold: float = 1.0
    upgrade_headroom: float = 1.25
    upgrade_hold: float = 3.0


@dataclass(frozen=True, slots=True)
class LayerDecision:
    """What to do with one packet of one layer."""

    forward: bool
    switched: bool  # this packet starts the newly selected layer: the munger must resync
    request_keyframe: bool  # ask the publisher for a keyframe of ``LayerSelector.target``
    reason: DropReason | None = None


FORWARD = LayerDecision(forward=True, switched=False, request_keyframe=False)
FORWARD_SWITCHED = LayerDecision(forward=True, switched=True, request_keyframe=False)
FORWARD_AWAITING_SWITCH = LayerDecision(forward=True, switched=False, request_keyframe=True)
DROP_AWAITING_KEYFRAME = LayerDecision(False, False, True, DropReason.WAITING_FOR_KEYFRAME)
DROP_OTHER_LAYER = LayerDecision(False, False, False, DropReason.LAYER_NOT_SELECTED)
DROP_PAUSED = LayerDecision(False, False, False, DropReason.PAUSED)


class LayerLiveness:
    """When each layer of one published track last had a packet, and since when it flows again.

    ``seen`` is called once per packet of the track; it returns True when liveness changed in a
    way a selector must re-evaluate: a layer came to life (first packet, or back after a stall),
    or another layer has stalled since the last check (checked at most every ``check_interval``).
    """

    __slots__ = ("_check_interval", "_live", "_next_check", "active_since", "last_seen", "stall_timeout")

    def __init__(self, stall_timeout: float = 1.0, check_interval: float = 0.1) -> None:
        self.stall_timeout = stall_timeout
        self.last_seen: dict[str, float] = {}
        self.active_since: dict[str, float] = {}
        self._live: set[str] = set()
        self._check_interval = check_interval
        self._next_check = -math.inf

    def seen(self, rid: str, now: float) -> bool:
        last_seen = self.last_seen
        previous = last_seen.get(rid)
        last_seen[rid] = now
        changed = False
        if previous is None or now - previous > self.stall_timeout:
            self.active_since[rid] = -math.inf if previous is None else now
            self._live.add(rid)
            changed = True
        elif rid not in self._live:
            self._live.add(rid)  # known from a layer table, now seen flowing
        if now >= self._next_check:
            self._next_check = now + self._check_interval
            changed = self._stalls(now) or changed
        return changed

    def learn(self, rid: str, at: float) -> None:
        """A packet time known from elsewhere (a layer table): kept if newer than what was seen."""
        seen = self.last_seen.get(rid)
        if seen is None or at > seen:
            self.last_seen[rid] = at
            self.active_since.setdefault(rid, -math.inf)

    def _stalls(self, now: float) -> bool:
        stalled = [rid for rid in self._live if now - self.last_seen[rid] > self.stall_timeout]
        self._live.difference_update(stalled)
        return bool(stalled)


class LayerSelector:
    """Chooses and switches the simulcast layer forwarded to one subscriber."""

    __slots__ = (
        "_active_since",
        "_available",
        "_bw_cap",
        "_bw_known",
        "_config",
        "_current",
        "_feed",
        "_index",
        "_last_seen",
        "_layers",
        "_limits",
        "_liveness",
        "_target",
        "_upgrade_since",
        "_wanted",
    )

    def __init__(self, config: SimulcastConfig | None = None, liveness: LayerLiveness | None = None) -> None:
        self._config = config or SimulcastConfig()
        self._layers: tuple[LayerInfo, ...] = ()
        self._index: dict[str, int] = {}
        self._limits = LayerLimits()
        self._available: int | None = None
        self._bw_cap = 0
        self._bw_known = False
        self._upgrade_since: float | None = None
        self._feed = liveness is None
        self._liveness = liveness if liveness is not None else LayerLiveness(self._config.stall_timeout)
        self._last_seen = self._liveness.last_seen
        self._active_since = self._liveness.active_since
        self._current: str | None = None
        self._target: str | None = None
        self._wanted: str | None = None

    @property
    def current(self) -> str | None:
        """The layer being forwarded (None before the first keyframe or while paused)."""
        return self._current

    @property
    def target(self) -> str | None:
        """The layer the policy wants; differs from ``current`` while awaiting its keyframe."""
        return self._target

    @property
    def wanted(self) -> str | None:
        """The layer that size and bandwidth call for, whether or not it flows (None while
        paused): what the publisher must send for this subscriber (``sfu.core.dynacast``)."""
        return self._wanted

    @property
    def listening(self) -> tuple[str, ...]:
        """The layers whose packets this selector must be shown: the one forwarded and the one
        awaited (nothing while paused)."""
        current, target = self._current, self._target
        if current is None:
            return () if target is None else (target,)
        if target is None or target == current:
            return (current,)
        return (current, target)

    @property
    def needs_keyframe(self) -> bool:
        return self._target is not None and self._target != self._current

    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """Known layers, lowest first."""
        return self._layers

    def set_layers(self, layers: Iterable[LayerInfo], now: float) -> str | None:
        """Replace the layer table (sizes, bitrate estimates); returns the new target."""
        ordered = sorted(layers, key=lambda layer: (layer.width * layer.height, layer.bitrate))
        self._bw_cap = max(0, min(self._bw_cap, len(ordered) - 1))
        if not self._layers or not ordered:
            self._bw_known = False  # a fresh table: apply the current estimate at once
        self._layers = tuple(ordered)
        self._index = {layer.rid: i for i, layer in enumerate(ordered)}
        for layer in ordered:
            if layer.last_packet_at is not None:
                self._liveness.learn(layer.rid, layer.last_packet_at)
        return self.update(now)

    def set_limits(self, limits: LayerLimits, now: float) -> str | None:
        """The subscriber changed its tile size, layer cap or paused state; returns the target."""
        self._limits = limits
        return self.update(now)

    def set_available_bitrate(self, bitrate: int | None, now: float) -> str | None:
        """New estimate of what the subscriber can receive (None = unknown, no cap)."""
        self._available = bitrate
        return self.update(now)

    def restart(self, now: float) -> str | None:
        """Forget the forwarded layer: the next packet forwarded must start a keyframe again (the
        publisher's stream restarted, or forwarding resumes after a mute). Returns the target."""
        self._current = None
        return self.update(now)

    def update(self, now: float) -> str | None:
        """Re-evaluate the target (call on a timer too, to notice stalls); returns it."""
        self._target = self._choose(now)
        if self._target is None:
            self._current = None
        return self._target

    def on_packet(self, rid: str, is_keyframe: bool, now: float) -> LayerDecision:
        """Decide about one packet of layer ``rid`` (``is_keyframe``: it starts a keyframe).

        With a shared ``LayerLiveness`` the caller has already fed it this packet (and called
        ``update`` if it reported a change)."""
        stall = self._config.stall_timeout
        if self._feed and self._liveness.seen(rid, now):
            self.update(now)
        current = self._current
        if rid == current:
            if self._target == current:
                return FORWARD
            return FORWARD_AWAITING_SWITCH
        if current is not None and now - self._last_seen[current] > stall:
            current = self._current = None  # the forwarded layer stalled: fall back
            self.update(now)
        target = self._target
        if target is None:
            return DROP_PAUSED
        if rid != target:
            return DROP_OTHER_LAYER if current is not None else DROP_AWAITING_KEYFRAME
        if is_keyframe:
            self._current = rid
            return FORWARD_SWITCHED
        return DROP_AWAITING_KEYFRAME

    def _live(self, rid: str, now: float, upgrade: bool) -> bool:
        seen = self._last_seen.get(rid)
        if seen is None or now - seen > self._config.stall_timeout:
            return False
        if upgrade:
            return now - self._active_since.get(rid, -math.inf) >= self._config.resume_hold
        return True

    def _choose(self, now: float) -> str | None:
        layers = self._layers
        limits = self._limits
        if limits.paused or not layers:
            self._wanted = None
            return None
        top = len(layers) - 1
        ceiling = max(0, top - limits.shed)
        if limits.max_layer is not None and limits.max_layer in self._index:
            ceiling = min(ceiling, self._index[limits.max_layer])
        if limits.max_width is not None or limits.max_height is not None:
            want_w = limits.max_width or 0
            want_h = limits.max_height or 0
            fit = next((i for i, la in enumerate(layers) if la.width >= want_w and la.height >= want_h), top)
            ceiling = min(ceiling, fit)
        desired = min(ceiling, self._bandwidth_cap(now))
        self._wanted = layers[desired].rid
        current_index = self._index.get(self._current, -1) if self._current is not None else -1
        chosen = self._pick(desired, now, lambda i: i <= current_index)
        return chosen if chosen is not None else self._pick(desired, now, lambda i: True)

    def _pick(self, desired: int, now: float, exempt_from_hold: Callable[[int], bool]) -> str | None:
        """Highest live layer at or below ``desired``, else the lowest live one above it."""
        lowest_above = None
        for i in range(len(self._layers) - 1, -1, -1):
            rid = self._layers[i].rid
            if not self._live(rid, now, upgrade=not exempt_from_hold(i)):
                continue
            if i <= desired:
                return rid
            lowest_above = rid
        return lowest_above

    def _bandwidth_cap(self, now: float) -> int:
        layers = self._layers
        available = self._available
        top = len(layers) - 1
        if available is None:
            self._bw_cap = top
            self._bw_known = False
            self._upgrade_since = None
            return top
        fit = 0
        for i, layer in enumerate(layers):
            if layer.bitrate <= available:
                fit = i
        cap = min(self._bw_cap, top)
        if not self._bw_known or fit < cap:  # first estimate, or a downgrade: at once
            self._bw_known = True
            self._bw_cap = fit
            self._upgrade_since = None
            return fit
        headroom = self._config.upgrade_headroom
        up = next((i for i in range(fit, cap, -1) if layers[i].bitrate * headroom <= available), None)
        if up is None:
            self._upgrade_since = None  # the estimate must support the upgrade without a break
        elif self._upgrade_since is None:
            self._upgrade_since = now
        elif now - self._upgrade_since >= self._config.upgrade_hold:
            cap = up
            self._upgrade_since = None
        self._bw_cap = cap
        return cap
