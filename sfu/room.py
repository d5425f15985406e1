"""A room as the media side sees it: participants, published tracks, the audio policy.

The room owns the ``ActiveSpeakers`` policy: every audio packet is accounted there, only the
``max_audio_streams`` loudest sources are forwarded, and each subscriber gives each of them one
of its audio slots. ``speakers`` events go to everyone when the set of active speakers changes
(at most about three a second).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confserver.media import SendFn
from sfu.context import MediaContext
from sfu.core.audio import ActiveSpeakers, AudioConfig
from sfu.core.budget import SdpBudget
from sfu.publisher import Publisher
from sfu.subscriber import Subscriber
from sfu.uptrack import UpTrack

log = logging.getLogger("sfu.room")


@dataclass
class Member:
    sid: str
    identity: str
    permissions: frozenset[str]
    send: SendFn
    publisher: Publisher | None = None
    subscriber: Subscriber | None = None
    muted: set[str] = field(default_factory=set)  # kinds muted by the participant or a moderator
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one negotiation step at a time
    budget: SdpBudget | None = None  # descriptions this participant may still send (rate_limited)
    media_failed: bool = False  # a media call missed its deadline: connections closed for good


class Room:
    def __init__(self, name: str, ctx: MediaContext) -> None:
        self.name = name
        self._ctx = ctx
        self.members: dict[str, Member] = {}
        self.tracks: dict[str, UpTrack] = {}
        self.speakers = ActiveSpeakers(AudioConfig(max_forwarded=max(1, ctx.cfg.max_audio_streams)))

    def broadcast(self, msg: Mapping[str, Any], *, exclude: str | None = None) -> None:
        for member in list(self.members.values()):
            if member.sid != exclude:
                member.send(msg)

    # --- tracks --------------------------------------------------------------------------------

    def publish(self, track: UpTrack) -> None:
        self.tracks[track.id] = track
        member = self.members.get(track.owner)
        if member is not None and _mute_kind(track) in member.muted:
            track.muted = True
        self._ctx.metrics.tracks.labels(track.kind).inc()
        self.broadcast({"type": "track_published", "track": track.announce()})

    def unpublish(self, track: UpTrack) -> None:
        if self.tracks.pop(track.id, None) is None:
            return
        self._ctx.metrics.tracks.labels(track.kind).dec()
        if track.kind == "audio":
            self.speakers.remove(track.id)
        for member in self.members.values():
            sub = member.subscriber
            if sub is not None and sub.forget_track(track):
                sub.send_track_map()
        track.unpublish()
        self.broadcast({"type": "track_unpublished", "id": track.id})

    def set_muted(self, sid: str, kind: str, muted: bool) -> None:
        member = self.members.get(sid)
        if member is None:
            return
        if muted:
            member.muted.add(kind)
        else:
            member.muted.discard(kind)
        now = self._ctx.clock()
        for track in self.tracks.values():
            if track.owner != sid or _mute_kind(track) != kind or track.muted == muted:
                continue
            track.muted = muted
            if track.kind == "audio" and muted:
                self._audio_off(track)
                self.speakers.remove(track.id)
            for fwd in track.forwarders:
                fwd.restart(now)
                if not muted:
                    track.request_keyframe(fwd.selector.target, now)
            self.broadcast({"type": "track_muted", "id": track.id, "muted": muted})

    # --- audio policy --------------------------------------------------------------------------

    def audio_policy(self, track: UpTrack, level: int, now: float) -> bool:
        """Called for every audio packet: True to forward it (see ``UpTrack``)."""
        forwarded = self.speakers.on_packet(track.id, level, now)
        if forwarded != track.audio_forwarded:
            track.audio_forwarded = forwarded
            if forwarded:
                self._audio_on(track)
            else:
                self._audio_off(track)
        return forwarded

    def _still_forwarded(self, track: UpTrack) -> bool:
        return track.id in self.speakers.forwarded

    def _audio_on(self, track: UpTrack) -> None:
        for member in self.members.values():
            if member.subscriber is not None:
                member.subscriber.assign_audio(track, self._still_forwarded)

    def _audio_off(self, track: UpTrack) -> None:
        track.audio_forwarded = False
        for member in self.members.values():
            if member.subscriber is not None:
                member.subscriber.release_audio(track)

    def subscriber_ready(self, sub: Subscriber) -> None:
        """A subscriber's audio slots are negotiated: give it the sources being forwarded."""
        for track in self.tracks.values():
            if track.audio_forwarded:
                sub.assign_audio(track, self._still_forwarded)

    # --- timers --------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        event = self.speakers.poll(now)
        forwarded = self.speakers.forwarded
        for track in self.tracks.values():
            if track.audio_forwarded and track.id not in forwarded:
                self._audio_off(track)
        if event is not None:
            speakers = []
            for speaker in event.speakers:
                source = self.tracks.get(speaker.source)
                if source is not None:
                    level = round(10 ** (-speaker.level / 20), 3)
                    speakers.append({"sid": source.owner, "identity": source.identity, "level": level})
            self.broadcast({"type": "speakers", "speakers": speakers})
        for member in list(self.members.values()):
            if member.publisher is not None and not member.publisher.closed:
                member.publisher.tick(now)
            if member.subscriber is not None and not member.subscriber.closed:
                member.subscriber.tick(now)


def _mute_kind(track: UpTrack) -> str | None:
    """Muting "audio"/"video" stops the microphone/camera; screen shares are unpublished instead."""
    return {"microphone": "audio", "camera": "video"}.get(track.source)
