"""The signaling client of one synthetic participant: ``/ws`` as docs/PROTOCOL.md describes it.

TLS is verified as ``confctl`` verifies the admin API: the system trust store plus the CA file
of the settings (the development CA). Server pings are answered by aiohttp.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

MAX_FRAME = 4 * 1024 * 1024


def ws_url(base_url: str) -> str:
    """``https://host:port`` -> ``wss://host:port/ws`` (``http`` -> ``ws``)."""
    parts = urllib.parse.urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


def tls_context(cafile: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cafile:
        context.load_verify_locations(cafile=os.path.expanduser(cafile))
    return context


class SignalingError(Exception):
    """The connection failed or closed; the message is one line."""


class Signaling:
    def __init__(self, session: aiohttp.ClientSession, url: str, context: ssl.SSLContext | None) -> None:
        self._session = session
        self._url = url
        self._context = context
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self) -> None:
        try:
            self._ws = await self._session.ws_connect(
                self._url,
                ssl=self._context if self._context is not None else self._url.startswith("wss:"),
                max_msg_size=MAX_FRAME,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SignalingError(f"cannot open {self._url}: {exc or type(exc).__name__}") from None

    async def send(self, message: Mapping[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise SignalingError("the signaling connection is closed")
        try:
            await ws.send_str(json.dumps(message))
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise SignalingError(f"send failed: {exc}") from None

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Server messages until the connection closes."""
        ws = self._ws
        if ws is None:
            return
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                message = json.loads(frame.data)
            except ValueError:
                continue
            if isinstance(message, dict) and isinstance(message.get("type"), str):
                yield message

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code if self._ws is not None else None

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            await ws.close()
