"""Structured logs: text or JSON lines, with tokens and secrets scrubbed from every record."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)\S+")
_TOKEN_PARAM_RE = re.compile(r"(?i)(token=)[^&\s#\"']+")
_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    text = _JWT_RE.sub("[token]", text)
    text = _BEARER_RE.sub(r"\1[token]", text)
    text = _TOKEN_PARAM_RE.sub(r"\1[token]", text)
    for s in secrets:
        if s:
            text = text.replace(s, "[secret]")
    return text


class RedactingFilter(logging.Filter):
    """Renders each record's message and extras once, scrubbed of tokens and the given secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage(), self._secrets)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STD_ATTRS and isinstance(value, str):
                setattr(record, key, scrub(value, self._secrets))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info), self._secrets)
            record.exc_info = None
        return True


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_extras(record))
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        return line


def setup_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aioice logs every candidate pair it checks at INFO (some 15 lines per join): only when asked.
    logging.getLogger("aioice").setLevel(logging.NOTSET if level.lower() == "debug" else logging.WARNING)


class ThrottledLoopErrors:
    """An event-loop exception handler that logs each kind of error (its message) at most once per
    ``interval`` seconds, saying how many were left out meanwhile. Out of file descriptors, asyncio's
    accept loop reports ``socket.accept() out of system resource`` on every retry of every listener;
    unthrottled that filled disks. Install with ``loop.set_exception_handler``."""

    MAX_KINDS = 256

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._logged_at: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        kind = str(context.get("message") or type(context.get("exception")).__name__)
        now = self._clock()
        last = self._logged_at.get(kind)
        if last is not None and now - last < self.interval:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return
        if len(self._logged_at) >= self.MAX_KINDS:
            self._logged_at.clear()
            self._left_out.clear()
        self._logged_at[kind] = now
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            context = {
                **context,
                "message": f"{kind} ({left_out} more like it in the last {self.interval:g} s not logged)",
            }
        loop.default_exception_handler(context)
