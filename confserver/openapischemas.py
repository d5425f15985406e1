"""The admin API's data shapes: the ``components.schemas`` of its OpenAPI description
(``confserver.openapi`` holds the paths and operations that use them)."""

from __future__ import annotations

from typing import Any

from .access import MAX_ALLOW_ENTRIES, MAX_ALLOW_ENTRY_CHARS, MAX_PASSWORD_CHARS
from .adminkeys import MAX_KEY_NAME_CHARS, SCOPES
from .rooms import MAX_EMPTY_TIMEOUT, MAX_METADATA_BYTES
from .store import ROOM_CAP
from .text import MAX_DEPTH
from .tokens import MAX_JOIN_TTL, PERMISSIONS, ROLES

_NAMES = {
    "type": "array",
    "maxItems": MAX_ALLOW_ENTRIES,
    "items": {"type": "string", "minLength": 1, "maxLength": MAX_ALLOW_ENTRY_CHARS},
}
_ALLOW_LISTS = {"identities": _NAMES, "domains": _NAMES, "groups": _NAMES}
_ALLOW = {
    "type": "object",
    "additionalProperties": False,
    "description": "who may join by single sign-on (identities, e-mail domains, groups); who moderates",
    "properties": {
        **_ALLOW_LISTS,
        "moderators": {"type": "object", "additionalProperties": False, "properties": _ALLOW_LISTS},
    },
}
_PASSWORD = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_PASSWORD_CHARS,
    "description": "the room password; stored as a scrypt hash only",
}


_E2EE = {
    "type": "boolean",
    "description": "media encrypted end to end in the browsers; the default is rooms.e2ee_default",
}


PRINTABLE = {
    "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$",
    "description": "printable characters: no control, format, surrogate, private-use or unassigned "
    "characters, no separators other than the space",
}
IDENTITY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    **PRINTABLE,
    "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
}
_SCOPE = {"type": "string", "enum": list(SCOPES)}
_KEY_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "description": "the key id: the kid of the admin tokens it signs"},
    "name": {"type": "string"},
    "scopes": {"type": "array", "items": _SCOPE},
    "created_at": {"type": "integer", "description": "Unix seconds"},
    "revoked": {"type": "boolean"},
    "revoked_at": {"type": "integer", "description": "Unix seconds; present once revoked"},
}

_METADATA = {
    "type": "object",
    "description": f"any JSON object of at most {MAX_METADATA_BYTES} bytes as JSON; integers within "
    f"2^53 in magnitude, no lone surrogates in text, nesting at most {MAX_DEPTH} deep in the whole body",
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    },
    "Room": {
        "type": "object",
        "required": [
            "name",
            "max_participants",
            "empty_timeout",
            "metadata",
            "locked",
            "e2ee",
            "auto_created",
            "created_at",
            "updated_at",
            "num_participants",
        ],
        "properties": {
            "name": {"type": "string"},
            "max_participants": {"type": "integer", "minimum": 1, "maximum": ROOM_CAP},
            "empty_timeout": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_EMPTY_TIMEOUT,
                "description": "seconds; 0 = never",
            },
            "metadata": _METADATA,
            "locked": {"type": "boolean"},
            "lobby": {"type": "boolean"},
            "password_protected": {"type": "boolean", "description": "the password itself is never returned"},
            "allow": _ALLOW,
            "e2ee": _E2EE,
            "auto_created": {"type": "boolean"},
            "created_at": {"type": "integer", "description": "Unix seconds"},
            "updated_at": {"type": "integer"},
            "num_participants": {"type": "integer"},
        },
    },
    "RoomCreate": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            "max_participants": {"type": "integer", "minimum": 1, "maximum": ROOM_CAP},
            "empty_timeout": {"type": "integer", "minimum": 0, "maximum": MAX_EMPTY_TIMEOUT},
            "metadata": _METADATA,
            "lobby": {"type": "boolean"},
            "password": _PASSWORD,
            "allow": _ALLOW,
            "e2ee": _E2EE,
        },
    },
    "RoomUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_participants": {"type": "integer", "minimum": 1, "maximum": ROOM_CAP},
            "empty_timeout": {"type": "integer", "minimum": 0, "maximum": MAX_EMPTY_TIMEOUT},
            "metadata": _METADATA,
            "locked": {"type": "boolean"},
            "lobby": {"type": "boolean"},
            "password": {
                "anyOf": [_PASSWORD, {"const": ""}],
                "description": "a new password, or an empty string to remove it",
            },
            "allow": _ALLOW,
            "e2ee": {**_E2EE, "description": "changed only while the room is empty (else 409 room_in_use)"},
        },
    },
    "Participant": {
        "type": "object",
        "required": ["sid", "identity", "name", "role", "permissions", "joined_at", "state"],
        "properties": {
            "sid": {"type": "string"},
            "identity": {"type": "string"},
            "name": {"type": "string"},
            "role": {"type": "string", "enum": list(ROLES)},
            "permissions": {"type": "array", "items": {"type": "string"}},
            "joined_at": {"type": "integer"},
            "state": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
    },
    "Mute": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"kind": {"type": "string", "enum": ["audio", "video"]}, "muted": {"const": True}},
    },
    "TokenCreate": {
        "type": "object",
        "required": ["room", "identity"],
        "additionalProperties": False,
        "properties": {
            "room": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            "identity": IDENTITY_SCHEMA,
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "pattern": "\\S",
                "description": "display name: 1-64 characters after stripping surrounding whitespace; "
                "no control, surrogate or bidirectional-override characters",
            },
            "role": {"type": "string", "enum": list(ROLES)},
            "ttl": {"type": "integer", "minimum": 1, "maximum": MAX_JOIN_TTL, "description": "seconds"},
            "permissions": {
                "type": "array",
                "items": {
                    "type": "string",
                    "enum": list(PERMISSIONS),
                },
            },
        },
    },
    "Token": {
        "type": "object",
        "required": ["token", "jti", "expires_at", "join_url"],
        "properties": {
            "token": {"type": "string"},
            "jti": {"type": "string"},
            "expires_at": {"type": "integer"},
            "join_url": {"type": "string", "description": "https://HOST:PORT/r/ROOM#token=TOKEN"},
        },
    },
    "AdminKey": {
        "type": "object",
        "required": ["id", "name", "scopes", "created_at", "revoked"],
        "properties": _KEY_PROPERTIES,
    },
    "AdminKeyCreate": {
        "type": "object",
        "required": ["name", "scopes"],
        "additionalProperties": False,
        "properties": {
            "name": {
                **IDENTITY_SCHEMA,
                "maxLength": MAX_KEY_NAME_CHARS,
                "description": "who holds the key: a person or a system; printable, not blank",
            },
            "scopes": {"type": "array", "minItems": 1, "items": _SCOPE},
        },
    },
    "AdminKeyCreated": {
        "type": "object",
        "required": ["id", "name", "scopes", "created_at", "revoked", "secret"],
        "properties": {
            **_KEY_PROPERTIES,
            "secret": {"type": "string", "description": "the key's secret; shown this once, never again"},
        },
    },
    "Revoked": {
        "type": "object",
        "required": ["jti", "revoked_until", "sessions_closed"],
        "properties": {
            "jti": {"type": "string"},
            "revoked_until": {"type": "integer"},
            "sessions_closed": {"type": "integer"},
        },
    },
}


def schemas(token_max_ttl: int) -> dict[str, Any]:
    """``components.schemas`` for a server whose join tokens live at most ``token_max_ttl`` seconds."""
    create = _SCHEMAS["TokenCreate"]
    ttl = {**create["properties"]["ttl"], "maximum": token_max_ttl}
    return {**_SCHEMAS, "TokenCreate": {**create, "properties": {**create["properties"], "ttl": ttl}}}
