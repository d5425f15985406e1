"""ICE servers handed to clients, with time-limited TURN credentials.

coturn's ``use-auth-secret`` (the "TURN REST API"): the username is ``<expiry unix time>:<identity>``
and the credential is ``base64(HMAC-SHA1(shared secret, username))``. The secret never leaves the
server.

What the expiry bounds: coturn checks it when a TURN session first authenticates (the Allocate);
the key is then cached for that session, so Refresh, CreatePermission and ChannelBind on a live
allocation keep working after the expiry. An expired credential therefore cannot open a new relay
(a new peer connection, an ICE restart, a reconnect) but does not cut an existing one. So the
credential lives no longer than the session it was issued to: at most ``ttl`` (short, an hour by
default) and never past the expiry of the join token the session was admitted with. A client whose
meeting outlasts that needs fresh credentials before it opens a new relay; the signaling session
hands them out while it is alive (a kicked or revoked session gets none), and the TURN relay of a
kicked participant leads nowhere because the SFU has closed its side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from typing import Any, Final

from confserver.config import IceServerConfig

DEFAULT_CREDENTIAL_TTL: Final = 3600
"""The lifetime a deployment should configure unless it has a reason to: long enough for a client
to set up and restart ICE, short enough that a leaked credential is soon useless."""


def credential_expiry(*, now: float, ttl: int, not_after: float | None = None) -> int:
    """Unix time at which credentials issued ``now`` expire: ``ttl`` seconds later, and never after
    ``not_after`` (the expiry of the join token the session was admitted with)."""
    expiry = int(now) + ttl
    if not_after is not None:
        expiry = min(expiry, int(not_after))
    return expiry


def turn_credentials(
    secret: str, identity: str, *, now: float, ttl: int, not_after: float | None = None
) -> tuple[str, str]:
    """(username, credential) valid until :func:`credential_expiry`."""
    username = f"{credential_expiry(now=now, ttl=ttl, not_after=not_after)}:{identity}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def _is_turn(url: str) -> bool:
    return url.lower().startswith(("turn:", "turns:"))


def ice_servers_for(
    servers: Iterable[IceServerConfig],
    identity: str,
    *,
    secret: str,
    now: float,
    ttl: int,
    not_after: float | None = None,
) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries for a client: TURN entries get generated credentials when a
    shared secret is configured (valid until :func:`credential_expiry`), otherwise the configured
    ones."""
    out: list[dict[str, Any]] = []
    for server in servers:
        entry: dict[str, Any] = {"urls": list(server.urls)}
        if secret and any(_is_turn(u) for u in server.urls):
            entry["username"], entry["credential"] = turn_credentials(
                secret, identity, now=now, ttl=ttl, not_after=not_after
            )
        elif server.username or server.credential:
            entry["username"] = server.username
            entry["credential"] = server.credential
        out.append(entry)
    return out
