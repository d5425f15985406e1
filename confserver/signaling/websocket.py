"""The aiohttp WebSocket adapter for signaling.

It owns the socket: the Origin check, frame size caps, heartbeats (WebSocket ping/pong), a join
deadline, a per-connection rate limit, and a bounded outbound queue drained by one writer task with
a send deadline. Backpressure policy: a client whose queue overflows or whose send misses the
deadline is disconnected (close 4008 ``slow_consumer``); a broadcast never waits for anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..cluster import auth as cluster_auth
from ..cluster.node import Cluster
from ..cluster.relay import Upstream, room_of_join
from ..config import SignalingConfig
from ..contract import MEDIA_CLASSES
from ..errors import ServiceError
from ..media import MediaController
from ..metrics import Metrics
from ..rooms import RoomService
from ..store import RevocationStore, StoreUnavailableError
from ..tokens import TokenVerifier
from . import messages as m
from .messages import CloseCode
from .session import MEDIA_CALL_TIMEOUT, Session, SessionLimits

log = logging.getLogger("confserver.signaling")

RATE_VIOLATIONS_BEFORE_CLOSE = 20


class _WebSocketResponse(web.WebSocketResponse):
    """aiohttp's ``WebSocketResponse`` whose heartbeat stays off once the connection is closing.

    aiohttp (3.14) re-arms the heartbeat timer whenever data arrives, even after the connection has
    closed: when the server closes first (a refused join, a join timeout, a rate-limit close) the
    client's answering Close frame schedules ``_send_heartbeat`` ``heartbeat`` seconds ahead, and
    then ``_pong_not_received`` half as long again. Those timers keep the closed response, and with
    it the request, the TLS transport and the whole session, alive for 15 s: long enough for
    Python's collector to promote all of it to its oldest generation, where it waits, as garbage,
    for the next full collection (rare by design: ``server.gc_threshold``). Under a stream of
    refused joins that garbage is what made the server's memory grow (bench/HISTORY.md).
    """

    shutting = False
    """Set when this side starts to close: no heartbeat is armed from then on."""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        self.shutting = True
        return await super().close(code=code, message=message, drain=drain)

    def _reset_heartbeat(self) -> None:
        if self.closed or self.shutting:
            return
        super()._reset_heartbeat()


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; time is passed in."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def allow(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class WsPeer:
    """Outbound side of one connection: never blocks the caller."""

    def __init__(self, ws: web.WebSocketResponse, *, max_queue: int, send_timeout: float) -> None:
        self.sid = ""
        self._ws = ws
        self._max_queue = max_queue
        self._send_timeout = send_timeout
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._close_code: int = CloseCode.GOING_AWAY
        self.close_reason = "closed"
        self._reader: asyncio.Task[Any] | None = None
        self._receiving = False

    @property
    def closing(self) -> bool:
        return self._closing

    def read_with(self, task: asyncio.Task[Any]) -> None:
        """The task that reads this connection's frames; it is stopped before the close."""
        self._reader = task

    @contextlib.contextmanager
    def receiving(self) -> Iterator[None]:
        """Marks the reader as waiting for a frame (and so safe to cancel) for the block's length."""
        self._receiving = True
        try:
            yield
        finally:
            self._receiving = False

    def send_text(self, text: str) -> None:
        if self._closing:
            return
        if len(self._queue) >= self._max_queue:
            self._drop_slow("outbound queue full")
            return
        self._queue.append(text)
        self._wake.set()

    def close_with(self, msg: Mapping[str, Any], close_code: int) -> None:
        if self._closing:
            return
        self._queue.append(m.encode(msg))
        self._begin_close(close_code, str(msg.get("code") or msg.get("reason") or msg.get("type")))

    def close(self, code: int, reason: str) -> None:
        """Close with ``code`` after what is queued, with no message of ours (a relayed close)."""
        if not self._closing:
            self._begin_close(code, reason)

    def _begin_close(self, code: int, reason: str) -> None:
        self._closing = True
        self._close_code = code
        self.close_reason = reason
        self._wake.set()

    def _drop_slow(self, why: str) -> None:
        log.warning("disconnecting slow client", extra={"sid": self.sid, "why": why})
        self._queue.clear()
        self._begin_close(CloseCode.SLOW_CONSUMER, "slow_consumer")

    async def run(self) -> None:
        """The writer: drain the queue with a deadline per send, then close when asked.

        A writer that fails for any other reason takes its connection down with it (close 1011
        ``writer_failed``): the reader then ends the session and frees the seat. It never stays
        silently dead while the connection holds a seat."""
        ws = self._ws
        try:
            while True:
                while self._queue:
                    text = self._queue.popleft()
                    try:
                        await asyncio.wait_for(ws.send_str(text), self._send_timeout)
                    except TimeoutError:
                        self._drop_slow("send deadline missed")
                        break
                if self._closing:
                    await self._close()
                    return
                self._wake.clear()
                await self._wake.wait()
        except (ConnectionError, RuntimeError, TimeoutError):
            return  # the socket is gone; the reader sees it and ends the session
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("signaling writer failed; closing its connection", extra={"sid": self.sid})
            self._queue.clear()
            self._closing = True
            self.close_reason = "writer_failed"
            self._close_code = CloseCode.SERVER_ERROR
            with contextlib.suppress(Exception):
                await self._close()

    async def _close(self) -> None:
        """The closing handshake of RFC 6455: our Close frame, the client's answer, then the end of
        the connection (within the send deadline). aiohttp's ``close()`` waits for that answer only
        if no ``receive()`` is in progress: one in progress is ended, and the connection with it,
        right after our Close frame, so over TLS the client finds its connection shut before it can
        answer and reports 1006 instead of our code. So the reader is stopped first: cancelled if it
        is waiting for a frame (the frames queued meanwhile stay for ``close()`` to read), otherwise
        let finish the message in hand; it does not read again once the peer is closing."""
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            if self._receiving:
                reader.cancel()
            await asyncio.wait({reader}, timeout=self._send_timeout)
        await asyncio.wait_for(self._ws.close(code=self._close_code), self._send_timeout)


class UnjoinedBudget:
    """Counts WebSockets that have not joined yet, in total and per client address. A connection
    that has not shown a valid token costs memory and a file descriptor; these caps keep
    anonymous connections from exhausting either (joined ones are bounded by rooms' seats)."""

    def __init__(self, total: int, per_address: int) -> None:
        self._total = total
        self._per_address = per_address
        self._count = 0
        self._by_address: dict[str, int] = {}

    def take(self, address: str) -> bool:
        held = self._by_address.get(address, 0)
        if self._count >= self._total or held >= self._per_address:
            return False
        self._count += 1
        self._by_address[address] = held + 1
        return True

    def give_back(self, address: str) -> None:
        self._count -= 1
        held = self._by_address.pop(address, 0) - 1
        if held > 0:
            self._by_address[address] = held

    @property
    def count(self) -> int:
        return self._count


@dataclass
class SignalingContext:
    cfg: SignalingConfig
    rooms: RoomService
    verifier: TokenVerifier
    revocations: RevocationStore
    media: MediaController
    metrics: Metrics
    allowed_origins: frozenset[str]
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    media_timeout: float = MEDIA_CALL_TIMEOUT
    cluster: Cluster | None = None
    """Several nodes: a join for a room another node serves is relayed there."""
    unjoined: UnjoinedBudget = field(init=False)

    def __post_init__(self) -> None:
        self.unjoined = UnjoinedBudget(self.cfg.max_unjoined, self.cfg.max_unjoined_per_address)


SIGNALING = web.AppKey("signaling", SignalingContext)


async def handle_ws(request: web.Request) -> web.StreamResponse:
    return await _serve(request, request.remote or "unknown", relayed=False)


async def handle_relayed_ws(request: web.Request) -> web.StreamResponse:
    """A session another node relays here, since this node serves its room (cluster/relay.py)."""
    ctx = request.app[SIGNALING]
    if ctx.cluster is None:
        raise web.HTTPNotFound()
    try:
        ctx.cluster.verify(request.headers.get(cluster_auth.HEADER), "GET", request.path)
    except cluster_auth.ClusterAuthError:
        return web.json_response(
            {"error": "cluster_auth_failed", "message": "node-to-node requests need the cluster secret"},
            status=403,
        )
    client = request.headers.get(cluster_auth.CLIENT_ADDRESS, "")[:64] or request.remote or "unknown"
    return await _serve(request, client, relayed=True)


async def _serve(request: web.Request, address: str, *, relayed: bool) -> web.StreamResponse:
    ctx = request.app[SIGNALING]
    origin = request.headers.get("Origin")
    if not relayed and origin is not None and origin not in ctx.allowed_origins:
        ctx.metrics.ws_disconnects.labels("origin_refused").inc()
        return web.json_response(
            {"error": "origin_not_allowed", "message": "this origin may not open a signaling connection"},
            status=403,
        )
    cfg = ctx.cfg
    if not ctx.unjoined.take(address):
        ctx.metrics.ws_disconnects.labels("too_many_unjoined").inc()
        return web.json_response(
            {
                "error": "too_many_connections",
                "message": "too many signaling connections that have not joined; try again later",
            },
            status=503,
            headers={"Retry-After": "5"},
        )
    ws = _WebSocketResponse(
        heartbeat=cfg.heartbeat_interval,
        max_msg_size=cfg.max_message_bytes * 4,  # beyond this the frame is not even read: close 1009
        autoping=True,
    )
    unjoined = True  # this connection holds one of the budget's places until it joins
    try:
        await ws.prepare(request)
    except BaseException:
        ctx.unjoined.give_back(address)
        raise
    ctx.sockets.add(ws)
    ctx.metrics.ws_connections.inc()
    peer = WsPeer(ws, max_queue=cfg.outbound_queue, send_timeout=cfg.send_timeout)
    session = Session(
        peer=peer,
        rooms=ctx.rooms,
        verifier=ctx.verifier,
        revocations=ctx.revocations,
        media=ctx.media,
        metrics=ctx.metrics,
        limits=SessionLimits(chat_max_chars=cfg.chat_max_chars, media_timeout=ctx.media_timeout),
        client_ip=address,
    )
    peer.sid = session.sid
    writer = asyncio.create_task(peer.run(), name=f"ws-writer-{session.sid}")
    loop = asyncio.get_running_loop()

    def join_deadline() -> None:
        if not session.joined and not session.waiting:
            ctx.metrics.ws_errors.labels("join_timeout").inc()
            peer.close_with(m.error("join_timeout", "no join message in time"), CloseCode.JOIN_TIMEOUT)

    timer = loop.call_later(cfg.join_timeout, join_deadline)
    bucket = TokenBucket(cfg.rate_per_second, cfg.rate_burst, loop.time())
    violations = 0
    reason = "disconnected"
    upstream: Upstream | None = None
    routed = relayed or ctx.cluster is None  # the first frame decides where the session is served

    async def read_frames() -> None:
        nonlocal unjoined, violations, reason, upstream, routed
        while not peer.closing:  # once it is, the writer's close reads the client's Close frame
            with peer.receiving():
                frame = await ws.receive()
            if frame.type == WSMsgType.TEXT:
                if not bucket.allow(loop.time()):
                    violations += 1
                    if violations >= RATE_VIOLATIONS_BEFORE_CLOSE:
                        ctx.metrics.ws_errors.labels("rate_limited").inc()
                        peer.close_with(m.error("rate_limited", "too many messages"), CloseCode.RATE_LIMITED)
                    else:
                        session.send_error("rate_limited", "too many messages; this one was not processed")
                    continue
                if upstream is not None:
                    await upstream.send(frame.data)
                    continue
                if not routed:
                    routed = True
                    upstream = await _relay(ctx, peer, frame.data, address)
                    if upstream is not None:
                        timer.cancel()  # the owner keeps the join deadline
                        if unjoined:
                            unjoined = False
                            ctx.unjoined.give_back(address)
                        upstream.start(peer)
                        await upstream.send(frame.data)
                        continue
                    if peer.closing:
                        continue
                await _process(ctx, session, frame.data)
                if unjoined and session.joined:
                    unjoined = False
                    ctx.unjoined.give_back(address)
            elif frame.type == WSMsgType.BINARY:
                session.send_error("bad_message", "binary frames are not accepted; send JSON text")
            elif frame.type == WSMsgType.ERROR:
                # a heartbeat that got no pong: the client dropped off, as when the socket closes
                reason = "disconnected" if isinstance(frame.data, TimeoutError) else "error"
                return
            elif frame.type in _END_OF_STREAM:
                return

    reader = asyncio.create_task(read_frames(), name=f"ws-reader-{session.sid}")
    peer.read_with(reader)
    try:
        await asyncio.wait({reader})
        if not reader.cancelled():  # cancelled: stopped by the writer for the close
            reader.result()
    finally:
        if not reader.done():  # this handler was cancelled
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        _break_cycles(request, reader)
        timer.cancel()
        if upstream is not None:
            await upstream.close()
            reason = "relayed"
        if unjoined:
            ctx.unjoined.give_back(address)
        if ws.close_code == CloseCode.TOO_LARGE:
            reason = "too_large"
        elif peer.close_reason != "closed" and upstream is None:
            reason = peer.close_reason
        try:
            await session.end(reason if reason != "disconnected" or session.joined else "disconnected")
        finally:
            if not writer.done():
                peer.close_with({"type": "bye"}, CloseCode.GOING_AWAY)
                try:
                    await asyncio.wait_for(writer, cfg.send_timeout)
                except TimeoutError:
                    writer.cancel()
            ctx.metrics.ws_connections.dec()
            ctx.metrics.ws_disconnects.labels(_reason_label(reason)).inc()
    return ws


def _break_cycles(request: web.Request, reader: asyncio.Task[None]) -> None:
    """Cut the reference cycles that keep a finished connection (request, WebSocket, session, TLS
    transport) until Python's next full collection.

    A connection that lived more than a moment (one closed at its join timeout, a participant who
    leaves) has reached the collector's oldest generation by then, and full collections are rare by
    design (``server.gc_threshold``): left as cyclic garbage it waited there for minutes to hours,
    ~15 KiB a connection, and the server's memory grew with the connections it had served. Two
    cycles held it: the CancelledError a cancelled reader keeps for whoever asks its result (its
    traceback holds the reader's frame, which holds the peer, which holds the task), and aiohttp's
    request handler, which keeps the WebSocket's data callback after the connection is gone (the
    WebSocket holds the request, which holds the handler). Without them, reference counting frees
    the connection as soon as aiohttp lets go of it."""
    if reader.done() and reader.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            reader.result()  # takes the saved exception
    protocol = request.protocol
    if protocol is not None and hasattr(protocol, "_data_received_cb"):
        protocol._data_received_cb = None  # it only defers the heartbeat, of no use once reading is over


_END_OF_STREAM = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})

_REASONS = frozenset(
    {
        "disconnected",
        "error",
        "too_large",
        "slow_consumer",
        "rate_limited",
        "join_timeout",
        "left",
        "removed",
        "room_closed",
        "token_rejected",
        "kicked",
        "writer_failed",
        "media_timeout",
        "too_many_unjoined",
        "seat_lost",
        "origin_refused",
        "relayed",
    }
)


def _reason_label(reason: str) -> str:
    return reason if reason in _REASONS else "other"


async def _relay(ctx: SignalingContext, peer: WsPeer, data: str, address: str) -> Upstream | None:
    """The relay to the node serving the room this first frame joins; ``None`` to serve it here."""
    cluster = ctx.cluster
    if cluster is None:
        return None
    room = room_of_join(data, ctx.verifier, ctx.cfg.max_message_bytes)
    if room is None:
        return None
    try:
        return await Upstream.open(
            cluster,
            room,
            address,
            heartbeat=ctx.cfg.heartbeat_interval,
            send_timeout=ctx.cfg.send_timeout,
        )
    except StoreUnavailableError:
        return None  # served here: the join is answered store_unavailable like any other
    except ServiceError as e:
        ctx.metrics.ws_errors.labels(e.code).inc()
        peer.close_with(m.error(e.code, e.message, "join"), CloseCode.TRY_AGAIN)
        return None


async def _process(ctx: SignalingContext, session: Session, data: str) -> None:
    try:
        parsed = m.parse_client_message(data, max_bytes=ctx.cfg.max_message_bytes)
    except m.ProtocolError as e:
        session.send_error(e.code, e.message, e.ref)
        return
    mtype = parsed.type if isinstance(parsed, MEDIA_CLASSES) else type(parsed).__name__
    ctx.metrics.ws_messages.labels(mtype).inc()
    try:
        await session.handle(parsed)
    except StoreUnavailableError:
        log.error("store unavailable while handling a message", extra={"sid": session.sid})
        session.send_error("store_unavailable", "the server's store is unreachable; try again")
    except ServiceError as e:
        session.send_error(e.code, e.message)
    except Exception:
        log.exception("internal error while handling a message", extra={"sid": session.sid})
        session.send_error("internal", "internal error; the message was not processed")


async def close_all(app: web.Application) -> None:
    """on_shutdown: tell every client the server is going away."""
    ctx = app[SIGNALING]
    for ws in list(ctx.sockets):
        await ws.close(code=CloseCode.GOING_AWAY, message=b"server shutdown")
