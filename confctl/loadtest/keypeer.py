"""A participant of an E2EE room without media: it joins through ``/ws``, takes part in the key
exchange (``confctl.loadtest.keyexchange``) and counts every signaling message and byte it sends
and receives. What the key-rotation benchmark (bench/e2ee_rotation.py) and the E2EE tests run
by the hundred."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp

from confctl.loadtest.keyexchange import KeyExchange
from confctl.loadtest.signaling import MAX_FRAME

JOIN_TIMEOUT = 20.0


class JoinRefused(Exception):
    """The server answered ``join`` with something other than ``joined``."""


class KeyPeer:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        room: str,
        token: str,
        identity: str,
        *,
        tls: ssl.SSLContext | None = None,
        exchange_keys: bool = True,
    ) -> None:
        self._session = session
        self._url = url
        self._room = room
        self._token = token
        self.identity = identity
        self._tls = tls
        self._exchange = exchange_keys
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self.sid = ""
        self.joined: dict[str, Any] = {}
        self.keys: KeyExchange | None = None
        self.sent: Counter[str] = Counter()  # "messages", "bytes", and messages by type
        self.received: Counter[str] = Counter()
        self.inbox: list[dict[str, Any]] = []  # every message after joined
        self.key_outbox: list[dict[str, Any]] = []  # every e2ee_keys message sent
        self.last_received_at = 0.0
        self.ended: str | None = None  # "kicked", "closed" (not by us)

    async def join(self) -> None:
        self._ws = await self._session.ws_connect(
            self._url, ssl=self._tls if self._tls is not None else True, max_msg_size=MAX_FRAME
        )
        await self.send({"type": "join", "v": 1, "token": self._token, "room": self._room})
        first = await self._ws.receive(timeout=JOIN_TIMEOUT)
        if first.type != aiohttp.WSMsgType.TEXT:
            raise JoinRefused(f"connection ended: {first.type.name}")
        msg = self._count_in(first.data)
        if msg.get("type") != "joined":
            raise JoinRefused(f"{msg.get('type')}: {msg.get('code', '')} {msg.get('message', '')}")
        self.joined = msg
        self.sid = str(msg["sid"])
        if self._exchange:
            self.keys = KeyExchange(self.sid, self.identity, self.send)
            await self.keys.start(msg)
        self._reader = asyncio.create_task(self._read(), name=f"keypeer-{self.identity}")

    async def send(self, message: Mapping[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return
        text = json.dumps(message)
        self.sent["messages"] += 1
        self.sent["bytes"] += len(text.encode())
        self.sent[str(message.get("type"))] += 1
        if message.get("type") == "e2ee_keys":
            self.key_outbox.append(dict(message))
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            await ws.send_str(text)

    def _count_in(self, text: str) -> dict[str, Any]:
        self.received["messages"] += 1
        self.received["bytes"] += len(text.encode())
        self.last_received_at = time.monotonic()
        msg = json.loads(text)
        if not isinstance(msg, dict):
            return {}
        self.received[str(msg.get("type"))] += 1
        return msg

    async def _read(self) -> None:
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):  # the connection ended
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                msg = self._count_in(frame.data)
                self.inbox.append(msg)
                if msg.get("type") == "kicked":
                    self.ended = "kicked"
                if self.keys is not None:
                    await self.keys.handle(msg)
        if self.ended is None:
            self.ended = "closed"
        if self.keys is not None:
            self.keys.close()  # the state stays readable

    async def leave(self) -> None:
        await self.send({"type": "leave"})
        await self.close()

    async def close(self) -> None:
        if self.keys is not None:
            self.keys.close()
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def holds(self, sender: str, kid: int | None = None) -> float | None:
        """When this peer first held ``sender``'s key ``kid`` (any key when None), or None."""
        if self.keys is None:
            return None
        times = [at for (s, k), at in self.keys.held.items() if s == sender and (kid is None or k == kid)]
        return min(times, default=None)

    def fresh_key_after(self, since: float) -> int | None:
        """The KID of the first fresh key (rotation) this peer made at or after ``since``."""
        if self.keys is None:
            return None
        return next((kid for at, kind, kid in self.keys.made if kind == "rotation" and at >= since), None)

    def rotations_after(self, since: float) -> int:
        if self.keys is None:
            return 0
        return sum(1 for at, kind, _kid in self.keys.made if kind == "rotation" and at >= since)
