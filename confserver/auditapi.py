"""The audit log in the admin API: each changing route writes one entry (who, what, the outcome),
and ``/api/v1/audit`` serves searches, the signed head and a full export (scope ``audit:read``)."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .audit import Actor, Query, search
from .audit.log import AuditLog
from .audit.query import MAX_LIMIT
from .errors import ServiceError

AUDIT = web.AppKey("audit", AuditLog)
DETAIL = web.RequestKey("audit_detail", dict)
"""What a handler adds to its route's entry: ``room``, ``target``, ``target_name``, ``action``
(to name it more precisely, e.g. ``room.lock``) and ``conf`` fields."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def detail(request: web.Request, **fields: Any) -> None:
    """Add to the entry this request will write."""
    request.setdefault(DETAIL, {}).update(fields)


def record(request: web.Request, action: str, actor: Actor, *, outcome: str, reason: str = "") -> None:
    found: dict[str, Any] = request.get(DETAIL, {})
    info = request.match_info
    request.app[AUDIT].record(
        found.get("action", action),
        actor=actor,
        outcome="success" if outcome == "success" else "failure",
        reason=reason,
        room=found.get("room", info.get("name", "")),
        target=found.get("target", info.get("identity", info.get("key_id", info.get("jti", "")))),
        target_name=found.get("target_name", ""),
        client_ip=request.remote or "",
        conf=found.get("conf"),
    )


async def audited(request: web.Request, handler: Handler, action: str, actor: Actor) -> web.StreamResponse:
    """Run a changing route's handler and record its outcome (a refusal under the same action)."""
    try:
        response = await handler(request)
    except ServiceError as e:
        record(request, action, actor, outcome="failure", reason=e.code)
        raise
    except web.HTTPException as e:
        record(request, action, actor, outcome="failure", reason=f"http_{e.status}")
        raise
    except Exception:
        record(request, action, actor, outcome="failure", reason="internal")
        raise
    record(request, action, actor, outcome="success" if response.status < 400 else "failure")
    return response


# --- reading ----------------------------------------------------------------------------------


def _since(value: str) -> str:
    """An RFC 3339 time (or a date) as the ``@timestamp`` text it is compared with."""
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ServiceError(
            "invalid_field", "since must be an RFC 3339 time, e.g. 2026-12-04T09:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _int(value: str, name: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:  # not "²
        raise ServiceError("invalid_field", f"{name} must be an integer from {low} to {high}")
    return int(value)


def _text(value: str | None, name: str) -> str | None:
    if value is not None and (not value or len(value) > 256 or not value.isprintable()):
        raise ServiceError("invalid_field", f"{name} must be 1-256 printable characters")
    return value


async def _signed_head(audit: AuditLog) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(audit.checkpoint(), 10.0)
    except TimeoutError:
        raise ServiceError(
            "audit_unavailable", "the audit log cannot be written now; try again", 503
        ) from None


def _audit(request: web.Request) -> AuditLog:
    audit = request.app[AUDIT]
    if not audit.enabled:
        raise ServiceError("audit_off", "this server keeps no audit log (audit.enabled = false)", 404)
    return audit


async def list_entries(request: web.Request) -> web.Response:
    audit = _audit(request)
    q = request.query
    allowed = {"room", "actor", "action", "since", "after", "limit"}
    unknown = sorted(set(q) - allowed)
    if unknown:
        raise ServiceError(
            "invalid_field", f"unknown parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    query = Query(
        room=_text(q.get("room"), "room"),
        actor=_text(q.get("actor"), "actor"),
        action=_text(q.get("action"), "action"),
        since=_since(q["since"]) if "since" in q else None,
        after=_int(q["after"], "after", 0, 2**53) if "after" in q else None,
        limit=_int(q.get("limit", "100"), "limit", 1, MAX_LIMIT),
    )
    await audit.flush()
    entries = await search(audit.lines(), query)
    return web.json_response({"entries": entries})


async def get_head(request: web.Request) -> web.Response:
    """The chain signed up to now, and the public keys that verify it."""
    audit = _audit(request)
    head = await _signed_head(audit)
    return web.json_response({"head": head, "public_keys": audit.public_keys})


def _sequence(line: bytes) -> object:
    """An entry's sequence number; ``None`` for a damaged line (exported as stored: ``audit
    verify`` names it)."""
    try:
        entry = json.loads(line)
        return (
            entry["event"]["sequence"]
            if isinstance(entry, dict) and isinstance(entry.get("event"), dict)
            else None
        )
    except ValueError:
        return None


async def export(request: web.Request) -> web.StreamResponse:
    """Every entry as stored, one per line, oldest first; signed up to the end: the last line is
    the signed head (``{"audit_head": ...}``), so a cut-off copy does not verify."""
    audit = _audit(request)
    head = await _signed_head(audit)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    buffer: list[bytes] = []
    async for line in audit.lines():
        buffer.append(line + b"\n")
        if len(buffer) >= 500:
            await response.write(b"".join(buffer))
            buffer.clear()
        if _sequence(line) == head["event"]["sequence"]:
            break  # what was written after the head is signed in the next export
    buffer.append(
        json.dumps({"audit_head": head, "public_keys": audit.public_keys}, sort_keys=True).encode() + b"\n"
    )
    await response.write(b"".join(buffer))
    await response.write_eof()
    return response
