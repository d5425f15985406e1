"""Pages and static assets of the browser client (web/), all served from this server."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from aiohttp import web

from .rooms import ROOM_NAME_RE


def web_root() -> Path:
    """The browser client's files: the installed ``confserver_web`` package, else web/ beside
    this package in a source tree."""
    spec = importlib.util.find_spec("confserver_web")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "web"


def add_routes(app: web.Application) -> None:
    root = web_root()

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html")

    async def room(request: web.Request) -> web.StreamResponse:
        if not ROOM_NAME_RE.fullmatch(request.match_info["room"]):
            raise web.HTTPNotFound(text="no such room page: room names are 1-64 of A-Z a-z 0-9 _ -")
        resp = web.FileResponse(root / "room.html")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    app.router.add_get("/", index)
    app.router.add_get("/r/{room}", room)
    app.router.add_static("/static/", root, show_index=False, follow_symlinks=False)
