"""What the admin API's handlers share: their context, the caller, reading and checking a JSON
body, and the error answer. The handlers are in ``api`` (rooms, tokens), ``participantsapi``,
``keysapi`` and ``auditapi``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import text
from .adminkeys import Caller
from .errors import ServiceError
from .rooms import RoomService
from .store import Store
from .tokens import SigningKey, TokenVerifier


@dataclass(frozen=True)
class ApiContext:
    rooms: RoomService
    store: Store
    verifier: TokenVerifier
    signing_key: SigningKey
    public_url: str
    token_default_ttl: int
    token_max_ttl: int
    leeway: int
    max_body_bytes: int
    auto_create: bool = False
    """Whether a join creates its room (dev mode): a token for a missing room is then useful."""


API = web.AppKey("api", ApiContext)
CALLER = web.RequestKey("caller", Caller)
"""The admin token that authorised the request and the key that signed it."""


def by(request: web.Request) -> dict[str, str]:
    """Who made a change, for its log line: the token's subject and id (so a leaked token can be
    found and revoked) and the name and id of the key that signed it."""
    caller = request[CALLER]
    return {
        "admin": caller.claims.subject,
        "admin_jti": caller.claims.jti,
        "admin_key": caller.key_name,
        "admin_key_id": caller.key_id,
    }


def error_response(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def read_body(request: web.Request) -> dict[str, Any]:
    ctx = request.app[API]
    if request.content_length is not None and request.content_length > ctx.max_body_bytes:
        raise ServiceError("body_too_large", f"bodies are at most {ctx.max_body_bytes} bytes", 413)
    if request.content_type != "application/json":
        raise ServiceError("unsupported_media_type", "send Content-Type: application/json", 415)
    raw = await request.content.read(ctx.max_body_bytes + 1)
    if len(raw) > ctx.max_body_bytes:
        raise ServiceError("body_too_large", f"bodies are at most {ctx.max_body_bytes} bytes", 413)
    try:
        data = text.loads(raw or b"{}")
    except text.UnsafeJson as e:
        # Nesting spoils the body as a whole; a lone surrogate, NaN or a huge number is a bad value.
        raise ServiceError("invalid_json" if e.syntax else "invalid_field", e.message) from None
    except ValueError:
        raise ServiceError("invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ServiceError("invalid_json", "the body must be a JSON object")
    return data


def integral(value: object) -> object:
    """JSON has one number type: ``20.0`` is the integer 20, as JSON Schema's ``integer`` says."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def only(data: dict[str, Any], allowed: set[str]) -> None:
    """The body holds only ``allowed`` fields, and none is ``null``: no field of this API is
    nullable, and a field left out (not one sent as ``null``) means "default" or "unchanged"."""
    extra = sorted(set(data) - allowed)
    if extra:
        raise ServiceError(
            "invalid_field", f"unknown field {extra[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    nulls = sorted(key for key, value in data.items() if value is None)
    if nulls:
        raise ServiceError("invalid_field", f"{nulls[0]} must not be null; leave it out instead")
