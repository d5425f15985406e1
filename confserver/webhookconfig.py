"""The ``[[webhooks]]`` entries: where signed event POSTs go, and their checks. Re-exported by
``confserver.config``; docs/WEBHOOKS.md explains them."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .configerror import ConfigError
from .weaksettings import is_loopback, secret_weakness
from .webhooks import EVENT_TYPES as WEBHOOK_EVENTS


@dataclass(frozen=True)
class WebhookConfig:
    """One receiver of signed event POSTs (docs/WEBHOOKS.md); TOML only (``[[webhooks]]``)."""

    url: str
    secret: str = field(repr=False)
    """Signs every request (HMAC-SHA256); at least 32 characters, shared with the receiver only.
    Left out of the config's printed form (``--check-config``)."""
    events: tuple[str, ...] = ()
    """Event types to send; empty: all of them."""
    retry_for: float = 600.0
    """Seconds after an event that failed deliveries are still retried; then it is a dead letter."""
    queue_size: int = 1000
    """Events waiting for this endpoint at most; when full, the oldest is dropped."""
    timeout: float = 5.0
    """Seconds one request may take (connecting, sending and the answer's headers)."""


def check_webhooks(webhooks: tuple[WebhookConfig, ...], *, production: bool) -> None:
    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {msg}")

    for i, hook in enumerate(webhooks):
        key = f"webhooks[{i}]"
        url = urlsplit(hook.url)
        need(
            url.scheme in ("https", "http") and bool(url.hostname),
            f"{key}.url",
            f"{hook.url!r} is not an https:// (or http://) URL",
        )
        need(
            url.scheme == "https" or not production or is_loopback(url.hostname or ""),
            f"{key}.url",
            "production needs https:// (http:// only to a loopback host)",
        )
        need(len(hook.secret) >= 32, f"{key}.secret", "must be >= 32 chars")
        if production:
            weak = secret_weakness(hook.secret)
            need(
                weak is None,
                f"{key}.secret",
                f"{weak}; production needs a random one (openssl rand -base64 36)",
            )
        for event in hook.events:
            need(
                event in WEBHOOK_EVENTS,
                f"{key}.events",
                f"unknown event {event!r} (known: {', '.join(WEBHOOK_EVENTS)})",
            )
        need(0 <= hook.retry_for <= 7 * 86400, f"{key}.retry_for", "must be 0 s to 7 days")
        need(1 <= hook.queue_size <= 1_000_000, f"{key}.queue_size", "must be 1-1000000")
        need(0.1 <= hook.timeout <= 60, f"{key}.timeout", "must be 0.1 to 60 s")
