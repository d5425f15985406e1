"""The one interface between signaling and media. confserver never imports aiortc; the SFU
package provides an implementation of ``MediaController`` and the app factory takes it. The
messages and the error that cross it are in ``confserver.contract``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .contract import MediaMessage, ServiceError

SendFn = Callable[[Mapping[str, Any]], None]
"""Queues a server message to one participant (non-blocking)."""


class MediaController(Protocol):
    async def participant_joined(
        self, room: str, sid: str, permissions: frozenset[str], send: SendFn, identity: str = ""
    ) -> None:
        """A participant is in the room; ``send`` reaches its signaling connection."""

    async def handle(self, room: str, sid: str, message: MediaMessage) -> None:
        """A media message from the participant, checked already (``contract.parse_media``);
        raises ``ServiceError`` to refuse it."""

    async def set_muted(self, room: str, sid: str, kind: str, muted: bool) -> None:
        """Stop (or resume) forwarding the participant's audio or video."""

    async def participant_left(self, room: str, sid: str) -> None: ...

    def ice_servers(self, identity: str, *, not_after: float | None = None) -> list[dict[str, Any]]:
        """ICE servers for this participant's peer connections (TURN credentials included, valid
        until ``not_after`` at the latest: the join token's own expiry)."""

    async def close(self) -> None: ...


class NoMediaController:
    """Signaling without media: every media message is refused with ``media_unavailable``."""

    async def participant_joined(
        self, room: str, sid: str, permissions: frozenset[str], send: SendFn, identity: str = ""
    ) -> None:
        return None

    async def handle(self, room: str, sid: str, message: MediaMessage) -> None:
        raise ServiceError("media_unavailable", "this server has no media service configured")

    async def set_muted(self, room: str, sid: str, kind: str, muted: bool) -> None:
        return None

    async def participant_left(self, room: str, sid: str) -> None:
        return None

    def ice_servers(self, identity: str, *, not_after: float | None = None) -> list[dict[str, Any]]:
        return []

    async def close(self) -> None:
        return None
