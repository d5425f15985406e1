"""What a load test does: the options, checked, and the role of every synthetic participant.

Participants are numbered 0..N-1 with N = ``--participants`` (default: the largest of the three
counts). Participant n publishes video if n < P, audio if n < A, speaks (its audio carries a
speech level) if n < K, and subscribes if n >= N - S. So publishers come first, subscribers last,
and with the default N they overlap: ``-P 4 -A 4 -S 100`` is a room of 100 in which the four
publishers also watch each other. The last ``--decoders`` subscribers decode what they receive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PARTICIPANTS = 100  # the server's hard cap per room
ROOM_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DURATION_RE = re.compile(r"(\d{1,9}(?:\.\d{1,3})?)(ms|s|m|h)?")
_UNIT = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"(\d{1,5})x(\d{1,5})")


class PlanError(ValueError):
    """The options do not describe a possible test; the message says why (one line)."""


def parse_seconds(text: str) -> float:
    """``60``, ``60s``, ``500ms``, ``2m``, ``1.5s`` -> seconds."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if not match:
        raise PlanError(f"invalid duration {text!r}: use seconds or a number with ms/s/m/h, e.g. 60s, 2m")
    return float(match.group(1)) * _UNIT[match.group(2)]


def parse_size(text: str) -> tuple[int, int]:
    """``320x180`` -> (320, 180)."""
    match = _SIZE_RE.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise PlanError(f"invalid size {text!r}: use WIDTHxHEIGHT, e.g. 320x180")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class Options:
    room: str
    video_publishers: int = 0
    audio_publishers: int = 0
    subscribers: int = 0
    participants: int | None = None
    speakers: int | None = None  # default: min(audio publishers, 3)
    simulcast: bool = False
    sender: str = "crafted"  # or "aiortc": aiortc's RTCRtpSender packetizes (no simulcast)
    tiles: int | None = None  # None: every video track
    tile_size: tuple[int, int] = (320, 180)
    speaker_view: bool = False
    speaker_size: tuple[int, int] = (1280, 720)
    decoders: int = 0
    duration: float = 60.0
    warmup: float = 5.0
    ramp: float = 0.0
    join_timeout: float = 60.0
    processes: int = 1
    e2ee: bool = False  # the room is end-to-end encrypted: exchange keys, encrypt and decrypt frames
    metrics_url: str | None = "http://127.0.0.1:9464/metrics"

    @property
    def total(self) -> int:
        if self.participants is not None:
            return self.participants
        return max(self.video_publishers, self.audio_publishers, self.subscribers)

    @property
    def speaking(self) -> int:
        return min(self.audio_publishers, 3) if self.speakers is None else self.speakers

    def check(self) -> Options:
        """Return self, or raise ``PlanError`` naming the first impossible option."""
        if not ROOM_NAME_RE.fullmatch(self.room):
            raise PlanError(f"invalid room name {self.room!r}: use 1-64 characters from A-Z a-z 0-9 _ -")
        counts = {
            "--video-publishers": self.video_publishers,
            "--audio-publishers": self.audio_publishers,
            "--subscribers": self.subscribers,
            "--decoders": self.decoders,
        }
        for flag, value in counts.items():
            if value < 0:
                raise PlanError(f"{flag} must not be negative")
        n = self.total
        if n < 1:
            raise PlanError("nothing to do: give --video-publishers, --audio-publishers or --subscribers")
        if n > MAX_PARTICIPANTS:
            raise PlanError(f"{n} participants: a room holds at most {MAX_PARTICIPANTS}")
        for flag, value in list(counts.items())[:3]:
            if value > n:
                raise PlanError(f"{flag} {value} is more than --participants {n}")
        if not 0 <= self.speaking <= self.audio_publishers:
            raise PlanError(f"--speakers must be between 0 and --audio-publishers ({self.audio_publishers})")
        if self.decoders > self.subscribers:
            raise PlanError(f"--decoders {self.decoders} is more than --subscribers {self.subscribers}")
        if self.tiles is not None and self.tiles < 1:
            raise PlanError("--tiles must be at least 1")
        if self.speaker_view and self.subscribers == 0:
            raise PlanError("--speaker-view needs subscribers")
        if self.simulcast and self.video_publishers == 0:
            raise PlanError("--simulcast needs video publishers")
        if self.sender not in ("crafted", "aiortc"):
            raise PlanError("--sender must be crafted or aiortc")
        if self.simulcast and self.sender == "aiortc":
            raise PlanError("--simulcast needs --sender crafted: aiortc's sender cannot send simulcast")
        if self.e2ee and self.sender != "crafted":
            raise PlanError("--e2ee needs --sender crafted: frames are encrypted before they are packetized")
        if self.duration <= 0:
            raise PlanError("--duration must be greater than zero")
        if self.warmup < 0 or self.ramp < 0 or self.join_timeout <= 0:
            raise PlanError("--warmup and --ramp must not be negative, --join-timeout must be positive")
        if not 1 <= self.processes <= 64:
            raise PlanError("--processes must be between 1 and 64")
        if self.processes > n:
            raise PlanError(f"--processes {self.processes} is more than the {n} participants")
        return self


@dataclass(frozen=True)
class Role:
    """What one synthetic participant does."""

    index: int
    identity: str
    video: bool
    audio: bool
    speaker: bool
    subscribe: bool
    decode: bool

    @property
    def publishes(self) -> bool:
        return self.video or self.audio

    @property
    def permissions(self) -> list[str]:
        perms = []
        if self.audio:
            perms.append("publish_audio")
        if self.video:
            perms.append("publish_video")
        if self.subscribe:
            perms.append("subscribe")
        return perms


def roles(options: Options, run_id: str) -> list[Role]:
    """The participants of a checked ``options``, in join order."""
    n = options.total
    first_subscriber = n - options.subscribers
    first_decoder = n - options.decoders
    return [
        Role(
            index=i,
            identity=f"lt-{run_id}-{i:03d}",
            video=i < options.video_publishers,
            audio=i < options.audio_publishers,
            speaker=i < options.speaking,
            subscribe=i >= first_subscriber,
            decode=i >= first_decoder,
        )
        for i in range(n)
    ]
