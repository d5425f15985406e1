"""Room state on this node: admin operations on rooms, joins and leaves with the exact seat cap,
and the local hub of connected peers that presence, chat and moderation go through.

Seats live in the Store (atomic cap, leases); the hub holds only what is connected here. A room is
served by one node, so a room's peers are all in this hub.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from . import text
from .errors import ServiceError, not_found
from .metrics import Metrics
from .signaling.messages import encode
from .signaling.messages import error as error_message
from .store import ROOM_CAP, ClaimResult, Participant, Room, RoomExistsError, RoomUpdate, Store

log = logging.getLogger("confserver.rooms")

ROOM_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_METADATA_BYTES = 4096
MAX_EMPTY_TIMEOUT = 7 * 86400
DEFAULT_STATE: Mapping[str, bool] = {"audio_muted": False, "video_muted": False, "hand_raised": False}
REJOIN_GRACE = 120.0
"""Seconds after an unplanned disconnect during which the same identity may rejoin a locked room."""
UNPLANNED = frozenset({"disconnected", "error", "slow_consumer", "too_large", "rate_limited", "seat_lost"})
CLOSE_SEAT_LOST = 4011
"""Close code after ``error seat_lost``: the seat lapsed (a store outage longer than the seat lease)
and could not be taken again. The client may reconnect; its join is then admitted or refused."""
MAX_KNOWN_ROOMS = 10_000
"""Room names this node remembers having seen in the store (to refuse re-creating them with default
settings after the store lost its state); the oldest are forgotten first."""


class Peer(Protocol):
    """What a connected session offers the room: non-blocking sends and a close."""

    sid: str

    def send_text(self, text: str) -> None:
        """Queue an encoded message; never blocks (a peer that cannot keep up is dropped)."""

    def close_with(self, msg: Mapping[str, Any], close_code: int) -> None:
        """Queue a last message, then close the connection."""


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


@dataclass
class _LocalRoom:
    peers: dict[str, Peer]
    participants: dict[str, Participant]
    jtis: dict[str, str]
    """sid -> id of the token the session joined with (to disconnect on revocation)."""


def check_room_name(name: object) -> str:
    if not isinstance(name, str) or not ROOM_NAME_RE.fullmatch(name):
        raise ServiceError("invalid_room_name", "room names are 1-64 characters of A-Z a-z 0-9 _ -")
    return name


def check_max_participants(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= ROOM_CAP:
        raise ServiceError("invalid_field", f"max_participants must be an integer from 1 to {ROOM_CAP}")
    return value


def check_empty_timeout(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EMPTY_TIMEOUT:
        raise ServiceError(
            "invalid_field", f"empty_timeout must be an integer from 0 to {MAX_EMPTY_TIMEOUT} seconds"
        )
    return value


def check_metadata(value: object) -> dict[str, Any]:
    """Room metadata is sent to every participant in ``joined``: it must encode as UTF-8 JSON
    (no lone surrogate, only finite numbers, nesting within ``text.MAX_DEPTH``)."""
    if not isinstance(value, dict):
        raise ServiceError("invalid_field", "metadata must be a JSON object")
    try:
        text.check(value)
    except text.UnsafeJson as e:
        raise ServiceError("invalid_field", f"metadata: {e.message}") from None
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ServiceError("invalid_field", f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return value


def room_info(room: Room) -> dict[str, Any]:
    """A room as clients see it in signaling."""
    return {
        "name": room.name,
        "max_participants": room.max_participants,
        "metadata": dict(room.metadata),
        "locked": room.locked,
    }


def participant_info(p: Participant) -> dict[str, Any]:
    return {
        "sid": p.sid,
        "identity": p.identity,
        "name": p.name,
        "role": p.role,
        "permissions": sorted(p.permissions),
        "joined_at": int(p.joined_at),
        "state": {**DEFAULT_STATE, **p.state},
    }


_CLAIM_REFUSALS: Mapping[ClaimResult, tuple[str, str, int]] = {
    ClaimResult.ROOM_FULL: ("room_full", "the room is full", 409),
    ClaimResult.ROOM_NOT_FOUND: ("room_not_found", "the room does not exist", 404),
    ClaimResult.ROOM_LOCKED: ("room_locked", "the room is locked", 403),
    ClaimResult.DUPLICATE: ("duplicate_session", "this session already holds a seat", 409),
}


def claim_error(result: ClaimResult) -> ServiceError:
    """A new error for a refused claim. Never keep and re-raise one instance: each raise adds its
    frames to the instance's traceback, which would keep every refused session alive."""
    code, message, status = _CLAIM_REFUSALS[result]
    return ServiceError(code, message, status)


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
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._node = node
        self._auto_create = auto_create
        self._default_max = default_max_participants
        self._auto_timeout = auto_created_empty_timeout
        self._lease = seat_lease
        self._rooms: dict[str, _LocalRoom] = {}
        self._dropped: dict[tuple[str, str], float] = {}
        """(room, identity) -> when its connection ended unplanned: it may rejoin a locked room."""
        self._removed: set[tuple[str, str]] = set()
        """(room, identity) removed by a moderator: not admitted again while the room lives here."""
        self._known: dict[str, None] = {}
        """Rooms seen in the store (oldest first, at most ``MAX_KNOWN_ROOMS``). If the store loses
        its state, a join for one of them is refused instead of re-creating it with defaults."""
        self._store_lost = False

    # --- the store's state ---------------------------------------------------------------------

    async def store_intact(self) -> bool:
        """``False`` once the store lost its state (see ``Store.state_intact``); checked every
        heartbeat and before auto-creating a room this node has seen."""
        intact = await self._store.state_intact(time.time())
        if not intact and not self._store_lost:
            self._store_lost = True
            log.error(
                "the store lost its state: rooms this node knew are not re-created automatically",
                extra={"known_rooms": len(self._known)},
            )
        return intact

    def _remember(self, *names: str) -> None:
        for name in names:
            self._known.pop(name, None)
            self._known[name] = None
        while len(self._known) > MAX_KNOWN_ROOMS:
            del self._known[next(iter(self._known))]

    def _forget(self, name: str) -> None:
        self._known.pop(name, None)

    # --- admin operations -------------------------------------------------------------------

    async def create_room(
        self, name: str, *, max_participants: int | None, empty_timeout: int, metadata: Mapping[str, Any]
    ) -> Room:
        now = time.time()
        room = Room(
            name=check_room_name(name),
            max_participants=self._default_max if max_participants is None else max_participants,
            empty_timeout=empty_timeout,
            metadata=check_metadata(dict(metadata)),
            created_at=now,
            updated_at=now,
        )
        try:
            await self._store.rooms.create(room)
        except RoomExistsError:
            raise ServiceError("room_exists", f"a room named {name} exists already", 409) from None
        self._remember(room.name)
        log.info("room created", extra={"room": name})
        return room

    async def get_room(self, name: str) -> Room:
        room = await self._store.rooms.get(check_room_name(name))
        if room is None:
            raise not_found("room_not_found", f"no room named {name}")
        self._remember(room.name)
        return room

    async def list_rooms(self) -> list[Room]:
        rooms = await self._store.rooms.list()
        self._remember(*(r.name for r in rooms[-MAX_KNOWN_ROOMS:]))
        return rooms

    async def count(self, name: str) -> int:
        return await self._store.seats.count(name, time.time())

    async def update_room(self, name: str, changes: RoomUpdate) -> Room:
        if changes.metadata is not None:
            check_metadata(dict(changes.metadata))
        room = await self._store.rooms.update(check_room_name(name), changes, time.time())
        if room is None:
            raise not_found("room_not_found", f"no room named {name}")
        self._remember(room.name)
        self.broadcast(name, {"type": "room_updated", "room": room_info(room)})
        log.info("room updated", extra={"room": name})
        return room

    async def delete_room(self, name: str, reason: str = "deleted") -> None:
        if not await self._store.rooms.delete(check_room_name(name)):
            raise not_found("room_not_found", f"no room named {name}")
        self._forget(name)
        self.close_local_room(name, reason)
        log.info("room deleted", extra={"room": name, "reason": reason})

    def close_local_room(self, name: str, reason: str) -> None:
        self._removed = {key for key in self._removed if key[0] != name}
        local = self._rooms.pop(name, None)
        if local is None:
            return
        msg = {"type": "room_closed", "reason": reason}
        for peer in list(local.peers.values()):
            peer.close_with(msg, 4002)
        self._update_gauges()

    async def participants(self, room: str) -> list[Participant]:
        await self.get_room(room)
        return await self._store.seats.list(room, time.time())

    async def find_participant(self, room: str, identity: str) -> Participant:
        for p in await self.participants(room):
            if p.identity == identity:
                return p
        raise not_found("participant_not_found", f"no participant {identity} in room {room}")

    # --- joins and leaves -------------------------------------------------------------------

    async def join(self, req: JoinRequest, peer: Peer) -> tuple[Room, Participant, list[Participant]]:
        """Take a seat (exact cap), register the peer here and tell the others."""
        now = time.time()
        if (req.room, req.identity) in self._removed:
            raise ServiceError("removed", "a moderator removed you from this meeting", 403)
        existing = self._local_by_identity(req.room, req.identity)
        dropped_at = self._dropped.pop((req.room, req.identity), None)
        # Someone coming back (a second tab, or after a network blip) returns to a locked room.
        rejoining = existing is not None or (dropped_at is not None and now - dropped_at < REJOIN_GRACE)
        if existing is not None:
            # The same identity joins again (a reload, a second device): the new session replaces
            # the old one, as a reconnect would.
            self._kick_local(
                req.room, existing, "duplicate_identity", "you joined from another session", by=""
            )
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
        if self._auto_create and (req.room not in self._known or await self.store_intact()):
            auto = Room(
                name=req.room,
                max_participants=self._default_max,
                empty_timeout=self._auto_timeout,
                metadata={},
                created_at=now,
                updated_at=now,
                auto_created=True,
            )
        result = await self._store.seats.claim(
            participant, now=now, lease=self._lease, auto_create=auto, bypass_lock=rejoining
        )
        if result is not ClaimResult.ADMITTED:
            raise claim_error(result)
        room = await self._store.rooms.get(req.room)
        if room is None:  # deleted between claim and read
            await self._store.seats.release(req.room, req.sid, now)
            raise claim_error(ClaimResult.ROOM_NOT_FOUND)
        self._remember(room.name)
        others = [p for p in await self._store.seats.list(req.room, now) if p.sid != req.sid]
        local = self._rooms.setdefault(req.room, _LocalRoom(peers={}, participants={}, jtis={}))
        self.broadcast(req.room, {"type": "participant_joined", "participant": participant_info(participant)})
        local.peers[req.sid] = peer
        local.participants[req.sid] = participant
        local.jtis[req.sid] = req.jti
        self._update_gauges()
        log.info("participant joined", extra={"room": req.room, "sid": req.sid, "identity": req.identity})
        return room, participant, others

    async def leave(self, room: str, sid: str, reason: str) -> None:
        """Free the seat and tell the others; safe to call twice."""
        local = self._rooms.get(room)
        participant = None
        if local is not None:
            local.peers.pop(sid, None)
            participant = local.participants.pop(sid, None)
            local.jtis.pop(sid, None)
            if not local.peers:
                del self._rooms[room]
        self._update_gauges()
        await self._store.seats.release(room, sid, time.time())
        if participant is not None:
            if reason in UNPLANNED:
                self._dropped[(room, participant.identity)] = time.time()
            self.broadcast(
                room,
                {"type": "participant_left", "sid": sid, "identity": participant.identity, "reason": reason},
            )
            log.info("participant left", extra={"room": room, "sid": sid, "reason": reason})

    async def refresh_leases(self) -> None:
        """Extend the seats held by this node's connections (run every heartbeat interval).

        After a store outage longer than the lease, seats have lapsed and others may have taken
        them: each connection here without a seat claims one again (earliest joined first, the cap
        and the store's atomic claim hold, the lock is bypassed since they were in). One that
        cannot be seated is closed with ``error seat_lost``; the room never holds more than its cap.
        """
        await self.store_intact()
        now = time.time()
        for name, local in list(self._rooms.items()):
            lost = await self._store.seats.refresh(name, list(local.peers), now=now, lease=self._lease)
            if lost:
                await self._reseat(name, lost, now)

    async def _reseat(self, room: str, sids: Iterable[str], now: float) -> None:
        local = self._rooms.get(room)
        if local is None:
            return
        waiting = [local.participants[sid] for sid in sids if sid in local.participants]
        waiting.sort(key=lambda p: (p.joined_at, p.sid))
        for p in waiting:
            peer = local.peers.get(p.sid)
            if peer is None:  # left while we waited for the store
                continue
            result = await self._store.seats.claim(p, now=now, lease=self._lease, bypass_lock=True)
            if result is ClaimResult.DUPLICATE:  # seated meanwhile
                continue
            if result is ClaimResult.ADMITTED:
                log.warning("seat taken again after its lease lapsed", extra={"room": room, "sid": p.sid})
                continue
            message = (
                "the room no longer exists"
                if result is ClaimResult.ROOM_NOT_FOUND
                else "your seat lapsed during a server outage and the room is now full"
            )
            log.warning(
                "closing a session that lost its seat",
                extra={"room": room, "sid": p.sid, "result": result.value},
            )
            peer.close_with(error_message("seat_lost", message), CLOSE_SEAT_LOST)

    async def close_expired_rooms(self) -> list[str]:
        now = time.time()
        self._dropped = {k: t for k, t in self._dropped.items() if now - t < REJOIN_GRACE}
        closed = await self._store.rooms.close_expired(now)
        for name in closed:
            self._forget(name)
            self.close_local_room(name, "empty_timeout")
            log.info("room closed after empty timeout", extra={"room": name})
        return closed

    # --- presence, chat, moderation ---------------------------------------------------------

    def local_participants(self, room: str) -> Iterable[Participant]:
        local = self._rooms.get(room)
        return list(local.participants.values()) if local else []

    def peer(self, room: str, sid: str) -> Peer | None:
        local = self._rooms.get(room)
        return local.peers.get(sid) if local else None

    def broadcast(self, room: str, msg: Mapping[str, Any], exclude: str | None = None) -> None:
        local = self._rooms.get(room)
        if local is None:
            return
        text = encode(msg)  # encoded once for all recipients
        for sid, peer in list(local.peers.items()):
            if sid != exclude:
                peer.send_text(text)

    def send_to_identity(self, room: str, identity: str, msg: Mapping[str, Any]) -> bool:
        p = self._local_by_identity(room, identity)
        if p is None:
            return False
        peer = self.peer(room, p.sid)
        if peer is None:
            return False
        peer.send_text(encode(msg))
        return True

    async def update_state(
        self, room: str, sid: str, state: Mapping[str, bool], name: str | None = None
    ) -> Participant | None:
        local = self._rooms.get(room)
        current = local.participants.get(sid) if local is not None else None
        if local is None or current is None:
            return None
        stored = await self._store.seats.update_state(room, sid, state)
        merged_state = stored.state if stored is not None else {**current.state, **state}
        # The display name lives with the connection; the store keeps the token's name.
        merged = replace(current, state={**DEFAULT_STATE, **merged_state}, name=name or current.name)
        local.participants[sid] = merged
        self.broadcast(room, {"type": "participant_updated", "participant": participant_info(merged)})
        return merged

    async def mute(self, room: str, identity: str, kind: str, by: str) -> Participant:
        """Mute a participant's audio or video. Forced unmute is not offered: a moderator may only
        ask (privacy), which the session does with ``unmute_requested``."""
        target = await self.find_participant(room, identity)
        key = "audio_muted" if kind == "audio" else "video_muted"
        self.send_to_identity(room, identity, {"type": "muted", "kind": kind, "by": by})
        updated = await self.update_state(room, target.sid, {key: True})
        if updated is None:
            stored = await self._store.seats.update_state(room, target.sid, {key: True})
            if stored is None:
                raise not_found("participant_not_found", f"no participant {identity} in room {room}")
            updated = stored
        log.info("participant muted", extra={"room": room, "identity": identity, "kind": kind, "by": by})
        return updated

    async def kick(self, room: str, identity: str, by: str) -> None:
        target = await self.find_participant(room, identity)
        self._removed.add((room, identity))
        local_p = self._local_by_identity(room, identity)
        if local_p is not None:
            self._kick_local(room, local_p, "removed", f"removed by {by}", by=by)
        await self.leave(room, target.sid, "removed")
        log.info("participant removed", extra={"room": room, "identity": identity, "by": by})

    def disconnect_token(self, jti: str) -> int:
        """Close every session here that joined with the token ``jti`` (it was revoked)."""
        closed = 0
        for local in self._rooms.values():
            for sid, token_id in list(local.jtis.items()):
                peer = local.peers.get(sid)
                if token_id == jti and peer is not None:
                    peer.close_with(
                        {"type": "kicked", "reason": "token_revoked", "message": "access revoked"}, 4001
                    )
                    closed += 1
        return closed

    def _kick_local(self, room: str, p: Participant, reason: str, message: str, *, by: str) -> None:
        peer = self.peer(room, p.sid)
        if peer is not None:
            msg = {"type": "kicked", "reason": reason, "message": message}
            if by:
                msg["by"] = by
            peer.close_with(msg, 4001)

    def _local_by_identity(self, room: str, identity: str) -> Participant | None:
        local = self._rooms.get(room)
        if local is None:
            return None
        for p in local.participants.values():
            if p.identity == identity:
                return p
        return None

    def _update_gauges(self) -> None:
        self._metrics.rooms.set(len(self._rooms))
        self._metrics.participants.set(sum(len(r.peers) for r in self._rooms.values()))
