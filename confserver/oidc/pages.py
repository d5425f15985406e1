"""The sign-in's own pages: a refusal or a failure, said plainly, with its stable code, in English
or Indonesian (by the browser's ``Accept-Language``, as the meeting page starts). Server rendered,
every value escaped, no script (the Content-Security-Policy allows none inline)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Final, Literal
from urllib.parse import quote

from aiohttp import web

Lang = Literal["en", "id"]
LANGS: Final = ("en", "id")

TITLES: Final[dict[str, dict[Lang, str]]] = {
    "oidc_not_allowed": {"en": "This meeting is not open to you", "id": "Rapat ini tidak terbuka untuk Anda"},
    "oidc_not_configured": {"en": "Single sign-on is not set up", "id": "Masuk tunggal belum disiapkan"},
    "oidc_provider_unavailable": {
        "en": "The sign-in service cannot be reached",
        "id": "Layanan masuk tidak dapat dihubungi",
    },
    "oidc_busy": {"en": "Too many sign-ins at once", "id": "Terlalu banyak yang masuk bersamaan"},
    "oidc_provider_refused": {"en": "You were not signed in", "id": "Anda tidak berhasil masuk"},
    "oidc_signed_out": {"en": "You have signed out", "id": "Anda telah keluar"},
    "room_not_found": {"en": "There is no such meeting", "id": "Rapat ini tidak ada"},
    "invalid_room_name": {"en": "There is no such meeting", "id": "Rapat ini tidak ada"},
    "store_unavailable": {"en": "The service is busy", "id": "Layanan sedang sibuk"},
}
DEFAULT_TITLE: Final[dict[Lang, str]] = {"en": "The sign-in did not work", "id": "Masuk tidak berhasil"}

MESSAGES_ID: Final[dict[str, str]] = {
    "oidc_not_allowed": "Akun Anda tidak termasuk peserta yang diizinkan untuk rapat ini.",
    "oidc_not_configured": "Server ini tidak menyediakan masuk tunggal.",
    "oidc_provider_unavailable": "Penyedia identitas tidak menjawab. Coba lagi nanti.",
    "oidc_busy": "Coba lagi sebentar lagi.",
    "oidc_provider_refused": "Penyedia identitas tidak memasukkan Anda.",
    "oidc_signed_out": "Anda telah keluar dari layanan ini.",
    "room_not_found": "Periksa alamat rapat, atau tanyakan kepada penyelenggara.",
    "invalid_room_name": "Periksa alamat rapat, atau tanyakan kepada penyelenggara.",
    "store_unavailable": "Rapat tidak dapat diperiksa saat ini. Coba lagi.",
}
DEFAULT_MESSAGE_ID: Final = "Jawaban dari layanan masuk tidak dapat diterima. Silakan masuk lagi."
"""The Indonesian pages say what happened in general; the code (on every page) says exactly."""

LABELS: Final[dict[str, dict[Lang, str]]] = {
    "signed_in_as": {"en": "Signed in as", "id": "Masuk sebagai"},
    "retry": {"en": "Try again", "id": "Coba lagi"},
    "sign_out": {"en": "Sign out", "id": "Keluar"},
    "code": {"en": "Code", "id": "Kode"},
    "app": {"en": "Conference", "id": "Konferensi"},
}
NO_RETRY: Final = frozenset(
    {"oidc_not_allowed", "oidc_not_configured", "room_not_found", "invalid_room_name"}
)


@dataclass(frozen=True)
class Who:
    identity: str
    name: str


def language(accept_language: str) -> Lang:
    """``id`` when the browser prefers Indonesian to English, else ``en``."""
    best: tuple[float, Lang] = (0.0, "en")
    for order, part in enumerate(accept_language[:512].split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGS:
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        weight = q - order * 1e-6  # equal weights: the first listed wins
        if weight > best[0]:
            best = (weight, "id" if primary == "id" else "en")
    return best[1]


def page(
    code: str,
    message: str,
    status: int,
    *,
    lang: Lang = "en",
    room: str = "",
    who: Who | None = None,
    brand_name: str = "",
) -> web.Response:
    title = TITLES.get(code, DEFAULT_TITLE)[lang]
    text = message if lang == "en" else MESSAGES_ID.get(code, DEFAULT_MESSAGE_ID)
    lines = [f'<p data-testid="sso-message">{escape(text)}</p>']
    if who is not None:
        lines.append(
            f'<p data-testid="sso-who">{LABELS["signed_in_as"][lang]} <strong>'
            f"{escape(who.name)}</strong> ({escape(who.identity)})</p>"
        )
    actions = []
    if room and code not in NO_RETRY:
        href = "/auth/sign-in/" + quote(room)
        actions.append(
            f'<a class="btn btn-primary" data-testid="sso-retry" href="{href}">{LABELS["retry"][lang]}</a>'
        )
    if who is not None:
        actions.append(
            f'<a class="btn" data-testid="sso-sign-out" href="/auth/logout">{LABELS["sign_out"][lang]}</a>'
        )
    body = f"""<!doctype html>
<html lang="{lang}">
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
<span class="brand-name">{escape(brand_name or LABELS["app"][lang])}</span></span></header>
<main class="view-center">
<section class="card end-card" data-testid="sso-page" data-code="{escape(code)}">
<h1 data-testid="sso-title">{escape(title)}</h1>
{"".join(lines)}
<p class="hint">{LABELS["code"][lang]}: <code data-testid="sso-code">{escape(code)}</code></p>
<div class="end-actions">{"".join(actions)}</div>
</section>
</main>
</body>
</html>
"""
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Language"] = lang
    resp.headers["Vary"] = "Accept-Language"
    return resp
