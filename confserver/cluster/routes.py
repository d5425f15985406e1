"""The HTTP side of several nodes: admin calls forwarded to the node serving the room, and the
endpoints other nodes call (relayed sessions are in ``signaling/websocket.py``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from yarl import URL

from ..apibase import error_response
from ..rooms.admin import ROOM_NAME_RE
from ..signaling.websocket import SIGNALING, handle_relayed_ws
from ..store import StoreUnavailableError
from ..tokens import validate_jti
from . import auth
from .node import Cluster
from .registry import NodeInfo

log = logging.getLogger("confserver.cluster")

CLUSTER = web.AppKey("cluster", Cluster)
API_PREFIX = "/api/v1"
ROOM_ROUTES = API_PREFIX + "/rooms/{name}"
FORWARDED_HEADERS = ("Authorization", "Content-Type", "Accept")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/cluster/v1/ws", handle_relayed_ws)
    app.router.add_post("/cluster/v1/disconnect", _disconnect)


def _live_state_route(request: web.Request) -> str | None:
    """The room of an admin call that acts on a meeting in progress (participants, moderation,
    lobby, lock, end); ``None`` for every other call."""
    resource = request.match_info.route.resource
    if resource is None or not resource.canonical.startswith(ROOM_ROUTES):
        return None
    if resource.canonical == ROOM_ROUTES and request.method not in ("PATCH", "DELETE"):
        return None
    name = request.match_info.get("name", "")
    return name if ROOM_NAME_RE.fullmatch(name) else None  # garbage: the handler refuses it here


@web.middleware
async def forward_to_owner(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admin calls on a meeting go to the node serving it, which checks the caller, acts and
    records it, once. A call another node forwarded is served here as it is."""
    cluster = request.app.get(CLUSTER)
    if cluster is None or not request.path.startswith(API_PREFIX + "/"):
        return await handler(request)
    if auth.HEADER in request.headers:
        try:
            cluster.verify(request.headers.get(auth.HEADER), request.method, request.path)
        except auth.ClusterAuthError:
            return error_response("cluster_auth_failed", "node-to-node requests need the cluster secret", 403)
        client = request.headers.get(auth.CLIENT_ADDRESS, "")[:64]
        return await handler(request.clone(remote=client) if client else request)
    room = _live_state_route(request)
    if room is None:
        return await handler(request)
    try:
        target = await cluster.owner_elsewhere(room)
    except StoreUnavailableError:
        target = None  # served here: the handler answers store_unavailable if it needs the store
    if target is None:
        return await handler(request)
    return await _forward(cluster, request, target)


async def _forward(cluster: Cluster, request: web.Request, target: NodeInfo) -> web.StreamResponse:
    body = await request.read()
    headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
    headers.update(cluster.signed(request.method, request.path, request.remote or ""))
    try:
        async with cluster.http.request(
            request.method,
            URL(target.url + request.raw_path, encoded=True),
            data=body or None,
            headers=headers,
            ssl=cluster.ssl_for(target),
            timeout=aiohttp.ClientTimeout(total=10.0),
            allow_redirects=False,
        ) as resp:
            answer = await resp.read()
            return web.Response(status=resp.status, body=answer, content_type=resp.content_type)
    except (aiohttp.ClientError, TimeoutError) as e:
        log.warning("could not forward an admin call", extra={"node": target.id, "error": str(e)})
        return error_response("node_unavailable", "the node serving this room did not answer; try again", 503)


async def _disconnect(request: web.Request) -> web.Response:
    """Another node revoked a token: close its sessions here."""
    cluster = request.app.get(CLUSTER)
    if cluster is None:
        raise web.HTTPNotFound()
    try:
        cluster.verify(request.headers.get(auth.HEADER), "POST", request.path)
    except auth.ClusterAuthError:
        return error_response("cluster_auth_failed", "node-to-node requests need the cluster secret", 403)
    text = (await request.content.read(256)).decode("ascii", "replace")
    try:
        jti = validate_jti(unquote(text))
    except ValueError:
        return error_response("invalid_field", "not a token id", 400)
    closed = request.app[SIGNALING].rooms.hub.disconnect_token(jti)
    return web.Response(text=str(closed))
