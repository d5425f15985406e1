"""Audio levels (RFC 6464), active speakers and the room-wide "N loudest" forwarding choice.

Every audio packet carries its level in -dBov (0 = loudest, 127 = silence). Per source we keep a
time-smoothed level and two hysteresis thresholds:

- a source whose smoothed level is at or below ``speaking_level`` is *speaking*: it is forwarded
  at once (no clipped first syllable) if fewer than ``max_forwarded`` sources are forwarded, or
  if it is louder by ``replace_margin`` dB than the quietest forwarded one, which it replaces;
  after ``activate_after`` seconds of speech it becomes an *active speaker* (shown to clients);
- a source whose smoothed level is above ``silence_level`` for ``release_after`` seconds (or
  that sent nothing for ``stale_after`` seconds) stops being forwarded and active;
- in between nothing changes.

So at most ``max_forwarded`` audio sources reach the room and silent microphones cost nothing.
``poll`` yields a ``SpeakersChanged`` event when the ordered list of active speakers changes, at
most once per ``min_event_interval``. ``now`` is float seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sfu.core.actions import SpeakerLevel, SpeakersChanged

SILENCE = 127


def parse_audio_level(value: bytes) -> tuple[bool, int] | None:
    """(voice activity flag, level in -dBov) from an RFC 6464 extension value, None if empty."""
    if not value:
        return None
    b = value[0]
    return bool(b & 0x80), b & 0x7F


def build_audio_level(voice: bool, level: int) -> bytes:
    """RFC 6464 extension value (one byte) for ``level`` -dBov."""
    return bytes(((0x80 if voice else 0) | max(0, min(SILENCE, level)),))


@dataclass(frozen=True, slots=True)
class AudioConfig:
    max_forwarded: int = 5
    speaking_level: int = 55  # -dBov: smoothed level at or below this is speech
    silence_level: int = 70  # -dBov: smoothed level above this is silence
    smoothing: float = 0.1  # time constant of the exponential smoothing, seconds
    activate_after: float = 0.1
    release_after: float = 1.0
    stale_after: float = 1.0
    replace_margin: int = 6  # dB louder than the quietest forwarded source to take its place
    min_event_interval: float = 1 / 3


class _Source:
    __slots__ = ("active", "forwarded", "last_packet", "loudness", "quiet_since", "speaking_since")

    def __init__(self, loudness: float, now: float) -> None:
        self.loudness = loudness  # 127 - smoothed level: 0 = silence, 127 = loudest
        self.last_packet = now
        self.speaking_since: float | None = None
        self.quiet_since: float | None = None
        self.active = False
        self.forwarded = False


class ActiveSpeakers:
    """Room-wide audio policy: smoothed levels, active speakers, the N loudest forwarded."""

    __slots__ = ("_config", "_forwarded", "_last_emitted", "_last_event_at", "_sources")

    def __init__(self, config: AudioConfig | None = None) -> None:
        cfg = config or AudioConfig()
        if cfg.silence_level < cfg.speaking_level:
            raise ValueError("silence_level must not be below speaking_level")
        self._config = cfg
        self._sources: dict[str, _Source] = {}
        self._forwarded: set[str] = set()
        self._last_emitted: tuple[str, ...] = ()
        self._last_event_at = -math.inf

    @property
    def forwarded(self) -> frozenset[str]:
        """Sources whose audio currently reaches the room."""
        return frozenset(self._forwarded)

    def level(self, source: str) -> int | None:
        """Smoothed level of ``source`` in -dBov, None if unknown."""
        state = self._sources.get(source)
        return None if state is None else SILENCE - round(state.loudness)

    def is_active(self, source: str) -> bool:
        state = self._sources.get(source)
        return state is not None and state.active

    def on_packet(self, source: str, level: int, now: float) -> bool:
        """Account one audio packet of ``source`` at ``level`` -dBov; True to forward it."""
        cfg = self._config
        loud = SILENCE - (0 if level < 0 else SILENCE if level > SILENCE else level)
        state = self._sources.get(source)
        if state is None:
            state = self._sources[source] = _Source(float(loud), now)
        else:
            dt = now - state.last_packet
            if dt > 0:
                state.loudness += (loud - state.loudness) * (1.0 - math.exp(-dt / cfg.smoothing))
            state.last_packet = now
        smoothed = SILENCE - state.loudness
        if smoothed <= cfg.speaking_level:
            state.quiet_since = None
            if state.speaking_since is None:
                state.speaking_since = now
            if not state.active and now - state.speaking_since >= cfg.activate_after:
                state.active = True
            if not state.forwarded:
                self._admit(source, state)
        elif smoothed > cfg.silence_level:
            state.speaking_since = None
            if state.quiet_since is None:
                state.quiet_since = now
            elif now - state.quiet_since >= cfg.release_after:
                self._release(source, state)
        else:
            state.speaking_since = None
            state.quiet_since = None
        return state.forwarded

    def poll(self, now: float) -> SpeakersChanged | None:
        """Expire sources that went quiet without packets; an event if the speakers changed and
        the last event is at least ``min_event_interval`` old (call periodically)."""
        cfg = self._config
        for source, state in self._sources.items():
            if now - state.last_packet > cfg.stale_after and (state.forwarded or state.active):
                state.loudness = 0.0
                self._release(source, state)
        if now - self._last_event_at < cfg.min_event_interval:
            return None
        speakers = self.speakers()
        order = tuple(s.source for s in speakers)
        if order == self._last_emitted:
            return None
        self._last_emitted = order
        self._last_event_at = now
        return SpeakersChanged(speakers)

    def speakers(self) -> tuple[SpeakerLevel, ...]:
        """Active speakers that are being forwarded, loudest first."""
        chosen = [
            (state.loudness, source)
            for source, state in self._sources.items()
            if state.active and state.forwarded
        ]
        chosen.sort(key=lambda item: (-item[0], item[1]))
        return tuple(SpeakerLevel(source, SILENCE - round(loudness)) for loudness, source in chosen)

    def remove(self, source: str) -> None:
        """The source left the room."""
        self._sources.pop(source, None)
        self._forwarded.discard(source)

    def _admit(self, source: str, state: _Source) -> None:
        forwarded = self._forwarded
        if len(forwarded) < self._config.max_forwarded:
            forwarded.add(source)
            state.forwarded = True
            return
        quietest = min(forwarded, key=lambda s: self._sources[s].loudness, default=None)
        if quietest is None:
            return
        victim = self._sources[quietest]
        if state.loudness >= victim.loudness + self._config.replace_margin:
            victim.forwarded = False
            forwarded.discard(quietest)
            forwarded.add(source)
            state.forwarded = True

    def _release(self, source: str, state: _Source) -> None:
        state.active = False
        state.speaking_since = None
        if state.forwarded:
            state.forwarded = False
            self._forwarded.discard(source)
