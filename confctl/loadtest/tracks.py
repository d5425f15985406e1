"""aiortc media tracks that hand pre-encoded packets to ``RTCRtpSender``.

``ClipTrack.recv`` returns an ``av.Packet`` (with ``pts``/``time_base``), so the sender only
packetizes it (``encoder.pack``): nothing is encoded per send. The one exception is
``SpeechTrack``: aiortc's sender writes the RFC 6464 audio level only for frames it encodes
itself (``RTCRtpSender._next_encoded_frame`` computes it from PCM; the ``pack`` path leaves it
out), and the server counts a packet without a level as moderately loud (-50 dBov), never as
speech that outshouts others. So a speaker's track returns PCM frames, which the sender encodes
to Opus and measures (one small encode per 20 ms per speaker): its level is what makes it one
of the room's loudest.
"""

from __future__ import annotations

import asyncio
import fractions
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from confctl.loadtest.clips import AUDIO_SAMPLES, Clip, audio_frame, tone

MAX_LAG = 0.5  # seconds behind schedule before the schedule is reset instead of caught up


class _Paced:
    """Real-time schedule: frame n is due at start + n * interval."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._start: float | None = None
        self.count = 0

    async def wait(self) -> int:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
        due = self._start + self.count * self._interval
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > MAX_LAG:
            self._start = now - self.count * self._interval  # overloaded: do not burst to catch up
        n = self.count
        self.count += 1
        return n


class ClipTrack(MediaStreamTrack):
    """Loops ``clip`` from ``first`` (a keyframe index) as ``av.Packet``s in real time."""

    def __init__(self, clip: Clip, first: int = 0) -> None:
        super().__init__()
        self.kind = clip.kind
        self._clip = clip
        self._first = first
        self._pace = _Paced(clip.frame_duration)
        self._time_base = fractions.Fraction(1, clip.clock_rate)

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        n = await self._pace.wait()
        clip = self._clip
        packet = av.Packet(clip.frames[(self._first + n) % len(clip.frames)])
        packet.pts = n * clip.ticks_per_frame
        packet.time_base = self._time_base
        return packet


class SpeechTrack(MediaStreamTrack):
    """A 440 Hz tone as PCM frames, so that the sender encodes it and sets the audio level."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._chunk = tone(0.3, 1)[0]
        self._pace = _Paced(AUDIO_SAMPLES / 48000)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = await self._pace.wait()
        return audio_frame(self._chunk, n * AUDIO_SAMPLES)
