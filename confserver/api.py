"""The admin REST API, ``/api/v1``: rooms, participants, tokens, admin keys. JSON in and out; every
error is ``{"error": CODE, "message": TEXT}`` with a fitting HTTP status (docs/API.md). The OpenAPI
document (openapi.py) describes exactly what these handlers accept. Every route names the scope a
key needs for it in :data:`ROUTES`; a route without one is refused to every key."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

from aiohttp import web

from . import text
from .access import check_allow, check_password, hash_password
from .adminkeys import (
    MAX_KEYS,
    Caller,
    KeyRevokedError,
    authenticate,
    check_key_name,
    check_scopes,
    derive_secret,
    new_key_id,
)
from .audit import UNKNOWN, Actor
from .auditapi import audited, detail, export, get_head, list_entries
from .auditapi import record as audit_record
from .errors import ServiceError
from .openapi import openapi_document
from .rooms import (
    RoomService,
    check_empty_timeout,
    check_max_participants,
    check_metadata,
    check_room_name,
    participant_info,
)
from .signaling.websocket import SIGNALING
from .store import AdminKey, Room, RoomUpdate, Store
from .tokens import (
    ADMIN_MAX_TTL,
    ROLE_PERMISSIONS,
    SigningKey,
    TokenError,
    TokenVerifier,
    mint_join_token,
    validate_jti,
)

log = logging.getLogger("confserver.api")

PREFIX = "/api/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiContext:
    rooms: RoomService
    store: Store
    verifier: TokenVerifier
    signing_key: SigningKey
    public_url: str
    token_default_ttl: int
    token_max_ttl: int
    leeway: int
    max_body_bytes: int
    auto_create: bool = False
    """Whether a join creates its room (dev mode): a token for a missing room is then useful."""


API = web.AppKey("api", ApiContext)
CALLER = web.RequestKey("caller", Caller)
"""The admin token that authorised the request and the key that signed it."""


def _by(request: web.Request) -> dict[str, str]:
    """Who made a change, for its log line: the token's subject and id (so a leaked token can be
    found and revoked) and the name and id of the key that signed it."""
    caller = request[CALLER]
    return {
        "admin": caller.claims.subject,
        "admin_jti": caller.claims.jti,
        "admin_key": caller.key_name,
        "admin_key_id": caller.key_id,
    }


def error_response(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


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


async def _body(request: web.Request) -> dict[str, Any]:
    ctx = request.app[API]
    if request.content_length is not None and request.content_length > ctx.max_body_bytes:
        raise ServiceError("body_too_large", f"bodies are at most {ctx.max_body_bytes} bytes", 413)
    if request.content_type != "application/json":
        raise ServiceError("unsupported_media_type", "send Content-Type: application/json", 415)
    raw = await request.content.read(ctx.max_body_bytes + 1)
    if len(raw) > ctx.max_body_bytes:
        raise ServiceError("body_too_large", f"bodies are at most {ctx.max_body_bytes} bytes", 413)
    try:
        data = text.loads(raw or b"{}")
    except text.UnsafeJson as e:
        # Nesting spoils the body as a whole; a lone surrogate, NaN or a huge number is a bad value.
        raise ServiceError("invalid_json" if e.syntax else "invalid_field", e.message) from None
    except ValueError:
        raise ServiceError("invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ServiceError("invalid_json", "the body must be a JSON object")
    return data


def _integral(value: object) -> object:
    """JSON has one number type: ``20.0`` is the integer 20, as JSON Schema's ``integer`` says."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _only(data: dict[str, Any], allowed: set[str]) -> None:
    """The body holds only ``allowed`` fields, and none is ``null``: no field of this API is
    nullable, and a field left out (not one sent as ``null``) means "default" or "unchanged"."""
    extra = sorted(set(data) - allowed)
    if extra:
        raise ServiceError(
            "invalid_field", f"unknown field {extra[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    nulls = sorted(key for key, value in data.items() if value is None)
    if nulls:
        raise ServiceError("invalid_field", f"{nulls[0]} must not be null; leave it out instead")


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
    data = await _body(request)
    _only(data, {"name", "max_participants", "empty_timeout", "metadata", *ACCESS_FIELDS})
    if isinstance(data.get("name"), str):
        detail(request, room=data["name"][:128])
    if "name" not in data:
        raise ServiceError("invalid_room_name", "name is required")
    room = await ctx.rooms.admin.create_room(
        check_room_name(data["name"]),
        max_participants=check_max_participants(_integral(data["max_participants"]))
        if "max_participants" in data
        else None,
        empty_timeout=check_empty_timeout(_integral(data.get("empty_timeout", 0))),
        metadata=check_metadata(data.get("metadata", {})),
        **_access_options(data),
    )
    detail(request, room=room.name, conf={"max_participants": room.max_participants})
    log.info(
        "admin created room",
        extra={"room": room.name, **_by(request)},
    )
    return web.json_response(await _room_json(ctx, room), status=201)


async def get_room(request: web.Request) -> web.Response:
    ctx = request.app[API]
    room = await ctx.rooms.admin.get_room(request.match_info["name"])
    return web.json_response(await _room_json(ctx, room))


async def update_room(request: web.Request) -> web.Response:
    ctx = request.app[API]
    name = check_room_name(request.match_info["name"])
    data = await _body(request)
    _only(data, {"max_participants", "empty_timeout", "metadata", "locked", *ACCESS_FIELDS})
    if "locked" in data and not isinstance(data["locked"], bool):
        raise ServiceError("invalid_field", "locked must be true or false")
    access = _access_options(data, removing=True)
    changes = RoomUpdate(
        max_participants=check_max_participants(_integral(data["max_participants"]))
        if "max_participants" in data
        else None,
        empty_timeout=check_empty_timeout(_integral(data["empty_timeout"]))
        if "empty_timeout" in data
        else None,
        metadata=check_metadata(data["metadata"]) if "metadata" in data else None,
        locked=data.get("locked"),
        lobby=access.get("lobby"),
        password_hash=access.get("password_hash"),
        allow=access.get("allow"),
    )
    changed = sorted(k for k in data if k != "metadata") + (["metadata"] if "metadata" in data else [])
    if set(changed) == {"locked"}:
        detail(request, action="room.lock" if data["locked"] else "room.unlock")
    detail(request, conf={"changed": changed})
    room = await ctx.rooms.update_room(name, changes)
    log.info("admin updated room", extra={"room": name, **_by(request)})
    return web.json_response(await _room_json(ctx, room))


async def delete_room(request: web.Request) -> web.Response:
    ctx = request.app[API]
    name = request.match_info["name"]
    await ctx.rooms.delete_room(name, reason="deleted")
    log.info("admin deleted room", extra={"room": name, **_by(request)})
    return web.Response(status=204)


# --- participants --------------------------------------------------------------------------------


async def list_participants(request: web.Request) -> web.Response:
    ctx = request.app[API]
    people = await ctx.rooms.admin.participants(request.match_info["name"])
    return web.json_response({"participants": [participant_info(p) for p in people]})


async def get_participant(request: web.Request) -> web.Response:
    ctx = request.app[API]
    p = await ctx.rooms.admin.find_participant(request.match_info["name"], request.match_info["identity"])
    return web.json_response(participant_info(p))


async def kick_participant(request: web.Request) -> web.Response:
    ctx = request.app[API]
    room, identity = request.match_info["name"], request.match_info["identity"]
    await ctx.rooms.kick(room, identity, by="admin")
    log.info("admin removed participant", extra={"room": room, "identity": identity, **_by(request)})
    return web.Response(status=204)


async def mute_participant(request: web.Request) -> web.Response:
    ctx = request.app[API]
    room, identity = request.match_info["name"], request.match_info["identity"]
    data = await _body(request)
    _only(data, {"kind", "muted"})
    kind = data.get("kind", "audio")
    if kind not in ("audio", "video"):
        raise ServiceError("invalid_field", "kind must be audio or video")
    if data.get("muted", True) is not True:
        raise ServiceError("invalid_field", "muted must be true: a participant unmutes themselves")
    detail(request, conf={"kind": kind})
    p = await ctx.rooms.mute(room, identity, kind, by="admin")
    await request.app[SIGNALING].media.set_muted(room, p.sid, kind, True)
    log.info(
        "admin muted participant", extra={"room": room, "identity": identity, "kind": kind, **_by(request)}
    )
    return web.json_response(participant_info(p))


# --- tokens --------------------------------------------------------------------------------------


async def create_token(request: web.Request) -> web.Response:
    ctx = request.app[API]
    data = await _body(request)
    _only(data, {"room", "identity", "name", "role", "ttl", "permissions"})
    room = check_room_name(data.get("room"))
    detail(request, room=room)
    ttl = _integral(data.get("ttl", ctx.token_default_ttl))
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
        extra={"room": room, "identity": claims.identity, "jti": claims.jti, **_by(request)},
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
    detail(request, target="", conf={"jti": jti, "sessions_closed": dropped})
    log.info(
        "admin revoked token",
        extra={
            "jti": jti,
            "sessions_closed": dropped,
            **_by(request),
        },
    )
    return web.json_response({"jti": jti, "revoked_until": until, "sessions_closed": dropped})


# --- admin keys ----------------------------------------------------------------------------------


def _key_json(key: AdminKey) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": key.id,
        "name": key.name,
        "scopes": list(key.scopes),
        "created_at": int(key.created_at),
        "revoked": key.revoked,
    }
    if key.revoked_at is not None:
        out["revoked_at"] = int(key.revoked_at)
    return out


async def create_key(request: web.Request) -> web.Response:
    ctx = request.app[API]
    data = await _body(request)
    _only(data, {"name", "scopes"})
    try:
        name = check_key_name(data.get("name"))
        scopes = check_scopes(data.get("scopes"))
    except ValueError as e:
        raise ServiceError("invalid_field", str(e)) from None
    caller = request[CALLER]
    beyond = sorted(set(scopes) - caller.scopes)
    if beyond:
        raise ServiceError(
            "insufficient_scope",
            f"a key can grant only scopes it holds; {caller.key_name!r} lacks {beyond[0]}",
            403,
        )
    if len(await ctx.store.admin_keys.list()) >= MAX_KEYS:
        raise ServiceError("too_many_keys", f"this server keeps at most {MAX_KEYS} API keys", 409)
    if not isinstance(ctx.signing_key.material, bytes):
        raise ServiceError("internal", "the server's API key is not an HMAC key", 500)
    key = AdminKey(id=new_key_id(), name=name, scopes=scopes, created_at=time.time())
    detail(request, target=key.id, target_name=name, conf={"scopes": list(scopes)})
    await ctx.store.admin_keys.add(key)
    log.info(
        "admin created API key",
        extra={"key_id": key.id, "key_name": name, "scopes": list(scopes), **_by(request)},
    )
    secret = derive_secret(ctx.signing_key.material, key.id)
    return web.json_response({**_key_json(key), "secret": secret}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    keys = await request.app[API].store.admin_keys.list()
    return web.json_response({"keys": [_key_json(k) for k in keys]})


async def revoke_key(request: web.Request) -> web.Response:
    ctx = request.app[API]
    key_id = request.match_info["key_id"]
    if key_id == ctx.signing_key.kid:
        raise ServiceError(
            "bootstrap_key",
            "the bootstrap API key cannot be revoked through the API; replace the API secret instead",
            403,
        )
    key = await ctx.store.admin_keys.revoke(key_id, time.time())
    if key is None:
        raise ServiceError("key_not_found", f"no API key {key_id}", 404)
    detail(request, target_name=key.name)
    log.info("admin revoked API key", extra={"key_id": key.id, "key_name": key.name, **_by(request)})
    return web.json_response(_key_json(key))


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
    Route("POST", "/tokens", create_token, "tokens:create", "token.create"),
    Route("POST", "/tokens/{jti}/revoke", revoke_token, "tokens:revoke", "token.revoke"),
    Route("POST", "/keys", create_key, "keys:admin", "api_key.create"),
    Route("GET", "/keys", list_keys, "keys:admin"),
    Route("DELETE", "/keys/{key_id}", revoke_key, "keys:admin", "api_key.revoke"),
    Route("GET", "/audit", list_entries, "audit:read"),
    Route("GET", "/audit/head", get_head, "audit:read"),
    Route("GET", "/audit/export", export, "audit:read"),
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
