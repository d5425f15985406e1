"""The admin API's participants: list, show, kick, mute, and the lobby (list, admit, deny)."""

from __future__ import annotations

import logging

from aiohttp import web

from .apibase import API, by, only, read_body
from .auditapi import detail
from .errors import ServiceError
from .rooms import participant_info
from .signaling.websocket import SIGNALING

log = logging.getLogger("confserver.api")


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
    log.info("admin removed participant", extra={"room": room, "identity": identity, **by(request)})
    return web.Response(status=204)


async def mute_participant(request: web.Request) -> web.Response:
    ctx = request.app[API]
    room, identity = request.match_info["name"], request.match_info["identity"]
    data = await read_body(request)
    only(data, {"kind", "muted"})
    kind = data.get("kind", "audio")
    if kind not in ("audio", "video"):
        raise ServiceError("invalid_field", "kind must be audio or video")
    if data.get("muted", True) is not True:
        raise ServiceError("invalid_field", "muted must be true: a participant unmutes themselves")
    detail(request, conf={"kind": kind})
    p = await ctx.rooms.mute(room, identity, kind, by="admin")
    await request.app[SIGNALING].media.set_muted(room, p.sid, kind, True)
    log.info(
        "admin muted participant", extra={"room": room, "identity": identity, "kind": kind, **by(request)}
    )
    return web.json_response(participant_info(p))


async def list_lobby(request: web.Request) -> web.Response:
    ctx = request.app[API]
    room = await ctx.rooms.admin.get_room(request.match_info["name"])
    return web.json_response({"waiting": [w.info() for w in ctx.rooms.lobby.waiting(room.name)]})


async def admit_participant(request: web.Request) -> web.Response:
    ctx = request.app[API]
    room, identity = request.match_info["name"], request.match_info["identity"]
    await ctx.rooms.admit(room, identity, by="admin")
    log.info("admin admitted participant", extra={"room": room, "identity": identity, **by(request)})
    return web.Response(status=204)


async def deny_participant(request: web.Request) -> web.Response:
    ctx = request.app[API]
    room, identity = request.match_info["name"], request.match_info["identity"]
    ctx.rooms.deny(room, identity, by="admin")
    log.info("admin denied participant", extra={"room": room, "identity": identity, **by(request)})
    return web.Response(status=204)
