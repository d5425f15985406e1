"""The sign-in's sans-I/O core: what goes to the provider, what comes back, and what is believed.

Nothing here does I/O or reads the clock: ``now`` and the provider's documents are passed in.
Every refusal is a ``SignInError`` with a stable code (docs/API.md lists them)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import text
from ..oidcconfig import OidcConfig
from ..weaksettings import is_loopback

CALLBACK_PATH: Final = "/auth/callback"
FLOW_TTL: Final = 600
"""Seconds from leaving for the provider to coming back."""
MAX_PARAM_CHARS: Final = 2048
MAX_ID_TOKEN_CHARS: Final = 16 * 1024
MAX_GROUPS: Final = 500
MAX_GROUP_CHARS: Final = 256
MAX_COOKIE_CHARS: Final = 3800
ID_TOKEN_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
"""Asymmetric only: a provider's published keys verify them; ``none`` and HS* never."""
CALLBACK_PARAMS: Final = frozenset({"code", "state", "iss", "session_state", "error", "error_description"})


class SignInError(Exception):
    """A refused sign-in: ``code`` is stable, ``message`` readable, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def unavailable(message: str) -> SignInError:
    return SignInError("oidc_provider_unavailable", message, 503)


# --- the provider's discovery document -----------------------------------------------------------


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None

    @classmethod
    def parse(cls, doc: object, *, expected_issuer: str) -> ProviderMetadata:
        """The fields we use from ``/.well-known/openid-configuration``; its ``issuer`` must be
        the configured one exactly (OpenID Connect Discovery 1.0, section 4.3)."""
        if not isinstance(doc, dict):
            raise unavailable("the provider's discovery document is not a JSON object")
        if doc.get("issuer") != expected_issuer:
            raise unavailable("the provider's discovery document names another issuer")

        def url(key: str, *, required: bool = True) -> str | None:
            value = doc.get(key)
            if value is None and not required:
                return None
            if not isinstance(value, str) or not _is_endpoint(value):
                raise unavailable(f"the provider's discovery document has no usable {key}")
            return value

        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise unavailable("the provider does not support PKCE with S256")
        return cls(
            issuer=expected_issuer,
            authorization_endpoint=str(url("authorization_endpoint")),
            token_endpoint=str(url("token_endpoint")),
            jwks_uri=str(url("jwks_uri")),
            end_session_endpoint=url("end_session_endpoint", required=False),
        )


def _is_endpoint(value: str) -> bool:
    if len(value) > MAX_PARAM_CHARS:
        return False
    parts = urlsplit(value)
    return bool(parts.hostname) and (
        parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))
    )


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


# --- leaving for the provider --------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """One sign-in on its way: kept by the browser in a sealed cookie, never by the server."""

    state: str
    nonce: str
    verifier: str
    room: str

    @classmethod
    def new(cls, room: str) -> Flow:
        return cls(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),  # 64 characters: RFC 7636 wants 43-128
            room=room,
        )

    def to_json(self) -> dict[str, str]:
        return {"state": self.state, "nonce": self.nonce, "verifier": self.verifier, "room": self.room}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Flow:
        values = [data.get(k) for k in ("state", "nonce", "verifier", "room")]
        if not all(isinstance(v, str) and v for v in values):
            raise SignInError("oidc_flow_invalid", "the sign-in could not be read back; sign in again")
        return cls(*(str(v) for v in values))


def flow_cookie_name(state: str) -> str:
    """One cookie per sign-in (two tabs may sign in at once), named after its ``state``."""
    return "conf_oidc_" + hashlib.sha256(state.encode()).hexdigest()[:16]


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorization_url(meta: ProviderMetadata, cfg: OidcConfig, flow: Flow, redirect_uri: str) -> str:
    scopes = ["openid", *(s for s in cfg.scopes if s != "openid")]
    query = urlencode(
        {
            "response_type": "code",
            "client_id": cfg.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": pkce_challenge(flow.verifier),
            "code_challenge_method": "S256",
        }
    )
    sep = "&" if urlsplit(meta.authorization_endpoint).query else "?"
    return meta.authorization_endpoint + sep + query


# --- sealed cookies ------------------------------------------------------------------------------


class Sealer:
    """Authenticated encryption (AES-256-GCM) of small JSON values for cookies, with a key derived
    from the API secret for this use only; each value carries its purpose and its expiry."""

    def __init__(self, secret: str | bytes) -> None:
        material = secret.encode() if isinstance(secret, str) else secret
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"confserver oidc cookies v1"
        ).derive(material)
        self._aead = AESGCM(key)

    def seal(self, purpose: str, value: Mapping[str, Any], *, now: float, ttl: int) -> str:
        nonce = secrets.token_bytes(12)
        body = json.dumps({"exp": int(now) + ttl, "v": value}, separators=(",", ":")).encode()
        sealed = nonce + self._aead.encrypt(nonce, body, purpose.encode())
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, purpose: str, sealed: str, *, now: float) -> dict[str, Any] | None:
        """The value, or None when it was not made by us for ``purpose`` or has expired."""
        if not sealed or len(sealed) > MAX_COOKIE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
            body = self._aead.decrypt(raw[:12], raw[12:], purpose.encode())
            data = json.loads(body)
        except (ValueError, InvalidTag):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int) or data["exp"] <= now:
            return None
        value = data.get("v")
        return value if isinstance(value, dict) else None


# --- coming back ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    code: str
    state: str
    error: str = ""
    """The provider's ``error`` (e.g. ``access_denied``): it did not sign the person in."""
    iss: str = ""
    """Who answered (RFC 9207), when the provider says: must be the configured issuer."""

    def check_issuer(self, issuer: str) -> None:
        if self.iss and self.iss != issuer:
            raise SignInError("oidc_wrong_issuer", "the sign-in answer comes from another provider", 401)

    def check_success(self) -> None:
        if self.error:
            raise SignInError(
                "oidc_provider_refused",
                f"the identity provider did not sign you in ({_printable(self.error)})",
                401,
            )


def parse_callback(pairs: Iterable[tuple[str, str]]) -> Callback:
    """The query of ``/auth/callback``: each known parameter at most once and bounded, ``state``
    always; ``code``, or the provider's ``error`` (then ``check_success`` refuses)."""
    seen: dict[str, str] = {}
    for count, (key, value) in enumerate(pairs):
        if count >= 16:
            raise SignInError("oidc_bad_callback", "the sign-in answer has too many parameters")
        if key not in CALLBACK_PARAMS:
            continue
        if key in seen:
            raise SignInError("oidc_bad_callback", f"the sign-in answer repeats {key!r}")
        if len(value) > MAX_PARAM_CHARS:
            raise SignInError("oidc_bad_callback", f"the sign-in answer's {key!r} is too long")
        seen[key] = value
    if not seen.get("state"):
        raise SignInError("oidc_bad_callback", "the sign-in answer has no state")
    iss = seen.get("iss", "")
    if "error" in seen:
        return Callback(code="", state=seen["state"], error=seen["error"] or "error", iss=iss)
    if not seen.get("code"):
        raise SignInError("oidc_bad_callback", "the sign-in answer has no code")
    return Callback(code=seen["code"], state=seen["state"], iss=iss)


def _printable(value: str) -> str:
    return "".join(c for c in value[:64] if c.isalnum() or c in "_-.")


def check_state(flow: Flow, callback: Callback) -> None:
    if not hmac.compare_digest(flow.state.encode(), callback.state.encode()):
        raise SignInError("oidc_state_mismatch", "the sign-in answer does not belong to this sign-in")


# --- the ID token --------------------------------------------------------------------------------


class UnknownKeyError(SignInError):
    """The ID token names a key the cached key set lacks: fetch the keys again, then retry once."""

    def __init__(self) -> None:
        super().__init__(
            "oidc_bad_signature", "the ID token is signed with a key the provider does not publish", 401
        )


def verify_id_token(
    token: object,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: float,
    leeway: int,
) -> dict[str, Any]:
    """The ID token's claims once its signature (by a key the provider publishes), issuer,
    audience, authorized party, expiry and nonce are right (OpenID Connect Core 3.1.3.7)."""

    def refuse(code: str, message: str) -> SignInError:
        return SignInError(code, message, 401)

    if not isinstance(token, str) or not 0 < len(token) <= MAX_ID_TOKEN_CHARS:
        raise refuse("oidc_id_token_invalid", "the provider sent no usable ID token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise refuse("oidc_id_token_invalid", "the ID token could not be read") from None
    alg = header.get("alg")
    if alg not in ID_TOKEN_ALGORITHMS:
        raise refuse(
            "oidc_id_token_invalid", f"the ID token's algorithm is not accepted ({_printable(str(alg))})"
        )
    key = _signing_key(jwks, header.get("kid"), str(alg))
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[str(alg)],
            audience=client_id,
            issuer=issuer,
            options={
                "verify_exp": False,  # checked below against ``now``
                "verify_nbf": False,
                "verify_iat": False,
                "require": ["iss", "sub", "aud", "exp", "iat"],
            },
        )
    except jwt.InvalidSignatureError:
        raise refuse("oidc_bad_signature", "the ID token's signature does not verify") from None
    except jwt.InvalidAudienceError:
        raise refuse("oidc_wrong_audience", "the ID token was issued to another application") from None
    except jwt.InvalidIssuerError:
        raise refuse("oidc_wrong_issuer", "the ID token was issued by another provider") from None
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError):
        raise refuse("oidc_id_token_invalid", "the ID token is not valid") from None
    try:
        text.check(claims)
    except text.UnsafeJson as e:
        raise refuse("oidc_id_token_invalid", f"the ID token's claims are refused: {e.message}") from None
    aud = claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
        raise refuse("oidc_wrong_audience", "the ID token was issued to another application")
    exp, iat = claims["exp"], claims["iat"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, iat)):
        raise refuse("oidc_id_token_invalid", "the ID token's times are not numbers")
    if exp <= now - leeway:
        raise refuse("oidc_token_expired", "the ID token has expired; sign in again")
    if iat > now + leeway:
        raise refuse("oidc_id_token_invalid", "the ID token is issued in the future (check the clocks)")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise refuse("oidc_nonce_mismatch", "the ID token does not belong to this sign-in")
    return claims


def _signing_key(jwks: Mapping[str, Any], kid: object, alg: str) -> Any:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise unavailable("the provider's key set is not usable")
    candidates = [
        k
        for k in keys
        if isinstance(k, dict) and k.get("use", "sig") == "sig" and (kid is None or k.get("kid") == kid)
    ]
    if kid is None and len(candidates) != 1:
        raise SignInError("oidc_id_token_invalid", "the ID token names no key", 401)
    if not candidates:
        raise UnknownKeyError()
    if candidates[0].get("alg", alg) != alg:
        raise SignInError("oidc_id_token_invalid", "the ID token's algorithm is not its key's", 401)
    try:
        return jwt.PyJWK(candidates[0], algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise SignInError(
            "oidc_bad_signature", "the provider's key for this ID token is not usable", 401
        ) from None


# --- who signed in -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    identity: str
    name: str
    email: str
    groups: tuple[str, ...]

    def to_json(self) -> dict[str, str]:
        return {"identity": self.identity, "name": self.name}


def signed_in(claims: Mapping[str, Any], cfg: OidcConfig) -> SignedIn:
    """The person the verified ``claims`` describe, by the configured claim names. An e-mail the
    provider marks unverified (``email_verified: false``) is not used."""

    def refuse(message: str) -> SignInError:
        return SignInError("oidc_claims_invalid", message, 401)

    email = claims.get("email")
    if claims.get("email_verified") is False or not isinstance(email, str) or len(email) > 320:
        email = ""
    email = email.lower()  # as a room's allow.domains are kept; e-mail addresses compare so in practice
    identity = email if cfg.identity_claim == "email" else claims.get(cfg.identity_claim)
    if not isinstance(identity, str) or not 1 <= len(identity) <= 128 or not identity.isprintable():
        raise refuse(f"the provider gave no usable {cfg.identity_claim!r} claim (1-128 characters)")
    if not identity.strip():
        raise refuse(f"the {cfg.identity_claim!r} claim is blank")
    raw_name = claims.get(cfg.name_claim)
    try:
        name = text.display_name(raw_name) if isinstance(raw_name, str) else ""
    except ValueError:
        name = ""
    name = name or identity.strip()[: text.MAX_NAME_CHARS]
    raw_groups = claims.get(cfg.groups_claim, [])
    if isinstance(raw_groups, str):
        raw_groups = [raw_groups]
    if not isinstance(raw_groups, list) or not all(isinstance(g, str) for g in raw_groups):
        raise refuse(f"the {cfg.groups_claim!r} claim is not a list of names")
    if len(raw_groups) > MAX_GROUPS or any(len(g) > MAX_GROUP_CHARS for g in raw_groups):
        raise refuse(f"the {cfg.groups_claim!r} claim is too large ({MAX_GROUPS} names of {MAX_GROUP_CHARS})")
    return SignedIn(identity=identity, name=name, email=email, groups=tuple(raw_groups))
