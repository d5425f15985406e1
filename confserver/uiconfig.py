"""The ``[ui]`` section: the organisation's name, logo, colour and privacy note, their checks, and
reading the logo file (type detected from its bytes). Re-exported by ``confserver.config``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .configerror import ConfigError


@dataclass(frozen=True)
class UiConfig:
    """How the browser client presents the organisation: all optional, the client's own wording
    and colours otherwise."""

    brand_name: str = ""
    """The organisation's name in the page title and header; empty: "Conference" (translated)."""
    logo_file: str = ""
    """A PNG, SVG, WebP or JPEG image (at most ``MAX_LOGO_BYTES``), read once at start and served
    by this server at ``/brand-logo``; empty: the built-in mark."""
    accent_color: str = ""
    """``#rrggbb`` for buttons and highlights (served in ``/brand.css``); empty: the built-in blue."""
    privacy_note: str = ""
    """Plain text shown on the pre-join and start pages instead of the generic line; newlines kept."""


MAX_BRAND_NAME_CHARS = 64
MAX_PRIVACY_NOTE_CHARS = 1000
MAX_LOGO_BYTES = 256 * 1024
ACCENT_COLOR_RE = re.compile(r"#[0-9a-fA-F]{6}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SVG_ROOT_RE = re.compile(
    r"(?:\s+|<\?xml[^>]*\?>|<!--(?:(?!-->).)*-->|<!DOCTYPE\s+svg[^>\[]*>)*+<svg[\s>/]",
    re.DOTALL | re.IGNORECASE,
)
"""An SVG document: an XML declaration, comments and a DOCTYPE without internal subset (no
entities), then the ``<svg>`` root; possessive, so a hostile file cannot make it backtrack."""


def check_ui(ui: UiConfig) -> None:
    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"ui.{key}: {msg}")

    need(
        len(ui.brand_name) <= MAX_BRAND_NAME_CHARS, "brand_name", f"at most {MAX_BRAND_NAME_CHARS} characters"
    )
    need(ui.brand_name == "" or bool(ui.brand_name.strip()), "brand_name", "must not be only spaces")
    need(
        not _CONTROL_RE.search(ui.brand_name),
        "brand_name",
        "must be one line of text (no control characters)",
    )
    need(
        len(ui.privacy_note) <= MAX_PRIVACY_NOTE_CHARS,
        "privacy_note",
        f"at most {MAX_PRIVACY_NOTE_CHARS} characters",
    )
    need(
        not _CONTROL_RE.search(ui.privacy_note.replace("\n", "")),
        "privacy_note",
        "must be plain text (no control characters other than newlines)",
    )
    need(
        ui.accent_color == "" or ACCENT_COLOR_RE.fullmatch(ui.accent_color) is not None,
        "accent_color",
        f"{ui.accent_color!r} is not a colour written #rrggbb (e.g. #0b5394)",
    )
    if ui.logo_file:
        read_logo(ui.logo_file)


def logo_content_type(data: bytes) -> str | None:
    """The image type of a logo from its first bytes (never from its file name): PNG, JPEG, WebP,
    or SVG (UTF-8 text whose root element is ``<svg>``); None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
    return "image/svg+xml" if _SVG_ROOT_RE.match(text) else None


def read_logo(path: str) -> tuple[bytes, str]:
    """The logo's bytes and content type, or a ``ConfigError`` naming ``ui.logo_file``."""
    file = Path(path).expanduser()
    try:
        with file.open("rb") as f:
            data = f.read(MAX_LOGO_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"ui.logo_file: cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_LOGO_BYTES:
        raise ConfigError(f"ui.logo_file: {path} is larger than {MAX_LOGO_BYTES // 1024} KiB")
    content_type = logo_content_type(data)
    if content_type is None:
        raise ConfigError(f"ui.logo_file: {path} is not a PNG, SVG, WebP or JPEG image")
    return data, content_type
