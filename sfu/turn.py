"""ICE servers handed to clients, with time-limited TURN credentials.

coturn's ``use-auth-secret`` (the "TURN REST API"): the username is ``<expiry unix time>:<identity>``
and the credential is ``base64(HMAC-SHA1(shared secret, username))``. coturn recomputes the HMAC
and refuses the allocation after the expiry, so a leaked credential is useless a day later and
the secret never leaves the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from confserver.config import IceServerConfig


def turn_credentials(secret: str, identity: str, *, now: float, ttl: int) -> tuple[str, str]:
    """(username, credential) valid until ``now + ttl``."""
    username = f"{int(now) + ttl}:{identity}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def _is_turn(url: str) -> bool:
    return url.lower().startswith(("turn:", "turns:"))


def ice_servers_for(
    servers: Iterable[IceServerConfig], identity: str, *, secret: str, now: float, ttl: int
) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries for a client: TURN entries get generated credentials when a
    shared secret is configured, otherwise the configured ones."""
    out: list[dict[str, Any]] = []
    for server in servers:
        entry: dict[str, Any] = {"urls": list(server.urls)}
        if secret and any(_is_turn(u) for u in server.urls):
            entry["username"], entry["credential"] = turn_credentials(secret, identity, now=now, ttl=ttl)
        elif server.username or server.credential:
            entry["username"] = server.username
            entry["credential"] = server.credential
        out.append(entry)
    return out
