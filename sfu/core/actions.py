"""Immutable actions and events the core hands to its adapters.

The core never sends anything itself: it returns these values and an adapter carries them out
(write to the SRTP transport, send RTCP upstream, push an event to signaling). Decisions that
are taken for every packet reuse preallocated instances (``drop(reason)``) so the hot path does
not allocate.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class DropReason(enum.Enum):
    """Why a packet was not forwarded to a subscriber."""

    PAUSED = "paused"  # the subscriber does not want this track now
    LAYER_NOT_SELECTED = "layer_not_selected"  # another simulcast layer is being forwarded
    WAITING_FOR_KEYFRAME = "waiting_for_keyframe"  # the selected layer has not sent a keyframe yet
    BEFORE_SWITCH = "before_switch"  # late packet from before the current switch point
    DUPLICATE = "duplicate"  # the same sequence number was just forwarded
    SILENT = "silent"  # audio not among the sources forwarded to the room
    TOO_LONG = "too_long"  # the rewritten packet would not fit the subscriber's SRTP buffer


@dataclass(frozen=True, slots=True)
class Drop:
    """Do not forward this packet."""

    reason: DropReason


_DROPS: Mapping[DropReason, Drop] = MappingProxyType({reason: Drop(reason) for reason in DropReason})


def drop(reason: DropReason) -> Drop:
    """The shared ``Drop`` instance for ``reason`` (no allocation per packet)."""
    return _DROPS[reason]


@dataclass(frozen=True, slots=True)
class SendRtp:
    """Send an RTP packet (already rewritten for its receiver) on the down-track's transport."""

    packet: bytes
    retransmission: bool = False


@dataclass(frozen=True, slots=True)
class SendPli:
    """Ask the publisher of ``media_ssrc`` for a keyframe (RTCP PLI upstream)."""

    media_ssrc: int


@dataclass(frozen=True, slots=True)
class SendNack:
    """Ask the publisher of ``media_ssrc`` to retransmit these 16-bit sequence numbers."""

    media_ssrc: int
    lost: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SpeakerLevel:
    """One active speaker: ``level`` is the smoothed audio level in -dBov (0 loudest, 127 silence)."""

    source: str
    level: int


@dataclass(frozen=True, slots=True)
class SpeakersChanged:
    """The room's active speakers changed; loudest first."""

    speakers: tuple[SpeakerLevel, ...]

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(s.source for s in self.speakers)
