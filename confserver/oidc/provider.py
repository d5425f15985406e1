"""The provider's HTTP adapter: discovery and keys (cached, fetched once at a time), and the code
exchange at the token endpoint. Every request has a deadline and a size bound; a provider that is
down costs one failed request per few seconds, not one per visitor, and nothing else waits on it."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import quote_plus

import aiohttp

from ..oidcconfig import OidcConfig
from .flow import ProviderMetadata, SignInError, discovery_url, unavailable

log = logging.getLogger("confserver.oidc")

MAX_DOCUMENT_BYTES: Final = 256 * 1024
RETRY_AFTER_FAILURE: Final = 5.0
"""Seconds a failed fetch is remembered: visitors meanwhile get the error at once."""
KEY_REFRESH_INTERVAL: Final = 10.0
"""An unknown key id makes us fetch the keys again, at most this often."""
MAX_EXCHANGES: Final = 32
"""Code exchanges in flight at once; more are refused (``oidc_busy``) rather than queued."""

_T = TypeVar("_T")


@dataclass
class _Cached:
    value: Any = None
    fetched_at: float = float("-inf")
    failed_at: float = float("-inf")
    failure: SignInError | None = None


class ProviderClient:
    def __init__(self, cfg: OidcConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._meta = _Cached()
        self._keys = _Cached()
        self._locks = {"meta": asyncio.Lock(), "keys": asyncio.Lock()}
        self._exchanges = 0

    async def start(self) -> None:
        ssl_ctx: ssl.SSLContext | bool = True
        if self._cfg.ca_file:
            ssl_ctx = ssl.create_default_context(cafile=self._cfg.ca_file)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._cfg.timeout),
            connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=MAX_EXCHANGES + 4),
            headers={"User-Agent": "confserver", "Accept": "application/json"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def metadata(self) -> ProviderMetadata:
        async def fetch() -> ProviderMetadata:
            doc = await self._get_json(discovery_url(self._cfg.issuer), "discovery document")
            return ProviderMetadata.parse(doc, expected_issuer=self._cfg.issuer)

        meta: ProviderMetadata = await self._cached("meta", self._meta, fetch, self._cfg.metadata_ttl)
        return meta

    async def keys(self, *, refresh: bool = False) -> dict[str, Any]:
        """The provider's published keys (JWKS); ``refresh`` fetches them again unless that was
        done in the last ``KEY_REFRESH_INTERVAL`` seconds."""
        meta = await self.metadata()

        async def fetch() -> dict[str, Any]:
            doc = await self._get_json(meta.jwks_uri, "key set")
            if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
                raise unavailable("the provider's key set is not a JSON Web Key Set")
            return doc

        ttl: float = self._cfg.metadata_ttl
        if refresh and self._clock() - self._keys.fetched_at >= KEY_REFRESH_INTERVAL:
            ttl = 0
        keys: dict[str, Any] = await self._cached("keys", self._keys, fetch, ttl)
        return keys

    async def exchange(self, meta: ProviderMetadata, *, code: str, verifier: str, redirect_uri: str) -> str:
        """The ID token the token endpoint gives for ``code`` (client_secret_basic, PKCE)."""
        if self._exchanges >= MAX_EXCHANGES:
            raise SignInError("oidc_busy", "too many sign-ins at once; try again in a moment", 503)
        self._exchanges += 1
        try:
            return await self._exchange(meta, code=code, verifier=verifier, redirect_uri=redirect_uri)
        finally:
            self._exchanges -= 1

    async def _exchange(self, meta: ProviderMetadata, *, code: str, verifier: str, redirect_uri: str) -> str:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers: dict[str, str] = {}
        if self._cfg.client_auth == "client_secret_post":
            form.update(client_id=self._cfg.client_id, client_secret=self._cfg.client_secret)
        else:  # RFC 6749 section 2.3.1: id and secret form-encoded inside Basic
            login, secret = quote_plus(self._cfg.client_id), quote_plus(self._cfg.client_secret)
            headers["Authorization"] = aiohttp.encode_basic_auth(login, secret)
        try:
            async with self._client().post(
                meta.token_endpoint, data=form, headers=headers, allow_redirects=False
            ) as r:
                body = await _read_json(r)
                status = r.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.warning("identity provider token endpoint unreachable", extra={"error": type(e).__name__})
            raise unavailable("the identity provider did not answer; try again later") from None
        if status == 200 and isinstance(body, dict) and isinstance(body.get("id_token"), str):
            return str(body["id_token"])
        error = body.get("error") if isinstance(body, dict) else None
        if status in (400, 401) and error == "invalid_grant":
            raise SignInError(
                "oidc_code_rejected", "the sign-in was already used or has expired; sign in again", 401
            )
        if status in (400, 401) and error in ("invalid_client", "unauthorized_client"):
            log.error("identity provider refused this server's client credentials (auth.oidc)")
            raise SignInError(
                "oidc_client_rejected", "the identity provider does not accept this server", 502
            )
        log.warning(
            "identity provider token endpoint refused",
            extra={"status": status, "error": "".join(c for c in str(error)[:64] if c.isprintable())},
        )
        if status >= 500:
            raise unavailable("the identity provider failed; try again later")
        raise SignInError("oidc_code_rejected", "the identity provider did not complete the sign-in", 401)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise unavailable("the sign-in service is not running")
        return self._session

    async def _get_json(self, url: str, what: str) -> Any:
        try:
            async with self._client().get(url, allow_redirects=False) as r:
                if r.status != 200:
                    raise unavailable(f"the identity provider's {what} answered {r.status}")
                return await _read_json(r)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.warning("identity provider unreachable", extra={"what": what, "error": type(e).__name__})
            raise unavailable("the identity provider cannot be reached; try again later") from None

    async def _cached(self, name: str, slot: _Cached, fetch: Callable[[], Awaitable[_T]], ttl: float) -> _T:
        async with self._locks[name]:  # one fetch at a time; the others wait for its result
            now = self._clock()
            if slot.value is not None and now - slot.fetched_at < ttl:
                return slot.value  # type: ignore[no-any-return]
            if slot.failure is not None and now - slot.failed_at < RETRY_AFTER_FAILURE:
                if slot.value is not None:
                    return slot.value  # type: ignore[no-any-return]  # stale but known: better than none
                raise slot.failure
            try:
                slot.value = await fetch()
            except SignInError as e:
                slot.failure, slot.failed_at = e, self._clock()
                if slot.value is not None and e.code == "oidc_provider_unavailable":
                    return slot.value  # type: ignore[no-any-return]
                raise
            slot.fetched_at, slot.failure = self._clock(), None
            return slot.value  # type: ignore[no-any-return]


async def _read_json(resp: aiohttp.ClientResponse) -> Any:
    if resp.content_length is not None and resp.content_length > MAX_DOCUMENT_BYTES:
        raise ValueError("too large")
    body = await resp.content.read(MAX_DOCUMENT_BYTES + 1)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ValueError("too large")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
