"""The admin API's named keys: create (the secret is answered once), list, revoke."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from .adminkeys import MAX_KEYS, check_key_name, check_scopes, derive_secret, new_key_id
from .apibase import API, CALLER, by, only, read_body
from .auditapi import detail
from .errors import ServiceError
from .store import AdminKey

log = logging.getLogger("confserver.api")


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
    data = await read_body(request)
    only(data, {"name", "scopes"})
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
        extra={"key_id": key.id, "key_name": name, "scopes": list(scopes), **by(request)},
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
    log.info("admin revoked API key", extra={"key_id": key.id, "key_name": key.name, **by(request)})
    return web.json_response(_key_json(key))
