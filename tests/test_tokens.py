"""Join and admin tokens: minting, verification and every rejection reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confserver import text
from confserver.tokens import (
    ADMIN_MAX_TTL,
    AUDIENCE_ADMIN,
    AUDIENCE_JOIN,
    PERMISSIONS,
    REJECTION_REASONS,
    ROLE_PERMISSIONS,
    JoinClaims,
    KeyRing,
    SigningKey,
    TokenError,
    TokenVerifier,
    VerificationKey,
    generate_keypair,
    mint_admin_token,
    mint_join_token,
    new_api_key,
    new_api_secret,
)

from . import conftest as app

NOW = 1_700_000_000.0
API_KEY = "AKtestkey000001"
API_SECRET = "s3cr3t-" + "x" * 40
ED_PRIVATE, ED_PUBLIC = generate_keypair("EdDSA")
EC_PRIVATE, EC_PUBLIC = generate_keypair("ES256")

HS_SIGNER = SigningKey.hs256(API_KEY, API_SECRET)
ED_SIGNER = SigningKey.from_private_pem("issuer-ed", "EdDSA", ED_PRIVATE)
EC_SIGNER = SigningKey.from_private_pem("issuer-ec", "ES256", EC_PRIVATE)
KEYRING = KeyRing(
    [
        VerificationKey.hs256(API_KEY, API_SECRET),
        VerificationKey.from_public_pem("issuer-ed", "EdDSA", ED_PUBLIC),
        VerificationKey.from_public_pem("issuer-ec", "ES256", EC_PUBLIC),
    ]
)
SIGNERS = {"HS256": HS_SIGNER, "EdDSA": ED_SIGNER, "ES256": EC_SIGNER}


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(KEYRING)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj).encode())


def hs256_token(header: dict[str, Any], payload: Any, secret: bytes = API_SECRET.encode()) -> str:
    """A compact JWS signed by hand with HMAC-SHA256, whatever the header says."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def join_payload(**overrides: Any) -> dict[str, Any]:
    iat = int(NOW)
    payload: dict[str, Any] = {
        "iss": API_KEY,
        "sub": "alice",
        "aud": AUDIENCE_JOIN,
        "name": "Alice",
        "room": "room-1",
        "role": "participant",
        "perms": ["chat", "subscribe"],
        "iat": iat,
        "nbf": iat,
        "exp": iat + 600,
        "jti": "jti-1",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not DROP}


DROP = object()
HS_HEADER = {"alg": "HS256", "kid": API_KEY, "typ": "JWT"}


def reason_of(verifier: TokenVerifier, token: Any, *, room: str | None = "room-1", now: float = NOW) -> str:
    with pytest.raises(TokenError) as info:
        verifier.verify_join(token, room=room, now=now)
    return info.value.reason


# --- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "EdDSA", "ES256"])
def test_join_token_round_trips_for_each_algorithm(verifier: TokenVerifier, alg: str) -> None:
    signer = SIGNERS[alg]
    token, minted = mint_join_token(signer, room="room-1", identity="alice", name="Alice", now=NOW)
    claims = verifier.verify_join(token, room="room-1", now=NOW)
    assert claims == minted
    assert claims.kid == claims.issuer == signer.kid
    assert claims.expires_at - claims.issued_at == 7200
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": signer.kid, "typ": "JWT"}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"iss", "sub", "aud", "name", "room", "role", "perms", "iat", "nbf", "exp", "jti"}
    assert payload["aud"] == AUDIENCE_JOIN


def test_verify_join_without_room_accepts_any_room(verifier: TokenVerifier) -> None:
    token, _ = mint_join_token(HS_SIGNER, room="other", identity="alice", now=NOW)
    assert verifier.verify_join(token, room=None, now=NOW).room == "other"


@pytest.mark.parametrize("role", ["moderator", "participant", "viewer"])
def test_role_default_permissions_are_applied(verifier: TokenVerifier, role: str) -> None:
    token, minted = mint_join_token(HS_SIGNER, room="r", identity="bob", role=role, now=NOW)
    assert minted.permissions == ROLE_PERMISSIONS[role]
    assert verifier.verify_join(token, room="r", now=NOW).permissions == ROLE_PERMISSIONS[role]


def test_role_permission_table_matches_specification() -> None:
    assert ROLE_PERMISSIONS["moderator"] == frozenset(PERMISSIONS)
    assert len(PERMISSIONS) == 8  # skip_lobby: only given explicitly, or by the moderator role
    assert ROLE_PERMISSIONS["participant"] == {
        "publish_audio",
        "publish_video",
        "publish_screen",
        "subscribe",
        "chat",
    }
    assert ROLE_PERMISSIONS["viewer"] == {"subscribe", "chat"}


def test_explicit_permissions_override_role_defaults(verifier: TokenVerifier) -> None:
    token, _ = mint_join_token(HS_SIGNER, room="r", identity="bob", permissions=["chat"], now=NOW)
    assert verifier.verify_join(token, room="r", now=NOW).permissions == {"chat"}


def test_name_defaults_to_identity_and_is_stripped() -> None:
    assert mint_join_token(HS_SIGNER, room="r", identity="bob", now=NOW)[1].name == "bob"
    assert mint_join_token(HS_SIGNER, room="r", identity="bob", name="  Bob B  ", now=NOW)[1].name == "Bob B"


def test_long_identity_without_name_gets_a_truncated_default_name(verifier: TokenVerifier) -> None:
    identity = "user-" + "x" * 100
    token, minted = mint_join_token(HS_SIGNER, room="r", identity=identity, now=NOW)
    assert minted.name == identity[:64]
    assert verifier.verify_join(token, room="r", now=NOW).identity == identity


def test_token_error_survives_pickling() -> None:
    restored = pickle.loads(pickle.dumps(TokenError("wrong_room", "token is for room 'a'")))
    assert (restored.reason, restored.message) == ("wrong_room", "token is for room 'a'")


def test_jti_is_random_unless_given() -> None:
    first = mint_join_token(HS_SIGNER, room="r", identity="a", now=NOW)[1].jti
    second = mint_join_token(HS_SIGNER, room="r", identity="a", now=NOW)[1].jti
    assert first != second and len(first) >= 22
    assert mint_join_token(HS_SIGNER, room="r", identity="a", now=NOW, jti="fixed")[1].jti == "fixed"


def test_token_without_role_perms_or_name_gets_participant_defaults(verifier: TokenVerifier) -> None:
    token = hs256_token(HS_HEADER, join_payload(role=DROP, perms=DROP, name=DROP))
    claims = verifier.verify_join(token, room="room-1", now=NOW)
    assert (claims.role, claims.permissions, claims.name) == (
        "participant",
        ROLE_PERMISSIONS["participant"],
        "alice",
    )


# --- minting input validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"room": ""},
        {"room": "r" * 65},
        {"room": "room/1"},
        {"room": "room\n"},
        {"room": "räum"},
        {"identity": ""},
        {"identity": "i" * 129},
        {"identity": "a\x00b"},
        {"identity": "   "},
        {"name": ""},
        {"name": "   "},
        {"name": "n" * 65},
        {"name": "bell\x07"},
        {"name": "\u202eevil"},
        {"name": "lone \ud800 surrogate"},
        {"name": "next\x85line"},
        {"role": "admin"},
        {"permissions": ["chat", "fly"]},
        {"permissions": "chat"},
        {"ttl": 0},
        {"ttl": -5},
        {"ttl": 30 * 86400 + 1},
        {"ttl": True},
        {"now": float("nan")},
        {"jti": ""},
    ],
)
def test_mint_join_token_rejects_invalid_input_with_value_error(overrides: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"room": "r", "identity": "alice", "now": NOW}
    kwargs.update(overrides)
    with pytest.raises(ValueError):
        mint_join_token(HS_SIGNER, **kwargs)


def test_verifier_caps_lifetime_even_when_minting_allows_longer(verifier: TokenVerifier) -> None:
    token, _ = mint_join_token(HS_SIGNER, room="room-1", identity="a", ttl=7 * 86400, now=NOW)
    assert reason_of(verifier, token) == "lifetime_too_long"
    assert (
        TokenVerifier(KEYRING, max_ttl=7 * 86400).verify_join(token, room="room-1", now=NOW).identity == "a"
    )


def test_mint_admin_token_rejects_ttl_over_fifteen_minutes() -> None:
    with pytest.raises(ValueError):
        mint_admin_token(API_KEY, API_SECRET, now=NOW, ttl=ADMIN_MAX_TTL + 1)


# --- keys ----------------------------------------------------------------------------------------------


def test_from_public_pem_rejects_key_type_that_does_not_match_alg() -> None:
    with pytest.raises(ValueError):
        VerificationKey.from_public_pem("k", "ES256", ED_PUBLIC)
    with pytest.raises(ValueError):
        VerificationKey.from_public_pem("k", "EdDSA", EC_PUBLIC)
    with pytest.raises(ValueError):
        VerificationKey.from_public_pem("k", "HS256", EC_PUBLIC)
    with pytest.raises(ValueError):
        VerificationKey.from_public_pem("k", "RS256", EC_PUBLIC)


def test_es256_requires_the_p256_curve() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    pem = p384.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError):
        VerificationKey.from_public_pem("k", "ES256", pem)


def test_from_private_pem_rejects_key_type_that_does_not_match_alg() -> None:
    with pytest.raises(ValueError):
        SigningKey.from_private_pem("k", "ES256", ED_PRIVATE)
    with pytest.raises(ValueError):
        SigningKey.from_private_pem("k", "EdDSA", EC_PRIVATE)


def test_hs256_secret_must_be_long_and_must_not_be_a_pem_key() -> None:
    with pytest.raises(ValueError):
        VerificationKey.hs256("k", b"short")
    with pytest.raises(ValueError):
        VerificationKey.hs256("k", ED_PUBLIC)


def test_key_repr_does_not_reveal_the_secret() -> None:
    assert API_SECRET not in repr(HS_SIGNER)
    assert API_SECRET not in repr(VerificationKey.hs256(API_KEY, API_SECRET))


def test_keyring_rejects_duplicate_kids() -> None:
    key = VerificationKey.hs256("dup", API_SECRET)
    with pytest.raises(ValueError):
        KeyRing([key, key])


def test_generated_keypairs_are_pkcs8_and_spki_pem() -> None:
    for alg in ("EdDSA", "ES256"):
        private, public = generate_keypair(alg)
        assert private.startswith(b"-----BEGIN PRIVATE KEY-----")
        assert public.startswith(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(ValueError):
        generate_keypair("HS256")


def test_api_keys_and_secrets_have_the_documented_shape() -> None:
    key, secret = new_api_key(), new_api_secret()
    assert key.startswith("AK") and len(key) == 16
    assert len(secret) >= 43
    assert base64.urlsafe_b64decode(secret + "=") and len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert new_api_key() != key and new_api_secret() != secret


# --- TokenError ----------------------------------------------------------------------------------------


def test_rejection_reasons_are_the_stable_codes() -> None:
    assert set(REJECTION_REASONS) == {
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
    }


def test_caller_can_raise_revoked_with_a_readable_message() -> None:
    error = TokenError("revoked")
    assert error.reason == "revoked"
    assert "revoked" in str(error)


def test_token_error_rejects_unknown_reason() -> None:
    with pytest.raises(ValueError):
        TokenError("nope")  # type: ignore[arg-type]


# --- rejections: keys and algorithms -------------------------------------------------------------------


def test_unknown_kid_is_rejected_as_unknown_key(verifier: TokenVerifier) -> None:
    token, _ = mint_join_token(SigningKey.hs256("AKother", API_SECRET), room="room-1", identity="a", now=NOW)
    assert reason_of(verifier, token) == "unknown_key"


def test_missing_kid_is_rejected_as_unknown_key(verifier: TokenVerifier) -> None:
    token = hs256_token({"alg": "HS256", "typ": "JWT"}, join_payload())
    assert reason_of(verifier, token) == "unknown_key"


def test_alg_none_token_is_rejected_as_alg_not_allowed(verifier: TokenVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        token = f"{b64json({'alg': alg, 'kid': API_KEY, 'typ': 'JWT'})}.{b64json(join_payload())}."
        assert reason_of(verifier, token) == "alg_not_allowed"


def test_hs256_token_signed_with_public_key_pem_is_rejected_as_alg_not_allowed(
    verifier: TokenVerifier,
) -> None:
    for kid, pem in (("issuer-ed", ED_PUBLIC), ("issuer-ec", EC_PUBLIC)):
        header = {"alg": "HS256", "kid": kid, "typ": "JWT"}
        token = hs256_token(header, join_payload(iss=kid), secret=pem)
        assert reason_of(verifier, token) == "alg_not_allowed"


def test_token_alg_differing_from_configured_alg_is_rejected(verifier: TokenVerifier) -> None:
    ed_with_hs_kid = jwt.encode(
        join_payload(), ED_SIGNER.material, algorithm="EdDSA", headers={"kid": API_KEY}
    )
    assert reason_of(verifier, ed_with_hs_kid) == "alg_not_allowed"
    rs256 = hs256_token({"alg": "RS256", "kid": API_KEY}, join_payload())
    assert reason_of(verifier, rs256) == "alg_not_allowed"


# --- rejections: signature, room, time -----------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "EdDSA", "ES256"])
def test_tampered_payload_is_rejected_as_bad_signature(verifier: TokenVerifier, alg: str) -> None:
    token, _ = mint_join_token(SIGNERS[alg], room="room-1", identity="a", role="viewer", now=NOW)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "moderator"
    claims["perms"] = sorted(PERMISSIONS)
    forged = f"{header}.{b64json(claims)}.{signature}"
    assert reason_of(verifier, forged) == "bad_signature"


def test_token_signed_with_another_secret_is_rejected_as_bad_signature(verifier: TokenVerifier) -> None:
    token = hs256_token(HS_HEADER, join_payload(), secret=b"another-secret-of-sufficient-length!!")
    assert reason_of(verifier, token) == "bad_signature"


def test_token_for_another_room_is_rejected_as_wrong_room(verifier: TokenVerifier) -> None:
    token, _ = mint_join_token(HS_SIGNER, room="room-2", identity="a", now=NOW)
    assert reason_of(verifier, token, room="room-1") == "wrong_room"


def test_expired_token_is_rejected_after_the_leeway() -> None:
    token, claims = mint_join_token(HS_SIGNER, room="room-1", identity="a", ttl=600, now=NOW)
    lenient, strict = TokenVerifier(KEYRING, leeway=30), TokenVerifier(KEYRING, leeway=0)
    assert lenient.verify_join(token, room="room-1", now=claims.expires_at + 10) == claims
    assert reason_of(strict, token, now=claims.expires_at) == "expired"
    assert reason_of(lenient, token, now=claims.expires_at + 31) == "expired"


def test_token_not_yet_valid_is_rejected_beyond_the_leeway() -> None:
    soon, _ = mint_join_token(HS_SIGNER, room="room-1", identity="a", now=NOW + 20)
    later, _ = mint_join_token(HS_SIGNER, room="room-1", identity="a", now=NOW + 100)
    lenient, strict = TokenVerifier(KEYRING, leeway=30), TokenVerifier(KEYRING, leeway=0)
    assert lenient.verify_join(soon, room="room-1", now=NOW).identity == "a"
    assert reason_of(strict, soon) == "not_yet_valid"
    assert reason_of(lenient, later) == "not_yet_valid"


def test_future_nbf_alone_is_rejected_as_not_yet_valid(verifier: TokenVerifier) -> None:
    token = hs256_token(HS_HEADER, join_payload(nbf=int(NOW) + 300))
    assert reason_of(verifier, token) == "not_yet_valid"


def test_lifetime_longer_than_max_ttl_is_rejected() -> None:
    token, _ = mint_join_token(HS_SIGNER, room="room-1", identity="a", ttl=7200, now=NOW)
    assert reason_of(TokenVerifier(KEYRING, max_ttl=3600), token) == "lifetime_too_long"
    long_lived = hs256_token(HS_HEADER, join_payload(exp=int(NOW) + 86400 * 365))
    assert reason_of(TokenVerifier(KEYRING), long_lived) == "lifetime_too_long"


# --- rejections: malformed -----------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat", "jti", "sub", "room", "aud"])
def test_token_missing_a_required_claim_is_malformed(verifier: TokenVerifier, claim: str) -> None:
    token = hs256_token(HS_HEADER, join_payload(**{claim: DROP}))
    assert reason_of(verifier, token) == "malformed"


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": "1700000600"},
        {"exp": 1700000600.5},
        {"exp": True},
        {"exp": -1},
        {"iat": None},
        {"nbf": [1]},
        {"exp": 10**30},
        {"exp": int(NOW) - 1},
        {"jti": 7},
        {"jti": ""},
        {"sub": 123},
        {"sub": ""},
        {"room": "../etc"},
        {"room": 5},
        {"name": "\x1b[31mred"},
        {"name": ""},
        {"role": "admin"},
        {"role": None},
        {"perms": "chat"},
        {"perms": {"chat": True}},
        {"perms": ["chat", "fly"]},
        {"perms": [1]},
        {"iss": "AKsomeoneelse"},
        {"aud": ["confserver", "confserver-admin"]},
        {"aud": "other"},
    ],
)
def test_token_with_invalid_claim_value_is_malformed(
    verifier: TokenVerifier, overrides: dict[str, Any]
) -> None:
    token = hs256_token(HS_HEADER, join_payload(**overrides))
    assert reason_of(verifier, token) == "malformed"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        "eyJ.eyJ.sig",
        "...",
        "é.é.é",
        f"{b64(b'not json')}.{b64json({})}.sig",
        f"{b64json([1, 2])}.{b64json({})}.sig",
        f"{b64json('str')}.{b64json({})}.sig",
        f"{b64(b'[' * 3000)}.{b64json({})}.sig",
        b"bytes.are.wrong",
        None,
        12345,
    ],
)
def test_garbage_is_rejected_as_malformed(verifier: TokenVerifier, token: Any) -> None:
    assert reason_of(verifier, token) == "malformed"


def test_signed_payload_that_is_not_a_json_object_is_malformed(verifier: TokenVerifier) -> None:
    assert reason_of(verifier, hs256_token(HS_HEADER, [1, 2, 3])) == "malformed"
    signing_input = f"{b64json(HS_HEADER)}.{b64(b'not json')}"
    signature = hmac.new(API_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert reason_of(verifier, f"{signing_input}.{b64(signature)}") == "malformed"


def test_header_with_crit_or_unencoded_payload_is_malformed(verifier: TokenVerifier) -> None:
    token = hs256_token({**HS_HEADER, "b64": False, "crit": ["b64"]}, join_payload())
    assert reason_of(verifier, token) == "malformed"


def test_oversize_token_is_rejected_as_malformed_before_parsing(verifier: TokenVerifier) -> None:
    assert reason_of(verifier, "a" * 10_000_000) == "malformed"
    padded = hs256_token(HS_HEADER, join_payload(padding="x" * 8192))
    assert reason_of(verifier, padded) == "malformed"


def test_non_canonical_base64_signature_is_rejected(verifier: TokenVerifier) -> None:
    token, _ = mint_join_token(ED_SIGNER, room="room-1", identity="a", now=NOW)
    head, last = token[:-1], token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variants = [head + c for c in alphabet if c != last]
    for variant in variants:
        with pytest.raises(TokenError):
            verifier.verify_join(variant, room="room-1", now=NOW)


# --- text in claims ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "Eve\ud800"},
        {"name": "\udfffEve"},
        {"name": "\u202eevE"},
        {"name": "C1\x9bcontrol"},
        {"sub": "eve\ud800"},
        {"jti": "jti-\udc00"},
        {"note": "an unread claim with a lone surrogate \ud83d"},
        {"nested": {"deeper": ["\ud800"]}},
        {"extra": float("nan")},
        {"extra": 2**60},
    ],
)
def test_claims_holding_lone_surrogates_or_unsafe_json_are_malformed(
    verifier: TokenVerifier, overrides: dict[str, Any]
) -> None:
    assert reason_of(verifier, hs256_token(HS_HEADER, join_payload(**overrides))) == "malformed"


def test_header_holding_a_lone_surrogate_is_malformed(verifier: TokenVerifier) -> None:
    assert reason_of(verifier, hs256_token({**HS_HEADER, "x": "\ud800"}, join_payload())) == "malformed"


def test_display_name_rule_is_the_shared_one() -> None:
    for name in ("Ana", "  Ana  ", "Zoë Ø", "名前"):
        minted = mint_join_token(HS_SIGNER, room="r", identity="a", name=name, now=NOW)[1].name
        assert minted == text.display_name(name)


@pytest.mark.parametrize("overrides", [{"name": "Eve\ud800"}, {"note": "\udc00"}])
async def test_a_join_token_holding_a_lone_surrogate_cannot_join(
    client: TestClient, overrides: dict[str, Any]
) -> None:
    now = int(time.time())
    payload = join_payload(iss=app.API_KEY, room="r1", iat=now, nbf=now, exp=now + 600, **overrides)
    token = hs256_token({**HS_HEADER, "kid": app.API_KEY}, payload, app.API_SECRET.encode())
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "room": "r1"})
    reply = await ws.receive_json()
    assert reply["type"] == "error" and reply["code"] == "token_rejected" and reply["reason"] == "malformed"
    await ws.close()


# --- admin tokens --------------------------------------------------------------------------------------


def test_admin_token_is_accepted_and_returns_its_subject(verifier: TokenVerifier) -> None:
    token = mint_admin_token(API_KEY, API_SECRET, now=NOW, subject="ops-cli")
    claims = verifier.verify_admin(token, now=NOW + 60)
    assert claims.subject == "ops-cli" and claims.kid == API_KEY
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["aud"] == AUDIENCE_ADMIN and payload["admin"] is True
    assert (claims.jti, claims.expires_at) == (payload["jti"], payload["exp"])
    assert payload["exp"] - payload["iat"] == 300


def test_admin_token_minted_with_plain_pyjwt_is_accepted(verifier: TokenVerifier) -> None:
    iat = int(NOW)
    payload = {"iss": API_KEY, "sub": "confctl", "aud": AUDIENCE_ADMIN, "admin": True}
    payload |= {"iat": iat, "nbf": iat, "exp": iat + 300, "jti": "abc"}
    token = jwt.encode(payload, API_SECRET, algorithm="HS256", headers={"kid": API_KEY})
    assert verifier.verify_admin(token, now=NOW).subject == "confctl"


def test_join_token_used_as_admin_token_is_rejected_as_not_admin(verifier: TokenVerifier) -> None:
    token, _ = mint_join_token(HS_SIGNER, room="room-1", identity="confctl", role="moderator", now=NOW)
    with pytest.raises(TokenError) as info:
        verifier.verify_admin(token, now=NOW)
    assert info.value.reason == "not_admin"


def test_admin_token_used_as_join_token_is_rejected(verifier: TokenVerifier) -> None:
    token = mint_admin_token(API_KEY, API_SECRET, now=NOW)
    assert reason_of(verifier, token, room=None) == "malformed"


def test_admin_audience_without_admin_true_is_rejected_as_not_admin(verifier: TokenVerifier) -> None:
    for admin in (DROP, False, "true", 1):
        payload = join_payload(aud=AUDIENCE_ADMIN, admin=admin)
        with pytest.raises(TokenError) as info:
            verifier.verify_admin(hs256_token(HS_HEADER, payload), now=NOW)
        assert info.value.reason == "not_admin"


def test_eddsa_kid_cannot_sign_admin_tokens(verifier: TokenVerifier) -> None:
    iat = int(NOW)
    payload = {"iss": "issuer-ed", "sub": "x", "aud": AUDIENCE_ADMIN, "admin": True}
    payload |= {"iat": iat, "nbf": iat, "exp": iat + 60, "jti": "j"}
    token = jwt.encode(payload, ED_SIGNER.material, algorithm="EdDSA", headers={"kid": "issuer-ed"})
    with pytest.raises(TokenError) as info:
        verifier.verify_admin(token, now=NOW)
    assert info.value.reason == "alg_not_allowed"


def test_admin_token_lifetime_over_fifteen_minutes_is_rejected(verifier: TokenVerifier) -> None:
    payload = join_payload(aud=AUDIENCE_ADMIN, admin=True, exp=int(NOW) + ADMIN_MAX_TTL + 1)
    with pytest.raises(TokenError) as info:
        verifier.verify_admin(hs256_token(HS_HEADER, payload), now=NOW)
    assert info.value.reason == "lifetime_too_long"


def test_expired_admin_token_is_rejected(verifier: TokenVerifier) -> None:
    token = mint_admin_token(API_KEY, API_SECRET, now=NOW, ttl=60)
    with pytest.raises(TokenError) as info:
        verifier.verify_admin(token, now=NOW + 60 + 31)
    assert info.value.reason == "expired"


def test_admin_token_with_tampered_signature_is_rejected(verifier: TokenVerifier) -> None:
    token = mint_admin_token(API_KEY, "another-" + API_SECRET, now=NOW)
    with pytest.raises(TokenError) as info:
        verifier.verify_admin(token, now=NOW)
    assert info.value.reason == "bad_signature"


# --- properties ----------------------------------------------------------------------------------------

VALID_TOKEN, VALID_CLAIMS = mint_join_token(ED_SIGNER, room="room-1", identity="alice", now=NOW)
TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


def _verify_or_token_error(verifier: TokenVerifier, token: Any) -> JoinClaims | None:
    try:
        return verifier.verify_join(token, room="room-1", now=NOW)
    except TokenError as error:
        assert error.reason in REJECTION_REASONS
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=300), st.text(alphabet=TOKEN_ALPHABET, max_size=300)))
def test_verify_join_on_arbitrary_text_only_raises_token_error(verifier: TokenVerifier, text: str) -> None:
    assert _verify_or_token_error(verifier, text) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(
        st.tuples(
            st.integers(0, len(VALID_TOKEN) - 1), st.one_of(st.sampled_from(TOKEN_ALPHABET), st.characters())
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_valid_token_either_verifies_unchanged_or_raises_token_error(
    verifier: TokenVerifier, flips: list[tuple[int, str]]
) -> None:
    chars = list(VALID_TOKEN)
    for index, char in flips:
        chars[index] = char
    mutated = "".join(chars)
    claims = _verify_or_token_error(verifier, mutated)
    if claims is not None:
        assert mutated == VALID_TOKEN
        assert claims == VALID_CLAIMS


def test_a_minted_token_id_never_starts_with_a_dash() -> None:
    from confserver.tokens import new_jti

    ids = [new_jti() for _ in range(5000)]  # about 78 of 5000 would start with "-" otherwise
    assert not any(jti.startswith("-") for jti in ids) and len(set(ids)) == len(ids)
