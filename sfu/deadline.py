"""Deadlines around every await on the WebRTC stack.

A call into aiortc can wait forever on a malformed or hostile description (see docs/SFU.md,
"Hostile input"). Every such await in the forwarding unit goes through ``within``, which turns a
missed deadline into ``ServiceError("media_timeout")``; the controller then closes that
participant's media connections. Closing a connection goes through ``close_connection``, which
gives up after ``Deadlines.close`` and releases the connection's sockets itself, so a
participant's departure and the server's shutdown never wait on a stuck connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from aiortc import RTCPeerConnection

from confserver.errors import ServiceError
from sfu.glue.gathering import release_sockets

log = logging.getLogger("sfu.deadline")

T = TypeVar("T")

MEDIA_TIMEOUT = 10.0
"""Seconds one negotiation step (applying a description, creating one, adding a candidate) may take."""
CLOSE_TIMEOUT = 5.0
"""Seconds closing one connection may take before its sockets are released without it."""


@dataclass(frozen=True)
class Deadlines:
    media: float = MEDIA_TIMEOUT
    close: float = CLOSE_TIMEOUT


def timed_out(what: str, seconds: float) -> ServiceError:
    return ServiceError(
        "media_timeout", f"{what} took longer than {seconds:g} s; this participant's media was closed"
    )


async def within(seconds: float, awaitable: Awaitable[T], what: str) -> T:
    """``await awaitable``, or raise ``media_timeout`` after ``seconds`` (it is cancelled)."""
    timeout = asyncio.timeout(seconds)
    try:
        async with timeout:
            return await awaitable
    except TimeoutError:
        if timeout.expired():
            raise timed_out(what, seconds) from None
        raise


async def close_connection(pc: RTCPeerConnection, seconds: float) -> bool:
    """Close ``pc`` within ``seconds``; past that, release its sockets and return False."""
    try:
        await within(seconds, pc.close(), "closing a connection")
        return True
    except ServiceError:
        log.warning("a media connection did not close within %g s; its sockets were released", seconds)
    except Exception:
        log.exception("closing a media connection failed; its sockets were released")
    release_sockets(pc)
    return False
