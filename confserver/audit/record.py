"""What one audit entry says, in Elastic Common Schema field names, so that a SIEM takes the
lines as they are: ``@timestamp``, ``event.action`` (``<target>.<verb>``), ``event.outcome``,
``event.reason``, ``user.*`` (who acted), ``user.target.*`` (whom it was done to), ``client.ip``,
``service.node.name``. Fields of our own are under ``conf.*`` (the room, a token's id, a key's id).

Only names and ids go in: never a token, a secret or a password. Every value is text the server
has already checked or made itself."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Final, Literal

Outcome = Literal["success", "failure"]

ACTIONS: Final = (
    "participant.join",
    "participant.leave",
    "participant.kick",
    "participant.mute",
    "participant.knock",
    "participant.admit",
    "participant.deny",
    "user.sign_in",
    "room.create",
    "room.update",
    "room.lock",
    "room.unlock",
    "room.end",
    "room.delete",
    "token.create",
    "token.revoke",
    "api_key.create",
    "api_key.revoke",
    "node.drain",
    "node.undrain",
    "audit.start",
    "audit.checkpoint",
    "audit.retention",
    "audit.gap",
)
"""Every ``event.action`` the server writes (docs/AUDIT.md)."""


@dataclass(frozen=True)
class Actor:
    """Who did it: an admin API key (``kind="api_key"``: its id and name, and the admin token's
    subject), a participant (its identity and display name), or the server itself."""

    kind: Literal["api_key", "participant", "server", "unknown"]
    id: str = ""
    name: str = ""
    subject: str = ""
    """The admin token's ``sub`` (the person or system that asked for the token)."""

    def ecs(self) -> dict[str, Any]:
        user: dict[str, Any] = {"roles": [self.kind]}
        if self.id:
            user["id"] = self.id
        if self.name:
            user["name"] = self.name
        if self.subject:
            user["full_name"] = self.subject
        return user


SERVER: Final = Actor("server", name="confserver")
UNKNOWN: Final = Actor("unknown")
"""A caller whose credentials did not verify."""


def timestamp(now: float) -> str:
    """RFC 3339 in UTC with milliseconds, as ECS's ``@timestamp``."""
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def entry(
    action: str,
    *,
    now: float,
    node: str,
    actor: Actor,
    outcome: Outcome = "success",
    reason: str = "",
    room: str = "",
    target: str = "",
    target_name: str = "",
    client_ip: str = "",
    conf: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One entry before it is sealed into the chain."""
    event: dict[str, Any] = {"kind": "event", "action": action, "outcome": outcome}
    if reason:
        event["reason"] = reason
    user = actor.ecs()
    if target:
        user["target"] = {"id": target, **({"name": target_name} if target_name else {})}
    out: dict[str, Any] = {
        "@timestamp": timestamp(now),
        "event": event,
        "user": user,
        "service": {"name": "confserver", "node": {"name": node}},
    }
    fields = dict(conf or {})
    if room:
        fields["room"] = room
    if fields:
        out["conf"] = fields
    if client_ip:
        out["client"] = {"ip": client_ip}
    return out
