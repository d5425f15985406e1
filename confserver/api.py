"""The admin REST API, ``/api/v1``: rooms, participants, tokens, admin keys. JSON in and out; every
error is ``{"error": CODE, "message": TEXT}`` with a fitting HTTP status (docs/API.md). The OpenAPI
document (openapi.py) describes exactly what these handlers accept. Every route names the scope a
key needs for it in :data:`ROUTES`; a route without one is refused to every key."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import quote

from aiohttp import web

from .access import check_allow, check_password, hash_password
from .adminkeys import (
    Caller,
    KeyRevokedError,
    authenticate,
)
from .apibase import API as API
from .apibase import CALLER as CALLER
from .apibase import ApiContext as ApiContext
from .apibase import by, integral, only, read_body
from .apibase import error_response as error_response
from .audit import UNKNOWN, Actor
from .auditapi import audited, detail, export, get_head, list_entries
from .auditapi import record as audit_record
from .cluster.routes import CLUSTER
from .errors import ServiceError
from .keysapi import create_key, list_keys, revoke_key
from .nodesapi import drain_node, list_nodes, undrain_node
from .openapi import openapi_document
from .participantsapi import (
    admit_participant,
    deny_participant,
    get_participant,
    kick_participant,
    list_lobby,
    list_participants,
    mute_participant,
)
from .rooms import (
    check_empty_timeout,
    check_max_participants,
    check_metadata,
    check_room_name,
)
from .signaling.websocket import SIGNALING
from .store import Room, RoomUpdate
from .tokens import (
    ADMIN_MAX_TTL,
    ROLE_PERMISSIONS,
    TokenError,
    mint_join_token,
    validate_jti,
)

log = logging.getLogger("confserver.api")

PREFIX = "/api/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _scope_of(request: web.Request) -> str | None:
    """The scope the matched route needs; ``None`` for a route that does nothing a scope guards
    (an unknown path's 404, a 405)."""
    info = request.match_info
    route = info.route
    if info.http_exception is not None or route.handler is method_not_allowed or route.resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    # A route missing from the table needs a scope no key holds.
    return ROUTE_SCOPES.get((method, route.resource.canonical), "unassigned")


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(PREFIX + "/") or request.path == PREFIX + "/openapi.json":
        return await handler(request)
    ctx = request.app[API]
    action = _action_of(request)

    def refuse(code: str, message: str, status: int, actor: Actor = UNKNOWN) -> web.Response:
        if action:  # a refused change is recorded under the action that was attempted
            audit_record(request, action, actor, outcome="failure", reason=code)
        return error_response(code, message, status)

    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        return refuse("unauthorized", "an admin bearer token is required", 401)
    now = time.time()
    rejections = request.app[SIGNALING].metrics.token_rejections
    try:
        caller = await authenticate(
            header[7:].strip(),
            verifier=ctx.verifier,
            bootstrap=ctx.signing_key,
            keys=ctx.store.admin_keys,
            leeway=ctx.leeway,
            now=now,
        )
    except TokenError as e:
        rejections.labels(e.reason).inc()
        if e.reason == "not_admin":
            return refuse("forbidden", "this token has no admin grant", 403)
        return refuse("unauthorized", f"bearer token refused: {e.reason}", 401)
    except KeyRevokedError as e:
        rejections.labels("revoked").inc()
        log.warning("revoked API key used", extra={"admin_key": e.key.name, "admin_key_id": e.key.id})
        return refuse(
            "key_revoked", f"API key {e.key.id} has been revoked", 401, _actor(e.key.id, e.key.name)
        )
    claims = caller.claims
    if await ctx.store.revocations.is_revoked(claims.jti, now):
        rejections.labels("revoked").inc()
        log.warning(
            "revoked admin token used",
            extra={"admin": claims.subject, "admin_jti": claims.jti, "admin_key": caller.key_name},
        )
        return refuse("token_revoked", "this admin token has been revoked", 401, _actor_of(caller))
    scope = _scope_of(request)
    if scope is not None and scope not in caller.scopes:
        return refuse(
            "insufficient_scope",
            f"API key {caller.key_name!r} lacks the scope {scope} this needs",
            403,
            _actor_of(caller),
        )
    request[CALLER] = caller
    if not action:
        return await handler(request)
    return await audited(request, handler, action, _actor_of(caller))


def _actor(key_id: str, key_name: str, subject: str = "") -> Actor:
    return Actor("api_key", key_id, key_name, subject)


def _actor_of(caller: Caller) -> Actor:
    return _actor(caller.key_id, caller.key_name, caller.claims.subject)


def _action_of(request: web.Request) -> str:
    """The audit action of the matched route; empty for one that changes nothing."""
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return ""
    return ROUTE_ACTIONS.get((request.method, info.route.resource.canonical), "")


ACCESS_FIELDS = ("lobby", "password", "allow")


def _access_options(data: dict[str, Any], *, removing: bool = False) -> dict[str, Any]:
    """``lobby``, ``password`` (kept as a hash only; ``""`` removes it on an update) and ``allow``."""
    out: dict[str, Any] = {}
    if "lobby" in data:
        if not isinstance(data["lobby"], bool):
            raise ServiceError("invalid_field", "lobby must be true or false")
        out["lobby"] = data["lobby"]
    try:
        if "password" in data:
            if removing and data["password"] == "":
                out["password_hash"] = ""
            else:
                out["password_hash"] = hash_password(check_password(data["password"]))
        if "allow" in data:
            out["allow"] = check_allow(data["allow"])
    except ValueError as e:
        raise ServiceError("invalid_field", str(e)) from None
    return out


def _e2ee(data: dict[str, Any]) -> bool | None:
    """``e2ee``: media encrypted end to end in the browsers; ``None`` when not given."""
    if "e2ee" not in data:
        return None
    if not isinstance(data["e2ee"], bool):
        raise ServiceError("invalid_field", "e2ee must be true or false")
    return data["e2ee"]


async def _room_json(ctx: ApiContext, room: Room) -> dict[str, Any]:
    return {
        "name": room.name,
        "max_participants": room.max_participants,
        "empty_timeout": room.empty_timeout,
        "metadata": dict(room.metadata),
        "locked": room.locked,
        "lobby": room.lobby,
        "password_protected": bool(room.password_hash),
        "allow": dict(room.allow),
        "e2ee": room.e2ee,
        "auto_created": room.auto_created,
        "created_at": int(room.created_at),
        "updated_at": int(room.updated_at),
        "num_participants": await ctx.rooms.admin.count(room.name),
    }


# --- rooms ---------------------------------------------------------------------------------------


async def list_rooms(request: web.Request) -> web.Response:
    ctx = request.app[API]
    rooms = await ctx.rooms.admin.list_rooms()
    return web.json_response({"rooms": [await _room_json(ctx, r) for r in rooms]})


async def create_room(request: web.Request) -> web.Response:
    ctx = request.app[API]
    data = await read_body(request)
    only(data, {"name", "max_participants", "empty_timeout", "metadata", "e2ee", *ACCESS_FIELDS})
    if isinstance(data.get("name"), str):
        detail(request, room=data["name"][:128])
    if "name" not in data:
        raise ServiceError("invalid_room_name", "name is required")
    room = await ctx.rooms.admin.create_room(
        check_room_name(data["name"]),
        max_participants=check_max_participants(integral(data["max_participants"]))
        if "max_participants" in data
        else None,
        empty_timeout=check_empty_timeout(integral(data.get("empty_timeout", 0))),
        metadata=check_metadata(data.get("metadata", {})),
        e2ee=_e2ee(data),
        **_access_options(data),
    )
    detail(request, room=room.name, conf={"max_participants": room.max_participants, "e2ee": room.e2ee})
    log.info(
        "admin created room",
        extra={"room": room.name, **by(request)},
    )
    return web.json_response(await _room_json(ctx, room), status=201)


async def get_room(request: web.Request) -> web.Response:
    ctx = request.app[API]
    room = await ctx.rooms.admin.get_room(request.match_info["name"])
    return web.json_response(await _room_json(ctx, room))


async def update_room(request: web.Request) -> web.Response:
    ctx = request.app[API]
    name = check_room_name(request.match_info["name"])
    data = await read_body(request)
    only(data, {"max_participants", "empty_timeout", "metadata", "locked", "e2ee", *ACCESS_FIELDS})
    if "locked" in data and not isinstance(data["locked"], bool):
        raise ServiceError("invalid_field", "locked must be true or false")
    access = _access_options(data, removing=True)
    changes = RoomUpdate(
        max_participants=check_max_participants(integral(data["max_participants"]))
        if "max_participants" in data
        else None,
        empty_timeout=check_empty_timeout(integral(data["empty_timeout"]))
        if "empty_timeout" in data
        else None,
        metadata=check_metadata(data["metadata"]) if "metadata" in data else None,
        locked=data.get("locked"),
        lobby=access.get("lobby"),
        password_hash=access.get("password_hash"),
        allow=access.get("allow"),
        e2ee=_e2ee(data),
    )
    changed = sorted(k for k in data if k != "metadata") + (["metadata"] if "metadata" in data else [])
    if set(changed) == {"locked"}:
        detail(request, action="room.lock" if data["locked"] else "room.unlock")
    detail(request, conf={"changed": changed})
    room = await ctx.rooms.update_room(name, changes)
    log.info("admin updated room", extra={"room": name, **by(request)})
    return web.json_response(await _room_json(ctx, room))


async def delete_room(request: web.Request) -> web.Response:
    ctx = request.app[API]
    name = request.match_info["name"]
    await ctx.rooms.delete_room(name, reason="deleted")
    log.info("admin deleted room", extra={"room": name, **by(request)})
    return web.Response(status=204)


# --- tokens --------------------------------------------------------------------------------------


async def create_token(request: web.Request) -> web.Response:
    ctx = request.app[API]
    data = await read_body(request)
    only(data, {"room", "identity", "name", "role", "ttl", "permissions"})
    room = check_room_name(data.get("room"))
    detail(request, room=room)
    ttl = integral(data.get("ttl", ctx.token_default_ttl))
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= ctx.token_max_ttl:
        raise ServiceError("invalid_field", f"ttl must be an integer from 1 to {ctx.token_max_ttl} seconds")
    role = data.get("role", "participant")
    if not isinstance(role, str) or role not in ROLE_PERMISSIONS:
        raise ServiceError("invalid_field", f"role must be one of {', '.join(sorted(ROLE_PERMISSIONS))}")
    perms = data.get("permissions")
    if perms is not None and (not isinstance(perms, list) or not all(isinstance(p, str) for p in perms)):
        raise ServiceError("invalid_field", "permissions must be a list of strings")
    if not ctx.auto_create and await ctx.store.rooms.get(room) is None:
        raise ServiceError(
            "room_not_found",
            f"no room named {room}: this server creates rooms only through the API; create it first",
            404,
        )
    try:
        token, claims = mint_join_token(
            ctx.signing_key,
            room=room,
            identity=data.get("identity"),  # type: ignore[arg-type]  # validated by mint_join_token
            name=data.get("name"),
            role=role,
            permissions=perms,
            ttl=ttl,
            now=time.time(),
        )
    except (ValueError, TypeError) as e:
        raise ServiceError("invalid_field", str(e)) from None
    detail(
        request,
        target=claims.identity,
        conf={"jti": claims.jti, "role": role, "expires_at": claims.expires_at},
    )
    log.info(
        "admin created token",
        extra={"room": room, "identity": claims.identity, "jti": claims.jti, **by(request)},
    )
    return web.json_response(
        {
            "token": token,
            "jti": claims.jti,
            "expires_at": claims.expires_at,
            "join_url": f"{ctx.public_url}/r/{quote(room)}#token={token}",
        },
        status=201,
    )


async def revoke_token(request: web.Request) -> web.Response:
    ctx = request.app[API]
    try:
        jti = validate_jti(request.match_info["jti"])
    except ValueError as e:
        raise ServiceError("invalid_field", str(e)) from None
    now = time.time()
    # The token's own expiry (or even its kind: join or admin) is not known from its id alone:
    # remember it for the longest lifetime either kind may have, so it can never be used again.
    until = int(now) + max(ctx.token_max_ttl, ADMIN_MAX_TTL) + ctx.leeway
    await ctx.store.revocations.revoke(jti, expires_at=until, now=now)
    dropped = request.app[SIGNALING].rooms.hub.disconnect_token(jti)
    cluster = request.app.get(CLUSTER)
    if cluster is not None:
        dropped += await cluster.disconnect_token(jti)  # its session may be on another node
    detail(request, target="", conf={"jti": jti, "sessions_closed": dropped})
    log.info(
        "admin revoked token",
        extra={
            "jti": jti,
            "sessions_closed": dropped,
            **by(request),
        },
    )
    return web.json_response({"jti": jti, "revoked_until": until, "sessions_closed": dropped})


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(token_max_ttl=request.app[API].token_max_ttl))


async def method_not_allowed(request: web.Request) -> web.Response:
    """Any method a resource does not serve: ``405`` with the ``Allow`` header RFC 9110 requires."""
    resource = request.match_info.route.resource
    allowed = sorted({route.method for route in resource or () if route.method != "*"})
    resp = error_response(
        "method_not_allowed", f"{request.method} is not allowed here; allowed: {', '.join(allowed)}", 405
    )
    resp.headers["Allow"] = ", ".join(allowed)
    return resp


class Route(NamedTuple):
    method: str
    path: str
    """Below ``PREFIX``."""
    handler: Handler
    scope: str
    """What a key must hold to call it (one of ``adminkeys.SCOPES``)."""
    action: str = ""
    """The audit entry it writes (docs/AUDIT.md); empty for a route that changes nothing."""


ROUTES: tuple[Route, ...] = (
    Route("GET", "/rooms", list_rooms, "rooms:read"),
    Route("POST", "/rooms", create_room, "rooms:write", "room.create"),
    Route("GET", "/rooms/{name}", get_room, "rooms:read"),
    Route("PATCH", "/rooms/{name}", update_room, "rooms:write", "room.update"),
    Route("DELETE", "/rooms/{name}", delete_room, "rooms:write", "room.delete"),
    Route("GET", "/rooms/{name}/participants", list_participants, "participants:read"),
    Route("GET", "/rooms/{name}/participants/{identity}", get_participant, "participants:read"),
    Route(
        "DELETE",
        "/rooms/{name}/participants/{identity}",
        kick_participant,
        "participants:moderate",
        "participant.kick",
    ),
    Route(
        "POST",
        "/rooms/{name}/participants/{identity}/mute",
        mute_participant,
        "participants:moderate",
        "participant.mute",
    ),
    Route("GET", "/rooms/{name}/lobby", list_lobby, "participants:read"),
    Route(
        "POST",
        "/rooms/{name}/lobby/{identity}/admit",
        admit_participant,
        "participants:moderate",
        "participant.admit",
    ),
    Route(
        "POST",
        "/rooms/{name}/lobby/{identity}/deny",
        deny_participant,
        "participants:moderate",
        "participant.deny",
    ),
    Route("POST", "/tokens", create_token, "tokens:create", "token.create"),
    Route("POST", "/tokens/{jti}/revoke", revoke_token, "tokens:revoke", "token.revoke"),
    Route("POST", "/keys", create_key, "keys:admin", "api_key.create"),
    Route("GET", "/keys", list_keys, "keys:admin"),
    Route("DELETE", "/keys/{key_id}", revoke_key, "keys:admin", "api_key.revoke"),
    Route("GET", "/audit", list_entries, "audit:read"),
    Route("GET", "/audit/head", get_head, "audit:read"),
    Route("GET", "/audit/export", export, "audit:read"),
    Route("GET", "/nodes", list_nodes, "nodes:read"),
    Route("POST", "/nodes/{node_id}/drain", drain_node, "nodes:admin", "node.drain"),
    Route("DELETE", "/nodes/{node_id}/drain", undrain_node, "nodes:admin", "node.undrain"),
)
"""Every admin route, its scope and its audit action: the one place they are written."""

ROUTE_SCOPES: dict[tuple[str, str], str] = {(r.method, PREFIX + r.path): r.scope for r in ROUTES}
ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    (r.method, PREFIX + r.path): r.action for r in ROUTES if r.action
}


def add_routes(app: web.Application) -> None:
    r = app.router
    for route in ROUTES:
        if route.method == "GET":
            r.add_get(PREFIX + route.path, route.handler)  # and HEAD
        else:
            r.add_route(route.method, PREFIX + route.path, route.handler)
    r.add_get(PREFIX + "/openapi.json", get_openapi)
    for resource in r.resources():
        if isinstance(resource, web.Resource) and resource.canonical.startswith(PREFIX + "/"):
            resource.add_route("*", method_not_allowed)
