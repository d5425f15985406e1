"""Join tokens and admin tokens: minting and verification with PyJWT.

A join token admits one identity to one room with a role and a set of permissions. It is signed either
with an API key's HMAC secret (HS256, ``kid`` = API key) or by an external issuer's Ed25519 / P-256 key
(``kid`` = the issuer's key id). An admin token authorises the admin API; only HS256 API keys sign it.

Verification never trusts the token to choose its algorithm: the ``kid`` selects a configured key and
the header ``alg`` must equal that key's configured algorithm. Every rejection is a :class:`TokenError`
with a stable ``reason`` code. Time always comes from the caller's ``now`` (Unix seconds).
Revocation (by ``jti``, join and admin tokens alike) is the caller's job; it raises
``TokenError("revoked")``. Every string in a token's header and claims must be encodable text (no
lone UTF-16 surrogate): the claims are shown to other people and sent on as UTF-8.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar, get_args

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from . import text

AUDIENCE_JOIN: Final = "confserver"
AUDIENCE_ADMIN: Final = "confserver-admin"

ROLES: Final = ("moderator", "participant", "viewer")
PERMISSIONS: Final = (
    "publish_audio",
    "publish_video",
    "publish_screen",
    "subscribe",
    "chat",
    "moderate",
    "update_name",
    "skip_lobby",
)
ROLE_PERMISSIONS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "moderator": frozenset(PERMISSIONS),
        "participant": frozenset({"publish_audio", "publish_video", "publish_screen", "subscribe", "chat"}),
        "viewer": frozenset({"subscribe", "chat"}),
    }
)

RejectionReason = Literal[
    "expired",
    "not_yet_valid",
    "bad_signature",
    "wrong_room",
    "unknown_key",
    "malformed",
    "revoked",
    "alg_not_allowed",
    "lifetime_too_long",
    "not_admin",
]
REJECTION_REASONS: Final[tuple[RejectionReason, ...]] = get_args(RejectionReason)

Algorithm = Literal["HS256", "EdDSA", "ES256"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = get_args(Algorithm)

DEFAULT_JOIN_TTL: Final = 7200
MAX_JOIN_TTL: Final = 86400
"""The verifier's default cap on ``exp - iat`` for join tokens."""
MINT_TTL_CEILING: Final = 30 * 86400
"""The longest join token ``mint_join_token`` will sign; deployments choose a lower cap in the verifier."""
ADMIN_MAX_TTL: Final = 900
MAX_TOKEN_LENGTH: Final = 8192
MIN_HMAC_SECRET_BYTES: Final = 32

_ROOM_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_FORBIDDEN_HEADERS: Final = frozenset({"crit", "b64", "zip"})
_MAX_NUMERIC_DATE: Final = 2**53
_MAX_JTI_LENGTH: Final = 128
_T = TypeVar("_T")


class TokenError(Exception):
    """A token was rejected; ``reason`` is one of :data:`REJECTION_REASONS`."""

    def __init__(self, reason: RejectionReason, message: str | None = None) -> None:
        if reason not in REJECTION_REASONS:
            raise ValueError(f"unknown token rejection reason {reason!r}")
        self.reason: RejectionReason = reason
        self.message: str = message or "token " + reason.replace("_", " ")
        super().__init__(reason, self.message)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def _check_alg(alg: str) -> Algorithm:
    for known in ALGORITHMS:
        if alg == known:
            return known
    raise ValueError(f"unsupported algorithm {alg!r}; expected one of {', '.join(ALGORITHMS)}")


def _check_kid(kid: str) -> None:
    if not isinstance(kid, str) or not 1 <= len(kid) <= 128 or not kid.isprintable():
        raise ValueError("kid must be 1-128 printable characters")


def _hmac_secret(secret: bytes | str) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not isinstance(raw, bytes) or len(raw) < MIN_HMAC_SECRET_BYTES:
        raise ValueError(f"HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
    if raw.lstrip().startswith((b"-----BEGIN", b"ssh-", b"ecdsa-sha2-")):
        raise ValueError("HS256 secret looks like an asymmetric key; refusing to use it as an HMAC secret")
    return raw


PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def _check_key(kid: str, alg: str, material: object, *, private: bool) -> None:
    _check_kid(kid)
    wanted: tuple[type, ...]
    if _check_alg(alg) == "HS256":
        wanted = (bytes,)
    elif alg == "EdDSA":
        wanted = (ed25519.Ed25519PrivateKey,) if private else (ed25519.Ed25519PublicKey,)
    else:
        wanted = (ec.EllipticCurvePrivateKey,) if private else (ec.EllipticCurvePublicKey,)
    curve = getattr(material, "curve", None)
    if not isinstance(material, wanted) or (alg == "ES256" and not isinstance(curve, ec.SECP256R1)):
        kind = "private" if private else "public"
        raise ValueError(
            f"{alg} needs {'a secret' if alg == 'HS256' else kind + ' key'}: "
            "EdDSA uses Ed25519, ES256 uses EC P-256"
        )


def _asymmetric_alg(alg: str) -> Algorithm:
    checked = _check_alg(alg)
    if checked == "HS256":
        raise ValueError("HS256 keys are shared secrets, not PEM keys")
    return checked


@dataclass(frozen=True)
class VerificationKey:
    """A key that verifies tokens: an HMAC secret (HS256) or a public key (EdDSA, ES256)."""

    kid: str
    alg: Algorithm
    material: bytes | PublicKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_key(self.kid, self.alg, self.material, private=False)

    @classmethod
    def hs256(cls, kid: str, secret: bytes | str) -> VerificationKey:
        return cls(kid, "HS256", _hmac_secret(secret))

    @classmethod
    def from_public_pem(cls, kid: str, alg: str, pem: bytes) -> VerificationKey:
        checked = _asymmetric_alg(alg)
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise ValueError(f"PEM key type does not match {checked}: EdDSA uses Ed25519, ES256 uses P-256")
        return cls(kid, checked, key)


@dataclass(frozen=True)
class SigningKey:
    """A key that signs tokens: an HMAC secret (HS256) or a private key (EdDSA, ES256)."""

    kid: str
    alg: Algorithm
    material: bytes | PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_key(self.kid, self.alg, self.material, private=True)

    @classmethod
    def hs256(cls, kid: str, secret: bytes | str) -> SigningKey:
        return cls(kid, "HS256", _hmac_secret(secret))

    @classmethod
    def from_private_pem(cls, kid: str, alg: str, pem: bytes) -> SigningKey:
        checked = _asymmetric_alg(alg)
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"PEM key type does not match {checked}: EdDSA uses Ed25519, ES256 uses P-256")
        return cls(kid, checked, key)

    def verification_key(self) -> VerificationKey:
        """The matching :class:`VerificationKey` (the same secret for HS256, else the public key)."""
        if isinstance(self.material, bytes):
            return VerificationKey(self.kid, self.alg, self.material)
        return VerificationKey(self.kid, self.alg, self.material.public_key())


class KeyRing:
    """An immutable set of verification keys, looked up by ``kid``."""

    __slots__ = ("_by_kid",)

    def __init__(self, keys: Sequence[VerificationKey]) -> None:
        by_kid: dict[str, VerificationKey] = {}
        for key in keys:
            if not isinstance(key, VerificationKey):
                raise TypeError("KeyRing holds VerificationKey objects only")
            if key.kid in by_kid:
                raise ValueError(f"duplicate kid {key.kid!r} in key ring")
            by_kid[key.kid] = key
        self._by_kid: Mapping[str, VerificationKey] = MappingProxyType(by_kid)

    def get(self, kid: str) -> VerificationKey | None:
        return self._by_kid.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def __len__(self) -> int:
        return len(self._by_kid)


@dataclass(frozen=True)
class AdminClaims:
    subject: str
    jti: str
    expires_at: int
    kid: str


@dataclass(frozen=True)
class JoinClaims:
    identity: str
    name: str
    room: str
    role: str
    permissions: frozenset[str]
    issuer: str
    jti: str
    issued_at: int
    not_before: int
    expires_at: int
    kid: str


def _validate_room(room: object) -> str:
    if not isinstance(room, str) or not _ROOM_RE.fullmatch(room):
        raise ValueError("room must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return room


def _validate_identity(identity: object) -> str:
    if not isinstance(identity, str) or not 1 <= len(identity) <= 128 or not identity.isprintable():
        raise ValueError("identity must be 1-128 printable characters")
    if not identity.strip():
        raise ValueError("identity must not be blank")
    return identity


def _validate_name(name: object) -> str:
    if not isinstance(name, str):
        raise ValueError("name must be a string")
    return text.display_name(name)


def _default_name(identity: str) -> str:
    """The display name used when none is given: the identity, cut to the name limit."""
    return identity.strip()[: text.MAX_NAME_CHARS] if isinstance(identity, str) else identity


def _validate_role(role: object) -> str:
    if not isinstance(role, str) or role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return role


def _validate_permissions(permissions: object) -> frozenset[str]:
    if isinstance(permissions, str | bytes) or not isinstance(permissions, Iterable):
        raise ValueError("permissions must be a collection of permission names")
    perms = list(permissions)
    if not all(isinstance(p, str) and p in PERMISSIONS for p in perms):
        raise ValueError(f"permissions must be drawn from {', '.join(PERMISSIONS)}")
    return frozenset(perms)


def validate_jti(jti: object) -> str:
    """A token id: 1-128 printable characters. Raises ``ValueError``."""
    if not isinstance(jti, str) or not 1 <= len(jti) <= _MAX_JTI_LENGTH or not jti.isprintable():
        raise ValueError(f"jti must be 1-{_MAX_JTI_LENGTH} printable characters")
    return jti


def _check_now(now: float) -> int:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now) or now < 0:
        raise ValueError("now must be a finite, non-negative number of Unix seconds")
    return int(now)


def _validate_ttl(ttl: object, maximum: int) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= maximum:
        raise ValueError(f"ttl must be an integer from 1 to {maximum} seconds")
    return ttl


def mint_join_token(
    key: SigningKey,
    *,
    room: str,
    identity: str,
    name: str | None = None,
    role: str = "participant",
    permissions: Iterable[str] | None = None,
    ttl: int = DEFAULT_JOIN_TTL,
    now: float,
    jti: str | None = None,
) -> tuple[str, JoinClaims]:
    """Sign a join token; raises ``ValueError`` on any invalid input."""
    if not isinstance(key, SigningKey):
        raise TypeError("key must be a SigningKey")
    checked_role = _validate_role(role)
    iat = _check_now(now)
    claims = JoinClaims(
        identity=_validate_identity(identity),
        name=_validate_name(_default_name(identity) if name is None else name),
        room=_validate_room(room),
        role=checked_role,
        permissions=ROLE_PERMISSIONS[checked_role]
        if permissions is None
        else _validate_permissions(permissions),
        issuer=key.kid,
        jti=new_jti() if jti is None else validate_jti(jti),
        issued_at=iat,
        not_before=iat,
        expires_at=iat + _validate_ttl(ttl, MINT_TTL_CEILING),
        kid=key.kid,
    )
    payload: dict[str, Any] = {
        "iss": claims.issuer,
        "sub": claims.identity,
        "aud": AUDIENCE_JOIN,
        "name": claims.name,
        "room": claims.room,
        "role": claims.role,
        "perms": sorted(claims.permissions),
        "iat": claims.issued_at,
        "nbf": claims.not_before,
        "exp": claims.expires_at,
        "jti": claims.jti,
    }
    token = jwt.encode(payload, key.material, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT"})
    return token, claims


def mint_admin_token(
    api_key: str, api_secret: bytes | str, *, now: float, ttl: int = 300, subject: str = "confctl"
) -> str:
    """Sign a short-lived (at most 15 minutes) HS256 admin token with an API key's secret."""
    key = SigningKey.hs256(api_key, api_secret)
    iat = _check_now(now)
    payload: dict[str, Any] = {
        "iss": key.kid,
        "sub": _validate_identity(subject),
        "aud": AUDIENCE_ADMIN,
        "admin": True,
        "iat": iat,
        "nbf": iat,
        "exp": iat + _validate_ttl(ttl, ADMIN_MAX_TTL),
        "jti": new_jti(),
    }
    return jwt.encode(payload, key.material, algorithm="HS256", headers={"kid": key.kid, "typ": "JWT"})


def _read_header(token: object) -> dict[str, Any]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _TOKEN_RE.fullmatch(token):
        raise TokenError("malformed", "token is not a compact JWS of at most 8192 characters")
    segment = token.split(".", 1)[0]
    try:
        header = text.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except text.UnsafeJson as exc:
        raise TokenError("malformed", f"token header is refused: {exc.message}") from None
    except (ValueError, binascii.Error, RecursionError):
        raise TokenError("malformed", "token header is not base64url-encoded JSON") from None
    if not isinstance(header, dict):
        raise TokenError("malformed", "token header is not a JSON object")
    if _FORBIDDEN_HEADERS & header.keys():
        raise TokenError("malformed", "token header uses an unsupported parameter (crit, b64 or zip)")
    return header


def token_kid(token: object) -> str:
    """The ``kid`` a token's header names, read before any verification (to choose the key that
    will verify it). Raises :class:`TokenError` for a malformed token or one without a ``kid``."""
    kid = _read_header(token).get("kid")
    if kid is None:
        raise TokenError("unknown_key", "token header has no kid")
    if not isinstance(kid, str):
        raise TokenError("malformed", "token kid must be a string")
    return kid


def _numeric_date(payload: Mapping[str, Any], claim: str) -> int:
    value = payload.get(claim)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_NUMERIC_DATE:
        raise TokenError("malformed", f"claim {claim!r} must be an integer number of Unix seconds")
    return value


def _checked(validator: Callable[[object], _T], value: object, claim: str) -> _T:
    try:
        return validator(value)
    except ValueError as exc:
        raise TokenError("malformed", f"claim {claim!r} is invalid: {exc}") from None


class TokenVerifier:
    """Verifies join and admin tokens against a :class:`KeyRing`."""

    __slots__ = ("_keyring", "_leeway", "_max_ttl")

    def __init__(self, keyring: KeyRing, *, max_ttl: int = MAX_JOIN_TTL, leeway: int = 30) -> None:
        if isinstance(max_ttl, bool) or not isinstance(max_ttl, int) or max_ttl < 1:
            raise ValueError("max_ttl must be a positive integer")
        if isinstance(leeway, bool) or not isinstance(leeway, int) or not 0 <= leeway <= 300:
            raise ValueError("leeway must be an integer from 0 to 300 seconds")
        self._keyring = keyring
        self._max_ttl = max_ttl
        self._leeway = leeway

    def verify_join(self, token: str, *, room: str | None, now: float) -> JoinClaims:
        """Return the claims of a valid join token, or raise :class:`TokenError`."""
        key, payload, times = self._decode(token, AUDIENCE_JOIN, now=now, max_ttl=self._max_ttl, admin=False)
        identity = _checked(_validate_identity, payload["sub"], "sub")
        token_room = _checked(_validate_room, payload["room"], "room")
        role = _checked(_validate_role, payload.get("role", "participant"), "role")
        perms = payload.get("perms")
        if perms is not None and not isinstance(perms, list):
            raise TokenError("malformed", "claim 'perms' must be a list")
        permissions = (
            ROLE_PERMISSIONS[role] if perms is None else _checked(_validate_permissions, perms, "perms")
        )
        name = _checked(_validate_name, payload.get("name", _default_name(identity)), "name")
        if room is not None and token_room != room:
            raise TokenError("wrong_room", f"token is for room {token_room!r}")
        return JoinClaims(
            identity=identity,
            name=name,
            room=token_room,
            role=role,
            permissions=permissions,
            issuer=key.kid,
            jti=payload["jti"],
            issued_at=times[0],
            not_before=times[1],
            expires_at=times[2],
            kid=key.kid,
        )

    def verify_admin(self, token: str, *, now: float) -> AdminClaims:
        """Return the claims of a valid admin token, or raise :class:`TokenError`. The caller
        checks ``jti`` against its revocations, as for join tokens."""
        key, payload, times = self._decode(token, AUDIENCE_ADMIN, now=now, max_ttl=ADMIN_MAX_TTL, admin=True)
        if payload.get("admin") is not True:
            raise TokenError("not_admin", "token lacks the admin claim")
        return AdminClaims(
            subject=_checked(_validate_identity, payload["sub"], "sub"),
            jti=payload["jti"],
            expires_at=times[2],
            kid=key.kid,
        )

    def _decode(
        self, token: str, audience: str, *, now: float, max_ttl: int, admin: bool
    ) -> tuple[VerificationKey, dict[str, Any], tuple[int, int, int]]:
        _check_now(now)
        wrong_audience: RejectionReason = "not_admin" if admin else "malformed"
        header = _read_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise TokenError("alg_not_allowed", "token algorithm is not supported")
        kid = header.get("kid")
        if kid is None:
            raise TokenError("unknown_key", "token header has no kid")
        if not isinstance(kid, str):
            raise TokenError("malformed", "token kid must be a string")
        key = self._keyring.get(kid)
        if key is None:
            raise TokenError("unknown_key", "token kid is not a configured key")
        if admin and key.alg != "HS256":
            raise TokenError("alg_not_allowed", "only HS256 API keys may sign admin tokens")
        if alg != key.alg:
            raise TokenError("alg_not_allowed", f"key {kid!r} is configured for {key.alg}, token uses {alg}")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key.material,
                algorithms=[key.alg],
                audience=audience,
                # Time claims are checked below against the caller's ``now``, not the wall clock.
                options={
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "nbf", "iat", "jti", "sub", "aud"] + ([] if admin else ["room"]),
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenError("bad_signature", "token signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError("alg_not_allowed", "token algorithm is not allowed for this key") from None
        except jwt.InvalidAudienceError:
            raise TokenError(wrong_audience, f"token audience is not {audience!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            if exc.claim == "aud":
                raise TokenError(wrong_audience, f"token audience is not {audience!r}") from None
            raise TokenError("malformed", f"token lacks required claim {exc.claim!r}") from None
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError):
            raise TokenError("malformed", "token could not be decoded") from None
        if not isinstance(payload, dict):
            raise TokenError("malformed", "token payload is not a JSON object")
        try:
            text.check(payload)
        except text.UnsafeJson as exc:
            raise TokenError("malformed", f"token claims are refused: {exc.message}") from None
        _checked(validate_jti, payload["jti"], "jti")
        if payload.get("iss", kid) != kid:
            raise TokenError("malformed", "token issuer does not match its kid")
        iat, nbf, exp = (_numeric_date(payload, claim) for claim in ("iat", "nbf", "exp"))
        if exp <= iat or exp < nbf:
            raise TokenError("malformed", "token expires before it is issued or valid")
        if exp - iat > max_ttl:
            raise TokenError("lifetime_too_long", f"token lifetime {exp - iat}s exceeds {max_ttl}s")
        if exp <= now - self._leeway:
            raise TokenError("expired", f"token expired at {exp}")
        if nbf > now + self._leeway or iat > now + self._leeway:
            raise TokenError("not_yet_valid", f"token is not valid before {max(iat, nbf)}")
        return key, payload, (iat, nbf, exp)


def generate_keypair(alg: str = "EdDSA") -> tuple[bytes, bytes]:
    """Return ``(private PEM PKCS8 unencrypted, public PEM SubjectPublicKeyInfo)`` for EdDSA or ES256."""
    checked = _check_alg(alg)
    private: PrivateKey
    if checked == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif checked == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError("HS256 has no key pair; use new_api_secret()")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def new_jti() -> str:
    """A token id: 22 URL-safe characters (128 bits), never starting with ``-``, so that
    ``confctl token revoke JTI`` cannot read it as an option."""
    while (jti := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return jti


def new_api_key() -> str:
    """A new API key id: ``"AK"`` followed by 14 URL-safe random characters."""
    return "AK" + secrets.token_urlsafe(16)[:14]


def new_api_secret() -> str:
    """A new API secret: 256 random bits, 43 URL-safe characters."""
    return secrets.token_urlsafe(32)
