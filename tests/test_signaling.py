"""WebSocket signaling through a real aiohttp server on loopback: joins, presence, chat, moderation,
the exact seat cap, and every kind of bad input."""

from __future__ import annotations

import asyncio
import base64
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from confserver.config import RoomsConfig, SignalingConfig
from confserver.signaling.websocket import SIGNALING

from .conftest import AppMaker, Ws, app_of, base_config, connect, create_room, join, join_token


async def test_join_gets_room_info_and_the_others_see_presence(client: TestClient) -> None:
    await create_room(client, "r1", metadata={"topic": "budget"})
    ana, joined = await join(client, "r1", "ana", name="Ana Putri")
    assert joined["v"] == 1
    assert joined["room"] == {
        "name": "r1",
        "max_participants": 100,
        "metadata": {"topic": "budget"},
        "locked": False,
        "lobby": False,
        "password": False,
        "e2ee": False,
    }
    assert joined["self"]["identity"] == "ana" and joined["self"]["name"] == "Ana Putri"
    assert joined["participants"] == []

    bob, bob_joined = await join(client, "r1", "bob")
    assert [p["identity"] for p in bob_joined["participants"]] == ["ana"]
    seen = await ana.expect("participant_joined")
    assert seen["participant"]["identity"] == "bob" and seen["participant"]["sid"] == bob_joined["sid"]

    await bob.send({"type": "leave"})
    assert await bob.closed() == 1000
    left = await ana.expect("participant_left")
    assert left["identity"] == "bob" and left["sid"] == bob_joined["sid"]


async def test_chat_reaches_the_room_and_private_messages_only_their_target(client: TestClient) -> None:
    await create_room(client, "r1")
    ana, _ = await join(client, "r1", "ana")
    bob, _ = await join(client, "r1", "bob")
    cyd, _ = await join(client, "r1", "cyd")
    await ana.send({"type": "chat", "text": "hello all"})
    for ws in (ana, bob, cyd):
        msg = await ws.expect("chat")
        assert msg["text"] == "hello all" and msg["from"]["identity"] == "ana" and "to" not in msg

    await ana.send({"type": "chat", "text": "just you", "to": "bob"})
    private = await bob.expect("chat")
    assert private["text"] == "just you" and private["to"] == "bob"
    assert (await ana.expect("chat"))["text"] == "just you"  # the sender's copy
    await cyd.send({"type": "ping", "t": 1})
    await cyd.expect("pong")
    assert all(m.get("text") != "just you" for m in cyd.seen)


async def test_chat_limits_and_unknown_target(client: TestClient) -> None:
    await create_room(client, "r1")
    ana, _ = await join(client, "r1", "ana")
    await ana.send({"type": "chat", "text": "x" * 2001})
    assert (await ana.expect("error"))["code"] == "chat_too_long"
    await ana.send({"type": "chat", "text": "hi", "to": "nobody"})
    assert (await ana.expect("error"))["code"] == "participant_not_found"
    await ana.send({"type": "chat", "text": "   "})
    assert (await ana.expect("error"))["code"] == "bad_field"


async def test_101st_join_is_refused_with_room_full(client: TestClient) -> None:
    await create_room(client, "plenary")
    people = [await join(client, "plenary", f"p{i}") for i in range(100)]
    late = await connect(client)
    await late.send({"type": "join", "token": join_token("plenary", "p100"), "room": "plenary"})
    err = await late.expect("error")
    assert err["code"] == "room_full" and err["ref"] == "join"
    assert await late.closed() == 4000
    # someone leaves: a seat is free again
    await people[0][0].close()
    rooms = app_of(client)[SIGNALING].rooms.admin
    for _ in range(100):
        if await rooms.count("plenary") == 99:
            break
        await asyncio.sleep(0.02)
    _again, joined = await join(client, "plenary", "p100")
    assert joined["self"]["identity"] == "p100"


async def test_concurrent_joins_on_k_free_seats_admit_exactly_k(client: TestClient) -> None:
    await create_room(client, "small", max_participants=7)
    await join(client, "small", "early-1")
    await join(client, "small", "early-2")

    async def attempt(i: int) -> str:
        ws = await connect(client)
        await ws.send({"type": "join", "token": join_token("small", f"racer-{i}"), "room": "small"})
        msg = await ws.recv()
        return "joined" if msg["type"] == "joined" else msg["code"]

    results = await asyncio.gather(*(attempt(i) for i in range(30)))
    assert results.count("joined") == 5
    assert results.count("room_full") == 25


async def test_token_for_another_room_is_refused_with_wrong_room(client: TestClient) -> None:
    await create_room(client, "a")
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token("b", "ana"), "room": "a"})
    err = await ws.expect("error")
    assert (err["code"], err["reason"]) == ("token_rejected", "wrong_room")
    assert await ws.closed() == 4000


@pytest.mark.parametrize(
    ("token_kw", "reason"),
    [
        ({"now": time.time() - 3 * 3600, "ttl": 3600}, "expired"),
        ({"now": time.time() + 3600}, "not_yet_valid"),
    ],
)
async def test_expired_and_future_tokens_are_refused(
    client: TestClient, token_kw: dict[str, float], reason: str
) -> None:
    await create_room(client, "r1")
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token("r1", "ana", **token_kw), "room": "r1"})
    err = await ws.expect("error")
    assert (err["code"], err["reason"]) == ("token_rejected", reason)


async def test_tampered_and_garbage_tokens_are_refused(client: TestClient) -> None:
    await create_room(client, "r1")
    good = join_token("r1", "ana")
    head, body, sig = good.split(".")
    tampered = f"{head}.{body[:-2]}AA.{sig}"
    no_kid = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode() + ".e30.c2ln"
    alg_none = base64.urlsafe_b64encode(b'{"alg":"none","kid":"AKtestkey0000001"}').rstrip(b"=").decode()
    cases = [
        (tampered, "bad_signature"),
        ("garbage", "malformed"),
        (no_kid, "unknown_key"),
        (f"{alg_none}.{body}.", "alg_not_allowed"),
    ]
    for token, reason in cases:
        ws = await connect(client)
        await ws.send({"type": "join", "token": token, "room": "r1"})
        err = await ws.expect("error")
        assert (err["code"], err["reason"]) == ("token_rejected", reason)
        assert await ws.closed() == 4000


async def test_room_not_found_when_auto_create_is_off(make_client: AppMaker) -> None:
    client = await make_client(base_config(rooms=RoomsConfig(auto_create=False)))
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token("nowhere", "ana"), "room": "nowhere"})
    assert (await ws.expect("error"))["code"] == "room_not_found"


async def test_room_is_auto_created_on_first_join_in_dev_mode(client: TestClient) -> None:
    _ws, joined = await join(client, "adhoc", "ana")
    assert joined["room"]["name"] == "adhoc"
    room = await app_of(client)[SIGNALING].rooms.admin.get_room("adhoc")
    assert room.auto_created and room.empty_timeout == 300


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('{"no": "type"}', "bad_message"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "join"}', "missing_field"),
        ('{"type": "join", "token": 5}', "bad_field"),
        ('{"type": "join", "token": "t", "v": 2}', "unsupported_version"),
        ('{"type": "chat", "text": "before join"}', "not_joined"),
    ],
)
async def test_bad_frames_get_error_codes_and_the_connection_survives(
    client: TestClient, frame: str, code: str
) -> None:
    ws = await connect(client)
    await ws.ws.send_str(frame)
    assert (await ws.expect("error"))["code"] == code
    await ws.send({"type": "ping", "t": 7})
    assert (await ws.expect("pong"))["t"] == 7


async def test_oversize_frame_is_refused_and_others_keep_being_served(client: TestClient) -> None:
    await create_room(client, "r1")
    ana, _ = await join(client, "r1", "ana")
    bob, _ = await join(client, "r1", "bob")
    await bob.ws.send_str('{"type":"chat","text":"' + "x" * 70_000 + '"}')
    assert (await bob.expect("error"))["code"] == "too_large"
    await bob.ws.send_str("y" * 400_000)  # beyond the hard frame cap: the connection is closed
    assert await bob.closed() == 1009
    assert (await ana.expect("participant_left"))["identity"] == "bob"
    await ana.send({"type": "chat", "text": "still here"})
    assert (await ana.expect("chat"))["text"] == "still here"


async def test_binary_frames_are_refused(client: TestClient) -> None:
    ws = await connect(client)
    await ws.ws.send_bytes(b"\x00\x01")
    assert (await ws.expect("error"))["code"] == "bad_message"


async def test_second_join_on_one_connection_is_refused(client: TestClient) -> None:
    ana, _ = await join(client, "r1", "ana")
    await ana.send({"type": "join", "token": join_token("r1", "ana"), "room": "r1"})
    assert (await ana.expect("error"))["code"] == "already_joined"


async def test_same_identity_joining_again_replaces_the_old_session(client: TestClient) -> None:
    await create_room(client, "r1", max_participants=2)
    old, _ = await join(client, "r1", "ana")
    await join(client, "r1", "bob")
    _new, joined = await join(client, "r1", "ana")
    assert (await old.expect("kicked"))["reason"] == "duplicate_identity"
    assert [p["identity"] for p in joined["participants"]] == ["bob"]


async def test_connection_without_join_is_closed_after_join_timeout(make_client: AppMaker) -> None:
    client = await make_client(base_config(signaling=SignalingConfig(join_timeout=0.3)))
    ws = await connect(client)
    assert await ws.closed(timeout=3) == 4010
    assert any(m.get("code") == "join_timeout" for m in ws.seen)


async def test_dead_client_frees_its_seat_after_heartbeat_timeout(make_client: AppMaker) -> None:
    cfg = base_config(signaling=SignalingConfig(heartbeat_interval=0.2))
    client = await make_client(cfg)
    await create_room(client, "r1", max_participants=1)
    # a client that never answers pings: its network is gone
    ws = Ws(await client.ws_connect("/ws", autoping=False))
    await ws.send({"type": "join", "token": join_token("r1", "ghost"), "room": "r1"})
    assert (await ws.recv())["type"] == "joined"
    rooms = app_of(client)[SIGNALING].rooms.admin
    for _ in range(100):
        if await rooms.count("r1") == 0:
            break
        await asyncio.sleep(0.05)
    assert await rooms.count("r1") == 0
    _fresh, joined = await join(client, "r1", "alive")
    assert joined["self"]["identity"] == "alive"


async def test_slow_consumer_is_disconnected_without_stalling_the_room(make_client: AppMaker) -> None:
    client = await make_client(base_config(signaling=SignalingConfig(outbound_queue=8)))
    await create_room(client, "r1")
    ana, _ = await join(client, "r1", "ana")
    slow, _ = await join(client, "r1", "slow")
    sig = app_of(client)[SIGNALING]
    seat = sig.rooms.hub.by_identity("r1", "slow")
    assert seat is not None
    peer = seat.peer
    for i in range(20):  # more than its queue holds, faster than it is drained
        peer.send_text(f'{{"type":"filler","i":{i}}}')
    assert await slow.closed() == 4008
    assert (await ana.expect("participant_left"))["identity"] == "slow"


async def test_flooding_client_is_rate_limited_then_disconnected(make_client: AppMaker) -> None:
    client = await make_client(base_config(signaling=SignalingConfig(rate_per_second=1, rate_burst=5)))
    ws = await connect(client)
    for i in range(40):
        await ws.send({"type": "ping", "t": i})
    code = await ws.closed()
    assert code == 4009
    codes = [m.get("code") for m in ws.seen if m["type"] == "error"]
    assert "rate_limited" in codes
    assert sum(1 for m in ws.seen if m["type"] == "pong") == 5


async def test_foreign_origin_cannot_open_signaling(client: TestClient) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await client.ws_connect("/ws", headers={"Origin": "https://evil.example"})
    assert e.value.status == 403
    ok = await client.ws_connect("/ws", headers={"Origin": "http://127.0.0.1:8443"})  # the public origin
    await ok.close()


async def test_moderator_mutes_kicks_locks_and_ends(client: TestClient) -> None:
    await create_room(client, "r1")
    mod, _ = await join(client, "r1", "chair", role="moderator")
    bob, _ = await join(client, "r1", "bob")
    cyd, _ = await join(client, "r1", "cyd")

    await mod.send({"type": "mute", "identity": "bob", "kind": "audio"})
    assert (await bob.expect("muted"))["by"] == "chair"
    upd = await cyd.expect("participant_updated")
    assert upd["participant"]["identity"] == "bob" and upd["participant"]["state"]["audio_muted"] is True

    await mod.send({"type": "kick", "identity": "bob"})
    assert (await bob.expect("kicked"))["reason"] == "removed"
    assert (await cyd.expect("participant_left"))["identity"] == "bob"

    await mod.send({"type": "lock_room", "locked": True})
    assert (await cyd.expect("room_updated"))["room"]["locked"] is True
    late = await connect(client)
    await late.send({"type": "join", "token": join_token("r1", "late"), "room": "r1"})
    assert (await late.expect("error"))["code"] == "room_locked"

    await mod.send({"type": "end_room"})
    assert (await cyd.expect("room_closed"))["reason"] == "ended"
    assert await cyd.closed() == 4002


async def test_participants_cannot_moderate_and_viewers_cannot_unmute_or_chat_without_grant(
    client: TestClient,
) -> None:
    await create_room(client, "r1")
    bob, _ = await join(client, "r1", "bob")
    viewer, joined = await join(client, "r1", "vic", role="viewer")
    assert joined["self"]["state"]["audio_muted"] is True
    for msg in (
        {"type": "kick", "identity": "vic"},
        {"type": "mute", "identity": "vic"},
        {"type": "end_room"},
    ):
        await bob.send(msg)
        assert (await bob.expect("error"))["code"] == "forbidden"
    await viewer.send({"type": "update", "state": {"audio_muted": False}})
    assert (await viewer.expect("error"))["code"] == "forbidden"
    silent, _ = await join(client, "r1", "quiet", permissions=["subscribe"])
    await silent.send({"type": "chat", "text": "hi"})
    assert (await silent.expect("error"))["code"] == "forbidden"


async def test_self_state_updates_are_seen_by_others(client: TestClient) -> None:
    await create_room(client, "r1")
    ana, _ = await join(client, "r1", "ana")
    bob, _ = await join(client, "r1", "bob")
    await bob.send({"type": "update", "state": {"hand_raised": True, "video_muted": True}})
    upd = await ana.expect("participant_updated")
    assert upd["participant"]["state"] == {"audio_muted": False, "video_muted": True, "hand_raised": True}
    await bob.send({"type": "update", "state": {"sleeping": True}})
    assert (await bob.expect("error"))["code"] == "bad_field"


async def test_display_name_change_needs_the_grant(client: TestClient) -> None:
    ws = await connect(client)
    await ws.send(
        {"type": "join", "token": join_token("r1", "ana", name="Ana"), "room": "r1", "name": "Boss"}
    )
    assert (await ws.expect("error"))["code"] == "forbidden"
    ok = await connect(client)
    token = join_token("r1", "ana", name="Ana", permissions=["subscribe", "chat", "update_name"])
    await ok.send({"type": "join", "token": token, "room": "r1", "name": "Ana P."})
    assert (await ok.expect("joined"))["self"]["name"] == "Ana P."


async def test_media_messages_are_refused_clearly_without_a_media_service(client: TestClient) -> None:
    ana, _ = await join(client, "r1", "ana")
    await ana.send({"type": "publish_offer", "sdp": "v=0", "tracks": []})
    assert (await ana.expect("error"))["code"] == "media_unavailable"


async def test_empty_room_closes_after_its_empty_timeout(make_client: AppMaker) -> None:
    cfg = base_config(rooms=RoomsConfig(sweep_interval=0.05))
    client = await make_client(cfg)
    await create_room(client, "brief", empty_timeout=1)
    await create_room(client, "kept")
    ana, _ = await join(client, "brief", "ana")
    await ana.send({"type": "leave"})
    await ana.closed()
    rooms = app_of(client)[SIGNALING].rooms.admin
    for _ in range(60):
        names = [r.name for r in await rooms.list_rooms()]
        if "brief" not in names:
            break
        await asyncio.sleep(0.05)
    assert [r.name for r in await rooms.list_rooms()] == ["kept"]


async def test_metrics_count_joins_and_token_rejections(make_client: AppMaker) -> None:
    from confserver.metrics import Metrics

    metrics = Metrics.create(process=False)
    client = await make_client(metrics=metrics)
    await join(client, "r1", "ana")
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token("r2", "x"), "room": "r1"})
    await ws.expect("error")
    text = metrics.render().decode()
    assert 'conf_joins_total{result="admitted"} 1.0' in text
    assert 'conf_token_rejections_total{reason="wrong_room"} 1.0' in text
    assert "conf_participants 1.0" in text
    assert "conf_ws_connections 2.0" in text


async def test_participant_who_dropped_off_rejoins_a_locked_room_but_strangers_do_not(
    make_client: AppMaker,
) -> None:
    cfg = base_config(signaling=SignalingConfig(heartbeat_interval=0.2))
    client = await make_client(cfg)
    await create_room(client, "r1")
    chair, _ = await join(client, "r1", "chair", role="moderator")
    # a participant whose network goes away (never answers pings)
    ghost = Ws(await client.ws_connect("/ws", autoping=False))
    await ghost.send({"type": "join", "token": join_token("r1", "ana"), "room": "r1"})
    assert (await ghost.recv())["type"] == "joined"
    await chair.send({"type": "lock_room", "locked": True})
    await chair.expect("room_updated")
    left = await chair.expect("participant_left", timeout=5)
    assert (left["identity"], left["reason"]) == ("ana", "disconnected")

    _back, joined = await join(client, "r1", "ana")
    assert joined["room"]["locked"] is True
    stranger = await connect(client)
    await stranger.send({"type": "join", "token": join_token("r1", "eve"), "room": "r1"})
    assert (await stranger.expect("error"))["code"] == "room_locked"


async def test_removed_participant_cannot_rejoin_the_meeting(client: TestClient) -> None:
    await create_room(client, "r1")
    chair, _ = await join(client, "r1", "chair", role="moderator")
    bob, _ = await join(client, "r1", "bob")
    await chair.send({"type": "kick", "identity": "bob"})
    kicked = await bob.expect("kicked")
    assert (kicked["reason"], kicked["by"]) == ("removed", "chair")
    again = await connect(client)
    await again.send({"type": "join", "token": join_token("r1", "bob"), "room": "r1"})
    err = await again.expect("error")
    assert err["code"] == "removed"
    assert await again.closed() == 4000
