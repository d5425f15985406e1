"""Connection settings, admin token minting and the HTTP client for the admin API."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from confctl import __version__

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 10.0
ADMIN_TOKEN_LIFETIME = 300
ADMIN_AUDIENCE = "confserver-admin"
ADMIN_SUBJECT = "confctl"
DEFAULT_CREDENTIALS_FILE = "~/.local/state/confserver/credentials.json"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024
"""A line of a JSON-lines answer (the audit export) at most."""

# (field, command-line flag, environment variable, credentials-file key, human label)
_FIELDS: tuple[tuple[str, str, str, str, str], ...] = (
    ("url", "--url", "CONF_URL", "url", "server URL"),
    ("api_key", "--api-key", "CONF_API_KEY", "api_key", "API key"),
    ("api_secret", "--api-secret", "CONF_API_SECRET", "api_secret", "API secret"),
    ("cacert", "--cacert", "CONF_CACERT", "cacert", "CA file"),
)


class ConfctlError(Exception):
    """Base error: ``str(err)`` is the one-line message, ``exit_code`` the process exit code."""

    exit_code = 1


class UsageError(ConfctlError):
    """Bad arguments or local configuration (exit 2)."""

    exit_code = 2


class ApiError(ConfctlError):
    """The server answered with an error response (exit 1)."""

    exit_code = 1

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"error {code}: {message}" if message else f"error {code}")
        self.code = code
        self.message = message
        self.status = status


class UnreachableError(ConfctlError):
    """The server could not be reached: refused, DNS, timeout, TLS failure (exit 3)."""

    exit_code = 3

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str
    api_secret: str
    cacert: str | None = None


def credentials_file_path(env: Mapping[str, str]) -> Path:
    raw = env.get("CONF_CREDENTIALS_FILE") or DEFAULT_CREDENTIALS_FILE
    return Path(raw).expanduser()


def load_credentials_file(path: Path) -> dict[str, str] | None:
    """Read the dev credentials file; ``None`` when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read credentials file {path}: {_describe(exc)}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"credentials file {path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise UsageError(f"credentials file {path} must contain a JSON object")
    result: dict[str, str] = {}
    for _field, _flag, _env, key, _label in _FIELDS:
        value = data.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise UsageError(f"credentials file {path}: field {key!r} must be a string")
        result[key] = value
    return result


def resolve_settings(flags: Mapping[str, str | None], env: Mapping[str, str]) -> Settings:
    """Resolve each setting independently: flag > environment > dev credentials file."""
    values: dict[str, str | None] = {}
    pending: list[tuple[str, str]] = []
    for field, _flag, env_name, key, _label in _FIELDS:
        value = flags.get(field) or env.get(env_name) or None
        values[field] = value
        if value is None:
            pending.append((field, key))
    cred_path = credentials_file_path(env)
    file_values: dict[str, str] | None = None
    if pending:
        file_values = load_credentials_file(cred_path)
        if file_values:
            for field, key in pending:
                values[field] = file_values.get(key)
    missing = [f for f in _FIELDS if f[0] != "cacert" and not values[f[0]]]
    if missing:
        labels = ", ".join(f[4] for f in missing)
        flags_txt = "/".join(f[1] for f in missing)
        envs_txt = "/".join("$" + f[2] for f in missing)
        where = f"{cred_path}" + ("" if file_values is not None else " (not found)")
        raise UsageError(f"missing {labels}: looked in {flags_txt}, {envs_txt} and {where}")
    url = normalize_url(values["url"] or "")
    return Settings(
        url=url,
        api_key=values["api_key"] or "",
        api_secret=values["api_secret"] or "",
        cacert=values["cacert"],
    )


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_url(url: str) -> str:
    """Validate the server base URL and return it without a trailing slash."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on an invalid port
    except ValueError:
        raise UsageError(f"invalid server URL {url!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host:
        raise UsageError(f"invalid server URL {url!r}: expected https://HOST[:PORT]")
    if parts.username is not None or parts.password is not None:
        raise UsageError("invalid server URL: credentials must not be embedded in the URL")
    if parts.query or parts.fragment:
        raise UsageError(f"invalid server URL {url!r}: query and fragment are not allowed")
    if scheme == "http" and not is_loopback_host(host):
        raise UsageError(
            f"refusing plain http:// to non-loopback host {host}: use https:// "
            "(http:// is only allowed for 127.0.0.1, ::1 and localhost)"
        )
    path = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


def mint_admin_token(api_key: str, api_secret: str, now: int | None = None) -> str:
    """Mint the short-lived HS256 admin JWT the admin API expects."""
    issued = int(time.time()) if now is None else now
    payload: dict[str, Any] = {
        "iss": api_key,
        "sub": ADMIN_SUBJECT,
        "aud": ADMIN_AUDIENCE,
        "admin": True,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ADMIN_TOKEN_LIFETIME,
        "jti": secrets.token_urlsafe(16),
    }
    with warnings.catch_warnings():
        # The secret is issued by the server; a short-key warning would only add noise here.
        warnings.simplefilter("ignore")
        return jwt.encode(payload, api_secret, algorithm="HS256", headers={"kid": api_key})


def encode_segment(segment: str) -> str:
    """Percent-encode one path segment (``/`` included; ``.``/``..`` kept literal-safe)."""
    encoded = urllib.parse.quote(segment, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow redirects: the bearer token must not be replayed to another location."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _describe(exc: BaseException) -> str:
    """A short human description of a network/OS error."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or "verification failed"
        return f"TLS certificate verification failed: {detail}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, BaseException):
            return _describe(reason)
        return str(reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, http.client.HTTPException):
        return f"invalid HTTP response ({type(exc).__name__})"
    return str(exc) or type(exc).__name__


def _one_line(text: str) -> str:
    """Collapse whitespace and drop control characters (no terminal escapes from the wire)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


class AdminClient:
    """Minimal blocking client for ``{url}/api/v1``."""

    def __init__(self, settings: Settings, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.settings = settings
        self.base_url = normalize_url(settings.url)
        self.timeout = timeout
        self._opener = self._build_opener()

    def _build_opener(self) -> urllib.request.OpenerDirector:
        context = ssl.create_default_context()  # system trust store, hostname checks on
        cafile = self.settings.cacert
        if cafile:
            try:
                context.load_verify_locations(cafile=os.path.expanduser(cafile))
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"cannot load CA file {cafile}: {_describe(exc)}") from None
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.HTTPSHandler(context=context),
            _NoRedirect(),
        ]
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        if is_loopback_host(host):
            handlers.append(urllib.request.ProxyHandler({}))
        return urllib.request.build_opener(*handlers)

    def _redact(self, text: str, token: str) -> str:
        """Scrub the bearer token and the API secret from server-supplied text."""
        text = text.replace(token, "[redacted]")
        secret = self.settings.api_secret
        if len(secret) >= 8:  # shorter strings would mangle ordinary words
            text = text.replace(secret, "[redacted]")
        return text

    def request(
        self,
        method: str,
        segments: Sequence[str],
        body: Mapping[str, Any] | None = None,
        *,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request; returns the decoded JSON body, or ``None`` for an empty body."""
        req, token = self._request(method, segments, body, query)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status = int(resp.status)
                raw = resp.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise self._api_error(exc, token) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = _one_line(_describe(exc)).replace(token, "[redacted]")
            raise UnreachableError(self.base_url, reason) from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ApiError("invalid_response", "response body too large")
        if status == 204 or not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(
                "invalid_response", f"server returned a non-JSON response (HTTP {status})", status
            ) from None

    def _request(
        self,
        method: str,
        segments: Sequence[str],
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> tuple[urllib.request.Request, str]:
        path = API_PREFIX + "".join("/" + encode_segment(s) for s in segments)
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        token = mint_admin_token(self.settings.api_key, self.settings.api_secret)
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": f"confctl/{__version__}",
        }
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        # The scheme is restricted to https (or http on loopback) by normalize_url().
        return urllib.request.Request(url, data=data, headers=headers, method=method), token  # noqa: S310

    def stream_lines(self, segments: Sequence[str]) -> Iterator[bytes]:
        """GET a JSON-lines answer of any length; yields its lines (each at most 1 MiB)."""
        req, token = self._request("GET", segments)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                while True:
                    line = resp.readline(MAX_LINE_BYTES + 1)
                    if not line:
                        return
                    if len(line) > MAX_LINE_BYTES:
                        raise ApiError("invalid_response", "a line of the response is too long")
                    if line.strip():
                        yield line.rstrip(b"\r\n")
        except urllib.error.HTTPError as exc:
            raise self._api_error(exc, token) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = _one_line(_describe(exc)).replace(token, "[redacted]")
            raise UnreachableError(self.base_url, reason) from None

    def _api_error(self, exc: urllib.error.HTTPError, token: str) -> ApiError:
        status = int(exc.code)
        try:
            raw = exc.read(64 * 1024) if exc.fp is not None else b""
        except (OSError, http.client.HTTPException):
            raw = b""
        finally:
            exc.close()
        code = f"http_{status}"
        message = str(exc.reason or "")
        if 300 <= status < 400:
            location = exc.headers.get("Location", "") if exc.headers else ""
            message = f"unexpected redirect to {location or '(no location)'} (not followed)"
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"]:
            code = doc["error"]
            msg = doc.get("message")
            message = "" if msg is None else str(msg)
        clean = self._redact(_one_line(message), token)
        return ApiError(self._redact(_one_line(code), token) or f"http_{status}", clean, status)
