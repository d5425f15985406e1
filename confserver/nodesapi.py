"""The admin API's nodes: list them, and drain one (for an upgrade) or let it serve again."""

from __future__ import annotations

import logging
import re

from aiohttp import web

from .apibase import by
from .auditapi import detail
from .cluster.routes import CLUSTER
from .config import NODE_ID_PATTERN
from .errors import ServiceError, not_found

log = logging.getLogger("confserver.api")


def _cluster(request: web.Request):  # type: ignore[no-untyped-def]
    cluster = request.app.get(CLUSTER)
    if cluster is None:
        raise ServiceError("cluster_unavailable", "this server runs without a node registry", 503)
    return cluster


async def list_nodes(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    nodes = [
        {
            "id": n.info.id,
            "url": n.info.url,
            "state": n.state,
            "rooms": n.info.rooms,
            "participants": n.info.participants,
            "load": n.info.load,
            "media": n.info.media,
            "seen_at": int(n.seen_at),
        }
        for n in await cluster.nodes()
    ]
    return web.json_response({"self": cluster.node, "nodes": nodes})


async def _set_drain(request: web.Request, draining: bool) -> web.Response:
    cluster = _cluster(request)
    node = request.match_info["node_id"]
    if re.fullmatch(NODE_ID_PATTERN, node) is None or not await cluster.registry.set_drain(node, draining):
        raise not_found("node_not_found", "no such node")
    if node == cluster.node:
        cluster.draining = draining  # at once here; the others learn it at their next heartbeat
    detail(request, target="", conf={"node": node})
    log.info("node drain set" if draining else "node drain cleared", extra={"node": node, **by(request)})
    return web.json_response({"id": node, "draining": draining})


async def drain_node(request: web.Request) -> web.Response:
    return await _set_drain(request, True)


async def undrain_node(request: web.Request) -> web.Response:
    return await _set_drain(request, False)
