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


class DropReason(enum.StrEnum):
    """Why a packet was not forwarded: the one list of the ``reason`` label of
    ``conf_sfu_dropped_packets_total`` (documented in docs/OPERATIONS.md; a test keeps the two
    equal). A member is its label (a ``str``), so counting one costs what counting a string does."""

    # per subscriber: one copy of a packet not sent to one subscriber
    PAUSED = "paused"  # the subscriber does not want this track now
    LAYER_NOT_SELECTED = "layer_not_selected"  # another simulcast layer is being forwarded
    WAITING_FOR_KEYFRAME = "waiting_for_keyframe"  # the selected layer has not sent a keyframe yet
    BEFORE_SWITCH = "before_switch"  # late packet from before the current switch point
    DUPLICATE = "duplicate"  # the same sequence number was just forwarded
    TOO_LONG = "too_long"  # the rewritten packet would not fit the subscriber's SRTP buffer
    NOT_SENT = "not_sent"  # not connected (yet), or the socket's send buffer is full
    NOT_NEGOTIATED = "not_negotiated"  # the subscriber's m-line is not negotiated (yet)
    CODEC_NOT_NEGOTIATED = "codec_not_negotiated"  # the subscriber did not accept the packet's codec
    # per incoming packet
    SILENT = "silent"  # audio not among the sources forwarded to the room
    MUTED = "muted"  # the publisher's track is muted
    STALE = "stale"  # waited longer than ``sfu.max_receive_delay`` in a media socket, dropped unread
    UNKNOWN_ADDRESS = "unknown_address"  # no connection holds the sender's address (shared port)
    UNROUTABLE = "unroutable"  # no track of the publisher matches the packet (MID/RID, SSRC, PT)
    MALFORMED = "malformed"  # not a parsable RTP packet (or RTX payload)
    UNKNOWN_PAYLOAD_TYPE = "unknown_payload_type"  # a payload type the publisher did not negotiate
    UNKNOWN_LAYER = "unknown_layer"  # a simulcast layer (RID) the offer did not announce
    UNKNOWN_RTX = "unknown_rtx"  # a retransmission of no known stream or payload type


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
