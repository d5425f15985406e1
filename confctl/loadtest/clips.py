"""Media encoded once per test, then looped by every publisher: no encoding per send.

Video is VP8 from PyAV's libvpx encoder (realtime settings, a keyframe every second), made of a
moving gradient with a moving band of noise so that the encoder spends about 800 kbit/s at
640x360 (~90 RTP packets a second). Audio is Opus in 20 ms frames (50 packets a second): a
440 Hz tone for speakers, faint noise for open microphones. Content is generated from bytes,
without numpy. A ``Clip`` holds only bytes and numbers, so it can be sent to worker processes.
"""

from __future__ import annotations

import array
import fractions
import math
import random
from dataclasses import dataclass
from typing import Any

import av

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
FPS = 30
CLIP_FRAMES = 60  # 2 s, looped
KEYFRAME_INTERVAL = 30  # frames
AUDIO_SAMPLES = 960  # 20 ms at 48 kHz
SPEECH_LEVEL = 12  # -dBov of the tone (RMS of a sine at 0.3 full scale is about -13.5 dBov)
QUIET_LEVEL = 90  # -dBov of an open microphone in a quiet room: silence to the server

# Layer sizes and bitrates, lowest first. The top one is the single-layer default.
LAYERS: tuple[tuple[str, int, int, int], ...] = (
    ("q", 160, 90, 100_000),
    ("h", 320, 180, 300_000),
    ("f", 640, 360, 800_000),
)


@dataclass(frozen=True)
class Clip:
    """Encoded frames in presentation order, looped from index 0 (a keyframe)."""

    kind: str
    frames: tuple[bytes, ...]
    keyframes: tuple[int, ...]
    clock_rate: int
    ticks_per_frame: int
    width: int = 0
    height: int = 0
    level: int = 127  # RFC 6464 level (-dBov) of audio content
    dtx: bool = False  # what a silent microphone sends in Opus DTX

    @property
    def frame_duration(self) -> float:
        return self.ticks_per_frame / self.clock_rate

    def next_keyframe(self, index: int) -> int:
        """The first keyframe index at or after ``index`` (wrapping to 0)."""
        pos = index % len(self.frames)
        return next((k for k in self.keyframes if k >= pos), 0)


@dataclass(frozen=True)
class ClipSet:
    """Everything a test needs: layers lowest first (one layer without simulcast), speech, quiet."""

    layers: tuple[Clip, ...]
    speech: Clip | None
    quiet: Clip | None

    @property
    def top(self) -> Clip | None:
        return self.layers[-1] if self.layers else None


DTX_FRAMES = 10  # Chromium 156 sends ~5 packets/s of silence when DTX is asked for (measured)


def dtx(clip: Clip) -> Clip:
    """What a silent microphone sends when the server asks for DTX: one packet (the frame's TOC
    byte only, as libopus emits in DTX) every ``DTX_FRAMES`` frames."""
    ticks = clip.ticks_per_frame * DTX_FRAMES
    return Clip("audio", (clip.frames[0][:1],), (), clip.clock_rate, ticks, level=clip.level, dtx=True)


def _video_frame(width: int, height: int, index: int, noise: bytes) -> av.VideoFrame:
    frame = av.VideoFrame(width=width, height=height, format="yuv420p")
    luma = frame.planes[0]
    stride = luma.line_size
    row = bytes(((x * 2 + index * 4) & 0xFF) for x in range(stride))
    data = bytearray(row * height)
    band = max(2, height // 10)
    top = (index * 2) % (height - band)
    start = (index * 977) % (len(noise) - band * stride)
    data[top * stride : (top + band) * stride] = noise[start : start + band * stride]
    luma.update(bytes(data))
    for plane in frame.planes[1:]:
        plane.update(bytes([128 + index % 20]) * plane.buffer_size)
    return frame


def encode_video(width: int, height: int, bitrate: int, frames: int = CLIP_FRAMES) -> Clip:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width = width
    codec.height = height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.bit_rate = bitrate
    codec.gop_size = KEYFRAME_INTERVAL
    codec.thread_count = 1
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    squeeze = bytes(96 + (i >> 2) for i in range(256))  # noise of moderate contrast
    noise = random.Random(width * height).randbytes(width * height).translate(squeeze)
    packets: list[av.Packet[Any]] = []
    for i in range(frames):
        frame = _video_frame(width, height, i, noise)
        frame.pts = i
        frame.time_base = codec.time_base
        packets.extend(codec.encode(frame))
    packets.extend(codec.encode(None))
    data = tuple(bytes(p) for p in packets)
    keys = tuple(i for i, p in enumerate(packets) if p.is_keyframe)
    if not keys or keys[0] != 0:
        raise RuntimeError("the VP8 encoder did not start with a keyframe")
    return Clip("video", data, keys, VIDEO_CLOCK, VIDEO_CLOCK // FPS, width, height)


def tone(amplitude: float, frames: int) -> list[bytes]:
    """``frames`` 20 ms chunks of 16-bit mono samples: a 440 Hz sine (exactly 22 periods per
    chunk, so chunks repeat seamlessly)."""
    chunk = array.array(
        "h",
        (
            int(amplitude * 32767 * math.sin(2 * math.pi * 440 * k / AUDIO_CLOCK))
            for k in range(AUDIO_SAMPLES)
        ),
    ).tobytes()
    return [chunk] * frames


def faint_noise(frames: int) -> list[bytes]:
    rnd = random.Random(6464)
    return [
        array.array("h", (rnd.randint(-24, 24) for _ in range(AUDIO_SAMPLES))).tobytes()
        for _ in range(frames)
    ]


def audio_frame(samples: bytes, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
    frame.planes[0].update(samples)
    frame.sample_rate = AUDIO_CLOCK
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, AUDIO_CLOCK)
    return frame


def encode_audio(chunks: list[bytes], level: int) -> Clip:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_CLOCK
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = 32000
    codec.options = {"frame_duration": "20", "application": "voip"}
    packets: list[av.Packet[Any]] = []
    for i, samples in enumerate(chunks):
        packets.extend(codec.encode(audio_frame(samples, i * AUDIO_SAMPLES)))
    packets.extend(codec.encode(None))
    data = tuple(bytes(p) for p in packets)[: len(chunks)]
    return Clip("audio", data, (0,), AUDIO_CLOCK, AUDIO_SAMPLES, level=level)


def build(*, video: bool, simulcast: bool, speech: bool, quiet: bool) -> ClipSet:
    """Encode the clips a test needs (about a second of CPU for video)."""
    layers: tuple[Clip, ...] = ()
    if video:
        chosen = LAYERS if simulcast else LAYERS[-1:]
        layers = tuple(encode_video(w, h, rate) for _rid, w, h, rate in chosen)
    return ClipSet(
        layers=layers,
        speech=encode_audio(tone(0.3, 50), SPEECH_LEVEL) if speech else None,
        quiet=encode_audio(faint_noise(50), QUIET_LEVEL) if quiet else None,
    )
