"""ID tokens really issued by the test provider, checked by the sign-in core: the real one passes;
one for another application, an expired one, one for another sign-in (nonce), one from another
issuer, one re-signed with a key the provider never published, and unsigned or HMAC-signed ones
are each refused with their own code. Time is a parameter: no test waits for a token to expire."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from confserver.oidc import flow as core
from confserver.oidc.flow import Flow, SignInError
from confserver.oidc.provider import ProviderClient
from confserver.oidcconfig import OidcConfig

from .conftest import CLIENT_SECRET, Browserish, Provider


@dataclass
class Issued:
    id_token: str
    nonce: str
    keys: dict[str, Any]
    issuer: str
    client_id: str

    @property
    def claims(self) -> dict[str, Any]:
        payload: dict[str, Any] = jwt.decode(self.id_token, options={"verify_signature": False})
        return payload

    def verify(self, token: str | None = None, **overrides: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "nonce": self.nonce,
            "now": self.claims["iat"] + 1,
            "leeway": 30,
        }
        args.update(overrides)
        return core.verify_id_token(self.id_token if token is None else token, self.keys, **args)


@pytest.fixture
async def issued(provider: Provider) -> AsyncIterator[Issued]:
    """A fresh ID token for alice, obtained through the provider's real authorization code flow."""
    cfg = provider.config().auth.oidc
    client = ProviderClient(cfg)
    await client.start()
    try:
        meta = await client.metadata()
        flow = Flow.new("room")
        redirect_uri = f"http://127.0.0.1:{provider.server_port}/auth/callback"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            back = await Browserish(http, f"http://127.0.0.1:{provider.server_port}").at_provider(
                core.authorization_url(meta, cfg, flow, redirect_uri), "alice"
            )
        answer = core.parse_callback(parse_qsl(urlsplit(back).query))
        core.check_state(flow, answer)
        id_token = await client.exchange(
            meta, code=answer.code, verifier=flow.verifier, redirect_uri=redirect_uri
        )
        yield Issued(id_token, flow.nonce, await client.keys(), meta.issuer, cfg.client_id)
    finally:
        await client.close()


def refused(issued: Issued, token: str | None = None, **overrides: Any) -> str:
    with pytest.raises(SignInError) as caught:
        issued.verify(token, **overrides)
    return caught.value.code


def resign(token: str, key: Any, alg: str, **header: Any) -> str:
    payload = jwt.decode(token, options={"verify_signature": False})
    original = jwt.get_unverified_header(token)
    return jwt.encode(payload, key, algorithm=alg, headers={**{"kid": original["kid"]}, **header})


def test_the_providers_id_token_is_believed(issued: Issued) -> None:
    claims = issued.verify()
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@kominfo.go.id"
    assert claims["groups"] == ["kemenkominfo-staff"]


def test_an_id_token_for_another_application_is_refused(issued: Issued) -> None:
    assert refused(issued, client_id="another-application") == "oidc_wrong_audience"


def test_an_expired_id_token_is_refused(issued: Issued) -> None:
    exp = issued.claims["exp"]
    assert issued.verify(now=exp + 29)  # within the leeway for clock differences
    assert refused(issued, now=exp + 30) == "oidc_token_expired"


def test_an_id_token_of_another_sign_in_is_refused(issued: Issued) -> None:
    assert refused(issued, nonce="the-nonce-of-another-sign-in") == "oidc_nonce_mismatch"


def test_an_id_token_from_another_issuer_is_refused(issued: Issued) -> None:
    assert refused(issued, issuer="https://sso.example.org") == "oidc_wrong_issuer"


def test_an_id_token_signed_by_a_key_the_provider_never_published_is_refused(issued: Issued) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refused(issued, resign(issued.id_token, stranger, "RS256")) == "oidc_bad_signature"
    with pytest.raises(core.UnknownKeyError):  # another kid: the keys are fetched again, then refused
        issued.verify(resign(issued.id_token, stranger, "RS256", kid="someone-else"))


def test_unsigned_and_hmac_signed_id_tokens_are_refused(issued: Issued) -> None:
    _header, payload, _sig = issued.id_token.split(".")
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "test-rs256"}).encode()).rstrip(
        b"="
    )
    assert refused(issued, f"{none_header.decode()}.{payload}.") == "oidc_id_token_invalid"
    hmac_signed = resign(issued.id_token, CLIENT_SECRET, "HS256")
    assert refused(issued, hmac_signed) == "oidc_id_token_invalid"


def test_a_tampered_id_token_is_refused(issued: Issued) -> None:
    header, payload, sig = issued.id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["email"] = "boss@kominfo.go.id"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert refused(issued, f"{header}.{forged}.{sig}") == "oidc_bad_signature"


@pytest.mark.parametrize("token", [None, "", "a.b", "x" * (core.MAX_ID_TOKEN_CHARS + 1), 42])
def test_garbage_instead_of_an_id_token_is_refused(issued: Issued, token: Any) -> None:
    with pytest.raises(SignInError) as caught:
        core.verify_id_token(
            token, issued.keys, issuer=issued.issuer, client_id=issued.client_id, nonce="n", now=0, leeway=0
        )
    assert caught.value.code == "oidc_id_token_invalid"


def test_the_person_is_read_from_the_configured_claims() -> None:
    cfg = OidcConfig(issuer="https://sso.example.gov", client_id="c", client_secret="s")
    who = core.signed_in(
        {"sub": "u1", "email": "Ana@Kominfo.go.id", "name": " Ana ", "groups": ["a", "b"]}, cfg
    )
    assert who == core.SignedIn("ana@kominfo.go.id", "Ana", "ana@kominfo.go.id", ("a", "b"))
    by_sub = replace(cfg, identity_claim="sub", name_claim="preferred_username", groups_claim="roles")
    who = core.signed_in({"sub": "u1", "email": "ana@kominfo.go.id", "roles": "eselon1"}, by_sub)
    assert (who.identity, who.name, who.groups) == ("u1", "u1", ("eselon1",))


def test_an_unverified_email_is_not_believed() -> None:
    cfg = OidcConfig(issuer="https://sso.example.gov", client_id="c", client_secret="s")
    claims = {"sub": "u1", "email": "boss@kominfo.go.id", "email_verified": False}
    with pytest.raises(SignInError) as caught:
        core.signed_in(claims, cfg)
    assert caught.value.code == "oidc_claims_invalid"
    assert core.signed_in(claims, replace(cfg, identity_claim="sub")).email == ""


@pytest.mark.parametrize(
    "groups",
    [["x"] * (core.MAX_GROUPS + 1), ["x" * (core.MAX_GROUP_CHARS + 1)], [1, 2], {"a": 1}],
    ids=["too-many", "too-long", "not-text", "not-a-list"],
)
def test_an_unusable_groups_claim_is_refused(groups: Any) -> None:
    cfg = OidcConfig(issuer="https://sso.example.gov", client_id="c", client_secret="s", identity_claim="sub")
    with pytest.raises(SignInError) as caught:
        core.signed_in({"sub": "u1", "groups": groups}, cfg)
    assert caught.value.code == "oidc_claims_invalid"
