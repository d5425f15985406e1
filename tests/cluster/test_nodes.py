"""Three nodes on one Redis, when something goes wrong or an operator steps in: the node owning a
meeting is killed with SIGKILL; Redis restarts during a meeting; a node is drained with
``confctl node drain``. Each test has nodes of its own."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from .clients import MediaMember, Member, candidate_ports, decodes, raw_join
from .harness import NODE_TTL, Cluster, Node, client_session, wait_for
from .test_scenarios import seats_everywhere

pytestmark = pytest.mark.redis


def entry(cluster: Cluster, first: int) -> list[str]:
    """Node ``first``'s WebSocket URL, then the others: where a client reconnects when its own
    node is gone (in a deployment, the load balancer's choice)."""
    return [cluster.node((first + k) % len(cluster.nodes)).ws_url for k in range(len(cluster.nodes))]


def owner_by_media(cluster: Cluster, sdps: list[str]) -> Node:
    """The node whose media socket the server's candidates name."""
    ports = {p for sdp in sdps for p in candidate_ports(sdp)}
    owners = [n for n in cluster.nodes if n.udp_port in ports]
    assert len(owners) == 1, (ports, [(n.node_id, n.udp_port) for n in cluster.nodes])
    return owners[0]


def offers(m: MediaMember, since_reset: bool = True) -> list[str]:
    msgs = m.peer.messages
    if since_reset:
        resets = [i for i, x in enumerate(msgs) if x["type"] == "media_reset"]
        msgs = msgs[resets[-1] + 1 if resets else 0 :]
    return [x["sdp"] for x in msgs if x["type"] == "subscribe_offer"]


async def test_the_owner_node_killed_everyone_is_back_with_media_within_10s(
    fresh_nodes_any: Cluster, people: list[Any], room: str
) -> None:
    cluster = fresh_nodes_any
    who = [MediaMember(entry(cluster, i), room, await cluster.token(i, room, name), name)
           for i, name in enumerate(("ana", "budi", "citra"))]  # fmt: skip
    people.extend(who)
    ana, budi, citra = who
    for m in who:
        await m.join()
    await ana.publish()
    await citra.publish()
    await asyncio.gather(decodes(budi.peer, "ana", 5, 20), decodes(ana.peer, "citra", 5, 20))
    owner = owner_by_media(cluster, [sdp for m in who for sdp in offers(m)])
    assert owner is cluster.nodes[0]  # claimed by the first join, which came through node 0

    killed = time.monotonic()
    owner.kill9()
    for m in who:  # every session ends (ana's node is gone; the others' relays lose the owner)
        await m.member.joined_times(2, 10)
    rejoined = time.monotonic() - killed
    for m in who:
        await m.member.sees({"ana", "budi", "citra"} - {m.identity}, timeout=10 - (time.monotonic() - killed))
        await wait_for(lambda m=m: m.peer.resets >= 1, 5, f"{m.identity}: media reset")
    await ana.publish()
    await citra.publish()
    left = max(1.0, 10 - (time.monotonic() - killed))
    await asyncio.gather(
        decodes(budi.peer, "ana", 5, left),
        decodes(citra.peer, "ana", 5, left),
        decodes(ana.peer, "citra", 5, left),
    )
    back = time.monotonic() - killed
    print(
        f"[{cluster.kind}] owner {owner.node_id} killed: joined again after {rejoined:.1f} s, media back after {back:.1f} s"
    )
    assert back < 10.0, f"media back after {back:.1f} s"

    new_owner = owner_by_media(cluster, [sdp for m in who for sdp in offers(m)])
    assert new_owner is not owner and new_owner.alive
    live = [i for i, n in enumerate(cluster.nodes) if n.alive]
    for i in live:  # seats of the dead node are freed: three people, three seats
        assert {p["identity"] for p in await cluster.participants(i, room)} == {"ana", "budi", "citra"}
        assert await cluster.seat_count(i, room) == 3
    await wait_for(
        lambda: _state_of(cluster, live[0], owner.node_id), 3 * NODE_TTL, f"{owner.node_id} dead in /nodes"
    )
    states = {n["id"]: n["state"] for n in await cluster.node_list(live[0])}
    assert all(states[cluster.nodes[i].node_id] == "active" for i in live), states
    for m in who:
        assert not m.peer.errors, m.peer.errors


async def _state_of(cluster: Cluster, via: int, node_id: str) -> bool:
    nodes = {n["id"]: n for n in await cluster.node_list(via)}
    return node_id not in nodes or nodes[node_id]["state"] == "dead"


async def test_redis_restarted_during_a_meeting(fresh_nodes: Cluster, people: list[Any], room: str) -> None:
    cluster = fresh_nodes
    assert cluster.redis is not None
    members = []
    for i, name in enumerate(("ana", "budi", "citra")):
        m = Member(cluster.node(i).ws_url, room, await cluster.token(i, room, name), name)
        people.append(m)
        await m.start()
        members.append(m)
    ana, budi, citra = members
    await ana.sees({"budi", "citra"})
    await seats_everywhere(cluster, room, {"ana", "budi", "citra"})
    late_tokens = {name: await cluster.token(1, room, name) for name in ("during", "after")}

    cluster.redis.kill()
    outage = time.monotonic()
    await ana.chat("redis is down")  # node 0 -> nodes 1 and 2
    await citra.chat("we carry on")  # node 2 -> nodes 0 and 1
    for m in members:
        await m.expect("chat", text="redis is down")
        await m.expect("chat", text="we carry on")
    async with client_session() as session:
        ws, refused = await raw_join(cluster.node(1).ws_url, late_tokens["during"], room, session)
        await ws.close()
    assert refused.get("code") == "store_unavailable", refused
    await asyncio.sleep(max(0.0, NODE_TTL + 1 - (time.monotonic() - outage)))  # longer than a heartbeat
    await budi.chat("still down")
    for m in members:
        await m.expect("chat", text="still down")

    cluster.redis.start()  # same port, with its data (append-only file)

    async def joined_after() -> bool:
        # a join refused while the nodes reconnect to Redis is retried, as a browser would
        probe = Member(cluster.node(2).ws_url, room, late_tokens["after"], "after", reconnect=False)
        try:
            await probe.start(timeout=5)
        except (AssertionError, TimeoutError):
            await probe.close()
            return False
        people.append(probe)
        probe.reconnect = True  # in: from now on a client like the others
        return True

    await wait_for(joined_after, 15, "a join after Redis is back", interval=0.3)
    newcomer = people[-1]
    for m in members:
        await m.sees({"after"})
    await ana.chat("all back")
    for m in (budi, citra):
        await m.expect("chat", text="all back")
    await seats_everywhere(cluster, room, {"ana", "budi", "citra", "after"})
    await asyncio.sleep(2 * NODE_TTL)  # a few heartbeats later nothing has moved
    await seats_everywhere(cluster, room, {"ana", "budi", "citra", "after"})
    # the meeting went on: nobody was sent away to join again
    # (nor the newcomer: a live owner's room is not taken over because its record lapsed while
    # Redis was down)
    assert [(m.identity, m.closes) for m in [*members, newcomer] if len(m.joins) != 1] == []


async def test_drain_moves_new_rooms_away_and_keeps_meetings(
    fresh_nodes: Cluster, people: list[Any], room: str
) -> None:
    cluster = fresh_nodes
    drained = cluster.nodes[1]
    ana = Member(drained.ws_url, room, await cluster.token(1, room, "ana"), "ana")  # claims: node 1 owns it
    budi = Member(cluster.node(0).ws_url, room, await cluster.token(0, room, "budi"), "budi")
    people += [ana, budi]
    await ana.start()
    await budi.start()
    await ana.sees({"budi"})
    await wait_for(lambda: _rooms(cluster, 0, drained.node_id, 1), 3 * NODE_TTL, "node-b serves the room")

    done = cluster.confctl(0, "node", "drain", drained.node_id)
    assert done.returncode == 0, done.stdout + done.stderr
    await wait_for(lambda: cluster.readyz(1) == 503, 5, "/readyz 503 on the drained node")
    assert cluster.readyz(0) == 200 and cluster.readyz(2) == 200

    def listed_states() -> dict[str, str]:
        listed = cluster.confctl(2, "--json", "node", "list")
        assert listed.returncode == 0, listed.stderr
        return {n["id"]: n["state"] for n in json.loads(listed.stdout)["nodes"]}

    # the list reads the nodes' records, which say "draining" from the drained node's next heartbeat
    drained_at = time.monotonic()
    await wait_for(
        lambda: listed_states().get("node-b") == "draining", NODE_TTL, "node-b draining in the list"
    )
    print(f"confctl node list shows draining {time.monotonic() - drained_at:.2f} s after /readyz said 503")
    assert listed_states() == {"node-a": "active", "node-b": "draining", "node-c": "active"}
    table = cluster.confctl(0, "node", "list").stdout
    assert "draining" in table and drained.node_id in table

    # a new room joined through the drained node lives elsewhere
    other = room + "-new"
    carol = MediaMember(drained.ws_url, other, await cluster.token(1, other, "carol"), "carol")
    people.append(carol)
    await carol.join()
    await wait_for(lambda: offers(carol), 10, "carol's subscribe offer")
    assert owner_by_media(cluster, offers(carol)) is not drained

    async def counted_elsewhere() -> bool:
        rooms = {n["id"]: n["rooms"] for n in await cluster.node_list(2)}
        return bool(rooms["node-a"] + rooms["node-c"] == 1)

    await wait_for(counted_elsewhere, 3 * NODE_TTL, "the new room counted on another node")
    after = {n["id"]: n for n in await cluster.node_list(2)}
    assert after[drained.node_id]["rooms"] == 1, after
    assert after["node-a"]["rooms"] + after["node-c"]["rooms"] == 1, after

    # the drained node's meeting goes on: chat both ways, and someone new joins it
    await ana.chat("still on")
    await budi.expect("chat", text="still on")
    await budi.chat("yes")
    await ana.expect("chat", text="yes")
    dewi = Member(cluster.node(2).ws_url, room, await cluster.token(2, room, "dewi"), "dewi")
    people.append(dewi)
    await dewi.start()
    await ana.sees({"dewi"})
    await seats_everywhere(cluster, room, {"ana", "budi", "dewi"})
    assert len(ana.joins) == 1 and len(budi.joins) == 1


async def _rooms(cluster: Cluster, via: int, node_id: str, rooms: int) -> bool:
    """``GET /api/v1/nodes`` through node ``via`` counts ``rooms`` rooms on ``node_id`` (the counts
    are those of the nodes' last heartbeats)."""
    return {n["id"]: n["rooms"] for n in await cluster.node_list(via)}.get(node_id) == rooms


async def test_a_relaying_node_killed_only_its_clients_reconnect(
    fresh_nodes: Cluster, people: list[Any], room: str
) -> None:
    cluster = fresh_nodes
    members = []
    for i, name in enumerate(("ana", "budi", "citra")):
        m = Member(entry(cluster, i), room, await cluster.token(i, room, name), name)
        people.append(m)
        await m.start()
        members.append(m)
    ana, budi, citra = members
    await ana.sees({"budi", "citra"})

    killed = time.monotonic()
    cluster.nodes[1].kill9()  # relays budi's session to node 0, which serves the room
    await budi.joined_times(2, 10)
    print(
        f"relaying node killed: budi joined again through another node after {time.monotonic() - killed:.1f} s"
    )
    assert budi.connected_to != cluster.nodes[1].ws_url
    for m in (ana, citra):
        await m.sees_session("budi", budi.sid)
    await budi.sees({"ana", "citra"})
    assert len(ana.joins) == 1 and len(citra.joins) == 1  # the meeting went on for them
    await budi.chat("back")
    for m in (ana, citra):
        await m.expect("chat", text="back")
    for i in (0, 2):  # the old session's seat is gone, the new one counted once
        assert {p["identity"] for p in await cluster.participants(i, room)} == {"ana", "budi", "citra"}
    await seats_on_live(cluster, room, 3)


async def seats_on_live(cluster: Cluster, room: str, count: int) -> None:
    for i, n in enumerate(cluster.nodes):
        if n.alive:
            assert await cluster.seat_count(i, room) == count
