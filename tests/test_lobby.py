"""The lobby and the room password through the WebSocket and the API: people wait without a seat,
a moderator admits or denies them, the cap stays exact, someone who drops off keeps their place,
a password is asked of everyone but moderators and guessing it is rate-limited."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestClient

from confserver.config import RoomsConfig
from confserver.store import Store

from .conftest import AppMaker, Ws, admin_headers, base_config, connect, create_room, join, join_token


async def knock(client: TestClient, room: str, identity: str, **token_kw: Any) -> tuple[Ws, dict[str, Any]]:
    """Join a lobby room; returns the client and its ``lobby`` message."""
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token(room, identity, **token_kw), "room": room})
    msg = await ws.recv()
    assert msg["type"] == "lobby", msg
    return ws, msg


async def lobby_until(ws: Ws, wanted: list[tuple[str, bool]]) -> None:
    """Read ``lobby_updated`` messages until one lists ``wanted`` (identity, away)."""
    while True:
        update = await ws.expect("lobby_updated")
        if [(w["identity"], w["away"]) for w in update["waiting"]] == wanted:
            return


async def seats(client: TestClient, room: str) -> list[str]:
    resp = await client.get(f"/api/v1/rooms/{room}/participants", headers=admin_headers())
    return sorted(p["identity"] for p in (await resp.json())["participants"])


async def test_a_moderator_admits_someone_waiting_and_they_see_each_other(client: TestClient) -> None:
    await create_room(client, "cab", lobby=True)
    chair, joined = await join(client, "cab", "chair", role="moderator")
    assert joined["room"]["lobby"] is True
    ana, waiting = await knock(client, "cab", "ana", name="Ana")
    assert waiting["room"] == {"name": "cab"} and waiting["self"] == {"identity": "ana", "name": "Ana"}
    assert waiting["moderators"] == 1
    update = await chair.expect("lobby_updated")
    assert [(w["identity"], w["name"], w["away"]) for w in update["waiting"]] == [("ana", "Ana", False)]
    assert await seats(client, "cab") == ["chair"]  # waiting takes no seat
    await chair.send({"type": "admit", "identity": "ana"})
    joined = await ana.expect("joined")
    assert [p["identity"] for p in joined["participants"]] == ["chair"]
    await chair.expect("participant_joined")
    assert (await chair.expect("lobby_updated"))["waiting"] == []
    assert await seats(client, "cab") == ["ana", "chair"]
    await ana.send({"type": "chat", "text": "hello"})
    assert (await chair.expect("chat"))["text"] == "hello"


async def test_deny_closes_the_waiting_connection(client: TestClient) -> None:
    await create_room(client, "cab", lobby=True)
    chair, _ = await join(client, "cab", "chair", role="moderator")
    eve, _ = await knock(client, "cab", "eve")
    await chair.send({"type": "deny", "identity": "eve"})
    error = await eve.expect("error")
    assert error["code"] == "lobby_denied"
    assert await eve.closed() == 4000
    assert (await chair.expect("lobby_updated", waiting=[]))["waiting"] == []


async def test_only_moderators_admit_and_only_those_waiting(client: TestClient) -> None:
    await create_room(client, "cab", lobby=True)
    chair, _ = await join(client, "cab", "chair", role="moderator")
    bob, _ = await join(client, "cab", "bob", permissions=["chat", "subscribe", "skip_lobby"])
    await knock(client, "cab", "ana")
    await bob.send({"type": "admit", "identity": "ana"})
    assert (await bob.expect("error"))["code"] == "forbidden"
    await chair.send({"type": "admit", "identity": "nobody"})
    assert (await chair.expect("error"))["code"] == "participant_not_found"
    await chair.send({"type": "deny", "identity": "x" * 500})
    assert (await chair.expect("error"))["code"] == "bad_field"
    assert await seats(client, "cab") == ["bob", "chair"]


async def test_admitting_into_a_full_room_fails_and_they_keep_waiting(client: TestClient) -> None:
    await create_room(client, "small", lobby=True, max_participants=2)
    chair, _ = await join(client, "small", "chair", role="moderator")
    bob, _ = await join(client, "small", "bob", permissions=["chat", "skip_lobby"])
    ana, _ = await knock(client, "small", "ana")
    await chair.send({"type": "admit", "identity": "ana"})
    assert (await chair.expect("error"))["code"] == "room_full"
    lobby = await client.get("/api/v1/rooms/small/lobby", headers=admin_headers())
    assert [w["identity"] for w in (await lobby.json())["waiting"]] == ["ana"]
    assert await seats(client, "small") == ["bob", "chair"]
    resp = await client.post("/api/v1/rooms/small/lobby/ana/admit", headers=admin_headers())
    assert resp.status == 409 and (await resp.json())["error"] == "room_full"
    await ana.send({"type": "ping", "t": 1})  # still connected, still waiting
    assert (await ana.expect("pong"))["t"] == 1
    await bob.close()


async def test_the_api_lists_admits_and_denies(client: TestClient) -> None:
    await create_room(client, "cab", lobby=True)
    ana, _ = await knock(client, "cab", "ana", name="Ana")
    eve, _ = await knock(client, "cab", "eve")
    resp = await client.get("/api/v1/rooms/cab/lobby", headers=admin_headers())
    assert [w["identity"] for w in (await resp.json())["waiting"]] == ["ana", "eve"]
    assert (await client.post("/api/v1/rooms/cab/lobby/ana/admit", headers=admin_headers())).status == 204
    await ana.expect("joined")
    assert (await client.post("/api/v1/rooms/cab/lobby/eve/deny", headers=admin_headers())).status == 204
    assert (await eve.expect("error"))["code"] == "lobby_denied"
    resp = await client.post("/api/v1/rooms/cab/lobby/eve/deny", headers=admin_headers())
    assert resp.status == 404 and (await resp.json())["error"] == "participant_not_found"


async def test_waiters_learn_whether_a_moderator_can_admit_them(client: TestClient) -> None:
    await create_room(client, "cab", lobby=True)
    ana, waiting = await knock(client, "cab", "ana")
    assert waiting["moderators"] == 0
    chair, _ = await join(client, "cab", "chair", role="moderator")
    assert (await ana.expect("lobby_status"))["moderators"] == 1
    assert [w["identity"] for w in (await chair.expect("lobby_updated"))["waiting"]] == ["ana"]
    await chair.send({"type": "leave"})
    assert (await ana.expect("lobby_status"))["moderators"] == 0
    await ana.send({"type": "leave"})  # giving up: the place goes (no grace, unlike a drop)
    await ana.expect("left")
    lobby = await client.get("/api/v1/rooms/cab/lobby", headers=admin_headers())
    assert (await lobby.json())["waiting"] == []


async def test_moderators_skip_the_lobby_and_a_lock_refuses_outright(client: TestClient) -> None:
    await create_room(client, "cab", lobby=True)
    held = [await join(client, "cab", "chair", role="moderator")]  # kept: a dropped socket leaves
    held.append(await join(client, "cab", "guest", permissions=["chat", "skip_lobby"]))
    await client.patch("/api/v1/rooms/cab", json={"locked": True}, headers=admin_headers())
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token("cab", "ana"), "room": "cab"})
    assert (await ws.expect("error"))["code"] == "room_locked"
    assert await seats(client, "cab") == ["chair", "guest"]


async def test_someone_who_drops_off_keeps_their_place_and_may_be_admitted_meanwhile(
    client: TestClient,
) -> None:
    await create_room(client, "cab", lobby=True)
    chair, _ = await join(client, "cab", "chair", role="moderator")
    first, _ = await knock(client, "cab", "ana")
    bob, _ = await knock(client, "cab", "bob")
    await lobby_until(chair, [("ana", False), ("bob", False)])
    await first.close()
    await lobby_until(chair, [("ana", True), ("bob", False)])
    await chair.send({"type": "admit", "identity": "ana"})  # admitted while away
    await chair.expect("lobby_updated")
    back = await connect(client)
    await back.send({"type": "join", "token": join_token("cab", "ana"), "room": "cab"})
    assert (await back.expect("joined"))["self"]["identity"] == "ana"
    assert await seats(client, "cab") == ["ana", "chair"]
    await bob.close()


async def test_waiting_outlasts_the_join_deadline(make_client: AppMaker) -> None:
    cfg = base_config()
    client = await make_client(replace(cfg, signaling=replace(cfg.signaling, join_timeout=0.3)))
    await create_room(client, "cab", lobby=True)
    ana, _ = await knock(client, "cab", "ana")
    await asyncio.sleep(0.6)
    await ana.send({"type": "ping", "t": 2})
    assert (await ana.expect("pong"))["t"] == 2


async def test_the_lobby_is_bounded_and_knocking_is_rate_limited(make_client: AppMaker) -> None:
    cfg = base_config(rooms=RoomsConfig(lobby_max=2, lobby_knocks_per_minute=2))
    client = await make_client(cfg)
    await create_room(client, "cab", lobby=True)
    held = [await knock(client, "cab", "a"), await knock(client, "cab", "b")]
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token("cab", "c"), "room": "cab"})
    assert (await ws.expect("error"))["code"] == "lobby_full"
    again = await connect(client)  # "a" from another tab: the same place (a second knock)
    await again.send({"type": "join", "token": join_token("cab", "a"), "room": "cab"})
    assert (await again.expect("lobby"))["self"]["identity"] == "a"
    third = await connect(client)
    await third.send({"type": "join", "token": join_token("cab", "a"), "room": "cab"})
    assert (await third.expect("error"))["code"] == "rate_limited"
    assert len(held) == 2


# --- the room password ---------------------------------------------------------------------------


async def test_the_password_is_asked_of_all_but_moderators(client: TestClient, store: Store) -> None:
    room = await create_room(client, "sec", password="kopi tubruk 7")
    assert room["password_protected"] is True and "password" not in room
    stored = await store.rooms.get("sec")
    assert stored is not None and stored.password_hash.startswith("scrypt$")
    assert "kopi" not in stored.password_hash
    for password, code in ((None, "password_required"), ("kopi", "bad_password")):
        ws = await connect(client)
        msg: dict[str, Any] = {"type": "join", "token": join_token("sec", "ana"), "room": "sec"}
        if password is not None:
            msg["password"] = password
        await ws.send(msg)
        assert (await ws.expect("error"))["code"] == code
        assert await ws.closed() == 4000
    ws = await connect(client)
    await ws.send(
        {"type": "join", "token": join_token("sec", "ana"), "room": "sec", "password": "kopi tubruk 7"}
    )
    assert (await ws.expect("joined"))["room"]["password"] is True
    chair, _ = await join(client, "sec", "chair", role="moderator")  # not asked
    assert sorted(await seats(client, "sec")) == ["ana", "chair"]
    await chair.close()


async def test_five_wrong_passwords_a_minute_are_rate_limited(client: TestClient) -> None:
    await create_room(client, "sec", password="right one")

    async def attempt(identity: str, password: str) -> str:
        ws = await connect(client)
        await ws.send(
            {"type": "join", "token": join_token("sec", identity), "room": "sec", "password": password}
        )
        msg = await ws.recv()
        return str(msg.get("code") or msg["type"])

    assert [await attempt("eve", "guess") for _ in range(5)] == ["bad_password"] * 5
    assert await attempt("eve", "right one") == "rate_limited"
    # the same address is limited too: the test client's every connection comes from 127.0.0.1
    assert await attempt("ana", "right one") == "rate_limited"


async def test_the_api_sets_changes_and_removes_a_password(client: TestClient, store: Store) -> None:
    await create_room(client, "sec")
    bad = await client.patch("/api/v1/rooms/sec", json={"password": "x" * 129}, headers=admin_headers())
    assert bad.status == 400 and (await bad.json())["error"] == "invalid_field"
    ok = await client.patch("/api/v1/rooms/sec", json={"password": "pw one"}, headers=admin_headers())
    assert (await ok.json())["password_protected"] is True
    first = (await store.rooms.get("sec")).password_hash  # type: ignore[union-attr]
    await client.patch("/api/v1/rooms/sec", json={"password": "pw one"}, headers=admin_headers())
    assert (await store.rooms.get("sec")).password_hash != first  # type: ignore[union-attr]  # salted
    off = await client.patch("/api/v1/rooms/sec", json={"password": ""}, headers=admin_headers())
    assert (await off.json())["password_protected"] is False
    ana, _ = await join(client, "sec", "ana")  # no password asked any more
    await ana.close()
    empty = await client.post("/api/v1/rooms", json={"name": "x", "password": ""}, headers=admin_headers())
    assert empty.status == 400


async def test_the_sign_in_policy_is_checked_and_normalised(client: TestClient) -> None:
    room = await create_room(
        client,
        "sso",
        allow={"domains": ["@Kominfo.GO.ID", "kominfo.go.id"], "moderators": {"groups": ["eselon1"]}},
    )
    assert room["allow"] == {"domains": ["kominfo.go.id"], "moderators": {"groups": ["eselon1"]}}
    for bad in ({"nope": []}, {"groups": "eselon1"}, {"moderators": {"domains": [1]}}, []):
        resp = await client.post("/api/v1/rooms", json={"name": "bad", "allow": bad}, headers=admin_headers())
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_field", bad


async def test_the_same_identity_knocking_from_another_tab_replaces_the_first(client: TestClient) -> None:
    await create_room(client, "cab", lobby=True)
    first, _ = await knock(client, "cab", "ana")
    second, _ = await knock(client, "cab", "ana")
    kicked = await first.expect("kicked")
    assert kicked["reason"] == "duplicate_identity"
    assert await first.closed() == 4001
    lobby = await client.get("/api/v1/rooms/cab/lobby", headers=admin_headers())
    assert [(w["identity"], w["away"]) for w in (await lobby.json())["waiting"]] == [("ana", False)]
    await second.close()
