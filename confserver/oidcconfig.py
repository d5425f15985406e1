"""The ``[auth.oidc]`` section: single sign-on with an OpenID provider (docs/SECURITY.md,
docs/CONFIG.md). Off while ``issuer`` is empty. Re-exported by ``confserver.config``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from .configerror import ConfigError
from .weaksettings import is_loopback

CLAIM_NAME_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
ClientAuth = Literal["client_secret_basic", "client_secret_post"]
SCOPE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,64}")
"""RFC 6749 scope-token characters."""


@dataclass(frozen=True)
class OidcConfig:
    issuer: str = ""
    """The provider's issuer URL exactly as its discovery document states it (e.g.
    ``https://sso.example.gov/realms/ministry``); empty: single sign-on is off."""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    """Sent to the provider's token endpoint; left out of ``--check-config``."""
    client_auth: ClientAuth = "client_secret_basic"
    """How the client secret goes to the token endpoint: HTTP Basic, or in the form body
    (``client_secret_post``), as the client is registered at the provider."""
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    """Asked for at sign-in; ``openid`` is always included. Add the scope that makes the provider
    put the groups claim in the ID token (often ``groups``)."""
    identity_claim: str = "email"
    """The ID token claim that becomes the participant's identity (the join token's ``sub``), and
    that a room's ``allow.identities`` lists: ``email``, ``sub``, ``preferred_username``..."""
    name_claim: str = "name"
    """The claim shown as the participant's display name; the identity when absent."""
    groups_claim: str = "groups"
    """The claim (a list of strings) matched against a room's ``allow.groups``."""
    join_token_ttl: int = 3600
    """Seconds the join token minted after a sign-in is valid (it is used to join, and to rejoin
    after a lost connection)."""
    session_ttl: int = 28800
    """Seconds the server remembers who signed in (shown on its pages; used to sign out)."""
    timeout: float = 5.0
    """Seconds each request to the provider may take (discovery, keys, token endpoint)."""
    metadata_ttl: int = 3600
    """Seconds the discovery document and the provider's keys are cached (keys are fetched again
    at once when an ID token names a key not seen yet, at most every 10 seconds)."""
    ca_file: str = ""
    """PEM bundle to verify the provider's TLS certificate with; empty: the system's."""


def check_oidc(oidc: OidcConfig, *, production: bool, token_max_ttl: int) -> None:
    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"auth.oidc.{key}: {msg}")

    if not oidc.issuer:
        return
    url = urlsplit(oidc.issuer)
    need(url.scheme in ("https", "http") and bool(url.hostname), "issuer", "must be an https:// URL")
    need(
        url.scheme == "https" or is_loopback(url.hostname or "") or not production,
        "issuer",
        "production needs https:// (http:// only to a loopback host)",
    )
    need(not url.query and not url.fragment, "issuer", "must have no query or fragment")
    need(0 < len(oidc.client_id) <= 255, "client_id", "must be set (1-255 characters)")
    need(0 < len(oidc.client_secret) <= 1024, "client_secret", "must be set (the provider gives it)")
    need(len(oidc.scopes) <= 20, "scopes", "at most 20")
    for scope in oidc.scopes:
        need(SCOPE_RE.fullmatch(scope) is not None, "scopes", f"{scope!r} is not a scope name")
    for key in ("identity_claim", "name_claim", "groups_claim"):
        value = getattr(oidc, key)
        need(CLAIM_NAME_RE.fullmatch(value) is not None, key, f"{value!r} is not a claim name")
    need(
        60 <= oidc.join_token_ttl <= token_max_ttl,
        "join_token_ttl",
        "must be 60 s to auth.token_max_ttl",
    )
    need(300 <= oidc.session_ttl <= 7 * 86400, "session_ttl", "must be 5 minutes to 7 days")
    need(0.5 <= oidc.timeout <= 60, "timeout", "must be 0.5 to 60 s")
    need(60 <= oidc.metadata_ttl <= 86400, "metadata_ttl", "must be 60 s to 1 day")
