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
  server that overloads again drops media before it sheds again;
- sooner, after ``recover_after``, when the process had headroom all that time: its CPU (fed
  as the process's cumulative CPU seconds) under ``recover_below`` of a core. A meeting's join
  rush overloads a server for a few seconds and then leaves it idle enough; this gives its
  video back in seconds instead of half a minute per level. If the server sheds again within
  ``lower_after`` of such an early recovery, the next one waits twice as long (up to
  ``lower_after``, where only the slow rule is left); a level given back that holds for
  ``lower_after`` resets the wait. The margin below a core is for the load the level gives
  back: in a meeting of 100, level 1 forwards ~8 % fewer packets than level 0, level 2 ~25 %
  fewer than level 1 (docs/BENCHMARKS.md, section 7).

As Jitsi's bridge reduces last-N under load; here the video stays, smaller. ``now`` is float
seconds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SheddingConfig:
    max_level: int = 2
    sustain: float = 2.0
    raise_after: float = 4.0
    lower_after: float = 30.0
    recover_after: float = 10.0
    recover_below: float = 0.7  # of one core


CPU_SAMPLE_INTERVAL = 1.0
"""Seconds between the CPU samples the policy keeps (it is fed every timer tick)."""


class LoadShedding:
    __slots__ = (
        "_changed_at",
        "_config",
        "_cpu",
        "_early_at",
        "_early_wait",
        "_overloaded_at",
        "_overloaded_since",
        "level",
    )

    def __init__(self, config: SheddingConfig | None = None) -> None:
        self._config = config = config if config is not None else SheddingConfig()
        self.level = 0
        self._changed_at = -math.inf
        self._overloaded_at = -math.inf
        self._overloaded_since: float | None = None  # start of the current overloaded stretch
        self._cpu: deque[tuple[float, float]] = deque()  # (now, CPU seconds) of the recent past
        self._early_wait = config.recover_after  # quiet time an early recovery takes now
        self._early_at: float | None = None  # the last early recovery, until it held

    def update(self, now: float, overloaded: bool, cpu_seconds: float | None = None) -> bool:
        """Feed the latest state (``cpu_seconds``: the process's CPU time so far, if known);
        True when ``level`` changed."""
        config = self._config
        cpu = self._cpu
        if cpu_seconds is not None and (not cpu or now - cpu[-1][0] >= CPU_SAMPLE_INTERVAL):
            cpu.append((now, cpu_seconds))
            while len(cpu) > 2 and now - cpu[1][0] >= config.lower_after:
                cpu.popleft()
        if self._early_at is not None and now - self._early_at >= config.lower_after:
            self._early_at = None  # it held
            self._early_wait = config.recover_after
        if overloaded:
            self._overloaded_at = now
            if self._overloaded_since is None:
                self._overloaded_since = now
            if (
                self.level < config.max_level
                and now - self._overloaded_since >= config.sustain
                and now - self._changed_at >= config.raise_after
            ):
                if self._early_at is not None:  # the last early recovery did not hold
                    self._early_at = None
                    self._early_wait = min(2 * self._early_wait, config.lower_after)
                self.level += 1
                self._changed_at = now
                return True
            return False
        self._overloaded_since = None
        if not self.level:
            return False
        quiet = now - max(self._overloaded_at, self._changed_at)
        if quiet >= config.lower_after:
            self.level -= 1
            self._changed_at = now
            return True
        if quiet >= self._early_wait and self._idle_enough(now - self._early_wait):
            self.level -= 1
            self._changed_at = self._early_at = now
            return True
        return False

    def _idle_enough(self, since: float) -> bool:
        """The process used less than ``recover_below`` of a core from ``since`` to now."""
        start = None
        for sample in self._cpu:
            if sample[0] > since:
                break
            start = sample
        if start is None:
            return False  # not measured over all of it
        end = self._cpu[-1]
        return end[0] > start[0] and (end[1] - start[1]) / (end[0] - start[0]) < self._config.recover_below
