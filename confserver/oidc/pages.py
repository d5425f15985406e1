"""The sign-in's own pages: a refusal or a failure, said plainly, with its stable code. Server
rendered, every value escaped, no script (the page's Content-Security-Policy allows none inline)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from aiohttp import web

TITLES = {
    "oidc_not_allowed": "This meeting is not open to you",
    "oidc_not_configured": "Single sign-on is not set up",
    "oidc_provider_unavailable": "The sign-in service cannot be reached",
    "oidc_busy": "Too many sign-ins at once",
    "oidc_provider_refused": "You were not signed in",
    "oidc_signed_out": "You have signed out",
    "room_not_found": "There is no such meeting",
    "invalid_room_name": "There is no such meeting",
    "store_unavailable": "The service is busy",
}
DEFAULT_TITLE = "The sign-in did not work"


@dataclass(frozen=True)
class Who:
    identity: str
    name: str


def page(
    code: str,
    message: str,
    status: int,
    *,
    room: str = "",
    who: Who | None = None,
    brand_name: str = "",
) -> web.Response:
    title = TITLES.get(code, DEFAULT_TITLE)
    lines = [f'<p data-testid="sso-message">{escape(message)}</p>']
    if who is not None:
        lines.append(
            '<p data-testid="sso-who">Signed in as <strong>'
            f"{escape(who.name)}</strong> ({escape(who.identity)})</p>"
        )
    actions = []
    if room and code not in ("oidc_not_allowed", "oidc_not_configured", "room_not_found"):
        href = "/auth/sign-in/" + quote(room)
        actions.append(f'<a class="btn btn-primary" data-testid="sso-retry" href="{href}">Try again</a>')
    if who is not None:
        actions.append('<a class="btn" data-testid="sso-sign-out" href="/auth/logout">Sign out</a>')
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{escape(title)}</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css">
<link rel="stylesheet" href="/brand.css">
</head>
<body class="page">
<header class="page-header"><span class="brand"><span class="brand-mark" aria-hidden="true"></span>\
<span class="brand-name">{escape(brand_name or "Conference")}</span></span></header>
<main class="view-center">
<section class="card end-card" data-testid="sso-page" data-code="{escape(code)}">
<h1 data-testid="sso-title">{escape(title)}</h1>
{"".join(lines)}
<p class="hint">Code: <code data-testid="sso-code">{escape(code)}</code></p>
<div class="end-actions">{"".join(actions)}</div>
</section>
</main>
</body>
</html>
"""
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers["Cache-Control"] = "no-store"
    return resp
