"""The organisation's branding ([ui]): configuration checks naming the key, the assets the server
makes of it (/brand.json, /brand.css, /brand-logo) under the strict Content-Security-Policy, and a
meeting's display title given only to a join token for its room."""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from confserver.app import CSP, create_app
from confserver.config import MAX_LOGO_BYTES, ConfigError, UiConfig, load_config, logo_content_type
from confserver.metrics import Metrics
from confserver.pages import LOGO_CSP, brand_css
from confserver.store import MemoryStore
from confserver.tokens import SigningKey, mint_join_token
from tests.conftest import API_KEY, API_SECRET, CREDS, AppMaker, admin_headers, base_config, create_room

# --- images ------------------------------------------------------------------------------------


def png(width: int = 2, height: int = 1) -> bytes:
    """A real PNG of ``width`` x ``height`` blue pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x00\x40\xc0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


SVG = b'<?xml version="1.0"?>\n<!-- ministry -->\n<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"/>'
SVG_WITH_SCRIPT = (
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script><rect/></svg>'
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"


def logo(tmp_path: Path, data: bytes, name: str = "logo.img") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def ui_env(**values: str) -> dict[str, str]:
    return {f"CONF_UI_{k.upper()}": v for k, v in values.items()}


# --- configuration -----------------------------------------------------------------------------


def test_without_a_ui_section_the_client_keeps_its_own_name_colours_and_note() -> None:
    assert load_config(None, {}).ui == UiConfig("", "", "", "")


def test_every_ui_key_can_be_set_from_the_environment(tmp_path: Path) -> None:
    path = logo(tmp_path, png())
    cfg = load_config(
        None,
        ui_env(
            brand_name="Kementerian Contoh",
            logo_file=path,
            accent_color="#0B5394",
            privacy_note="Rapat ini direkam.",
        ),
    )
    assert cfg.ui == UiConfig("Kementerian Contoh", path, "#0B5394", "Rapat ini direkam.")


def test_a_multi_line_privacy_note_from_the_toml_file(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('[ui]\nprivacy_note = """\nLine one.\nLine two."""\n')
    assert load_config(conf, {}).ui.privacy_note == "Line one.\nLine two."


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"accent_color": "blue"}, "ui.accent_color: 'blue' is not a colour written #rrggbb"),
        ({"accent_color": "#abc"}, "ui.accent_color: '#abc' is not a colour written #rrggbb"),
        ({"accent_color": "#12345g"}, "ui.accent_color"),
        ({"brand_name": "x" * 65}, "ui.brand_name: at most 64 characters"),
        ({"brand_name": "   "}, "ui.brand_name: must not be only spaces"),
        ({"brand_name": "Two\nlines"}, "ui.brand_name: must be one line of text"),
        ({"privacy_note": "n" * 1001}, "ui.privacy_note: at most 1000 characters"),
        ({"privacy_note": "bell\x07"}, "ui.privacy_note: must be plain text"),
    ],
)
def test_bad_ui_values_are_refused_naming_the_key(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, ui_env(**values))


def test_a_logo_that_is_missing_too_large_or_not_an_image_we_serve_is_refused_at_start(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"ui\.logo_file: cannot read"):
        load_config(None, ui_env(logo_file=str(tmp_path / "none.png")))
    big = png() + b"\x00" * MAX_LOGO_BYTES
    with pytest.raises(ConfigError, match=r"ui\.logo_file: .* is larger than 256 KiB"):
        load_config(None, ui_env(logo_file=logo(tmp_path, big, "big.png")))
    for data, name in ((GIF, "logo.gif"), (b"<html><svg></svg></html>", "page.svg"), (b"", "empty.png")):
        with pytest.raises(ConfigError, match=r"ui\.logo_file: .* is not a PNG, SVG, WebP or JPEG image"):
            load_config(None, ui_env(logo_file=logo(tmp_path, data, name)))
    # exactly the cap is fine
    load_config(None, ui_env(logo_file=logo(tmp_path, png() + b"\x00" * (MAX_LOGO_BYTES - len(png())))))


def test_the_logo_type_comes_from_its_content_not_its_name() -> None:
    assert logo_content_type(png()) == "image/png"
    assert logo_content_type(JPEG) == "image/jpeg"
    assert logo_content_type(WEBP) == "image/webp"
    assert logo_content_type(SVG) == "image/svg+xml"
    assert logo_content_type(b"\xef\xbb\xbf  <svg>") == "image/svg+xml"
    assert (
        logo_content_type(b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x.dtd"><svg/>') == "image/svg+xml"
    )
    # entities (an internal DTD subset) and other XML roots are not logos
    assert logo_content_type(b'<!DOCTYPE svg [<!ENTITY a "b">]><svg>&a;</svg>') is None
    assert logo_content_type(b"<html><body><svg/></body></html>") is None
    assert logo_content_type(GIF) is None
    assert logo_content_type(b"\xff\xfe<\x00s\x00v\x00g\x00") is None
    # a hostile run of comments costs a linear scan, not a backtracking explosion (a lazy pattern
    # took seconds for 26 comments, and doubled its time with every two more)
    for count in (26, 20_000):
        started = time.monotonic()
        assert logo_content_type(b"<!-- a -->" * count + b"<html>") is None
        assert time.monotonic() - started < 1.0


# --- served assets -----------------------------------------------------------------------------


async def branded(make_client: AppMaker, **ui: str) -> TestClient:
    return await make_client(replace(base_config(), ui=UiConfig(**ui)))


async def test_default_branding_is_empty_and_changes_nothing(client: TestClient) -> None:
    resp = await client.get("/brand.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.json() == {"name": None, "logo": None, "privacy_note": None}
    resp = await client.get("/brand.css")
    assert resp.status == 200 and resp.content_type == "text/css"
    assert "--accent" not in await resp.text()
    assert (await client.get("/brand-logo")).status == 404


async def test_name_and_privacy_note_are_served_as_data_for_the_page_to_show_as_text(
    make_client: AppMaker,
) -> None:
    client = await branded(
        make_client, brand_name="<b>Kementerian</b>", privacy_note="Catatan & <i>privasi</i>\n2"
    )
    resp = await client.get("/brand.json")
    assert resp.headers["Content-Security-Policy"] == CSP
    assert await resp.json() == {
        "name": "<b>Kementerian</b>",
        "logo": None,
        "privacy_note": "Catatan & <i>privasi</i>\n2",
    }


async def test_the_accent_colour_is_a_stylesheet_of_custom_properties_under_the_page_csp(
    make_client: AppMaker,
) -> None:
    client = await branded(make_client, accent_color="#0B5394")
    resp = await client.get("/brand.css")
    assert resp.content_type == "text/css" and resp.charset == "utf-8"
    css = await resp.text()
    assert "--accent-strong: #0b5394;" in css and "--on-accent: #ffffff;" in css
    # the pages' policy is the same as without branding: styles from this server only, no inline style
    page = await client.get("/r/standup")
    assert page.headers["Content-Security-Policy"] == CSP and "unsafe-inline" not in CSP
    assert resp.headers["Content-Security-Policy"] == CSP
    html = await page.text()
    assert '<link rel="stylesheet" href="/brand.css">' in html


def test_a_light_accent_gets_dark_text_and_a_dark_one_a_lighter_variant_for_the_dark_page() -> None:
    light = brand_css("#ffd700")
    assert "--on-accent: #0b1220;" in light and "--accent-strong: #ffd700;" in light
    navy = brand_css("#000080")
    assert "--on-accent: #ffffff;" in navy
    variant = navy.split("--accent: ")[1].split(";")[0]
    assert variant != "#000080" and variant.startswith("#") and len(variant) == 7


@pytest.mark.parametrize(
    ("data", "content_type"), [(png(), "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")]
)
async def test_the_logo_is_served_from_this_server_with_its_own_type(
    make_client: AppMaker, tmp_path: Path, data: bytes, content_type: str
) -> None:
    client = await branded(make_client, logo_file=logo(tmp_path, data))
    assert (await (await client.get("/brand.json")).json())["logo"] == "/brand-logo"
    resp = await client.get("/brand-logo")
    assert resp.status == 200 and resp.content_type == content_type
    assert await resp.read() == data
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    again = await client.get("/brand-logo", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304 and await again.read() == b""


async def test_an_svg_logo_is_served_under_a_policy_that_runs_no_script_and_loads_nothing(
    make_client: AppMaker, tmp_path: Path
) -> None:
    client = await branded(make_client, logo_file=logo(tmp_path, SVG_WITH_SCRIPT, "logo.svg"))
    resp = await client.get("/brand-logo")
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    csp = resp.headers["Content-Security-Policy"]
    assert csp == LOGO_CSP
    directives = {d.strip().partition(" ")[0]: d.strip().partition(" ")[2] for d in csp.split(";")}
    assert directives["default-src"] == "'none'" and "script-src" not in directives
    assert "sandbox" in directives and directives["frame-ancestors"] == "'none'"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_logo_is_read_once_at_start(make_client: AppMaker, tmp_path: Path) -> None:
    path = logo(tmp_path, SVG, "logo.svg")
    client = await branded(make_client, logo_file=path)
    logo(tmp_path, b"changed", "logo.svg")
    assert await (await client.get("/brand-logo")).read() == SVG


def test_a_logo_that_changed_into_something_else_before_the_app_started_stops_the_start(
    tmp_path: Path,
) -> None:
    cfg = replace(base_config(), ui=UiConfig(logo_file=logo(tmp_path, GIF, "logo.png")))
    with pytest.raises(RuntimeError, match=r"ui\.logo_file: .* is not a PNG, SVG, WebP or JPEG image"):
        create_app(cfg, store=MemoryStore(), credentials=CREDS, metrics=Metrics.create(process=False))


# --- the meeting's display title ---------------------------------------------------------------


def token(room: str, **kw: Any) -> str:
    key = SigningKey.hs256(API_KEY, API_SECRET)
    return mint_join_token(key, room=room, identity="ana", now=kw.pop("now", time.time()), **kw)[0]


async def title_of(client: TestClient, room: str, body: Any) -> tuple[int, Any]:
    resp = await client.post(f"/r/{room}/title", data=json.dumps(body).encode())
    assert resp.headers["Cache-Control"] == "no-store"
    return resp.status, await resp.json()


async def test_the_title_is_given_to_a_join_token_for_that_room(client: TestClient) -> None:
    await create_room(client, "budget", metadata={"title": "Rapat Anggaran 2027", "team": "x"})
    assert await title_of(client, "budget", {"token": token("budget")}) == (
        200,
        {"title": "Rapat Anggaran 2027"},
    )


async def test_a_room_without_a_usable_title_gives_none(client: TestClient) -> None:
    await create_room(client, "plain")
    await create_room(client, "odd", metadata={"title": {"not": "text"}})
    assert await title_of(client, "plain", {"token": token("plain")}) == (200, {"title": None})
    assert await title_of(client, "odd", {"token": token("odd")}) == (200, {"title": None})
    assert await title_of(client, "later", {"token": token("later")}) == (200, {"title": None})


async def test_the_title_is_not_told_without_a_valid_token_for_the_room(client: TestClient) -> None:
    await create_room(client, "secret", metadata={"title": "Confidential"})
    status, body = await title_of(client, "secret", {"token": token("other")})
    assert (status, body["error"]) == (403, "wrong_room")
    status, body = await title_of(client, "secret", {"token": token("secret")[:-4] + "AAAA"})
    assert (status, body["error"]) == (403, "bad_signature")
    status, body = await title_of(
        client, "secret", {"token": token("secret", ttl=60, now=time.time() - 3600)}
    )
    assert (status, body["error"]) == (403, "expired")
    assert (await title_of(client, "secret", {}))[0] == 400
    assert (await title_of(client, "secret", ["x"]))[0] == 400
    resp = await client.post("/r/secret/title", data=b"x" * 20_000)
    assert resp.status == 413
    resp = await client.get("/r/secret/title")
    assert resp.status == 405


async def test_a_withdrawn_token_is_not_told_the_title(client: TestClient) -> None:
    await create_room(client, "secret", metadata={"title": "Confidential"})
    key = SigningKey.hs256(API_KEY, API_SECRET)
    tok, claims = mint_join_token(key, room="secret", identity="ana", now=time.time())
    resp = await client.post(f"/api/v1/tokens/{claims.jti}/revoke", headers=admin_headers())
    assert resp.status == 200
    status, body = await title_of(client, "secret", {"token": tok})
    assert (status, body["error"]) == (403, "revoked")
