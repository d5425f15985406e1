"""``RoomService``: what needs both the rooms in the store and the peers connected here.

Joins and leaves take and free seats in the store (the exact cap is the store's atomic claim) and
put them in the hub; leases are refreshed, and re-taken after an outage; kicks, mutes, room updates
and deletions change the store and tell the people connected; rooms left empty close after their
timeout. The time comes from ``clock``, so the rejoin grace and empty timeouts are tested without
waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from ..access import FailureLimiter
from ..audit import Actor
from ..audit.log import AuditLog
from ..errors import ServiceError, not_found
from ..metrics import Metrics
from ..signaling.messages import CloseCode, encode
from ..signaling.messages import error as error_message
from ..store import ClaimResult, Participant, Room, RoomUpdate, Store
from ..webhooks import EventParticipant, Webhooks
from .admin import RoomAdmin, claim_error, room_info
from .hub import DEFAULT_STATE, Hub, Peer, Seat, participant_info
from .lobby import Enter, Lobby


class Placement(Protocol):
    async def hold(self, room: str) -> None: ...

    async def confirm(self, room: str) -> None: ...

log = logging.getLogger("confserver.rooms")

MODERATE = "moderate"
REJOIN_GRACE = 120.0
"""Seconds after an unplanned disconnect during which the same identity may rejoin a locked room."""
UNPLANNED = frozenset({"disconnected", "error", "slow_consumer", "too_large", "rate_limited", "seat_lost"})


@dataclass(frozen=True)
class JoinRequest:
    room: str
    sid: str
    identity: str
    name: str
    role: str
    permissions: frozenset[str]
    state: Mapping[str, bool]
    jti: str = ""


class RoomService:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        node: str,
        auto_create: bool,
        default_max_participants: int,
        auto_created_empty_timeout: int,
        seat_lease: float,
        clock: Callable[[], float] = time.time,
        webhooks: Webhooks | None = None,
        audit: AuditLog | None = None,
        lobby_max: int = 100,
        lobby_knocks_per_minute: int = 10,
        e2ee_default: bool = False,
    ) -> None:
        self.admin = RoomAdmin(
            store, default_max_participants=default_max_participants, default_e2ee=e2ee_default, clock=clock
        )
        self.hub = Hub(metrics)
        self._store = store
        self._clock = clock
        self._node = node
        self._auto_create = auto_create
        self._default_max = default_max_participants
        self._auto_timeout = auto_created_empty_timeout
        self._lease = seat_lease
        self._dropped: dict[tuple[str, str], float] = {}
        """(room, identity) -> when its connection ended unplanned: it may rejoin a locked room."""
        self._removed: set[tuple[str, str]] = set()
        """(room, identity) removed by a moderator: not admitted again while the room lives here."""
        self._webhooks = webhooks
        self.lobby = Lobby(
            max_waiting=lobby_max, knocks_per_minute=lobby_knocks_per_minute, grace=REJOIN_GRACE, clock=clock
        )
        self.password_failures = FailureLimiter(clock=clock)
        """Wrong room passwords per (room, identity) and per (room, address): five a minute."""
        self.audit = audit or AuditLog(None, None, metrics, node=node)
        """Where joins, leaves and moderation are recorded (by the callers that know who acted)."""
        self._started: set[str] = set()
        """Rooms whose ``room_started`` webhook was sent (at their first join here), until they close."""
        self.placement: Placement | None = None
        """Which node serves each room (several nodes); ``None``: this one serves every room."""

    async def store_intact(self) -> bool:
        return await self.admin.store_intact()

    # --- which node serves the room -------------------------------------------------------------

    async def hold(self, room: str) -> None:
        """Before anyone joins or knocks here: this node serves ``room``. Raises ``ServiceError``
        ``try_again`` when another node does (the client reconnects)."""
        if self.placement is not None:
            await self.placement.hold(room)

    def present(self, room: str) -> bool:
        """Whether anyone is in ``room`` here, seated or waiting in its lobby."""
        return bool(self.hub.seats(room)) or bool(self.lobby.waiting(room))

    async def adopt(self, room: str) -> None:
        """This node took ``room`` over from a dead one: free the seats the dead node held (every
        seat of a room is held by the node serving it) and let their holders back in as people
        returning after a drop (through a lock, past the lobby)."""
        now = self._clock()
        for p in await self._store.seats.list(room, now):
            if p.node != self._node:
                await self._store.seats.release(room, p.sid, now)
                self._dropped[(room, p.identity)] = now

    def moved_away(self, room: str) -> None:
        """Another node serves ``room`` now: everyone here reconnects, and lands there."""
        msg = error_message("try_again", "this meeting moved to another server; reconnecting")
        for seat in self.hub.seats(room):
            seat.peer.close_with(msg, CloseCode.TRY_AGAIN)
        for waiter in self.lobby.waiting(room):
            if waiter.peer is not None:
                waiter.peer.close_with(msg, CloseCode.TRY_AGAIN)

    # --- joins and leaves -------------------------------------------------------------------

    async def join(self, req: JoinRequest, peer: Peer) -> tuple[Room, Participant, list[Participant]]:
        """Take a seat (exact cap), register the peer here and tell the others."""
        now = self._clock()
        if (req.room, req.identity) in self._removed:
            raise ServiceError("removed", "a moderator removed you from this meeting", 403)
        existing = self.hub.by_identity(req.room, req.identity)
        dropped_at = self._dropped.pop((req.room, req.identity), None)
        # Someone coming back (a second tab, or after a network blip) returns to a locked room.
        rejoining = existing is not None or (dropped_at is not None and now - dropped_at < REJOIN_GRACE)
        if existing is not None:
            # The same identity joins again (a reload, a second device): the new session replaces
            # the old one, as a reconnect would.
            self.hub.kick(existing, "duplicate_identity", "you joined from another session")
            await self.leave(req.room, existing.sid, "replaced")
        participant = Participant(
            room=req.room,
            sid=req.sid,
            identity=req.identity,
            name=req.name,
            role=req.role,
            permissions=tuple(sorted(req.permissions)),
            joined_at=now,
            node=self._node,
            state={**DEFAULT_STATE, **req.state},
        )
        auto = None
        # A room this node has seen is not re-created from defaults once the store lost it
        # (its cap, lock and settings would silently be replaced).
        if self._auto_create and (not self.admin.known(req.room) or await self.admin.store_intact()):
            auto = Room(
                name=req.room,
                max_participants=self._default_max,
                empty_timeout=self._auto_timeout,
                metadata={},
                created_at=now,
                updated_at=now,
                auto_created=True,
                e2ee=self.admin.default_e2ee,
            )
        result = await self._store.seats.claim(
            participant, now=now, lease=self._lease, auto_create=auto, bypass_lock=rejoining
        )
        if result is not ClaimResult.ADMITTED:
            raise claim_error(result)
        if self.placement is not None:
            try:
                await self.placement.confirm(req.room)  # a node taken for dead keeps no new seat
            except ServiceError:
                await self._store.seats.release(req.room, req.sid, now)
                raise
        room = await self._store.rooms.get(req.room)
        if room is None:  # deleted between claim and read
            await self._store.seats.release(req.room, req.sid, now)
            raise claim_error(ClaimResult.ROOM_NOT_FOUND)
        self.admin.remember(room.name)
        others = [p for p in await self._store.seats.list(req.room, now) if p.sid != req.sid]
        joined = {"type": "participant_joined", "participant": participant_info(participant)}
        self.hub.broadcast(req.room, joined)
        self.hub.add(Seat(peer=peer, participant=participant, jti=req.jti))
        if MODERATE in participant.permissions:
            self._moderators_changed(req.room)
        if req.room not in self._started:
            self._started.add(req.room)
            self._emit("room_started", req.room)
        self._emit("participant_joined", req.room, participant)
        log.info("participant joined", extra={"room": req.room, "sid": req.sid, "identity": req.identity})
        return room, participant, others

    async def leave(self, room: str, sid: str, reason: str) -> None:
        """Free the seat and tell the others; safe to call twice."""
        seat = self.hub.remove(room, sid)
        await self._store.seats.release(room, sid, self._clock())
        if seat is not None:
            identity = seat.participant.identity
            if reason in UNPLANNED:
                self._dropped[(room, identity)] = self._clock()
            self.hub.broadcast(
                room, {"type": "participant_left", "sid": sid, "identity": identity, "reason": reason}
            )
            self._left(room, seat.participant, reason)
            if MODERATE in seat.participant.permissions:
                self._moderators_changed(room)
            log.info("participant left", extra={"room": room, "sid": sid, "reason": reason})

    async def refresh_leases(self) -> None:
        """Extend the seats held by this node's connections (run every heartbeat interval).

        After a store outage longer than the lease, seats have lapsed and others may have taken
        them: each connection here without a seat claims one again (earliest joined first, the cap
        and the store's atomic claim hold, the lock is bypassed since they were in). One that
        cannot be seated is closed with ``error seat_lost``; the room never holds more than its cap.
        """
        await self.admin.store_intact()
        now = self._clock()
        for name in self.hub.rooms():
            sids = [seat.sid for seat in self.hub.seats(name)]
            lost = await self._store.seats.refresh(name, sids, now=now, lease=self._lease)
            if lost:
                await self._reseat(name, lost, now)

    async def _reseat(self, room: str, sids: Iterable[str], now: float) -> None:
        try:
            await self.hold(room)  # never take seats again in a room another node serves now
        except ServiceError:
            self.moved_away(room)
            return
        waiting = [seat for sid in sids if (seat := self.hub.seat(room, sid)) is not None]
        waiting.sort(key=lambda s: (s.participant.joined_at, s.sid))
        for seat in waiting:
            if self.hub.seat(room, seat.sid) is not seat:  # left while we waited for the store
                continue
            result = await self._store.seats.claim(
                seat.participant, now=now, lease=self._lease, bypass_lock=True
            )
            if result is ClaimResult.DUPLICATE:  # seated meanwhile
                continue
            if result is ClaimResult.ADMITTED:
                log.warning("seat taken again after its lease lapsed", extra={"room": room, "sid": seat.sid})
                continue
            message = (
                "the room no longer exists"
                if result is ClaimResult.ROOM_NOT_FOUND
                else "your seat lapsed during a server outage and the room is now full"
            )
            log.warning(
                "closing a session that lost its seat",
                extra={"room": room, "sid": seat.sid, "result": result.value},
            )
            seat.peer.close_with(error_message("seat_lost", message), CloseCode.SEAT_LOST)

    async def close_expired_rooms(self) -> list[str]:
        """Close the rooms left empty for their ``empty_timeout``; forget rejoin grace that ran out."""
        now = self._clock()
        self._dropped = {k: t for k, t in self._dropped.items() if now - t < REJOIN_GRACE}
        for room in self.lobby.expire():
            self._lobby_changed(room)
        closed = await self.admin.close_expired_rooms()
        for name in closed:
            self._close_here(name, "empty_timeout")
            log.info("room closed after empty timeout", extra={"room": name})
        return closed

    # --- rooms changed by admins and moderators ------------------------------------------------

    async def update_room(self, name: str, changes: RoomUpdate) -> Room:
        room = await self.admin.update_room(name, changes)
        self.hub.broadcast(name, {"type": "room_updated", "room": room_info(room)})
        log.info("room updated", extra={"room": name})
        return room

    async def delete_room(self, name: str, reason: str = "deleted") -> None:
        await self.admin.delete_room(name)
        self._close_here(name, reason)
        log.info("room deleted", extra={"room": name, "reason": reason})

    def _close_here(self, name: str, reason: str) -> None:
        self._removed = {key for key in self._removed if key[0] != name}
        for seat in self.hub.seats(name):
            self._left(name, seat.participant, "room_closed")
        for waiter in self.lobby.close_room(name):
            if waiter.peer is not None:
                waiter.peer.close_with({"type": "room_closed", "reason": reason}, CloseCode.ROOM_CLOSED)
        self.hub.close_room(name, reason)
        if name in self._started:
            self._started.discard(name)
            self._emit("room_finished", name, reason=reason)

    # --- presence and moderation ----------------------------------------------------------------

    async def update_state(
        self, room: str, sid: str, state: Mapping[str, bool], name: str | None = None
    ) -> Participant | None:
        seat = self.hub.seat(room, sid)
        if seat is None:
            return None
        current = seat.participant
        stored = await self._store.seats.update_state(room, sid, state)
        merged_state = stored.state if stored is not None else {**current.state, **state}
        # The display name lives with the connection; the store keeps the token's name.
        merged = replace(current, state={**DEFAULT_STATE, **merged_state}, name=name or current.name)
        seat.participant = merged
        self.hub.broadcast(room, {"type": "participant_updated", "participant": self.hub.describe(merged)})
        return merged

    async def mute(self, room: str, identity: str, kind: str, by: str) -> Participant:
        """Mute a participant's audio or video. Forced unmute is not offered: a moderator may only
        ask (privacy), which the session does with ``unmute_requested``."""
        target = await self.admin.find_participant(room, identity)
        key = "audio_muted" if kind == "audio" else "video_muted"
        self.hub.send_to_identity(room, identity, {"type": "muted", "kind": kind, "by": by})
        updated = await self.update_state(room, target.sid, {key: True})
        if updated is None:
            stored = await self._store.seats.update_state(room, target.sid, {key: True})
            if stored is None:
                raise not_found("participant_not_found", f"no participant {identity} in room {room}")
            updated = stored
        log.info("participant muted", extra={"room": room, "identity": identity, "kind": kind, "by": by})
        return updated

    async def kick(self, room: str, identity: str, by: str) -> None:
        target = await self.admin.find_participant(room, identity)
        self._removed.add((room, identity))
        seat = self.hub.by_identity(room, identity)
        if seat is not None:
            self.hub.kick(seat, "removed", f"removed by {by}", by=by)
        self._emit("participant_removed", room, seat.participant if seat is not None else target, by=by)
        await self.leave(room, target.sid, "removed")
        log.info("participant removed", extra={"room": room, "identity": identity, "by": by})

    # --- the lobby -----------------------------------------------------------------------------

    def returning(self, room: str, identity: str) -> bool:
        """Whether this identity is in the room here, or dropped out of it within the rejoin
        grace: it comes back without waiting in the lobby (and through a lock)."""
        dropped_at = self._dropped.get((room, identity))
        recent = dropped_at is not None and self._clock() - dropped_at < REJOIN_GRACE
        return recent or self.hub.by_identity(room, identity) is not None

    def moderators(self, room: str) -> int:
        return sum(MODERATE in seat.participant.permissions for seat in self.hub.seats(room))

    async def wait(self, req: JoinRequest, peer: Peer, enter: Enter) -> bool:
        """Wait in the lobby; ``True`` when admitted already (while away): entered now."""
        before = self.lobby.get(req.room, req.identity)
        if before is not None and before.peer is not None and before.sid != req.sid:
            # the same identity knocks from another tab: it takes the place, the old tab is closed
            before.peer.close_with(
                {
                    "type": "kicked",
                    "reason": "duplicate_identity",
                    "message": "you joined from another session",
                },
                CloseCode.REMOVED,
            )
        waiter = self.lobby.knock(req.room, req.identity, req.name, req.sid, peer, enter)
        if waiter.admitted:
            self.lobby.take(req.room, req.identity)
            await enter()
            self._lobby_changed(req.room)
            return True
        peer.send_text(
            encode(
                {
                    "type": "lobby",
                    "room": {"name": req.room},
                    "self": {"identity": req.identity, "name": req.name},
                    "moderators": self.moderators(req.room),
                }
            )
        )
        self._lobby_changed(req.room)
        return False

    async def admit(self, room: str, identity: str, by: str) -> None:
        """Let a waiter in: it takes a seat (``room_full`` keeps it waiting). One who is away is
        marked admitted and enters when back."""
        waiter = self.lobby.get(room, identity)
        if waiter is None:
            raise not_found("participant_not_found", f"no one named {identity} is waiting to enter")
        if waiter.enter is None:
            waiter.admitted = True
            self._lobby_changed(room)
            return
        self.lobby.take(room, identity)
        try:
            await waiter.enter()
        except ServiceError:
            self.lobby.put_back(waiter)  # still waiting, in the same place: nothing to tell
            raise
        seat = self.hub.by_identity(room, identity)
        self._emit("participant_admitted", room, seat.participant if seat is not None else None, by=by)
        self._lobby_changed(room)

    def deny(self, room: str, identity: str, by: str) -> None:
        waiter = self.lobby.take(room, identity)
        if waiter.peer is not None:
            waiter.peer.close_with(
                error_message("lobby_denied", "a moderator did not let you into this meeting", "join"),
                CloseCode.JOIN_REFUSED,
            )
        who = Participant(room, waiter.sid, waiter.identity, waiter.name, "", (), waiter.since, self._node)
        self._emit("participant_denied", room, who, by=by)
        self._lobby_changed(room)

    def quit_lobby(self, room: str, sid: str) -> None:
        """A waiter gave up (``leave``): its place goes."""
        waiter = next((w for w in self.lobby.waiting(room) if w.sid == sid), None)
        if waiter is not None:
            self.lobby.take(room, waiter.identity)
            self._lobby_changed(room)

    def lobby_left(self, room: str, sid: str) -> None:
        """A waiter's connection ended: its place is kept for the rejoin grace."""
        if self.lobby.away(room, sid) is not None:
            self._lobby_changed(room)

    def lobby_message(self, room: str) -> dict[str, object]:
        return {"type": "lobby_updated", "waiting": [w.info() for w in self.lobby.waiting(room)]}

    def _lobby_changed(self, room: str) -> None:
        text = encode(self.lobby_message(room))
        for seat in self.hub.seats(room):
            if MODERATE in seat.participant.permissions:
                seat.peer.send_text(text)

    def _moderators_changed(self, room: str) -> None:
        """Tell the waiters how many moderators can let them in now."""
        text = encode({"type": "lobby_status", "moderators": self.moderators(room)})
        for waiter in self.lobby.waiting(room):
            if waiter.peer is not None:
                waiter.peer.send_text(text)

    # --- webhooks and the audit log ------------------------------------------------------------

    def _left(self, room: str, p: Participant, reason: str) -> None:
        """Once per participant who leaves: the webhook and the audit entry."""
        self._emit("participant_left", room, p, reason=reason)
        self.audit.record(
            "participant.leave",
            actor=Actor("participant", p.identity, p.name),
            reason=reason,
            room=room,
            conf={"sid": p.sid},
        )

    def _emit(
        self, type_: str, room: str, participant: Participant | None = None, *, reason: str = "", by: str = ""
    ) -> None:
        """Queue a webhook event (never waits: the sender delivers it in the background)."""
        if self._webhooks is None:
            return
        who = (
            None
            if participant is None
            else EventParticipant(sid=participant.sid, identity=participant.identity, name=participant.name)
        )
        self._webhooks.emit(type_, room, who, reason=reason, by=by)
