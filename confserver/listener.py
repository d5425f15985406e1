"""The listening sockets: caps and deadlines that hold before a single request has been read.

A connection is counted from the moment it is accepted: beyond ``server.max_connections`` in total
or ``server.max_connections_per_address`` from one address it is closed at once (before any TLS
handshake is spent on it) and counted in ``conf_connections_refused_total``. A client then has
``server.header_timeout`` seconds for the TLS handshake and, through aiohttp's keep-alive timer
(``keepalive_timeout``, which aiohttp arms at accept and after each response, and which closes a
connection still waiting for a complete request), as long again for the headers of each request.
So a client that connects and never speaks, or sends its headers a byte at a time, holds a socket
for seconds, not minutes.

TLS is started by hand (``loop.start_tls``) rather than by ``create_server(ssl=...)`` so that the
count covers connections still in their handshake and a failed handshake frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import ssl
from collections import Counter as Tally
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("confserver.listener")

Refusal = Literal["max_connections", "max_connections_per_address"]

RESERVED_FDS = 256
"""File descriptors kept out of the connection caps: the listeners, the media sockets of a shared
port, the store, log files, the event loop, and answers to ``/healthz`` while the caps are full."""


class ConnectionCaps:
    """Counts open connections in total and per client address; sans-I/O."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self._by_address: Tally[str] = Tally()
        self._open = 0

    @property
    def open(self) -> int:
        return self._open

    def admit(self, address: str) -> Refusal | None:
        """Counts the connection in and returns None, or returns why it is refused (not counted)."""
        if self._open >= self.total:
            return "max_connections"
        if self._by_address[address] >= self.per_address:
            return "max_connections_per_address"
        self._open += 1
        self._by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self._open -= 1
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]


@dataclass(frozen=True)
class ListenerMetrics:
    open: Gauge
    refused: Counter
    handshake_failures: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ListenerMetrics:
        return cls(
            open=Gauge(
                "conf_connections_open",
                "TCP connections open (counted from accept, TLS handshake included), by listener.",
                ["listener"],
                registry=registry,
            ),
            refused=Counter(
                "conf_connections_refused",
                "Connections closed at accept because a cap was reached, by listener and cap.",
                ["listener", "reason"],
                registry=registry,
            ),
            handshake_failures=Counter(
                "conf_tls_handshake_failures",
                "TLS handshakes that failed or missed server.header_timeout (reason: timeout, error).",
                ["listener", "reason"],
                registry=registry,
            ),
        )


def raise_fd_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning(
                "cannot raise the open-files limit", extra={"soft": soft, "hard": hard, "error": str(e)}
            )
    return soft


def fit_caps(total: int, per_address: int, fd_limit: int, other_fds: int = 0) -> tuple[int, int]:
    """The caps lowered, if need be, to leave ``RESERVED_FDS`` plus ``other_fds`` descriptors free
    under ``fd_limit``: past the caps connections are refused, never the accept loop starved."""
    budget = max(1, fd_limit - RESERVED_FDS - other_fds)
    fitted = min(total, budget)
    return fitted, min(per_address, fitted)


def _drop_tracebacks(exc: BaseException) -> None:
    """Cut the references from a failed handshake's exception to the frames it passed through.

    The exception is also held by the future ``loop.start_tls`` awaited, which that call's frame
    holds: a reference cycle through the TLS protocol, its 256 KiB read buffer and its OpenSSL
    object. A handshake fails only after its deadline or a peer's error, by which time the cycle has
    outlived the collector's young generations; left alone it waited, a third of a MiB a time, for
    the next full collection (rare by design: ``server.gc_threshold``). Without the tracebacks,
    reference counting frees it at once."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        cur.__traceback__ = None
        cur = cur.__cause__ or cur.__context__


class _GuardedConnection(asyncio.Protocol):
    """Sits between the transport and aiohttp's request handler: admits or refuses at accept,
    runs the TLS handshake under a deadline, then passes every event through."""

    def __init__(self, site: GuardedSite) -> None:
        self._site = site
        self._address: str | None = None
        self._inner: asyncio.Protocol | None = None
        self._early: list[bytes] = []
        self._early_eof = False
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        site = self._site
        if not isinstance(transport, asyncio.Transport):  # pragma: no cover - TCP gives a Transport
            transport.close()
            return
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        refusal = site.caps.admit(address)
        if refusal is not None:
            site.metrics.refused.labels(site.label, refusal).inc()
            transport.abort()
            return
        self._address = address
        site.metrics.open.labels(site.label).inc()
        if site.ssl_context is None:
            self._start_inner(transport)
            return
        transport.pause_reading()  # the ClientHello waits in the socket until start_tls reads it
        site.start_handshake(self._handshake(transport))

    async def _handshake(self, raw: asyncio.Transport) -> None:
        site = self._site
        ctx = site.ssl_context
        if ctx is None:  # pragma: no cover - only TLS sites start handshakes
            return
        if self._lost:
            self._release()
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            tls = await loop.start_tls(
                raw, self, ctx, server_side=True, ssl_handshake_timeout=site.header_timeout
            )
        except (OSError, RuntimeError) as exc:  # ssl.SSLError, a reset, the deadline (ConnectionAbortedError)
            _drop_tracebacks(exc)
            late = loop.time() - started >= site.header_timeout
            site.metrics.handshake_failures.labels(site.label, "timeout" if late else "error").inc()
            self._give_up(raw)
            return
        except asyncio.CancelledError:
            self._give_up(raw)
            raise
        if self._lost or tls is None:
            self._give_up(raw)
            return
        self._start_inner(tls)

    def _give_up(self, raw: asyncio.Transport) -> None:
        raw.abort()
        self._release()

    def _start_inner(self, transport: asyncio.BaseTransport) -> None:
        inner = self._site.handler_factory()
        self._inner = inner
        inner.connection_made(transport)
        for chunk in self._early:
            inner.data_received(chunk)
        self._early.clear()
        if self._early_eof:
            inner.eof_received()

    def _release(self) -> None:
        if self._address is not None:
            self._site.caps.release(self._address)
            self._site.metrics.open.labels(self._site.label).dec()
            self._address = None

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)
        else:  # TLS data decrypted between the end of the handshake and the handler's start
            self._early.append(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()
        self._early_eof = True
        return None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._release()
        if self._inner is not None:
            self._inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TCP site of an ``AppRunner`` whose connections are capped and whose TLS handshakes have a
    deadline; otherwise ``web.TCPSite``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        caps: ConnectionCaps,
        metrics: ListenerMetrics,
        header_timeout: float,
        label: str = "public",
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self.caps = caps
        self.metrics = metrics
        self.header_timeout = header_timeout
        self.label = label
        self._handshakes: set[asyncio.Task[None]] = set()
        self._listening: asyncio.Server | None = None

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl_context

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        if self._listening is not None and self._listening.sockets:
            return int(self._listening.sockets[0].getsockname()[1])
        return self._port

    def handler_factory(self) -> asyncio.Protocol:
        server = self._runner.server
        if server is None:  # pragma: no cover - a site exists only after runner.setup()
            raise RuntimeError("the runner has no server")
        return server()

    def start_handshake(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = self._listening = await loop.create_server(
            lambda: _GuardedConnection(self),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )

    async def stop(self) -> None:
        await super().stop()
        for task in list(self._handshakes):
            task.cancel()
        for task in list(self._handshakes):
            with contextlib.suppress(asyncio.CancelledError):
                await task
