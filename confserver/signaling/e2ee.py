"""The server's part of end-to-end encrypted rooms: it relays what it cannot read.

In a room with ``e2ee`` on, each browser encrypts its media frames itself. The server keeps each
participant's identity public key on its seat (``e2ee_identity``), shows it to the others, and
delivers key messages (``e2ee_keys``) to the one session each is addressed to. Key data is never
logged, stored, audited or sent in a webhook: it passes through this module and nothing else.
Everyone joined may do both (a viewer receives media, so it needs keys and may have to answer).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ServiceError
from ..rooms import Hub
from . import messages as m

KEYS_PER_SECOND = 1000.0
KEYS_BURST = 400
"""Key entries one session may send: a key rotation in a full room of 100 is one frame of 99
entries, on top of the frame's place in the connection's ordinary message rate."""


class KeyBudget:
    """``rate`` entries a second up to ``burst``; a frame takes all its entries or none. Time is
    passed in."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, entries: int, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= entries:
            self._tokens -= entries
            return True
        return False


@dataclass
class KeyRelay:
    """One joined session's E2EE messages in an E2EE room."""

    hub: Hub
    room: str
    sid: str
    identity: str
    budget: KeyBudget

    def announce(self, msg: m.E2eeIdentity) -> None:
        """Keep the key on the seat and tell everyone else (``e2ee_identity``); a key the same as
        before is not announced again."""
        seat = self.hub.seat(self.room, self.sid)
        if seat is None:
            raise ServiceError("not_joined", "this session is no longer in the room")
        if seat.e2ee_key == msg.key:
            return
        seat.e2ee_key = msg.key
        self.hub.broadcast(
            self.room,
            {"type": "e2ee_identity", "sid": self.sid, "identity": self.identity, "key": msg.key},
            exclude=self.sid,
        )

    def relay(self, msg: m.E2eeKeys, now: float) -> list[str]:
        """Deliver each entry to its recipient as ``e2ee_key``; returns the ``to`` that are not in
        the room (this session's own sid included). Raises ``rate_limited`` beyond the budget."""
        if not self.budget.take(len(msg.keys), now):
            raise ServiceError("rate_limited", "too many key messages; these were not delivered")
        unknown = []
        for entry in msg.keys:
            out = {"type": "e2ee_key", "from": self.sid, "identity": self.identity, "data": entry.data}
            if entry.to == self.sid or not self.hub.send_to_sid(self.room, entry.to, out):
                unknown.append(entry.to)
        return unknown
