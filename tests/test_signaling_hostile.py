"""Hostile signaling input: one participant must never stop a meeting, hold a seat or keep a
connection that cannot work. Every test runs the real app over real WebSockets."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from confserver.app import create_app
from confserver.contract import MediaMessage
from confserver.media import SendFn
from confserver.metrics import Metrics
from confserver.signaling.websocket import SIGNALING
from confserver.store import MemoryStore
from tests.conftest import CREDS, AppMaker, Ws, app_of, base_config, connect, create_room, join, join_token


async def _chat_reaches(sender: Ws, receiver: Ws, text: str) -> None:
    await sender.send({"type": "chat", "text": text})
    await receiver.expect("chat", text=text)


async def _raw(ws: Ws, text: str) -> dict[str, Any]:
    await ws.ws.send_str(text)
    return await ws.recv()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "chat", "text": "hello \ud800 world"},
        {"type": "chat", "text": "\udfff"},
        {"type": "update", "name": "Ana \udc00"},
        {"type": "chat", "text": "hi", "to": "\ud83d"},
    ],
)
async def test_a_lone_surrogate_is_refused_and_the_room_keeps_talking(
    make_client: AppMaker, frame: dict[str, Any]
) -> None:
    client = await make_client()
    await create_room(client, "r1")
    ana, _ = await join(client, "r1", "ana", permissions=["chat", "update_name", "subscribe"])
    budi, _ = await join(client, "r1", "budi")
    await ana.send(frame)  # json.dumps writes the surrogate as the escape \\udXXX
    err = await ana.expect("error")
    assert err["code"] == "bad_field"
    assert "surrogate" in err["message"]
    await _chat_reaches(ana, budi, "still here")
    await _chat_reaches(budi, ana, "and back")


@pytest.mark.parametrize(
    "name", ["Ana\u202eevil", "Ana\u2066x", "A\x85na", "A\x9bna", "A\x07na", "   ", "x" * 65]
)
async def test_update_name_follows_the_token_rule(make_client: AppMaker, name: str) -> None:
    client = await make_client()
    await create_room(client, "r1")
    ana, _ = await join(client, "r1", "ana", permissions=["chat", "update_name"])
    await ana.send({"type": "update", "name": name})
    err = await ana.expect("error")
    assert err["code"] == "bad_field"
    await ana.send({"type": "update", "name": "Ana Putri"})
    updated = await ana.expect("participant_updated")
    assert updated["participant"]["name"] == "Ana Putri"


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"ping","t":' + "9" * 400 + "}",
        '{"type":"ping","t":NaN}',
        '{"type":"ping","t":Infinity}',
        '{"type":"ping","t":-Infinity}',
        '{"type":"ping","t":1e400}',
        '{"type":"ping","t":' + "1" * 5000 + "}",
    ],
)
async def test_bad_numbers_get_an_error_and_the_connection_goes_on(make_client: AppMaker, text: str) -> None:
    client = await make_client()
    ws = await connect(client)
    err = await _raw(ws, text)
    assert err["type"] == "error"
    assert err["code"] in ("bad_field", "bad_json")
    pong = await _raw(ws, '{"type":"ping","t":12.5}')
    assert pong == {"type": "pong", "t": 12.5}


async def test_deep_nesting_is_bad_json_and_the_connection_goes_on(make_client: AppMaker) -> None:
    client = await make_client()
    ws = await connect(client)
    for depth in (17, 900, 6000):
        err = await _raw(ws, '{"type":"ping","x":' + "[" * depth + "]" * depth + "}")
        assert err["code"] == "bad_json", depth
    pong = await _raw(ws, '{"type":"ping"}')
    assert pong["type"] == "pong"


async def test_binary_frames_are_refused_without_closing(make_client: AppMaker) -> None:
    client = await make_client()
    ws = await connect(client)
    await ws.ws.send_bytes(b"\xff\xfe{}")
    err = await ws.recv()
    assert err["code"] == "bad_message"
    pong = await _raw(ws, '{"type":"ping"}')
    assert pong["type"] == "pong"


async def test_a_viewer_cannot_join_showing_itself_unmuted(make_client: AppMaker) -> None:
    client = await make_client()
    await create_room(client, "r1")
    ws = await connect(client)
    token = join_token("r1", "viewer", role="viewer")
    await ws.send(
        {"type": "join", "token": token, "room": "r1", "state": {"audio_muted": False, "video_muted": False}}
    )
    joined = await ws.expect("joined")
    assert joined["self"]["state"]["audio_muted"] is True
    assert joined["self"]["state"]["video_muted"] is True
    _other, seen = await join(client, "r1", "ana")
    viewer = next(p for p in seen["participants"] if p["identity"] == "viewer")
    assert viewer["state"]["audio_muted"] is True


async def test_a_participant_with_permissions_joins_unmuted_when_it_asks(make_client: AppMaker) -> None:
    client = await make_client()
    await create_room(client, "r1")
    ws = await connect(client)
    await ws.send(
        {
            "type": "join",
            "token": join_token("r1", "ana"),
            "room": "r1",
            "state": {"audio_muted": False, "video_muted": True},
        }
    )
    joined = await ws.expect("joined")
    assert joined["self"]["state"]["audio_muted"] is False
    assert joined["self"]["state"]["video_muted"] is True


async def test_a_writer_that_dies_closes_its_connection_and_frees_the_seat(make_client: AppMaker) -> None:
    """Whatever kills a writer (here a message that cannot be encoded as UTF-8, put into the room
    past the edge checks), the connection closes and its seat is freed; nothing stays silent."""
    client = await make_client()
    await create_room(client, "r1", max_participants=2)
    ana, _ = await join(client, "r1", "ana")
    budi, _ = await join(client, "r1", "budi")
    rooms = app_of(client)[SIGNALING].rooms
    rooms.hub.broadcast("r1", {"type": "chat", "text": "\ud800"})
    assert await ana.closed() == 1011
    assert await budi.closed() == 1011
    for _ in range(50):
        if await rooms.admin.count("r1") == 0:
            break
        await asyncio.sleep(0.05)
    assert await rooms.admin.count("r1") == 0
    cara, _ = await join(client, "r1", "cara")  # the seats are free again
    dodi, _ = await join(client, "r1", "dodi")
    await _chat_reaches(cara, dodi, "the room works")


def _tight(**signaling: Any) -> Any:
    base = base_config()
    return replace(base, signaling=replace(base.signaling, **signaling))


async def test_connections_that_never_join_are_capped_per_address(make_client: AppMaker) -> None:
    client = await make_client(_tight(max_unjoined=50, max_unjoined_per_address=3))
    await create_room(client, "r1")
    idle = [await connect(client) for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await connect(client)
    assert refused.value.status == 503
    resp = await client.get("/ws")
    assert resp.status == 503
    assert (await resp.json())["error"] == "too_many_connections"
    # joining gives the place back: a new connection may open
    await idle[0].send({"type": "join", "token": join_token("r1", "ana"), "room": "r1"})
    await idle[0].expect("joined")
    extra = await connect(client)
    pong = await _raw(extra, '{"type":"ping"}')
    assert pong["type"] == "pong"
    # closing one that never joined gives its place back too
    await idle[1].close()
    for _ in range(50):
        if app_of(client)[SIGNALING].unjoined.count == 2:
            break
        await asyncio.sleep(0.02)
    assert app_of(client)[SIGNALING].unjoined.count == 2
    await connect(client)


async def test_connections_that_never_join_are_capped_in_total(make_client: AppMaker) -> None:
    client = await make_client(_tight(max_unjoined=4, max_unjoined_per_address=4))
    for _ in range(4):
        await connect(client)
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await connect(client)


class _FrozenMedia:
    """A media service whose calls never return: the signaling side must not wait for it."""

    def __init__(self, *, freeze_leave: bool) -> None:
        self._freeze_leave = freeze_leave
        self.left: list[str] = []

    async def participant_joined(
        self, room: str, sid: str, permissions: frozenset[str], send: SendFn, identity: str = ""
    ) -> None:
        return None

    async def handle(self, room: str, sid: str, message: MediaMessage) -> None:
        await asyncio.Event().wait()

    async def set_muted(self, room: str, sid: str, kind: str, muted: bool) -> None:
        return None

    async def participant_left(self, room: str, sid: str) -> None:
        if self._freeze_leave:
            await asyncio.Event().wait()
        self.left.append(sid)

    def ice_servers(self, identity: str, *, not_after: float | None = None) -> list[dict[str, Any]]:
        return []

    async def close(self) -> None:
        return None


async def _frozen_client(aiohttp_client: Any, media: _FrozenMedia) -> Any:
    cfg = base_config()
    metrics = Metrics.create(process=False)
    app = create_app(cfg, store=MemoryStore(), credentials=CREDS, metrics=metrics, media=media)
    app[SIGNALING].media_timeout = 0.5
    return await aiohttp_client(app, connector=aiohttp.TCPConnector(limit=0))


async def test_a_media_call_that_never_returns_closes_that_connection_only(aiohttp_client: Any) -> None:
    client = await _frozen_client(aiohttp_client, _FrozenMedia(freeze_leave=False))
    await create_room(client, "r1", max_participants=2)
    ana, _ = await join(client, "r1", "ana")
    budi, _ = await join(client, "r1", "budi")
    await ana.send({"type": "publish_offer", "sdp": "v=0\r\n", "tracks": []})
    err = await ana.expect("error", timeout=3.0)
    assert err["code"] == "media_timeout"
    assert await ana.closed(timeout=3.0) == 4012
    left = await budi.expect("participant_left", identity="ana")
    assert left["reason"] == "media_timeout"
    cara, _ = await join(client, "r1", "cara")  # ana's seat is free: a 2-seat room takes cara
    await _chat_reaches(budi, cara, "meeting goes on")


async def test_a_client_that_leaves_during_a_frozen_media_call_frees_its_seat(aiohttp_client: Any) -> None:
    """The media service freezes on the offer and again on cleanup (as a stuck peer connection
    does); the client gives up and disconnects. Its seat must still be freed and the room told."""
    client = await _frozen_client(aiohttp_client, _FrozenMedia(freeze_leave=True))
    await create_room(client, "r1", max_participants=2)
    ana = Ws(await client.ws_connect("/ws", timeout=aiohttp.ClientWSTimeout(ws_close=0.3)))
    await ana.send({"type": "join", "token": join_token("r1", "ana"), "room": "r1"})
    await ana.expect("joined")
    budi, _ = await join(client, "r1", "budi")
    await ana.send({"type": "publish_offer", "sdp": "v=0\r\n", "tracks": []})
    await ana.close()
    await budi.expect("participant_left", identity="ana", timeout=5.0)
    cara, _ = await join(client, "r1", "cara")
    await _chat_reaches(budi, cara, "seat was freed")
