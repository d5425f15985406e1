"""``SfuController``: the media service behind confserver's ``MediaController`` interface.

It keeps the rooms' media state, answers the media messages of ``docs/PROTOCOL.md`` (typed and
checked already: ``confserver.contract``; refusing with ``ServiceError`` codes), and runs one
timer task for the whole service: keyframe request retries, NACK retries, receiver and sender
reports, layer re-evaluation, active speakers and the metrics flush all happen there, batched,
never one task per track.

Hostile input is refused before aiortc sees it (docs/SFU.md, "Hostile input"): descriptions are
parsed and capped by ``sfu.sdp`` and paid for from each participant's ``SdpBudget``;
candidates are checked by ``sfu.core.candidate`` and capped per connection; every await on
aiortc has a deadline (``sfu.deadline``), and a participant whose media call misses it loses
its media connections (``media_timeout``) without holding up anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, assert_never

from aiortc import RTCIceCandidate
from prometheus_client import CollectorRegistry

from confserver.config import SfuConfig
from confserver.contract import (
    SOURCES,
    IceCandidate,
    MediaMessage,
    PublishOffer,
    ServiceError,
    SubscribeAnswer,
    Unpublish,
    UpdateSubscription,
)
from confserver.media import SendFn
from sfu import udpmux
from sfu.context import MediaContext, PacketFilters
from sfu.core.budget import BudgetConfig, SdpBudget
from sfu.core.candidate import CandidateError, parse_candidate
from sfu.core.simulcast import LayerLimits
from sfu.deadline import Deadlines, timed_out, within
from sfu.glue import check_versions, remote_candidate_count
from sfu.metrics import SfuMetrics
from sfu.ports import PortRange, check_port_free, receive_buffer_warning
from sfu.publisher import Publisher
from sfu.room import Member, Room
from sfu.sdp import SdpError, check_bundle, parse_sdp, section_for_rid_check
from sfu.subscriber import Subscriber
from sfu.turn import ice_servers_for

log = logging.getLogger("sfu")

TICK = 0.05
FLUSH_INTERVAL = 1.0
SDP_BUDGET = BudgetConfig()
MAX_REMOTE_CANDIDATES = 32
"""Remote candidates one connection takes (each gets connectivity checks from the server)."""
MAX_SCREEN_SUBSCRIPTIONS = 8
"""Screen shares one subscriber may receive at once, beyond ``max_video_subscriptions``."""
PUBLISH_PERMISSIONS = frozenset(permission for _kind, permission in SOURCES.values())


class SfuController:
    """Implements ``confserver.media.MediaController`` with a packet-forwarding SFU."""

    def __init__(
        self,
        cfg: SfuConfig,
        metrics_registry: CollectorRegistry | None = None,
        *,
        packet_filters: PacketFilters | None = None,
        deadlines: Deadlines | None = None,
        sdp_budget: BudgetConfig = SDP_BUDGET,
    ) -> None:
        check_versions()
        PortRange(cfg.port_min, cfg.port_max)  # refuse a bad range now, not at the first join
        if cfg.udp_port:
            check_port_free(cfg.udp_port, cfg.bind_addresses)  # and a taken port
        shared = not cfg.port_min  # one socket for all: larger, forced where allowed (sfu.udpmux)
        warning = receive_buffer_warning(udpmux.RECEIVE_BUFFER_SIZE if shared else None, force=shared)
        if warning is not None:
            log.warning("%s", warning)
        self._cfg = cfg
        self.metrics = SfuMetrics(metrics_registry)
        self._filters = packet_filters or PacketFilters()
        self._deadlines = deadlines or Deadlines()
        self._budget = sdp_budget
        self._ctx: MediaContext | None = None
        self._rooms: dict[str, Room] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False

    # --- MediaController -----------------------------------------------------------------------

    async def participant_joined(
        self, room: str, sid: str, permissions: frozenset[str], send: SendFn, identity: str = ""
    ) -> None:
        if self._closed:
            return
        ctx = self._context()
        r = self._rooms.get(room)
        if r is None:
            r = self._rooms[room] = Room(room, ctx)
        member = Member(
            sid, identity, frozenset(permissions), send, budget=SdpBudget(self._budget, ctx.clock())
        )
        r.members[sid] = member
        for track in list(r.tracks.values()):
            send({"type": "track_published", "track": track.announce()})
        if "subscribe" in permissions:
            member.subscriber = Subscriber(sid=sid, send=send, ctx=ctx)
            try:
                await member.subscriber.negotiate()
            except ServiceError as exc:
                subscriber, member.subscriber = member.subscriber, None
                await subscriber.close()
                send({"type": "error", "code": exc.code, "message": exc.message, "ref": "subscribe_offer"})

    async def handle(self, room: str, sid: str, message: MediaMessage) -> None:
        r = self._rooms.get(room)
        member = r.members.get(sid) if r is not None else None
        if r is None or member is None:
            raise ServiceError("not_joined", "this session has no media state in the room")
        if member.media_failed:
            raise timed_out("an earlier media call", self._deadlines.media)
        try:
            await self._dispatch(r, member, message)
        except ServiceError as exc:
            if exc.code == "media_timeout":
                await self._drop_media(r, member)
            raise

    async def _dispatch(self, r: Room, member: Member, message: MediaMessage) -> None:
        """One case per message of the contract; ``assert_never`` makes a message type without
        one a mypy error (and a loud failure at run time), never a message silently ignored."""
        match message:
            case PublishOffer():
                await self._publish_offer(r, member, message)
            case SubscribeAnswer():
                await self._subscribe_answer(r, member, message)
            case IceCandidate():
                await self._ice_candidate(member, message)
            case UpdateSubscription():
                await self._update_subscription(r, member, message)
            case Unpublish():
                self._unpublish(r, member, message)
            case _:
                assert_never(message)

    async def set_muted(self, room: str, sid: str, kind: str, muted: bool) -> None:
        r = self._rooms.get(room)
        if r is not None and kind in ("audio", "video"):
            r.set_muted(sid, kind, muted)

    async def participant_left(self, room: str, sid: str) -> None:
        r = self._rooms.get(room)
        if r is None:
            return
        member = r.members.pop(sid, None)
        if member is None:
            return
        await self._close_member(r, member)
        if not r.members:
            self._rooms.pop(room, None)

    def ice_servers(self, identity: str, *, not_after: float | None = None) -> list[dict[str, Any]]:
        cfg = self._cfg
        return ice_servers_for(
            cfg.ice_servers,
            identity,
            secret=cfg.turn_secret,
            now=time.time(),
            ttl=cfg.turn_credential_ttl,
            not_after=not_after,
        )

    async def close(self) -> None:
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for r in list(self._rooms.values()):
            for member in list(r.members.values()):
                r.members.pop(member.sid, None)
                await self._close_member(r, member)
        self._rooms.clear()
        if self._ctx is not None:
            self._ctx.close()
        self.metrics.flush()

    # --- publishing ----------------------------------------------------------------------------

    async def _publish_offer(self, room: Room, member: Member, offer: PublishOffer) -> None:
        if not member.permissions & PUBLISH_PERMISSIONS:
            raise ServiceError("forbidden", "this token does not allow publishing")
        wanted = list(offer.tracks)
        for entry in wanted:
            if entry.permission not in member.permissions:
                raise ServiceError("forbidden", f"this token does not allow publishing {entry.source}")
        self._charge(member, offer.sdp)
        try:
            info = parse_sdp(offer.sdp)
            check_bundle(info, member.publisher.offer if member.publisher is not None else None)
            for entry in wanted:
                section = info.section(entry.mid)
                if section is None:
                    raise SdpError(f"the offer has no m-line with mid {entry.mid}")
                if section.kind != entry.kind or not section.sends:
                    raise SdpError(f"m-line {entry.mid} does not send {entry.kind}")
                section_for_rid_check(section)
        except SdpError as exc:
            raise ServiceError("bad_sdp", str(exc)) from None
        fresh = member.publisher is None
        if member.publisher is None:
            member.publisher = Publisher(
                sid=member.sid,
                identity=member.identity,
                ctx=self._context(),
                audio_policy=room.audio_policy,
                send=member.send if self._cfg.dynacast else None,
            )
        publisher = member.publisher
        try:
            async with self._negotiating(member):
                answer, added, removed = await publisher.answer(info, offer.sdp, wanted)
        except Exception as exc:
            if publisher.closed and not member.media_failed:
                return  # the participant left while the offer was being answered
            if fresh and member.publisher is publisher:
                member.publisher = None
                await publisher.close()
            if isinstance(exc, ServiceError):
                raise
            log.exception("publish offer failed")
            raise ServiceError("internal", "the offer could not be answered") from None
        if member.publisher is not publisher or room.members.get(member.sid) is not member:
            return  # left while negotiating
        member.send({"type": "publish_answer", "sdp": answer})
        for track in removed:
            room.unpublish(track)
        for track in added:
            room.publish(track)

    def _unpublish(self, room: Room, member: Member, message: Unpublish) -> None:
        track_id = message.track
        track = member.publisher.unpublish(track_id) if member.publisher is not None else None
        if track is None:
            raise ServiceError("unknown_track", f"you publish no track {track_id}")
        room.unpublish(track)

    # --- subscribing ---------------------------------------------------------------------------

    async def _subscribe_answer(self, room: Room, member: Member, answer: SubscribeAnswer) -> None:
        sub = member.subscriber
        if sub is None:
            raise ServiceError("forbidden", "this token does not allow subscribing")
        sdp = answer.sdp
        self._charge(member, sdp)
        try:
            async with self._negotiating(member):
                await sub.on_answer(sdp)
        except ServiceError:
            raise
        except Exception:
            if sub.closed:
                return
            log.exception("subscribe answer failed")
            raise ServiceError("internal", "the answer could not be applied") from None
        if room.members.get(member.sid) is member and not sub.closed:
            room.subscriber_ready(sub)

    async def _update_subscription(self, room: Room, member: Member, update: UpdateSubscription) -> None:
        sub = member.subscriber
        if sub is None:
            raise ServiceError("forbidden", "this token does not allow subscribing")
        changes = update.tracks
        wanted = set(sub.video_subscriptions)
        for change in changes:
            track = room.tracks.get(change.track)
            if track is None:
                raise ServiceError("unknown_track", f"no track {change.track} in this room")
            if track.owner == member.sid:
                raise ServiceError("bad_field", "a participant does not subscribe to its own tracks")
            if track.kind != "video":
                continue
            if change.subscribe:
                wanted.add(track.id)
            else:
                wanted.discard(track.id)
        counted = [t for t in wanted if t in room.tracks and room.tracks[t].source != "screen"]
        if len(counted) > self._cfg.max_video_subscriptions:
            raise ServiceError(
                "too_many_subscriptions",
                f"at most {self._cfg.max_video_subscriptions} video tracks at once (screen shares excepted)",
            )
        screens = [t for t in wanted if t in room.tracks and room.tracks[t].source == "screen"]
        if len(screens) > MAX_SCREEN_SUBSCRIPTIONS:
            raise ServiceError(
                "too_many_subscriptions", f"at most {MAX_SCREEN_SUBSCRIPTIONS} screen shares at once"
            )
        need_offer = False
        map_changed = False
        for change in changes:
            track = room.tracks[change.track]
            if track.kind != "video":
                continue
            if change.subscribe:
                limits = LayerLimits(
                    max_width=change.max_width, max_height=change.max_height, paused=change.paused
                )
                known = track.id in sub.video_subscriptions
                need_offer |= sub.subscribe(track, limits)
                map_changed |= not known
            else:
                map_changed |= sub.unsubscribe(track.id)
        if need_offer:
            async with self._negotiating(member):
                await sub.negotiate()
        elif map_changed:
            sub.send_track_map()

    # --- ICE -----------------------------------------------------------------------------------

    async def _ice_candidate(self, member: Member, cand: IceCandidate) -> None:
        pc_owner = member.publisher if cand.target == "publish" else member.subscriber
        if pc_owner is None:
            raise ServiceError("bad_field", f"there is no {cand.target} connection yet")
        pc = pc_owner.pc
        transceivers = pc.getTransceivers()
        if not transceivers or transceivers[0].mid is None:
            raise ServiceError("bad_field", f"the {cand.target} connection is not negotiated yet")
        seconds = self._deadlines.media
        if cand.candidate is None:
            await within(seconds, pc.addIceCandidate(None), "ending the candidates")
            return
        try:
            parsed = parse_candidate(cand.candidate)
        except CandidateError as exc:
            raise ServiceError("bad_candidate", f"candidate refused: {exc}") from None
        if max(pc_owner.remote_candidates, remote_candidate_count(pc)) >= MAX_REMOTE_CANDIDATES:
            raise ServiceError(
                "too_many_candidates", f"a connection takes at most {MAX_REMOTE_CANDIDATES} remote candidates"
            )
        pc_owner.remote_candidates += 1
        candidate = RTCIceCandidate(
            component=parsed.component,
            foundation=parsed.foundation,
            ip=parsed.address,
            port=parsed.port,
            priority=parsed.priority,
            protocol=parsed.protocol,
            type=parsed.type,
            relatedAddress=parsed.related_address,
            relatedPort=parsed.related_port,
            tcpType=parsed.tcp_type,
            sdpMid=transceivers[0].mid,  # every m-line shares the first one's transport
            sdpMLineIndex=0,
        )
        try:
            await within(seconds, pc.addIceCandidate(candidate), "adding a candidate")
        except ServiceError:
            raise
        except Exception as exc:
            raise ServiceError("bad_candidate", f"candidate refused: {exc}") from None

    # --- internals -----------------------------------------------------------------------------

    def _charge(self, member: Member, sdp: str) -> None:
        """Pay for parsing a description from ``member`` (``SdpBudget``), before parsing it."""
        size = len(sdp)
        if member.budget is not None and not member.budget.charge(size, self._context().clock()):
            cfg = self._budget
            raise ServiceError(
                "rate_limited",
                f"at most {cfg.descriptions} descriptions and {cfg.chars // 1024} KiB of SDP per "
                f"{cfg.window:g} s; this one was not processed",
            )

    @contextlib.asynccontextmanager
    async def _negotiating(self, member: Member) -> AsyncIterator[None]:
        """One negotiation step of ``member`` at a time; waiting for the turn has the media
        deadline too, and a participant whose media was closed meanwhile gets no turn."""
        seconds = self._deadlines.media
        await within(seconds, member.lock.acquire(), "waiting for the previous negotiation")
        try:
            if member.media_failed:
                raise timed_out("an earlier media call", seconds)
            yield
        finally:
            member.lock.release()

    async def _drop_media(self, room: Room, member: Member) -> None:
        """A media call of ``member`` missed its deadline: close its connections for good (its
        signaling session stays; further media messages get ``media_timeout``)."""
        if member.media_failed:
            return
        member.media_failed = True
        log.warning("a media call of %s missed its deadline; its media connections are closed", member.sid)
        await self._close_member(room, member)
        member.publisher = member.subscriber = None

    def _context(self) -> MediaContext:
        if self._ctx is None:
            self._ctx = MediaContext(self._cfg, self.metrics, self._filters, self._deadlines)
        if self._ticker is None and not self._closed:
            self._ticker = asyncio.create_task(self._run_timers(), name="sfu-timers")
        return self._ctx

    async def _close_member(self, room: Room, member: Member) -> None:
        if member.publisher is not None:
            for track in list(member.publisher.tracks.values()):
                room.unpublish(track)
            await member.publisher.close()
        if member.subscriber is not None:
            await member.subscriber.close()

    def _shed(self, layers: int, now: float) -> None:
        """Hold every subscriber's video ``layers`` below the top (load shedding changed level)."""
        self.metrics.shed_layers.set(layers)
        if layers:
            log.warning("media went stale in the server: all video held %d layer(s) below the top", layers)
        else:
            log.warning("no stale media for a while: video as subscribers asked again")
        for room in list(self._rooms.values()):
            for member in list(room.members.values()):
                if member.subscriber is not None:
                    for fwd in list(member.subscriber.video_subscriptions.values()):
                        fwd.shed(layers, now)

    async def _run_timers(self) -> None:
        ctx = self._ctx
        if ctx is None:
            return
        last_flush = last = ctx.clock()
        while True:
            await asyncio.sleep(TICK)
            now = ctx.clock()
            elapsed, last = now - last, now
            for room in list(self._rooms.values()):
                try:
                    room.tick(now)
                except Exception:
                    log.exception("timer failed in room %s", room.name)
            shedding = ctx.load_shedding
            if shedding is not None:
                if shedding.level:
                    self.metrics.shed_layer_seconds.inc(shedding.level * elapsed)
                if shedding.update(now, ctx.shedding(), time.process_time()):
                    self._shed(shedding.level, now)
            if now - last_flush >= FLUSH_INTERVAL:
                last_flush = now
                self.metrics.flush()
