"""The hub of the peers connected to this node: one ``Seat`` per connection seated here.

Presence, chat and moderation reach people through the hub: a broadcast to a room, a message to
one identity, a peer closed because it was removed, replaced or its token revoked. Sends never
block (``Peer.send_text`` queues or drops the peer). A room is served by one node, so a room's
peers are all in this hub. The hub keeps the ``rooms`` and ``participants`` gauges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..metrics import Metrics
from ..signaling.messages import CloseCode, encode
from ..store import Participant

DEFAULT_STATE: Mapping[str, bool] = {"audio_muted": False, "video_muted": False, "hand_raised": False}


class Peer(Protocol):
    """What a connected session offers the room: non-blocking sends and a close."""

    sid: str

    def send_text(self, text: str) -> None:
        """Queue an encoded message; never blocks (a peer that cannot keep up is dropped)."""

    def close_with(self, msg: Mapping[str, Any], close_code: int) -> None:
        """Queue a last message, then close the connection."""


@dataclass(slots=True)
class Seat:
    """One connection seated in a room on this node. ``participant`` changes with the person's
    state and display name; the peer and the token id stay."""

    peer: Peer
    participant: Participant
    jti: str = ""
    """The id of the token the session joined with (to disconnect it on revocation)."""
    e2ee_key: str = ""
    """The identity public key announced with ``e2ee_identity`` (E2EE rooms); kept here only."""

    @property
    def sid(self) -> str:
        return self.participant.sid


def participant_info(p: Participant, e2ee_key: str = "") -> dict[str, Any]:
    info = {
        "sid": p.sid,
        "identity": p.identity,
        "name": p.name,
        "role": p.role,
        "permissions": sorted(p.permissions),
        "joined_at": int(p.joined_at),
        "state": {**DEFAULT_STATE, **p.state},
    }
    if e2ee_key:
        info["e2ee_key"] = e2ee_key
    return info


class Hub:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._rooms: dict[str, dict[str, Seat]] = {}
        """room -> sid -> seat; a room is here while it has a seat on this node."""

    # --- seats ---------------------------------------------------------------------------------

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def seats(self, room: str) -> list[Seat]:
        return list(self._rooms.get(room, {}).values())

    def seat(self, room: str, sid: str) -> Seat | None:
        return self._rooms.get(room, {}).get(sid)

    def by_identity(self, room: str, identity: str) -> Seat | None:
        for seat in self._rooms.get(room, {}).values():
            if seat.participant.identity == identity:
                return seat
        return None

    def describe(self, p: Participant) -> dict[str, Any]:
        """``participant_info`` with the E2EE identity key of its seat here, if it announced one."""
        seat = self.seat(p.room, p.sid)
        return participant_info(p, seat.e2ee_key if seat is not None else "")

    def add(self, seat: Seat) -> None:
        self._rooms.setdefault(seat.participant.room, {})[seat.sid] = seat
        self._update_gauges()

    def remove(self, room: str, sid: str) -> Seat | None:
        """Take a seat out of the hub (``None`` if it was not here); the room goes with its last."""
        seats = self._rooms.get(room)
        seat = seats.pop(sid, None) if seats is not None else None
        if seats is not None and not seats:
            del self._rooms[room]
        self._update_gauges()
        return seat

    # --- messages ------------------------------------------------------------------------------

    def broadcast(self, room: str, msg: Mapping[str, Any], exclude: str | None = None) -> None:
        seats = self._rooms.get(room)
        if seats is None:
            return
        text = encode(msg)  # encoded once for all recipients
        for seat in list(seats.values()):
            if seat.sid != exclude:
                seat.peer.send_text(text)

    def send_to_sid(self, room: str, sid: str, msg: Mapping[str, Any]) -> bool:
        seat = self.seat(room, sid)
        if seat is None:
            return False
        seat.peer.send_text(encode(msg))
        return True

    def send_to_identity(self, room: str, identity: str, msg: Mapping[str, Any]) -> bool:
        seat = self.by_identity(room, identity)
        if seat is None:
            return False
        seat.peer.send_text(encode(msg))
        return True

    # --- closing connections -------------------------------------------------------------------

    def kick(self, seat: Seat, reason: str, message: str, *, by: str = "") -> None:
        """Close one connection with ``kicked`` (close 4001); its session then leaves the room."""
        msg = {"type": "kicked", "reason": reason, "message": message}
        if by:
            msg["by"] = by
        seat.peer.close_with(msg, CloseCode.REMOVED)

    def close_room(self, room: str, reason: str) -> None:
        """Close every connection in ``room`` with ``room_closed`` (close 4002)."""
        seats = self._rooms.pop(room, None)
        if seats is None:
            return
        msg = {"type": "room_closed", "reason": reason}
        for seat in list(seats.values()):
            seat.peer.close_with(msg, CloseCode.ROOM_CLOSED)
        self._update_gauges()

    def disconnect_token(self, jti: str) -> int:
        """Close every session here that joined with the token ``jti`` (it was revoked)."""
        closed = 0
        for seats in list(self._rooms.values()):
            for seat in list(seats.values()):
                if seat.jti == jti:
                    self.kick(seat, "token_revoked", "access revoked")
                    closed += 1
        return closed

    def _update_gauges(self) -> None:
        self._metrics.rooms.set(len(self._rooms))
        self._metrics.participants.set(sum(len(seats) for seats in self._rooms.values()))
