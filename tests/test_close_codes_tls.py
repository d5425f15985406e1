"""Close codes survive TLS: a real `confserver` process over TLS closes a refused join with 4000 and
an idle WebSocket with 4010, every time, after the ``error`` message that explains it.

The server ends the WebSocket with the closing handshake (its Close frame, the client's answer,
then the TLS shutdown). Shutting the connection right after its own Close frame left the client no
connection to answer on: aiohttp's client then reports 1006 (abnormal closure) instead of the
code it was sent, in most of a batch of such connections."""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from confserver.signaling.messages import CloseCode

from .conftest import free_port
from .test_e2e_server import Server, start_server

TRIES = 30
ROUNDS = 2
JOIN_TIMEOUT = 1.0


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(
        tmp_path,
        free_port(),
        free_port(),
        extra_env={
            "CONF_SFU_ENABLED": "false",
            "CONF_LOG_LEVEL": "warning",
            "CONF_SIGNALING_JOIN_TIMEOUT": str(JOIN_TIMEOUT),
        },
    )
    assert srv.url.startswith("https://")
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()


async def _ending(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[str], int | None]:
    """The error codes received until the server closed, and the close code it closed with."""
    errors: list[str] = []
    async with asyncio.timeout(JOIN_TIMEOUT + 10):
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                body = msg.json()
                if body.get("type") == "error":
                    errors.append(str(body.get("code")))
    return errors, ws.close_code


async def test_refused_joins_and_idle_sockets_keep_their_close_codes_over_tls(tls_server: Server) -> None:
    ctx = ssl.create_default_context(cafile=str(tls_server.cacert))
    url = f"{tls_server.url}/ws"
    connector = aiohttp.TCPConnector(ssl=ctx, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def refused() -> tuple[list[str], int | None]:
            ws = await session.ws_connect(url)
            await ws.send_json({"type": "join", "token": "not-a-token", "room": "r1"})
            return await _ending(ws)

        async def idle() -> tuple[list[str], int | None]:
            return await _ending(await session.ws_connect(url))

        refused_codes: Counter[int | None] = Counter()
        idle_codes: Counter[int | None] = Counter()
        for _ in range(ROUNDS):
            ended = await asyncio.gather(*(refused() for _ in range(TRIES)))
            assert all(errors for errors, _ in ended), ended  # the reason came before the close
            refused_codes.update(code for _, code in ended)
            ended = await asyncio.gather(*(idle() for _ in range(TRIES)))
            assert all(errors == ["join_timeout"] for errors, _ in ended), ended
            idle_codes.update(code for _, code in ended)

    assert refused_codes == {CloseCode.JOIN_REFUSED: ROUNDS * TRIES}
    assert idle_codes == {CloseCode.JOIN_TIMEOUT: ROUNDS * TRIES}
