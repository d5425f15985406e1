"""Named admin API keys: their scopes, the secret each one is given, and who signed an admin token.

A named key's secret is never stored. The server derives it from the deployment's API secret (the
bootstrap key's) and the key id: ``base64url(HMAC-SHA256(api_secret, "confserver admin key v1" 0x00
key_id))``. It is shown once, when the key is created; the store keeps only the key's id, name,
scopes and revocation time. Each admin request looks its key up in the store, so a revoked key is
refused at once, on every node. docs/API.md explains the choice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from .store import AdminKey, AdminKeyStore
from .tokens import (
    AdminClaims,
    KeyRing,
    SigningKey,
    TokenError,
    TokenVerifier,
    VerificationKey,
    new_api_key,
    token_kid,
)

SCOPES: Final = (
    "rooms:read",
    "rooms:write",
    "participants:read",
    "participants:moderate",
    "tokens:create",
    "tokens:revoke",
    "keys:admin",
    "audit:read",
    "nodes:read",
    "nodes:admin",
)
"""Every scope a key may hold."""

BOOTSTRAP_NAME: Final = "bootstrap"
"""The name logged for the deployment's own API key, which holds every scope."""

MAX_KEY_NAME_CHARS: Final = 64
MAX_KEYS: Final = 1000
"""Keys the store may hold, revoked ones included (they stay for the logs)."""

_DERIVATION_LABEL: Final = b"confserver admin key v1\x00"


class KeyRevokedError(Exception):
    """An admin token verified, but its key has been revoked."""

    def __init__(self, key: AdminKey) -> None:
        super().__init__(f"API key {key.id} ({key.name}) was revoked")
        self.key = key


@dataclass(frozen=True)
class Caller:
    """Who made an admin request: the token's claims and the key that signed it."""

    claims: AdminClaims
    key_id: str
    key_name: str
    scopes: frozenset[str]


def derive_secret(api_secret: bytes, key_id: str) -> str:
    """The secret of the named key ``key_id``: 43 URL-safe characters (256 bits)."""
    mac = hmac.new(api_secret, _DERIVATION_LABEL + key_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def new_key_id() -> str:
    """A new key id, of the same form as an API key: ``AK`` and 14 URL-safe characters."""
    return new_api_key()


def check_key_name(value: object) -> str:
    """1-64 printable characters, not blank. Raises ``ValueError``."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY_NAME_CHARS or not value.isprintable():
        raise ValueError(f"name must be 1-{MAX_KEY_NAME_CHARS} printable characters")
    if not value.strip():
        raise ValueError("name must not be blank")
    return value


def check_scopes(value: object) -> tuple[str, ...]:
    """A non-empty list of known scopes; returned sorted, each once. Raises ``ValueError``."""
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise ValueError("scopes must be a non-empty list of scope names")
    unknown = sorted(set(value) - set(SCOPES))
    if unknown:
        raise ValueError(f"scopes holds an unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    return tuple(sorted(set(value)))


async def authenticate(
    token: str,
    *,
    verifier: TokenVerifier,
    bootstrap: SigningKey,
    keys: AdminKeyStore,
    leeway: int,
    now: float,
) -> Caller:
    """Verify an admin token and find its key. The bootstrap key (``bootstrap.kid``) holds every
    scope; a named key holds the scopes the store has for it now. Raises :class:`TokenError` for
    a token that does not verify and :class:`KeyRevokedError` for one whose key was revoked (only
    after its signature verified, so the answer tells a stranger nothing about a key)."""
    kid = token_kid(token)
    if kid == bootstrap.kid:
        claims = verifier.verify_admin(token, now=now)
        return Caller(claims, kid, BOOTSTRAP_NAME, frozenset(SCOPES))
    record = await keys.get(kid)
    if record is None or not isinstance(bootstrap.material, bytes):
        verifier.verify_admin(token, now=now)  # raises: only the bootstrap key is an HS256 key there
        raise TokenError("unknown_key", "token kid is not a configured key")
    key = VerificationKey.hs256(kid, derive_secret(bootstrap.material, kid))
    claims = TokenVerifier(KeyRing([key]), leeway=leeway).verify_admin(token, now=now)
    if record.revoked:
        raise KeyRevokedError(record)
    return Caller(claims, record.id, record.name, frozenset(record.scopes))
