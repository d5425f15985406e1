"""One scenario suite, run against every set-up (``single``, ``workers``, ``nodes``, ``nodes-tls``): what a
meeting needs works whichever node each participant came in through. Participant i connects
through node i % 3 (in the one-process set-ups, the one process)."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import aiohttp
import pytest

from confserver.cluster import auth as cluster_auth
from confserver.tokens import SigningKey, mint_join_token

from .clients import MediaMember, Member, decodes, raw_join
from .harness import API_KEY, API_SECRET, Cluster, client_session, wait_for


async def join_all(
    cluster: Cluster, people: list[Any], room: str, who: list[tuple[str, int, str]]
) -> list[Member]:
    """Join (identity, node, role) one after another; the first join claims the room."""
    out = []
    for identity, node, role in who:
        m = Member(cluster.node(node).ws_url, room, await cluster.token(node, room, identity, role), identity)
        people.append(m)
        await m.start()
        out.append(m)
    return out


async def seats_everywhere(cluster: Cluster, room: str, expected: set[str], timeout: float = 5) -> None:
    """Every node's admin API lists exactly ``expected`` in ``room``, and counts as many seats."""

    async def right() -> bool:
        for i in range(cluster.size):
            listed = {p["identity"] for p in await cluster.participants(i, room)}
            if listed != expected or await cluster.seat_count(i, room) != len(expected):
                return False
        return True

    async def state() -> str:
        return str([
            (sorted(p["identity"] for p in await cluster.participants(i, room)), await cluster.seat_count(i, room))
            for i in range(cluster.size)
        ])  # fmt: skip

    try:
        await wait_for(right, timeout, f"seats of {room} are {sorted(expected)}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; nodes say {await state()}") from None


async def test_join_leave_and_presence(cluster: Cluster, people: list[Any], room: str) -> None:
    ana, budi, citra = await join_all(cluster, people, room, [("ana", 0, "participant"),
                                                              ("budi", 1, "participant"),
                                                              ("citra", 2, "participant")])  # fmt: skip
    for m in (ana, budi, citra):
        await m.sees({"ana", "budi", "citra"} - {m.identity})
    assert {p["identity"] for p in citra.joins[0]["participants"]} == {"ana", "budi"}
    await ana.expect("participant_joined")
    assert [m["participant"]["identity"] for m in ana.of_type("participant_joined")] == ["budi", "citra"]
    await seats_everywhere(cluster, room, {"ana", "budi", "citra"})

    await budi.leave()
    for m in (ana, citra):
        left = await m.expect("participant_left", identity="budi")
        assert left["reason"] == "left"
        await m.forgets("budi")
    await seats_everywhere(cluster, room, {"ana", "citra"})
    await ana.leave()
    await citra.expect("participant_left", identity="ana")
    await citra.leave()
    await seats_everywhere(cluster, room, set())


async def test_room_chat_and_private_chat_across_nodes(
    cluster: Cluster, people: list[Any], room: str
) -> None:
    ana, budi, citra = await join_all(cluster, people, room, [("ana", 0, "participant"),
                                                              ("budi", 1, "participant"),
                                                              ("citra", 2, "participant")])  # fmt: skip
    await ana.chat("hello everyone")
    for m in (ana, budi, citra):
        got = await m.expect("chat", text="hello everyone")
        assert got["from"]["identity"] == "ana" and got.get("to") is None
    await budi.chat("just for you", to="citra")
    whisper = await citra.expect("chat", text="just for you")
    assert whisper["from"]["identity"] == "budi"
    await budi.expect("chat", text="just for you")  # the sender's copy
    await citra.chat("and back", to="ana")  # node 2 -> node 0
    await ana.expect("chat", text="and back")
    await ana.chat("last")  # after the private ones, in order on every connection
    await budi.expect("chat", text="last")
    await asyncio.sleep(0.3)
    assert not ana.of_type("chat", text="just for you")
    assert not budi.of_type("chat", text="and back")
    assert [m["text"] for m in budi.of_type("chat")] == ["hello everyone", "just for you", "last"]


async def test_moderation_through_the_websocket(cluster: Cluster, people: list[Any], room: str) -> None:
    mod, xena, yuri, zaki = await join_all(cluster, people, room, [("mod", 0, "moderator"),
                                                                   ("xena", 1, "participant"),
                                                                   ("yuri", 2, "participant"),
                                                                   ("zaki", 1, "participant")])  # fmt: skip
    await mod.send({"type": "mute", "identity": "xena", "kind": "audio"})
    muted = await xena.expect("muted")
    assert muted["kind"] == "audio"
    for m in (yuri, zaki, mod):
        await m.wait(partial(m.state_of, "xena", "audio_muted"), 5, "xena muted")
    listed = {p["identity"]: p for p in await cluster.participants(2, room)}
    assert listed["xena"]["state"]["audio_muted"] is True

    await mod.send({"type": "kick", "identity": "yuri"})
    kicked = await yuri.expect("kicked")
    assert kicked["reason"] == "removed"
    assert await yuri.ended() == 4001
    for m in (mod, xena, zaki):
        assert (await m.expect("participant_left", identity="yuri"))["reason"] == "removed"
    await seats_everywhere(cluster, room, {"mod", "xena", "zaki"})

    await mod.send({"type": "lock_room", "locked": True})
    updated = await zaki.expect("room_updated")
    assert updated["room"]["locked"] is True
    late = Member(cluster.node(2).ws_url, room, await cluster.token(2, room, "late"), "late", reconnect=False)
    people.append(late)
    with pytest.raises(AssertionError, match="room_locked"):
        await late.start()
    assert late.final == 4000
    await seats_everywhere(cluster, room, {"mod", "xena", "zaki"})

    await mod.send({"type": "end_room"})
    for m in (mod, xena, zaki):
        closed = await m.expect("room_closed")
        assert closed["reason"] == "ended"
        assert await m.ended() == 4002
    await seats_everywhere(cluster, room, set())


async def test_moderation_through_another_nodes_admin_api(
    cluster: Cluster, people: list[Any], room: str
) -> None:
    tokens = {who: await cluster.mint(node, room, who) for who, node in
              (("ana", 0), ("budi", 1), ("citra", 2), ("dewi", 0))}  # fmt: skip
    members = {}
    for node, who in enumerate(("ana", "budi", "citra", "dewi")):
        m = Member(cluster.node(node).ws_url, room, tokens[who]["token"], who)
        people.append(m)
        await m.start()
        members[who] = m
    ana, budi, citra, dewi = members.values()
    await ana.sees({"budi", "citra", "dewi"})

    # kick budi (joined through node 1) through node 2's API
    status, _ = await cluster.api(2, "DELETE", f"/rooms/{room}/participants/budi")
    assert status == 204
    assert (await budi.expect("kicked"))["reason"] == "removed"
    assert await budi.ended() == 4001
    for m in (ana, citra, dewi):
        await m.expect("participant_left", identity="budi")
    await seats_everywhere(cluster, room, {"ana", "citra", "dewi"})

    # mute citra (node 2) through node 1's API
    status, body = await cluster.api(1, "POST", f"/rooms/{room}/participants/citra/mute", {"kind": "audio"})
    assert status == 200 and body["state"]["audio_muted"] is True
    assert (await citra.expect("muted"))["kind"] == "audio"
    await ana.wait(lambda: ana.others["citra"]["state"]["audio_muted"], 5, "ana sees citra muted")
    assert {p["identity"]: p for p in await cluster.participants(0, room)}["citra"]["state"]["audio_muted"]

    # lock through node 2's API (PATCH): nobody new gets in, through any node
    status, body = await cluster.api(2, "PATCH", f"/rooms/{room}", {"locked": True})
    assert status == 200 and body["locked"] is True
    assert (await ana.expect("room_updated"))["room"]["locked"] is True
    for node in range(cluster.size):
        late = Member(cluster.node(node).ws_url, room, await cluster.token(node, room, f"late{node}"),
                      f"late{node}", reconnect=False)  # fmt: skip
        people.append(late)
        with pytest.raises(AssertionError, match="room_locked"):
            await late.start()
    await seats_everywhere(cluster, room, {"ana", "citra", "dewi"})

    # revoke dewi's token through node 1: her session (through node 0) ends
    status, _ = await cluster.api(1, "POST", f"/tokens/{tokens['dewi']['jti']}/revoke")
    assert status == 200
    assert (await dewi.expect("kicked"))["reason"] == "token_revoked"
    assert await dewi.ended() == 4001
    await ana.expect("participant_left", identity="dewi")
    await seats_everywhere(cluster, room, {"ana", "citra"})

    # delete the room through node 2
    status, _ = await cluster.api(2, "DELETE", f"/rooms/{room}")
    assert status == 204
    for m in (ana, citra):
        assert (await m.expect("room_closed"))["reason"] == "deleted"
        assert await m.ended() == 4002
    for node in range(cluster.size):
        status, _ = await cluster.api(node, "GET", f"/rooms/{room}", ok=False)
        assert status == 404
    await seats_everywhere(cluster, room, set())


async def test_media_between_participants_of_different_nodes(
    cluster: Cluster, people: list[Any], room: str
) -> None:
    who = [MediaMember(cluster.node(i).ws_url, room, await cluster.token(i, room, name), name)
           for i, name in enumerate(("ana", "budi", "citra"))]  # fmt: skip
    people.extend(who)
    ana, budi, citra = who
    for m in who:
        await m.join()
    await ana.publish()
    await citra.publish()
    started = time.monotonic()
    await asyncio.gather(
        decodes(budi.peer, "ana", 10, 20),
        decodes(citra.peer, "ana", 10, 20),
        decodes(ana.peer, "citra", 10, 20),
    )
    print(f"[{cluster.kind}] media across nodes decoded in {time.monotonic() - started:.1f} s")
    for m in who:
        assert not m.peer.errors, m.peer.errors
    # every subscribe offer points at one media socket: the room's owner's
    ports = {p for m in who for p in _offer_ports(m)}
    assert len(ports) == 1 and ports <= {n.udp_port + k for n in cluster.nodes for k in range(2)}, ports


def _offer_ports(m: MediaMember) -> set[int]:
    from .clients import candidate_ports

    return {
        p for msg in m.peer.messages if msg["type"] == "subscribe_offer" for p in candidate_ports(msg["sdp"])
    }


async def test_exact_cap_under_a_thousand_concurrent_joins(cluster: Cluster, room: str) -> None:
    await cluster.create_room(1, room, max_participants=100)
    key = SigningKey.hs256(API_KEY, API_SECRET)
    now = time.time()
    tokens = [mint_join_token(key, room=room, identity=f"p{i:04d}", now=now, ttl=600)[0] for i in range(1000)]
    answers: dict[str, int] = {}
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async with client_session() as session:

        async def one(i: int) -> None:
            for _attempt in range(20):
                ws, msg = await raw_join(cluster.node(i).ws_url, tokens[i], room, session)
                sockets.append(ws)
                code = str(msg.get("code") if msg["type"] == "error" else msg["type"])
                if code == "try_again":
                    await ws.close()
                    await asyncio.sleep(0.2)
                    continue
                answers[code] = answers.get(code, 0) + 1
                return
            answers["gave_up"] = answers.get("gave_up", 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(1000)))
        took = time.monotonic() - started
        print(f"[{cluster.kind}] 1000 joins in {took:.1f} s: {answers}")
        assert answers == {"joined": 100, "room_full": 900}, answers
        for i in range(cluster.size):
            assert await cluster.seat_count(i, room) == 100
            assert len(await cluster.participants(i, room)) == 100
        await asyncio.gather(*(ws.close() for ws in sockets))
    await wait_for(lambda: _all_zero(cluster, room), 15, "every seat back after everyone left", interval=0.2)


async def _all_zero(cluster: Cluster, room: str) -> bool:
    for i in range(cluster.size):
        if await cluster.seat_count(i, room) != 0 or await cluster.participants(i, room):
            return False
    return True


CLUSTER_WS = "/cluster/v1/ws"


def _signed(
    cluster: Cluster, path: str, *, key: bytes | None = None, ts: float | None = None, method: str = "GET"
) -> dict[str, str]:
    """The node-to-node header, signed with ``key`` (the cluster's own by default)."""
    key = key if key is not None else cluster_auth.cluster_key(cluster.cluster_secret, API_SECRET)
    when = time.time() if ts is None else ts
    return {cluster_auth.HEADER: cluster_auth.sign(key, "node-a", method, path, when)}


async def test_a_relay_socket_without_the_cluster_secret_is_refused(
    cluster: Cluster, people: list[Any], room: str
) -> None:
    (ana,) = await join_all(cluster, people, room, [("ana", 0, "participant")])
    token = await cluster.token(1, room, "intruder")
    refused = (403,) if cluster.multi else (404,)  # one process has no relay endpoint at all
    bad = {
        "no header": {},
        "empty": {cluster_auth.HEADER: ""},
        "malformed": {cluster_auth.HEADER: "node=node-a;sig=nothing"},
        "zero signature": {cluster_auth.HEADER: f"node=node-a;ts={int(time.time())};sig={'0' * 64}"},
        "wrong secret": _signed(cluster, CLUSTER_WS, key=b"not the cluster secret at all, 32+ chars"),
        "other path": _signed(cluster, "/cluster/v1/disconnect"),
        "stale": _signed(cluster, CLUSTER_WS, ts=time.time() - 3600),
        "client address, no signature": {cluster_auth.CLIENT_ADDRESS: "203.0.113.9"},
    }
    if cluster.cluster_secret:  # a secret is set: the one derived from the API secret is no good
        bad["derived from the API secret"] = _signed(
            cluster, CLUSTER_WS, key=cluster_auth.cluster_key("", API_SECRET)
        )
    async with client_session() as session:
        for i in range(cluster.size):
            url = cluster.node(i).url.replace("http", "ws", 1) + CLUSTER_WS
            for what, headers in bad.items():
                try:
                    ws = await session.ws_connect(url, headers=headers)
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status in refused, (i, what, exc.status)
                    continue
                # accepted by mistake: whatever it lets through must not take a seat
                await ws.send_json({"type": "join", "token": token, "room": room})
                await asyncio.sleep(0.3)
                await ws.close()
                raise AssertionError(f"node {i} accepted a relay socket with {what}")
            # an admin call that claims to come from a node: a bad signature is refused, and a good
            # one does not stand in for the admin token
            path = f"/api/v1/rooms/{room}/participants/ana"
            admin = cluster.node(i).url + path
            async with session.delete(admin, headers=bad["zero signature"]) as resp:
                assert resp.status in (401, 403), (i, resp.status)
            async with session.delete(admin, headers=_signed(cluster, path, method="DELETE")) as resp:
                assert resp.status == 401, (i, resp.status, await resp.text())
    if cluster.multi:  # the control: the same socket with a good signature is accepted
        async with client_session() as session:
            ws = await session.ws_connect(
                cluster.node(1).ws_url.replace("/ws", CLUSTER_WS), headers=_signed(cluster, CLUSTER_WS)
            )
            await ws.close()
    await seats_everywhere(cluster, room, {"ana"})
    assert ana.joined and len(ana.joins) == 1


async def test_lobby_admit_and_deny_through_the_websocket_and_another_nodes_api(
    cluster: Cluster, people: list[Any], room: str
) -> None:
    await cluster.create_room(0, room, lobby=True)
    (mod,) = await join_all(cluster, people, room, [("mod", 0, "moderator")])  # moderators skip the lobby

    async def knock(identity: str, node: int) -> Member:
        m = Member(cluster.node(node).ws_url, room, await cluster.token(node, room, identity), identity)
        people.append(m)
        await m.start(until="lobby")
        return m

    ana = await knock("ana", 2)
    await mod.wait(lambda: any(w["identity"] == "ana" for u in mod.of_type("lobby_updated") for w in u["waiting"]),
                   5, "ana waiting")  # fmt: skip
    _, waiting = await cluster.api(1, "GET", f"/rooms/{room}/lobby")
    assert [w["identity"] for w in waiting["waiting"]] == ["ana"]
    await seats_everywhere(cluster, room, {"mod"})  # waiting takes no seat

    status, _ = await cluster.api(1, "POST", f"/rooms/{room}/lobby/ana/admit")  # node 1 admits node 2's guest
    assert status == 204
    await ana.wait(lambda: ana.joins, 5, "ana admitted")
    await mod.sees({"ana"})
    await ana.sees({"mod"})

    budi = await knock("budi", 1)
    status, _ = await cluster.api(2, "POST", f"/rooms/{room}/lobby/budi/deny")
    assert status == 204
    assert await budi.ended() == 4000
    assert [r["code"] for r in budi.refusals] == ["lobby_denied"]

    citra = await knock("citra", 2)
    await mod.send({"type": "admit", "identity": "citra"})  # the moderator (node 0) admits node 2's guest
    await citra.wait(lambda: citra.joins, 5, "citra admitted")
    dewi = await knock("dewi", 1)
    await mod.send({"type": "deny", "identity": "dewi"})
    assert await dewi.ended() == 4000
    await ana.sees({"mod", "citra"})
    await seats_everywhere(cluster, room, {"mod", "ana", "citra"})
    _, waiting = await cluster.api(2, "GET", f"/rooms/{room}/lobby")
    assert waiting["waiting"] == []
