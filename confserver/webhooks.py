"""Webhooks: room and participant events POSTed, signed, to the endpoints in ``[[webhooks]]``.

``Webhooks.emit`` is what the rooms call: it never awaits and never touches the network; it puts
the event on each interested endpoint's bounded queue (full: the oldest event is dropped and
counted). One task per endpoint drains its queue in order, signing each attempt
(``Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``) and retrying with
exponential backoff until the event is ``retry_for`` seconds old, after which it is a dead letter
(counted and logged, without its body). docs/WEBHOOKS.md is the receiver's side of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from .metrics import Metrics

if TYPE_CHECKING:
    from .webhookconfig import WebhookConfig

log = logging.getLogger("confserver.webhooks")

EVENT_TYPES = (
    "room_started",
    "room_finished",
    "participant_joined",
    "participant_left",
    "participant_removed",
    "participant_admitted",
    "participant_denied",
)
"""The events this server emits, and the values ``webhooks[].events`` may name."""

NOT_YET_EMITTED = ("track_published", "track_unpublished")
"""Events of the same family that features still to come (track events) will emit."""

SIGNATURE_HEADER = "Webhook-Signature"
ID_HEADER = "Webhook-Id"
SIGNATURE_VERSION = "v1"
REPLAY_WINDOW = 300.0
"""Seconds a receiver should accept a signature's ``t`` away from its own clock (documented)."""
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 60.0
USER_AGENT = "confserver-webhooks/1"


@dataclass(frozen=True)
class EventParticipant:
    sid: str
    identity: str
    name: str


@dataclass(frozen=True)
class Event:
    """One webhook event; ``to_wire`` is the exact body POSTed (and signed)."""

    id: str
    type: str
    time: float
    node: str
    room: str
    participant: EventParticipant | None = None
    reason: str = ""
    by: str = ""

    def to_wire(self) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "time": round(self.time, 3),
            "node": self.node,
            "room": {"name": self.room},
        }
        if self.participant is not None:
            p = self.participant
            body["participant"] = {"sid": p.sid, "identity": p.identity, "name": p.name}
        if self.reason:
            body["reason"] = self.reason
        if self.by:
            body["by"] = self.by
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Webhook-Signature`` header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},{SIGNATURE_VERSION}={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: float = REPLAY_WINDOW) -> bool:
    """What a receiver does (docs/WEBHOOKS.md): the ``v1`` MAC over ``"<t>." + body`` matches and
    ``t`` is within ``tolerance`` seconds of ``now``."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields.get("t", [""])[0])
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).rsplit("=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in fields.get(SIGNATURE_VERSION, []))


@dataclass
class _Queued:
    event: Event
    enqueued_at: float


@dataclass
class Endpoint:
    """One configured receiver: its bounded queue and the task that drains it."""

    index: int
    cfg: WebhookConfig
    events: frozenset[str]
    queue: deque[_Queued] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def label(self) -> str:
        """How logs name the endpoint: never its full URL (it may carry a token in its path)."""
        return f"webhooks[{self.index}] ({urlsplit(self.cfg.url).hostname})"


Sleep = Callable[[float], Awaitable[None]]


class Webhooks:
    """The sender: ``emit`` from the rooms, ``start``/``close`` with the app."""

    def __init__(
        self,
        endpoints: Sequence[WebhookConfig],
        metrics: Metrics,
        *,
        node: str,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        backoff_first: float = BACKOFF_FIRST,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        self.endpoints = [
            Endpoint(i, cfg, frozenset(cfg.events or EVENT_TYPES)) for i, cfg in enumerate(endpoints)
        ]
        self._wanted = frozenset().union(*(e.events for e in self.endpoints))
        self._metrics = metrics
        self._node = node
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._backoff_first = backoff_first
        self._backoff_cap = backoff_cap
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = asyncio.Event()

    # --- the rooms' side: never blocks ---------------------------------------------------------

    def emit(
        self,
        type_: str,
        room: str,
        participant: EventParticipant | None = None,
        *,
        reason: str = "",
        by: str = "",
    ) -> None:
        """Queue an event for every endpoint that wants ``type_``; a full queue drops its oldest."""
        if type_ not in self._wanted or self._closing:
            return
        event = Event(
            id="evt_" + secrets.token_hex(12),
            type=type_,
            time=self._clock(),
            node=self._node,
            room=room,
            participant=participant,
            reason=reason,
            by=by,
        )
        now = self._monotonic()
        for ep in self.endpoints:
            if type_ not in ep.events:
                continue
            if len(ep.queue) >= ep.cfg.queue_size:
                ep.queue.popleft()
                self._metrics.webhook_deliveries.labels("dropped").inc()
                self._metrics.webhook_queue.dec()
            ep.queue.append(_Queued(event, now))
            self._metrics.webhook_queue.inc()
            ep.wake.set()

    # --- lifetime ----------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.endpoints or self._tasks:
            return
        self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        self._tasks = [
            asyncio.create_task(self._drain(ep), name=f"webhooks-{ep.index}") for ep in self.endpoints
        ]

    async def close(self, grace: float = 2.0) -> None:
        """Stop taking events, deliver what is queued for up to ``grace`` seconds, then stop."""
        self._closing = True
        self._closed.set()
        for ep in self.endpoints:
            ep.wake.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=grace)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            self._tasks = []
        for ep in self.endpoints:
            if ep.queue:
                log.warning(
                    "webhook events not sent at shutdown",
                    extra={"endpoint": ep.label, "count": len(ep.queue)},
                )
                self._metrics.webhook_queue.dec(len(ep.queue))
                ep.queue.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the sender ----------------------------------------------------------------------------

    async def _drain(self, ep: Endpoint) -> None:
        while True:
            if not ep.queue:
                if self._closing:
                    return
                ep.wake.clear()
                await ep.wake.wait()
                continue
            item = ep.queue.popleft()
            self._metrics.webhook_queue.dec()
            try:
                await self._deliver(ep, item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop the endpoint's later events
                log.exception("webhook delivery failed unexpectedly", extra={"endpoint": ep.label})

    async def _deliver(self, ep: Endpoint, item: _Queued) -> None:
        body = item.event.to_wire()
        delay = self._backoff_first
        attempts = 0
        while True:
            attempts += 1
            outcome = await self._attempt(ep, item.event.id, body)
            if outcome == "delivered":
                self._metrics.webhook_deliveries.labels("delivered").inc()
                return
            age = self._monotonic() - item.enqueued_at
            if self._closing or age + delay > ep.cfg.retry_for:
                self._metrics.webhook_deliveries.labels("dead_letter").inc()
                log.warning(
                    "webhook event given up",
                    extra={
                        "endpoint": ep.label,
                        "event": item.event.id,
                        "type": item.event.type,
                        "attempts": attempts,
                        "last_error": outcome,
                    },
                )
                return
            self._metrics.webhook_deliveries.labels("retried").inc()
            await self._pause(delay)
            delay = min(delay * 2, self._backoff_cap)

    async def _pause(self, delay: float) -> None:
        """The backoff between attempts, cut short when the sender closes (one last attempt follows)."""
        sleeping = asyncio.ensure_future(self._sleep(delay))
        closing = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({sleeping, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            closing.cancel()

    async def _attempt(self, ep: Endpoint, event_id: str, body: bytes) -> str:
        """One POST: ``delivered`` on a 2xx answer, otherwise why not (for the log)."""
        if self._session is None:
            return "not_started"
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: event_id,
            SIGNATURE_HEADER: sign(ep.cfg.secret, int(self._clock()), body),
        }
        timeout = aiohttp.ClientTimeout(total=ep.cfg.timeout)
        try:
            async with self._session.post(
                ep.cfg.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                return "delivered" if 200 <= resp.status < 300 else f"status {resp.status}"
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError as e:
            return type(e).__name__
