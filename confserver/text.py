"""Untrusted JSON and text: one home for the rules every edge applies (signaling frames, API
bodies, token claims).

JSON from a client may hold values that parse but break whoever handles them later: a lone UTF-16
surrogate (``"\\ud800"``) cannot be encoded as UTF-8 when the text is sent on to others, ``NaN`` and
``1e400`` are not JSON numbers any receiver accepts, a 400-digit integer overflows a float, deep
nesting costs recursion. ``loads`` refuses all of them with ``UnsafeJson``; ``display_name`` is the
one rule for a name shown to other people.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any, Final

MAX_DEPTH: Final = 16
"""Nesting of objects and arrays allowed in a message or body (the deepest shape used is 3)."""
MAX_INTEGER: Final = 2**53
"""Integers beyond +-2^53 are refused: JavaScript cannot hold them and no field needs them."""
MAX_NAME_CHARS: Final = 64
BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


class UnsafeJson(ValueError):
    """Valid JSON syntax holding a value refused at the edge. ``syntax`` is true for nesting (the
    message is malformed as a whole); false for a bad value (a field problem)."""

    def __init__(self, message: str, *, syntax: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.syntax = syntax


def _no_constant(name: str) -> Any:
    raise UnsafeJson(f"{name} is not a JSON number")


def loads(raw: str | bytes) -> Any:
    """``json.loads`` for untrusted input. Raises ``ValueError`` (``json.JSONDecodeError`` or
    ``RecursionError`` wrapped) for bad syntax and ``UnsafeJson`` for a refused value."""
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise UnsafeJson("nesting is too deep", syntax=True) from None
    check(value)
    return value


def check(value: Any) -> None:
    """Walk a parsed JSON value (iteratively) and raise ``UnsafeJson`` at the first refused part."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            check_text(v)
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, int):
            if not -MAX_INTEGER <= v <= MAX_INTEGER:
                raise UnsafeJson("a number is out of range (at most 2^53 in magnitude)")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise UnsafeJson("a number is not finite")
        elif isinstance(v, dict | list):
            if depth >= MAX_DEPTH:
                raise UnsafeJson(f"nesting is deeper than {MAX_DEPTH}", syntax=True)
            if isinstance(v, dict):
                for k, item in v.items():
                    check_text(k)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in v)


def check_text(s: str) -> None:
    """Refuse text that cannot be encoded as UTF-8 (a lone surrogate)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeJson("text holds a lone UTF-16 surrogate, which is not a character") from None


def display_name(raw: str) -> str:
    """A display name shown to others: stripped, 1-64 characters, no control, surrogate or
    bidirectional-override characters. Raises ``ValueError`` with a readable message."""
    name = raw.strip()
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise ValueError(f"name must be 1-{MAX_NAME_CHARS} characters after stripping whitespace")
    if any(unicodedata.category(ch) in ("Cc", "Cs") or ch in BIDI_CONTROLS for ch in name):
        raise ValueError("name must not contain control, surrogate or bidirectional-override characters")
    return name
