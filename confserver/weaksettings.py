"""Weak settings: secrets too weak for production (``secret_weakness``), loopback hosts, and the
start-up warnings for settings that work but weaken security (``config_warnings``).
Re-exported by ``confserver.config``."""

from __future__ import annotations

import ipaddress
import math
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .config import Config

EXAMPLE_SECRETS = frozenset(
    {
        "read-it-from-a-secret-store-at-least-32-characters",
        "coturn-static-auth-secret",
        "xxxxxxxxxxxxxxxxxxxxxxxx",
    }
)
"""Secrets printed as examples in docs/: refused in production (a test keeps this list in step)."""

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for a name or address of this machine only (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


MIN_SECRET_DISTINCT = 8
MIN_SECRET_BITS = 80.0


def secret_weakness(secret: str) -> str | None:
    """Why a secret is too weak to sign tokens with, or None. Refuses the documentation's examples,
    few distinct characters, a short pattern repeated, and low Shannon entropy of the characters as
    they occur (bits per character times the length): random hex of 32 characters has over 85 bits,
    ``"x" * 32`` none."""
    if secret in EXAMPLE_SECRETS:
        return "is an example from the documentation"
    if len(set(secret)) < MIN_SECRET_DISTINCT:
        return f"uses fewer than {MIN_SECRET_DISTINCT} distinct characters"
    n = len(secret)
    for period in range(1, n // 2 + 1):
        if secret == (secret[:period] * (n // period + 1))[:n]:
            return f"repeats the same {period} characters"
    bits = -sum(c / n * math.log2(c / n) for c in (secret.count(ch) for ch in set(secret))) * n
    if bits < MIN_SECRET_BITS:
        return f"has too little variety ({bits:.0f} bits of entropy, at least {MIN_SECRET_BITS:.0f} needed)"
    return None


def config_warnings(cfg: Config) -> list[str]:
    """Settings that work but weaken security: each line names its key. Logged at start."""
    out = []
    if cfg.store.kind == "redis" and not cfg.store.allow_plaintext_redis:
        url = urlsplit(cfg.store.redis_url)
        if url.scheme == "redis" and not is_loopback(url.hostname or "127.0.0.1"):
            out.append(
                f"store.redis_url: redis:// to {url.hostname} is not encrypted (room state and seats cross "
                "the network in clear); use rediss://, or set store.allow_plaintext_redis = true"
            )
    if cfg.metrics.enabled and not is_loopback(cfg.metrics.host):
        out.append(
            f"metrics.host: metrics are served without authentication on {cfg.metrics.host}; "
            "prefer 127.0.0.1 and let Prometheus reach them through a firewall rule or a tunnel"
        )
    if cfg.mode == "dev" and cfg.auth.api_secret:
        weak = secret_weakness(cfg.auth.api_secret)
        if weak:
            out.append(f"auth.api_secret: {weak} (production mode refuses it)")
    for i, hook in enumerate(cfg.webhooks):
        weak = secret_weakness(hook.secret) if cfg.mode == "dev" else None
        if weak:
            out.append(f"webhooks[{i}].secret: {weak} (production mode refuses it)")
    return out
