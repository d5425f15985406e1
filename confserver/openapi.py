"""The OpenAPI 3.1 description of the admin API, served at /api/v1/openapi.json.
Tests check it against the routes the app really has and against what the handlers accept.

JSON has one number type, so ``integer`` fields accept ``20.0`` as 20, as JSON Schema does; a field
that is sent must hold a value of its type (``null`` is refused like any other wrong type)."""

from __future__ import annotations

from typing import Any

from . import __version__
from .config import NODE_ID_PATTERN
from .openapischemas import IDENTITY_SCHEMA, PRINTABLE, schemas
from .tokens import MAX_JOIN_TTL

_ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "Invalid input",
        401: "Missing or invalid bearer token",
        403: "No admin grant, or the key lacks the operation's scope (insufficient_scope)",
        404: "Not found",
        409: "Conflict",
        413: "Body too large",
        415: "Body is not JSON",
        503: "Store unreachable",
    }
    return {str(s): _resp(words[s], _ERROR) for s in (401, 403, 503, *statuses)}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str, scope: str, responses: dict[str, Any], body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An operation; ``scope`` is what the caller's API key must hold (its security requirement)."""
    op: dict[str, Any] = {"summary": summary, "security": [{"adminBearer": [scope]}], "responses": responses}
    if body is not None:
        op["requestBody"] = _body(body)
    return op


def _query(name: str, description: str, fmt: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 256}
    if fmt:
        schema = {"type": "string", "format": fmt}
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
}
_IDENTITY = {"name": "identity", "in": "path", "required": True, "schema": IDENTITY_SCHEMA}
_JTI = {
    "name": "jti",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, **PRINTABLE},
}

_KEY_ID = {
    "name": "key_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, **PRINTABLE},
}
_NODE_ID = {
    "name": "node_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{NODE_ID_PATTERN}$"},
}


def openapi_document(*, token_max_ttl: int = MAX_JOIN_TTL) -> dict[str, Any]:
    """The document for a server whose join tokens live at most ``token_max_ttl`` seconds."""
    room_list = {
        "type": "object",
        "required": ["rooms"],
        "properties": {"rooms": {"type": "array", "items": _ref("Room")}},
    }
    people = {
        "type": "object",
        "required": ["participants"],
        "properties": {"participants": {"type": "array", "items": _ref("Participant")}},
    }
    node = {
        "type": "object",
        "required": ["id", "url", "state", "rooms", "participants", "load", "media", "seen_at"],
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "state": {"type": "string", "enum": ["active", "draining", "dead"]},
            "rooms": {"type": "integer"},
            "participants": {"type": "integer"},
            "load": {"type": "number"},
            "media": {"type": "string"},
            "seen_at": {"type": "integer"},
        },
    }
    nodes = {
        "type": "object",
        "required": ["self", "nodes"],
        "properties": {"self": {"type": "string"}, "nodes": {"type": "array", "items": node}},
    }
    drain = {
        "type": "object",
        "required": ["id", "draining"],
        "properties": {"id": {"type": "string"}, "draining": {"type": "boolean"}},
    }
    key_list = {
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": _ref("AdminKey")}},
    }
    lobby = {
        "type": "object",
        "required": ["waiting"],
        "properties": {
            "waiting": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["identity", "name", "since", "away"],
                    "properties": {
                        "identity": {"type": "string"},
                        "name": {"type": "string"},
                        "since": {"type": "integer", "description": "Unix milliseconds"},
                        "away": {"type": "boolean"},
                    },
                },
            }
        },
    }
    entries = {
        "type": "object",
        "required": ["entries"],
        "properties": {"entries": {"type": "array", "items": {"type": "object"}}},
    }
    head = {
        "type": "object",
        "required": ["head", "public_keys"],
        "properties": {
            "head": {"type": "object", "description": "The newest signed checkpoint entry"},
            "public_keys": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    paths: dict[str, Any] = {
        "/audit": {
            "parameters": [
                _query("room", "Entries about this room"),
                _query("actor", "Entries by this actor: an API key's id or name, a participant's identity"),
                _query("action", "An event.action, or its first part (room, participant, token, ...)"),
                _query("since", "Entries at or after this RFC 3339 time", fmt="date-time"),
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "Entries after this sequence number (paging forward)",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 2**53},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "At most this many entries (the newest, unless since or after is given)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
            ],
            "get": _op(
                "Search the audit log", "audit:read", {"200": _resp("Entries", entries), **_errors(400, 404)}
            ),
        },
        "/audit/head": {
            "get": _op(
                "Sign the audit chain's head now and return it, with the public keys",
                "audit:read",
                {"200": _resp("The signed head", head), **_errors(404)},
            ),
        },
        "/audit/export": {
            "get": _op(
                "Every audit entry as stored (JSON lines), ending with the signed head",
                "audit:read",
                {
                    "200": {
                        "description": "JSON lines; the last one is {audit_head, public_keys}",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    **_errors(404),
                },
            ),
        },
        "/rooms": {
            "get": _op("List rooms", "rooms:read", {"200": _resp("All rooms", room_list), **_errors()}),
            "post": _op(
                "Create a room",
                "rooms:write",
                {"201": _resp("Created", _ref("Room")), **_errors(400, 409, 413, 415)},
                _ref("RoomCreate"),
            ),
        },
        "/rooms/{name}": {
            "parameters": [_NAME],
            "get": _op(
                "Get a room", "rooms:read", {"200": _resp("The room", _ref("Room")), **_errors(400, 404)}
            ),
            "patch": _op(
                "Update a room",
                "rooms:write",
                {"200": _resp("Updated", _ref("Room")), **_errors(400, 404, 409, 413, 415)},
                _ref("RoomUpdate"),
            ),
            "delete": _op(
                "Delete a room; participants are told it closed",
                "rooms:write",
                {"204": _resp("Deleted"), **_errors(400, 404)},
            ),
        },
        "/rooms/{name}/participants": {
            "parameters": [_NAME],
            "get": _op(
                "List participants",
                "participants:read",
                {"200": _resp("Participants", people), **_errors(400, 404)},
            ),
        },
        "/rooms/{name}/participants/{identity}": {
            "parameters": [_NAME, _IDENTITY],
            "get": _op(
                "Get a participant",
                "participants:read",
                {"200": _resp("The participant", _ref("Participant")), **_errors(400, 404)},
            ),
            "delete": _op(
                "Remove (kick) a participant",
                "participants:moderate",
                {"204": _resp("Removed"), **_errors(400, 404)},
            ),
        },
        "/rooms/{name}/participants/{identity}/mute": {
            "parameters": [_NAME, _IDENTITY],
            "post": _op(
                "Mute a participant's audio or video",
                "participants:moderate",
                {"200": _resp("Muted", _ref("Participant")), **_errors(400, 404, 415)},
                _ref("Mute"),
            ),
        },
        "/rooms/{name}/lobby": {
            "parameters": [_NAME],
            "get": _op(
                "Who waits in the room's lobby on this node, oldest first",
                "participants:read",
                {"200": _resp("Waiting", lobby), **_errors(400, 404)},
            ),
        },
        "/rooms/{name}/lobby/{identity}/admit": {
            "parameters": [_NAME, _IDENTITY],
            "post": _op(
                "Let someone in from the lobby (room_full keeps them waiting)",
                "participants:moderate",
                {"204": _resp("Admitted"), **_errors(400, 404, 409)},
            ),
        },
        "/rooms/{name}/lobby/{identity}/deny": {
            "parameters": [_NAME, _IDENTITY],
            "post": _op(
                "Turn away someone waiting in the lobby",
                "participants:moderate",
                {"204": _resp("Denied"), **_errors(400, 404)},
            ),
        },
        "/tokens": {
            "post": _op(
                "Create a join token and link",
                "tokens:create",
                {"201": _resp("Token", _ref("Token")), **_errors(400, 404, 415)},
                _ref("TokenCreate"),
            ),
        },
        "/tokens/{jti}/revoke": {
            "parameters": [_JTI],
            "post": _op(
                "Revoke a token; sessions that joined with it are closed",
                "tokens:revoke",
                {"200": _resp("Revoked", _ref("Revoked")), **_errors(400)},
            ),
        },
        "/keys": {
            "get": _op(
                "List API keys (never their secrets)",
                "keys:admin",
                {"200": _resp("All keys, revoked ones too", key_list), **_errors()},
            ),
            "post": _op(
                "Create a named API key; its secret is in this answer only",
                "keys:admin",
                {"201": _resp("Created", _ref("AdminKeyCreated")), **_errors(400, 409, 413, 415)},
                _ref("AdminKeyCreate"),
            ),
        },
        "/keys/{key_id}": {
            "parameters": [_KEY_ID],
            "delete": _op(
                "Revoke an API key; its tokens are refused at once",
                "keys:admin",
                {"200": _resp("Revoked", _ref("AdminKey")), **_errors(404)},
            ),
        },
        "/nodes": {
            "get": _op(
                "List the nodes (live and recently dead)", "nodes:read", {"200": _resp("Nodes", nodes)}
            ),
        },
        "/nodes/{node_id}/drain": {
            "parameters": [_NODE_ID],
            "post": _op(
                "Drain a node: it takes no new rooms and reports not ready; its meetings go on",
                "nodes:admin",
                {"200": _resp("Draining", drain), **_errors(404)},
            ),
            "delete": _op(
                "Let a drained node take new rooms again",
                "nodes:admin",
                {"200": _resp("Serving", drain), **_errors(404)},
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "confserver admin API",
            "version": __version__,
            "description": "Rooms, participants, join tokens, admin API keys and the audit log. "
            "See docs/API.md.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"adminBearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas(token_max_ttl),
            "securitySchemes": {
                "adminBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 JWT signed with an API key's secret, kid = the key's id, "
                    "aud confserver-admin, admin: true. Each operation lists the scope the key "
                    "must hold; without it the answer is 403 insufficient_scope",
                },
            },
        },
    }
