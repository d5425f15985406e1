"""The client's files themselves: complete message catalogues in both languages, pages that the
strict Content-Security-Policy allows, nothing loaded from elsewhere, small modules, and every file
covered by the package data so that an installed server serves it. No browser needed."""

from __future__ import annotations

import json
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
CATALOGUES = {lang: json.loads((WEB / "i18n" / f"{lang}.json").read_text()) for lang in ("en", "id")}
JS = sorted(WEB.glob("*.js"))
HTML = sorted(WEB.glob("*.html"))

# Keys built at run time from a stable word (end screens, errors, quality levels, ...).
DYNAMIC_KEYS = [
    *(f"end.{r}.{part}" for r in (
        "missing", "invalid", "expired", "wrong_room", "revoked", "not_yet_valid", "room_full", "room_locked",
        "room_not_found", "forbidden", "outdated", "join_failed", "removed", "duplicate", "ended", "closed",
        "left", "connection_lost", "unreachable", "e2ee_unsupported",
    ) for part in ("title", "text")),
    *(f"errors.{c}" for c in ("forbidden", "participant_not_found", "chat_too_long", "rate_limited", "store_unavailable", "generic")),
    *(f"quality.{q}" for q in ("good", "fair", "poor", "unknown")),
    *(f"media.{s}{short}" for s in ("unavailable", "unsupported", "failed") for short in ("", "_short")),
    *(f"devices.{k}" for k in ("in_call_denied", "in_call_failed", "name_camera", "name_microphone", "name_screen")),
    "moderation.muted_count_one", "moderation.muted_count_other",
]  # fmt: skip


def keys_used_in_code() -> set[str]:
    used: set[str] = set()
    for path in JS:
        text = path.read_text()
        used |= set(re.findall(r"""\bt\(\s*"([a-z_]+\.[a-z_.]+)\"""", text))
        used |= set(re.findall(r"""["']([a-z]+\.[a-z_]+)["']""", text)) & set(CATALOGUES["en"])
    for path in HTML:
        used |= set(re.findall(r'data-i18n(?:-[a-z]+)?="([^"]+)"', path.read_text()))
    return used


def test_both_languages_have_the_same_messages_with_the_same_placeholders() -> None:
    en, id_ = CATALOGUES["en"], CATALOGUES["id"]
    assert sorted(en) == sorted(id_)
    for key, text in en.items():
        assert text.strip() and id_[key].strip(), key
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", id_[key])), key


def test_every_message_the_code_asks_for_exists() -> None:
    missing = sorted((keys_used_in_code() | set(DYNAMIC_KEYS)) - set(CATALOGUES["en"]))
    assert not missing, f"messages missing from the catalogues: {missing}"


def test_pages_have_no_inline_script_or_style_and_load_nothing_from_elsewhere() -> None:
    for path in HTML:
        html = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"{path.name}: inline script"
        assert not re.search(r"\sstyle=", html), f"{path.name}: style attribute"
        assert not re.search(r"\son[a-z]+=", html), f"{path.name}: inline event handler"
        assert not re.search(r"<style", html), f"{path.name}: style element"
    for path in [*HTML, *JS, *WEB.glob("*.css")]:
        urls = re.findall(r"""https?://[^\s"'`)]+""", path.read_text())
        assert all(u.startswith("http://www.w3.org/") for u in urls), f"{path.name} refers elsewhere: {urls}"
    for path in JS:
        assert "innerHTML" not in path.read_text(), f"{path.name}: builds HTML from strings"


def test_modules_stay_small_and_the_protocol_layer_stays_free_of_the_dom() -> None:
    for path in JS:
        assert len(path.read_text().splitlines()) <= 500, f"{path.name} is over 500 lines"
    dom_free = ["protocol.js", "token.js", "meeting.js", "media.js", "publisher.js", "subscriber.js",
                "subscriptions.js", "quality.js", "devices.js", "localmedia.js", "candidates.js"]  # fmt: skip
    for name in dom_free:
        text = (WEB / name).read_text()
        assert not re.search(r"\bdocument\.|\bwindow\.|querySelector|createElement", text), (
            f"{name} touches the DOM"
        )
        for imported in re.findall(r'from "\./([a-z]+\.js)"', text):
            assert imported in dom_free, f"{name} imports the UI module {imported}"


def test_every_client_file_is_installed_with_the_package() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["confserver_web"]
    for path in WEB.rglob("*"):
        if path.is_file():
            rel = path.relative_to(WEB).as_posix()
            assert any(fnmatch(rel, p) and rel.count("/") == p.count("/") for p in patterns), (
                f"{rel} is not packaged"
            )
