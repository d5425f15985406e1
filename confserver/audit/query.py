"""Finding entries: the filters of ``GET /api/v1/audit`` and ``confctl audit list``. A search reads
the chain from the start (entries are not indexed); the answer is at most ``limit`` entries."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Query:
    room: str | None = None
    actor: str | None = None
    """An actor's id or name: an API key's name or id, a participant's identity."""
    action: str | None = None
    """An ``event.action``, or its first part (``room`` matches ``room.create`` and ``room.end``)."""
    since: str | None = None
    """An RFC 3339 UTC time (``2026-12-04T09:00:00Z``); compared with ``@timestamp``."""
    after: int | None = None
    """Entries after this sequence number (paging forward)."""
    limit: int = 100

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.after is not None and entry["event"].get("sequence", 0) <= self.after:
            return False
        if self.since is not None and str(entry.get("@timestamp", "")) < self.since:
            return False
        if self.room is not None and entry.get("conf", {}).get("room") != self.room:
            return False
        if self.action is not None:
            action = str(entry["event"].get("action", ""))
            if action != self.action and action.split(".", 1)[0] != self.action:
                return False
        if self.actor is not None:
            user = entry.get("user", {})
            if self.actor not in (user.get("id"), user.get("name")):
                return False
        return True

    @property
    def forward(self) -> bool:
        """From the start point on (``since`` or ``after``), else the newest entries."""
        return self.since is not None or self.after is not None


async def search(lines: AsyncIterator[bytes], query: Query) -> list[dict[str, Any]]:
    """The first ``limit`` matches after the start point, or the last ``limit`` without one;
    oldest first either way."""
    found: deque[dict[str, Any]] = deque(maxlen=None if query.forward else query.limit)
    async for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a damaged line: `audit verify` names it; a search skips it
        if isinstance(entry, dict) and isinstance(entry.get("event"), dict) and query.matches(entry):
            found.append(entry)
            if query.forward and len(found) >= query.limit:
                break
    return list(found)
