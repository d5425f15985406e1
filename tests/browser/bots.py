"""Signaling-only participants (no browser) to fill a room quickly: they join over WebSocket, keep
their connection open and read what the server sends."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import aiohttp

from .conftest import Server


class Bots:
    """``count`` participants named bot-01, bot-02, … in ``room``, joined from a background thread."""

    def __init__(self, server: Server, room: str, count: int) -> None:
        self.server = server
        self.room = room
        self.count = count
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._session: aiohttp.ClientSession | None = None
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._readers: list[asyncio.Task[None]] = []

    def __enter__(self) -> Bots:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._join_all(), self._loop).result(30)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _join_all(self) -> None:
        self._session = aiohttp.ClientSession()
        await asyncio.gather(*(self._join(i) for i in range(1, self.count + 1)))

    async def _join(self, i: int) -> None:
        assert self._session is not None
        identity = f"bot-{i:02d}"
        ws = await self._session.ws_connect(self.server.url.replace("http", "ws") + "/ws")
        token = self.server.token(self.room, identity, name=f"Guest {i:02d}")
        await ws.send_str(
            json.dumps({"type": "join", "token": token, "room": self.room, "state": {"audio_muted": True}})
        )
        first = json.loads((await ws.receive(timeout=10)).data)
        if first.get("type") != "joined":
            raise AssertionError(f"{identity} was refused: {first}")
        self._sockets.append(ws)
        self._readers.append(asyncio.create_task(self._drain(ws)))

    @staticmethod
    async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for _msg in ws:
            pass

    async def _close(self) -> None:
        for ws in self._sockets:
            await ws.close()
        for task in self._readers:
            task.cancel()
        if self._session is not None:
            await self._session.close()
