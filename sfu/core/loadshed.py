"""Load shedding: how many simulcast layers below the top every subscriber's video is held to.

An SFU that cannot keep up drops media at random (``sfu.max_receive_delay``: what waited too long
in its socket), and every dropped run of packets costs its subscribers a keyframe. Holding
everyone's video one layer lower sheds the same load in order: the top layers carry most of the
packets, subscribers switch on a keyframe, and layers no one takes any more are paused at the
publishers (dynacast). The policy, fed once per timer tick with whether media went stale lately:

- overloaded for ``sustain`` without a break: one more level, at most ``max_level``, and not
  sooner than ``raise_after`` after the last change (a switch takes a keyframe's round trip to
  show its effect). A single burst of stale media (one late arrival of many packets at once,
  a pause of the process) is not a server that cannot keep up;
- no stale media for ``lower_after`` since the last overload and the last change: one level
  back. Recovery is slow on purpose: each level given back adds the load that was shed, and a
  server that overloads again drops media before it sheds again.

As Jitsi's bridge reduces last-N under load; here the video stays, smaller. ``now`` is float
seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SheddingConfig:
    max_level: int = 2
    sustain: float = 2.0
    raise_after: float = 4.0
    lower_after: float = 30.0


class LoadShedding:
    __slots__ = ("_changed_at", "_config", "_overloaded_at", "_overloaded_since", "level")

    def __init__(self, config: SheddingConfig | None = None) -> None:
        self._config = config if config is not None else SheddingConfig()
        self.level = 0
        self._changed_at = -math.inf
        self._overloaded_at = -math.inf
        self._overloaded_since: float | None = None  # start of the current overloaded stretch

    def update(self, now: float, overloaded: bool) -> bool:
        """Feed the latest state; True when ``level`` changed."""
        config = self._config
        if overloaded:
            self._overloaded_at = now
            if self._overloaded_since is None:
                self._overloaded_since = now
            if (
                self.level < config.max_level
                and now - self._overloaded_since >= config.sustain
                and now - self._changed_at >= config.raise_after
            ):
                self.level += 1
                self._changed_at = now
                return True
            return False
        self._overloaded_since = None
        if self.level and now - max(self._overloaded_at, self._changed_at) >= config.lower_after:
            self.level -= 1
            self._changed_at = now
            return True
        return False
