"""The sign-in's routes: ``/auth/sign-in/ROOM`` leaves for the provider, ``/auth/callback`` comes
back, decides by the room's ``allow`` policy and sends the browser to ``/r/ROOM#token=...`` (the
join token in the fragment, as a join link carries it: never in a query string or a log),
``/auth/logout`` signs out, ``/auth/session`` tells the page whether sign-in is offered.

The server keeps nothing per sign-in: the flow (state, nonce, PKCE verifier, room) and who signed
in live in sealed, HttpOnly, SameSite=Lax cookies, scoped to ``/auth``."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web

from .. import access, api, auditapi
from ..audit.record import UNKNOWN, Actor
from ..config import Config
from ..credentials import ApiCredentials
from ..errors import ServiceError
from ..metrics import Metrics
from ..rooms import ROOM_NAME_RE
from ..store import StoreUnavailableError
from ..tokens import mint_join_token
from . import flow as core
from .flow import Flow, Sealer, SignedIn, SignInError
from .pages import Who, language, page
from .provider import ProviderClient

log = logging.getLogger("confserver.oidc")

COOKIE_PATH: Final = "/auth"
SIGNED_OUT_PATH: Final = "/auth/signed-out"
MAX_FLOWS: Final = 4
"""Sign-ins under way at once in one browser (tabs); older ones are dropped."""
MAX_QUERY_CHARS: Final = 8192


@dataclass
class SignInContext:
    cfg: Config
    sealer: Sealer
    client: ProviderClient
    metrics: Metrics
    clock: Callable[[], float] = time.time

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.auth.oidc.issuer)

    @property
    def secure(self) -> bool:
        return self.cfg.public_url.startswith("https://")

    @property
    def redirect_uri(self) -> str:
        return self.cfg.public_url + core.CALLBACK_PATH

    def cookie(self, name: str) -> str:
        return ("__Secure-" if self.secure else "") + name

    @property
    def session_cookie(self) -> str:
        return self.cookie("conf_sso")

    def flow_cookie(self, state: str) -> str:
        return self.cookie(core.flow_cookie_name(state))


SIGN_IN = web.AppKey("sign_in", SignInContext)


def add_routes(app: web.Application, cfg: Config, credentials: ApiCredentials, metrics: Metrics) -> None:
    ctx = SignInContext(cfg, Sealer(credentials.api_secret), ProviderClient(cfg.auth.oidc), metrics)
    app[SIGN_IN] = ctx
    app.router.add_get("/auth/sign-in/{room}", sign_in)
    app.router.add_get(core.CALLBACK_PATH, callback)
    app.router.add_get("/auth/logout", logout)
    app.router.add_get(SIGNED_OUT_PATH, signed_out)
    app.router.add_get("/auth/session", session)

    async def client_lifetime(app: web.Application) -> AsyncIterator[None]:
        if ctx.enabled:
            await ctx.client.start()
        yield
        await ctx.client.close()

    app.cleanup_ctx.append(client_lifetime)


def _page(request: web.Request, e: SignInError | ServiceError, **kw: Any) -> web.Response:
    brand = request.app[SIGN_IN].cfg.ui.brand_name
    lang = language(request.headers.get("Accept-Language", ""))
    return page(e.code, e.message, e.status, lang=lang, brand_name=brand, **kw)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _set_cookie(ctx: SignInContext, resp: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    resp.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=ctx.secure,
        httponly=True,
        samesite="Lax",
    )


def _drop_cookie(ctx: SignInContext, resp: web.StreamResponse, name: str) -> None:
    resp.del_cookie(name, path=COOKIE_PATH, secure=ctx.secure, httponly=True, samesite="Lax")


def _who(ctx: SignInContext, request: web.Request) -> tuple[Who | None, str]:
    """Who signed in on this browser (from the session cookie) and the ID token kept for logout."""
    value = ctx.sealer.open("session", request.cookies.get(ctx.session_cookie, ""), now=ctx.clock())
    if value is None or not isinstance(value.get("identity"), str) or not isinstance(value.get("name"), str):
        return None, ""
    hint = value.get("id_token_hint")
    return Who(value["identity"], value["name"]), hint if isinstance(hint, str) else ""


# --- leaving for the provider --------------------------------------------------------------------


async def sign_in(request: web.Request) -> web.StreamResponse:
    ctx = request.app[SIGN_IN]
    room = request.match_info["room"]
    if not ctx.enabled:
        return _page(request, SignInError("oidc_not_configured", "this server offers no single sign-on", 404))
    if not ROOM_NAME_RE.fullmatch(room):
        return _page(request, SignInError("invalid_room_name", "room names are 1-64 of A-Z a-z 0-9 _ -", 404))
    try:
        meta = await ctx.client.metadata()
    except SignInError as e:
        ctx.metrics.sign_ins.labels(e.code).inc()
        return _page(request, e, room=room)
    flow = Flow.new(room)
    resp = _see_other(core.authorization_url(meta, ctx.cfg.auth.oidc, flow, ctx.redirect_uri))
    _keep_recent_flows(ctx, request, resp)
    sealed = ctx.sealer.seal("flow", flow.to_json(), now=ctx.clock(), ttl=core.FLOW_TTL)
    _set_cookie(ctx, resp, ctx.flow_cookie(flow.state), sealed, core.FLOW_TTL)
    return resp


def _keep_recent_flows(ctx: SignInContext, request: web.Request, resp: web.StreamResponse) -> None:
    """At most ``MAX_FLOWS`` sign-ins per browser: each is a cookie, and cookies must stay small."""
    prefix = ctx.cookie("conf_oidc_")
    now = ctx.clock()
    flows: list[tuple[bool, int, str]] = []
    for name, value in request.cookies.items():
        if not name.startswith(prefix):
            continue
        opened = ctx.sealer.open("flow", value, now=now)
        flows.append((opened is not None, len(flows), name))
    flows.sort(reverse=True)  # readable ones first, the latest sent first among them
    for _ok, _order, name in flows[MAX_FLOWS - 1 :]:
        _drop_cookie(ctx, resp, name)


# --- coming back ---------------------------------------------------------------------------------


async def callback(request: web.Request) -> web.StreamResponse:
    ctx = request.app[SIGN_IN]
    if not ctx.enabled:
        return _page(request, SignInError("oidc_not_configured", "this server offers no single sign-on", 404))
    room = ""
    flow_cookie = ""
    try:
        if len(request.query_string) > MAX_QUERY_CHARS:
            raise SignInError("oidc_bad_callback", "the sign-in answer is too long")
        answer = core.parse_callback(request.query.items())
        flow_cookie = ctx.flow_cookie(answer.state)
        opened = ctx.sealer.open("flow", request.cookies.get(flow_cookie, ""), now=ctx.clock())
        if opened is None:
            raise SignInError(
                "oidc_state_mismatch",
                "this sign-in answer belongs to no sign-in started in this browser in the last "
                f"{core.FLOW_TTL // 60} minutes (or it was used already); sign in again",
            )
        flow = Flow.from_json(opened)
        room = flow.room
        core.check_state(flow, answer)
        answer.check_issuer(ctx.cfg.auth.oidc.issuer)
        answer.check_success()
        who, id_token = await _verify(ctx, flow, answer.code)
    except SignInError as e:
        _audit(request, UNKNOWN, "failure", e.code, room)
        refusal = _page(request, e, room=room)
        if flow_cookie:
            _drop_cookie(ctx, refusal, flow_cookie)  # each sign-in answer is used once
        return refusal
    resp = await _admit(request, ctx, flow, who, id_token)
    _drop_cookie(ctx, resp, flow_cookie)
    return resp


async def _verify(ctx: SignInContext, flow: Flow, code: str) -> tuple[SignedIn, str]:
    """Who signed in, and the ID token (kept only as the provider's sign-out hint)."""
    oidc = ctx.cfg.auth.oidc
    meta = await ctx.client.metadata()
    id_token = await ctx.client.exchange(
        meta, code=code, verifier=flow.verifier, redirect_uri=ctx.redirect_uri
    )

    def verify(keys: dict[str, Any]) -> dict[str, Any]:
        return core.verify_id_token(
            id_token,
            keys,
            issuer=meta.issuer,
            client_id=oidc.client_id,
            nonce=flow.nonce,
            now=ctx.clock(),
            leeway=ctx.cfg.auth.leeway,
        )

    try:
        claims = verify(await ctx.client.keys())
    except core.UnknownKeyError:
        claims = verify(await ctx.client.keys(refresh=True))  # the provider may have rotated its keys
    return core.signed_in(claims, oidc), id_token


async def _admit(
    request: web.Request, ctx: SignInContext, flow: Flow, who: SignedIn, id_token: str
) -> web.StreamResponse:
    actor = Actor("participant", who.identity, who.name)
    shown = Who(who.identity, who.name)
    try:
        room = await request.app[api.API].rooms.admin.get_room(flow.room)
    except ServiceError as e:
        _audit(request, actor, "failure", e.code, flow.room)
        return _with_session(ctx, _page(request, e, room=flow.room, who=shown), who, id_token)
    except StoreUnavailableError:
        _audit(request, actor, "failure", "store_unavailable", flow.room)
        down = SignInError("store_unavailable", "the meeting cannot be looked up just now; try again", 503)
        return _with_session(ctx, _page(request, down, room=flow.room, who=shown), who, id_token)
    role = access.decide(room.allow, identity=who.identity, email=who.email, groups=who.groups)
    if role is None:
        _audit(request, actor, "failure", "oidc_not_allowed", flow.room)
        refused = SignInError("oidc_not_allowed", "This meeting is not open to your account.", 403)
        return _with_session(ctx, _page(request, refused, room=flow.room, who=shown), who, id_token)
    token, claims = mint_join_token(
        request.app[api.API].signing_key,
        room=flow.room,
        identity=who.identity,
        name=who.name,
        role=role,
        ttl=ctx.cfg.auth.oidc.join_token_ttl,
        now=ctx.clock(),
    )
    _audit(request, actor, "success", "", flow.room, role=role, jti=claims.jti)
    log.info("signed in", extra={"room": flow.room, "identity": who.identity, "role": role})
    resp = _see_other(f"/r/{quote(flow.room)}#token={token}")
    return _with_session(ctx, resp, who, id_token)


def _with_session(
    ctx: SignInContext, resp: web.StreamResponse, who: SignedIn, id_token: str
) -> web.StreamResponse:
    """Remember who signed in (for our pages and the sign-out), with the ID token as the provider's
    sign-out hint when the cookie stays small enough."""
    value: dict[str, str] = {"identity": who.identity, "name": who.name}
    ttl = ctx.cfg.auth.oidc.session_ttl
    sealed = ctx.sealer.seal("session", {**value, "id_token_hint": id_token}, now=ctx.clock(), ttl=ttl)
    if len(sealed) > core.MAX_COOKIE_CHARS:
        sealed = ctx.sealer.seal("session", value, now=ctx.clock(), ttl=ttl)
    _set_cookie(ctx, resp, ctx.session_cookie, sealed, ttl)
    return resp


def _audit(request: web.Request, actor: Actor, outcome: str, reason: str, room: str, **conf: str) -> None:
    """One ``user.sign_in`` audit entry, and the count by result."""
    request.app[SIGN_IN].metrics.sign_ins.labels("admitted" if outcome == "success" else reason).inc()
    request.app[auditapi.AUDIT].record(
        "user.sign_in",
        actor=actor,
        outcome="success" if outcome == "success" else "failure",
        reason=reason,
        room=room,
        client_ip=request.remote or "",
        conf=conf or None,
    )


# --- signing out, and what the page needs to know ------------------------------------------------


async def logout(request: web.Request) -> web.StreamResponse:
    """Forget who signed in here, then sign out at the provider too when it offers that."""
    ctx = request.app[SIGN_IN]
    _signed_in, hint = _who(ctx, request)
    target = SIGNED_OUT_PATH
    if ctx.enabled:
        try:
            meta = await ctx.client.metadata()
        except SignInError:
            meta = None  # signed out here; the provider's own sign-out page remains
        if meta is not None and meta.end_session_endpoint:
            params = {
                "client_id": ctx.cfg.auth.oidc.client_id,
                "post_logout_redirect_uri": ctx.cfg.public_url + SIGNED_OUT_PATH,
            }
            if hint:
                params["id_token_hint"] = hint
            sep = "&" if urlsplit(meta.end_session_endpoint).query else "?"
            target = meta.end_session_endpoint + sep + urlencode(params)
    resp = _see_other(target)
    _drop_cookie(ctx, resp, ctx.session_cookie)
    return resp


async def signed_out(request: web.Request) -> web.Response:
    e = SignInError("oidc_signed_out", "You are signed out of this service.", 200)
    return _page(request, e)


async def session(request: web.Request) -> web.Response:
    """``{"sso": bool, "signed_in": {"identity", "name"} | null}`` for the meeting page."""
    ctx = request.app[SIGN_IN]
    who, _hint = _who(ctx, request)
    body = {
        "sso": ctx.enabled,
        "signed_in": None if who is None else {"identity": who.identity, "name": who.name},
    }
    resp = web.json_response(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp
