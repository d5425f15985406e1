"""The app factory: builds the aiohttp application from a Config and the parts chosen at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from . import api, auditapi, pages
from .audit import Signer
from .audit.log import AuditLog
from .audit.sinks import AuditSink
from .cluster import routes as cluster_routes
from .cluster.address import node_url
from .cluster.auth import cluster_key
from .cluster.node import Cluster
from .cluster.registry import MemoryRegistry, Registry
from .config import Config
from .credentials import ApiCredentials
from .errors import ServiceError
from .media import MediaController, NoMediaController
from .metrics import Metrics
from .oidc import routes as sign_in
from .rooms import RoomService
from .sfuconfig import media_ports
from .signaling.websocket import SIGNALING, SignalingContext, close_all, handle_ws
from .store import Store, StoreUnavailableError
from .tokens import KeyRing, SigningKey, TokenVerifier, VerificationKey
from .webhooks import Webhooks

log = logging.getLogger("confserver.app")

STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
CONFIG = web.AppKey("config", Config)


def build_keyring(cfg: Config, creds: ApiCredentials) -> KeyRing:
    keys = [VerificationKey.hs256(creds.api_key, creds.api_secret)]
    for k in cfg.auth.keys:
        try:
            pem = Path(k.public_key_file).expanduser().read_bytes()
        except OSError as e:
            raise RuntimeError(f"auth.keys: cannot read public_key_file for kid {k.kid}: {e}") from None
        keys.append(VerificationKey.from_public_pem(k.kid, k.alg, pem))
    return KeyRing(keys)


def allowed_origins(cfg: Config) -> frozenset[str]:
    if cfg.signaling.allowed_origins:
        return frozenset(o.rstrip("/") for o in cfg.signaling.allowed_origins)
    public = urlsplit(cfg.public_url)
    origins = {f"{public.scheme}://{public.netloc}"}
    for host in (*cfg.tls.hostnames, "127.0.0.1", "[::1]"):
        origins.add(f"{cfg.scheme}://{host}:{cfg.server.port}")
    return frozenset(origins)


def create_app(
    cfg: Config,
    *,
    store: Store,
    credentials: ApiCredentials,
    metrics: Metrics | None = None,
    media: MediaController | None = None,
    audit_sink: AuditSink | None = None,
    audit_signer: Signer | None = None,
    registry: Registry | None = None,
    fingerprint: str = "",
) -> web.Application:
    """Everything is passed in; the caller owns the store's lifetime. Without ``audit_sink`` the
    audit log records nothing."""
    metrics = metrics or Metrics.create()
    media = media or NoMediaController()
    keyring = build_keyring(cfg, credentials)
    verifier = TokenVerifier(keyring, max_ttl=cfg.auth.token_max_ttl, leeway=cfg.auth.leeway)
    node = cfg.signaling.node_id or "node-" + secrets.token_hex(4)
    webhooks = Webhooks(cfg.webhooks, metrics, node=node) if cfg.webhooks else None
    audit = AuditLog(
        audit_sink,
        audit_signer,
        metrics,
        node=node,
        sign_interval=cfg.audit.sign_interval,
        retention_days=cfg.audit.retention_days,
        queue_size=cfg.audit.queue_size,
    )
    rooms = RoomService(
        store,
        metrics,
        node=node,
        auto_create=cfg.auto_create_rooms,
        default_max_participants=cfg.rooms.default_max_participants,
        auto_created_empty_timeout=cfg.rooms.auto_created_empty_timeout,
        seat_lease=cfg.store.seat_lease,
        webhooks=webhooks,
        audit=audit,
        lobby_max=cfg.rooms.lobby_max,
        lobby_knocks_per_minute=cfg.rooms.lobby_knocks_per_minute,
        e2ee_default=cfg.rooms.e2ee_default,
    )
    registry = registry or MemoryRegistry()
    cluster = Cluster(
        registry,
        rooms,
        metrics,
        node=node,
        url=node_url(cfg),
        key=cluster_key(cfg.store.cluster_secret, credentials.api_secret),
        ttl=cfg.store.node_ttl,
        fingerprint=fingerprint,
        media=media_ports(cfg.sfu) if cfg.sfu.enabled else "",
    )
    rooms.placement = cluster
    app = web.Application(
        middlewares=[_http_metrics(metrics), _errors, cluster_routes.forward_to_owner, api.admin_auth],
        client_max_size=cfg.server.max_body_bytes,
    )
    app[CONFIG] = cfg
    app[STORE] = store
    app[METRICS] = metrics
    app[auditapi.AUDIT] = audit
    app[SIGNALING] = SignalingContext(
        cfg=cfg.signaling,
        rooms=rooms,
        verifier=verifier,
        revocations=store.revocations,
        media=media,
        metrics=metrics,
        allowed_origins=allowed_origins(cfg),
        cluster=cluster if registry.shared else None,
    )
    app[cluster_routes.CLUSTER] = cluster
    app[api.API] = api.ApiContext(
        rooms=rooms,
        store=store,
        verifier=verifier,
        signing_key=SigningKey.hs256(credentials.api_key, credentials.api_secret),
        public_url=cfg.public_url,
        token_default_ttl=cfg.auth.token_default_ttl,
        token_max_ttl=cfg.auth.token_max_ttl,
        leeway=cfg.auth.leeway,
        max_body_bytes=cfg.server.max_body_bytes,
        auto_create=cfg.auto_create_rooms,
    )
    app.on_response_prepare.append(_security_headers(cfg))
    app.router.add_get("/ws", handle_ws)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    api.add_routes(app)
    cluster_routes.add_routes(app)
    pages.add_routes(app, cfg.ui)
    sign_in.add_routes(app, cfg, credentials, metrics)
    app.cleanup_ctx.append(_background(cfg, rooms, webhooks, audit, cluster))
    app.on_shutdown.append(close_all)
    app.on_cleanup.append(lambda _app: media.close())
    return app


def _background(  # type: ignore[no-untyped-def]
    cfg: Config, rooms: RoomService, webhooks: Webhooks | None, audit: AuditLog, cluster: Cluster
):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        with contextlib.suppress(StoreUnavailableError):
            await rooms.store_intact()  # records the store's epoch: a store that loses it is noticed
        await cluster.start()
        await audit.start()
        if webhooks is not None:
            await webhooks.start()
        tasks = [
            asyncio.create_task(
                _every(cfg.signaling.heartbeat_interval, rooms.refresh_leases), name="lease-refresh"
            ),
            asyncio.create_task(
                _every(cfg.rooms.sweep_interval, rooms.close_expired_rooms), name="room-sweeper"
            ),
            asyncio.create_task(_every(cluster.interval, cluster.heartbeat), name="node-heartbeat"),
        ]
        yield
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if webhooks is not None:
            await webhooks.close()  # after the WebSockets closed (on_shutdown): their leaves are sent
        await audit.close()  # likewise: the leaves are in the chain and signed
        await cluster.close()  # gives up the rooms served here: they move at their next join

    return ctx


async def _every(interval: float, job) -> None:  # type: ignore[no-untyped-def]
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except StoreUnavailableError:
            log.warning("store unavailable in a background job", extra={"job": job.__name__})
        except Exception:
            log.exception("background job failed", extra={"job": job.__name__})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    if request.app[cluster_routes.CLUSTER].draining:
        return web.json_response({"status": "draining", "store": "ok"}, status=503)
    store = request.app[STORE]
    try:
        ok = await asyncio.wait_for(store.ping(), 2.0)
        intact = ok and await asyncio.wait_for(store.state_intact(time.time()), 2.0)
    except (TimeoutError, StoreUnavailableError):
        ok = intact = False
    if not ok:
        return web.json_response({"status": "unavailable", "store": "unreachable"}, status=503)
    if not intact:
        return web.json_response({"status": "unavailable", "store": "state_lost"}, status=503)
    return web.json_response({"status": "ready", "store": "ok"})


def _http_metrics(metrics: Metrics):  # type: ignore[no-untyped-def]
    @web.middleware
    async def mw(request: web.Request, handler: api.Handler) -> web.StreamResponse:
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            info = request.match_info
            resource = info.route.resource if info.route is not None else None
            route = (
                resource.canonical if resource is not None and info.http_exception is None else "unmatched"
            )
            if request.path.startswith("/static/"):
                route = "/static"
            metrics.http_requests.labels(request.method, route, str(status)).inc()

    return mw


@web.middleware
async def _errors(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    """Errors as JSON for the API; pages keep aiohttp's plain answers."""
    is_api = request.path.startswith(api.PREFIX)
    try:
        return await handler(request)
    except Exception as e:
        return _error_response(e, is_api, request)


def _error_response(e: Exception, is_api: bool, request: web.Request) -> web.StreamResponse:
    if isinstance(e, ServiceError):
        return api.error_response(e.code, e.message, e.status)
    if isinstance(e, StoreUnavailableError):
        log.error("store unavailable", extra={"path": request.path})
        return api.error_response("store_unavailable", "the store is unreachable; try again", 503)
    if isinstance(e, web.HTTPException):
        if not is_api or e.status < 400:
            raise e
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        return api.error_response(codes.get(e.status, "http_error"), e.reason, e.status)
    log.exception("internal error", extra={"path": request.path})
    return api.error_response("internal", "internal error", 500)


SERVER_HEADER = "confserver"
"""The ``Server`` header of every response: no versions (aiohttp would send its own and Python's)."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _security_headers(cfg: Config) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` signal: it runs for every response the app sends, also those
    aiohttp makes from an exception (an unmatched path's 404, a 405, a 500), which a middleware
    would not see."""
    tls = cfg.tls.mode != "off" or cfg.server.trust_proxy_tls

    async def on_prepare(request: web.Request, resp: web.StreamResponse) -> None:
        h = resp.headers
        h["Server"] = SERVER_HEADER
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
        if tls:
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.path.startswith(api.PREFIX):
            h.setdefault("Cache-Control", "no-store")

    return on_prepare
