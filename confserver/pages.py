"""Pages and static assets of the browser client (web/), all served from this server.

The organisation's branding (``[ui]``) is served beside them, built once at start: its name and
privacy note as data (``/brand.json``, rendered by the client as text), its accent colour as a
small stylesheet of CSS custom properties (``/brand.css``, so no inline style is ever needed), and
its logo (``/brand-logo``) with a Content-Security-Policy of its own under which an SVG cannot run
script or load anything, even when opened directly. A meeting's display title (``metadata.title``)
is given to the holder of a valid join token for that room only (``POST /r/ROOM/title``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from .api import error_response
from .config import ConfigError, UiConfig, read_logo
from .errors import ServiceError
from .rooms import ROOM_NAME_RE
from .signaling.websocket import SIGNALING
from .tokens import TokenError

BRAND_JSON = "/brand.json"
BRAND_CSS = "/brand.css"
BRAND_LOGO = "/brand-logo"

LOGO_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'none'"
"""The logo's own policy: an SVG may style itself and embed data: images, nothing else; no script
runs and nothing is fetched even when the file is opened as a page (in ``<img>`` it never could)."""

MAX_TITLE_REQUEST_BYTES = 16 * 1024
"""A title request carries one join token (well under 4 KiB)."""

PAGE_BACKGROUND = "#0b1220"
"""``--bg`` of web/style.css: the accent's light variant must stand out against it."""


def web_root() -> Path:
    """The browser client's files: the installed ``confserver_web`` package, else web/ beside
    this package in a source tree."""
    spec = importlib.util.find_spec("confserver_web")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "web"


# --- branding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    """A small file made at start and kept in memory, served with an ETag."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> Asset:
        return cls(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    def response(self, request: web.Request, headers: Mapping[str, str] | None = None) -> web.Response:
        fresh = self.etag in (t.strip() for t in request.headers.get("If-None-Match", "").split(","))
        resp = web.Response(status=304) if fresh else web.Response(body=self.body)
        if not fresh:
            resp.content_type = self.content_type
            if self.content_type.startswith("text/") or self.content_type.endswith("json"):
                resp.charset = "utf-8"
        resp.headers["ETag"] = self.etag
        resp.headers["Cache-Control"] = "no-cache"  # revalidated: the branding may change at a restart
        resp.headers.update(headers or {})
        return resp


@dataclass(frozen=True)
class Brand:
    info: Asset
    css: Asset
    logo: Asset | None


def load_brand(ui: UiConfig) -> Brand:
    """The branding assets of ``ui``; the logo file is read here, once."""
    logo = None
    if ui.logo_file:
        try:
            data, content_type = read_logo(ui.logo_file)
        except ConfigError as e:  # checked at load already; the file changed since
            raise RuntimeError(str(e)) from None
        logo = Asset.of(data, content_type)
    info = {
        "name": ui.brand_name.strip() or None,
        "logo": BRAND_LOGO if logo else None,
        "privacy_note": ui.privacy_note.strip() or None,
    }
    return Brand(
        info=Asset.of(json.dumps(info, ensure_ascii=False).encode(), "application/json"),
        css=Asset.of(brand_css(ui.accent_color).encode(), "text/css"),
        logo=logo,
    )


def brand_css(accent: str) -> str:
    """The custom properties web/style.css takes its accent from: ``--accent-strong`` (the colour
    itself: filled buttons, active tools), ``--accent`` (lighter where it must show on the dark
    page: icons, hover) and ``--on-accent`` (white or dark text, whichever reads better on it)."""
    if not accent:
        return "/* No accent colour configured ([ui] accent_color): web/style.css's own apply. */\n"
    rgb = _rgb(accent)
    dark = _rgb(PAGE_BACKGROUND)
    white = (255, 255, 255)
    on_accent = "#ffffff" if _contrast(rgb, white) >= _contrast(rgb, dark) else PAGE_BACKGROUND
    light = rgb
    for step in range(2, 11):  # 20 %, 30 %, ... white until it stands out on the page (3:1)
        light = _mix(rgb, white, step / 10)
        if _contrast(light, dark) >= 3.0:
            break
    return (
        "/* The organisation's accent colour ([ui] accent_color), made by the server at start. */\n"
        ":root {\n"
        f"  --accent-strong: {accent.lower()};\n"
        f"  --accent: {_hex(light)};\n"
        f"  --on-accent: {on_accent};\n"
        "}\n"
    )


Rgb = tuple[int, int, int]


def _rgb(color: str) -> Rgb:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _hex(rgb: Rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _mix(a: Rgb, b: Rgb, share_of_b: float) -> Rgb:
    r, g, bl = (round(x + (y - x) * share_of_b) for x, y in zip(a, b, strict=True))
    return r, g, bl


def _luminance(rgb: Rgb) -> float:
    """Relative luminance (WCAG 2)."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: Rgb, b: Rgb) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# --- routes --------------------------------------------------------------------------------------


def add_routes(app: web.Application, ui: UiConfig) -> None:
    root = web_root()
    brand = load_brand(ui)

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html")

    async def room(request: web.Request) -> web.StreamResponse:
        if not ROOM_NAME_RE.fullmatch(request.match_info["room"]):
            raise web.HTTPNotFound(text="no such room page: room names are 1-64 of A-Z a-z 0-9 _ -")
        resp = web.FileResponse(root / "room.html")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def brand_info(request: web.Request) -> web.Response:
        return brand.info.response(request)

    async def brand_style(request: web.Request) -> web.Response:
        return brand.css.response(request)

    async def brand_logo(request: web.Request) -> web.Response:
        if brand.logo is None:
            raise web.HTTPNotFound(text="no logo configured ([ui] logo_file)")
        return brand.logo.response(request, {"Content-Security-Policy": LOGO_CSP})

    app.router.add_get("/", index)
    app.router.add_get("/r/{room}", room)
    app.router.add_post("/r/{room}/title", room_title)
    app.router.add_get(BRAND_JSON, brand_info)
    app.router.add_get(BRAND_CSS, brand_style)
    app.router.add_get(BRAND_LOGO, brand_logo)
    app.router.add_static("/static/", root, show_index=False, follow_symlinks=False)


def _refused(code: str, message: str, status: int) -> web.Response:
    resp = error_response(code, message, status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def room_title(request: web.Request) -> web.Response:
    """``{"title": ...}``: the room's ``metadata.title`` when it is a string, else null. Only for
    a valid, unrevoked join token for this room (``{"token": ...}`` in the body, never in the
    URL): a title can say what a confidential meeting is about, and the slug alone does not."""
    name = request.match_info["room"]
    if not ROOM_NAME_RE.fullmatch(name):
        return _refused("invalid_room_name", "room names are 1-64 of A-Z a-z 0-9 _ -", 404)
    length = request.content_length
    if length is None or length > MAX_TITLE_REQUEST_BYTES:
        return _refused("body_too_large", f"send at most {MAX_TITLE_REQUEST_BYTES} bytes", 413)
    try:
        body: Any = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        body = None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        return _refused("invalid_body", 'send {"token": "<join token>"}', 400)
    ctx = request.app[SIGNALING]
    try:
        claims = ctx.verifier.verify_join(token, room=name, now=time.time())
        if await ctx.revocations.is_revoked(claims.jti, time.time()):
            raise TokenError("revoked")
    except TokenError as e:
        return _refused(e.reason, str(e), 403)
    try:
        found = await ctx.rooms.admin.get_room(name)
    except ServiceError:  # not created yet (created on the first join) or deleted
        title = None
    else:
        value = found.metadata.get("title")
        title = value if isinstance(value, str) else None
    resp = web.json_response({"title": title})
    resp.headers["Cache-Control"] = "no-store"
    return resp
