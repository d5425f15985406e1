"""A session relayed to the node that serves its room.

Any node accepts any WebSocket. When the first frame is a ``join`` whose token verifies and whose
room another node serves, this node opens a WebSocket to that node's ``/cluster/v1/ws`` (signed
with the cluster secret, naming the client's address), sends the join, and from then on copies
frames both ways: the client's through the owner's own checks, the owner's answers through this
connection's bounded queue. The owner's close code reaches the client unchanged; a relay that
breaks (the owner died) closes the client with 1013 so that it reconnects and lands on a live node.
Media never comes here: the owner's ICE candidates point the client straight at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import aiohttp

from ..signaling import messages as m
from ..signaling.messages import CloseCode
from ..tokens import TokenError, TokenVerifier
from .node import CALL_TIMEOUT, Cluster, try_again

if TYPE_CHECKING:
    from ..signaling.websocket import WsPeer

log = logging.getLogger("confserver.cluster")

RELAY_PATH = "/cluster/v1/ws"
OWNER_MAX_FRAME = 16 * 1024 * 1024
"""The largest frame taken from the owner: server messages (an offer for a full room) exceed the
cap on client frames, and a direct client would get them whole."""


def room_of_join(data: str, verifier: TokenVerifier, max_bytes: int) -> str | None:
    """The room a first frame asks to join, when it is a join with a token that verifies here;
    ``None`` otherwise (this node answers it itself: errors are the same everywhere)."""
    try:
        msg = m.parse_client_message(data, max_bytes=max_bytes)
    except m.ProtocolError:
        return None
    if not isinstance(msg, m.Join):
        return None
    try:
        return verifier.verify_join(msg.token, room=msg.room, now=time.time()).room
    except TokenError:
        return None


class Upstream:
    """This node's WebSocket to the owner, for one client."""

    def __init__(self, cluster: Cluster, ws: aiohttp.ClientWebSocketResponse, send_timeout: float) -> None:
        self._cluster = cluster
        self._ws = ws
        self._send_timeout = send_timeout
        self._pump: asyncio.Task[None] | None = None
        cluster.relayed += 1
        self._counted = True

    @classmethod
    async def open(
        cls,
        cluster: Cluster,
        room: str,
        client_ip: str,
        *,
        heartbeat: float,
        send_timeout: float,
    ) -> Upstream | None:
        """``None`` when this node serves ``room``; raises ``ServiceError`` (``try_again``)."""
        target = await cluster.route(room)
        if target is None:
            return None
        try:
            connect = cluster.http.ws_connect(
                target.url + RELAY_PATH,
                headers=cluster.signed("GET", RELAY_PATH, client_ip),
                ssl=cluster.ssl_for(target),
                heartbeat=heartbeat,
                max_msg_size=OWNER_MAX_FRAME,  # the owner is trusted; it sends what a client gets
                timeout=aiohttp.ClientWSTimeout(ws_close=send_timeout),
                autoping=True,
            )
            ws = await asyncio.wait_for(connect, CALL_TIMEOUT)  # an owner that accepts, then stalls
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            cluster.metrics_relay_failure("connect")
            log.warning("could not reach the node serving a room", extra={"node": target.id, "error": str(e)})
            raise try_again("the server holding this meeting did not answer; reconnecting") from None
        return cls(cluster, ws, send_timeout)

    async def send(self, text: str) -> None:
        """Pass a client frame on (within the send deadline)."""
        try:
            await asyncio.wait_for(self._ws.send_str(text), self._send_timeout)
        except (ConnectionError, RuntimeError, TimeoutError, aiohttp.ClientError):
            await self._ws.close(code=CloseCode.TRY_AGAIN)

    def start(self, peer: WsPeer) -> None:
        self._pump = asyncio.create_task(self._downstream(peer), name=f"relay-{peer.sid}")

    async def _downstream(self, peer: WsPeer) -> None:
        """The owner's frames to the client, then its close code (1013 when the relay broke)."""
        code: int = CloseCode.TRY_AGAIN
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    peer.send_text(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    break
            close = self._ws.close_code
            if close is not None and close not in (1005, 1006):
                code = close
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            pass
        if code == CloseCode.TRY_AGAIN:
            self._cluster.metrics_relay_failure("lost")
        peer.close(code, "relayed_" + str(code))

    async def close(self) -> None:
        """The client is gone (or the session over): end the owner's side too."""
        if self._counted:
            self._counted = False
            self._cluster.relayed -= 1
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), CALL_TIMEOUT)
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
