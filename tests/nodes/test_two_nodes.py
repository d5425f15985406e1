"""Two nodes in one process on one real redis-server: relay, forwarded admin calls, drain, and
node-to-node requests without the cluster secret. (tests/cluster runs separate processes.)"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer

from confserver.app import create_app
from confserver.cluster import auth
from confserver.cluster.registry import RedisRegistry
from confserver.cluster.routes import CLUSTER
from confserver.config import ConfigError, ServerConfig, SignalingConfig, StoreConfig, load_config
from confserver.metrics import Metrics
from confserver.store.redis import RedisStore

from ..conftest import CREDS, Ws, admin_headers, base_config, free_port, join_token


@dataclass
class Node:
    server: TestServer
    metrics: Metrics

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[list[Node]]:
    prefix = f"two{secrets.token_hex(4)}:"
    out: list[Node] = []
    for name in ("a", "b"):
        port = free_port()
        cfg = base_config(
            server=ServerConfig(port=port),
            store=StoreConfig(kind="redis", redis_url=redis_url, prefix=prefix, node_ttl=3.0),
            signaling=SignalingConfig(heartbeat_interval=5.0, join_timeout=5.0, node_id=f"node-{name}"),
        )
        metrics = Metrics.create(process=False)
        app = create_app(
            cfg,
            store=RedisStore.from_url(redis_url, prefix=prefix),
            credentials=CREDS,
            metrics=metrics,
            registry=RedisRegistry.from_url(redis_url, prefix=prefix),
        )
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server()
        out.append(Node(server, metrics))
    yield out
    for node in reversed(out):
        await node.server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def joined(
    http: aiohttp.ClientSession, node: Node, room: str, identity: str
) -> tuple[Ws, dict[str, Any]]:
    ws = Ws(await http.ws_connect(node.url + "/ws"))
    await ws.send({"type": "join", "token": join_token(room, identity), "room": room})
    msg = await ws.recv()
    assert msg["type"] == "joined", msg
    return ws, msg


async def test_a_session_through_the_other_node_joins_the_same_meeting(
    nodes: list[Node], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    ana, _ = await joined(http, a, "cabinet", "ana")
    bob, hello = await joined(http, b, "cabinet", "bob")
    assert [p["identity"] for p in hello["participants"]] == ["ana"]
    await ana.expect("participant_joined")
    await bob.send({"type": "chat", "text": "hello across"})
    assert (await ana.expect("chat"))["text"] == "hello across"
    await ana.send({"type": "chat", "text": "just you", "to": "bob"})
    await bob.expect("chat", text="just you")
    assert b.server.app[CLUSTER].relayed == 1
    await a.server.app[CLUSTER].heartbeat()
    assert a.metrics.cluster_rooms._value.get() == 1
    assert b.metrics.cluster_rooms._value.get() == 0

    # the admin API of the node that does not serve the room acts on it
    resp = await http.get(b.url + "/api/v1/rooms/cabinet/participants", headers=admin_headers())
    assert sorted(p["identity"] for p in (await resp.json())["participants"]) == ["ana", "bob"]
    resp = await http.delete(b.url + "/api/v1/rooms/cabinet/participants/ana", headers=admin_headers())
    assert resp.status == 204
    assert (await ana.expect("kicked"))["reason"] == "removed"
    assert await ana.closed() == 4001
    assert (await bob.expect("participant_left"))["identity"] == "ana"

    # a token revoked through the node that serves the room closes the relayed session
    bob2_token = join_token("cabinet", "carl")
    carl = Ws(await http.ws_connect(b.url + "/ws"))
    await carl.send({"type": "join", "token": bob2_token})
    await carl.expect("joined")
    jti = jwt.decode(bob2_token, options={"verify_signature": False})["jti"]
    resp = await http.post(a.url + f"/api/v1/tokens/{jti}/revoke", headers=admin_headers())
    assert (await resp.json())["sessions_closed"] == 1
    assert await carl.closed() == 4001
    await bob.send({"type": "leave"})
    assert await bob.closed() == 1000


async def test_room_end_through_the_other_node_closes_everyone(
    nodes: list[Node], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    ana, _ = await joined(http, a, "ended", "ana")
    bob, _ = await joined(http, b, "ended", "bob")
    resp = await http.delete(b.url + "/api/v1/rooms/ended", headers=admin_headers())
    assert resp.status == 204
    assert await ana.closed() == 4002
    assert await bob.closed() == 4002  # the owner's close code reaches the relayed client unchanged


async def test_relay_requests_without_the_cluster_secret_are_refused(
    nodes: list[Node], http: aiohttp.ClientSession
) -> None:
    a, _ = nodes
    path = "/cluster/v1/ws"
    forged = auth.sign(auth.cluster_key("", "t" * 43), "node-b", "GET", path, time.time())
    for headers in ({}, {auth.HEADER: "node=x;ts=1;sig=" + "0" * 64}, {auth.HEADER: forged}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await http.ws_connect(a.url + path, headers=headers)
        assert e.value.status == 403
    resp = await http.post(a.url + "/cluster/v1/disconnect", data="jti", headers={auth.HEADER: forged})
    assert resp.status == 403
    resp = await http.get(
        a.url + "/api/v1/rooms/x/participants", headers={**admin_headers(), auth.HEADER: forged}
    )
    assert (resp.status, (await resp.json())["error"]) == (403, "cluster_auth_failed")
    failures = a.metrics.cluster_auth_failures
    assert failures.labels("missing")._value.get() == 1
    assert failures.labels("bad_signature")._value.get() == 3


async def test_a_node_that_does_not_serve_the_room_refuses_a_relayed_join(
    nodes: list[Node], http: aiohttp.ClientSession
) -> None:
    """A relay sent to the wrong node (a stale view of who serves the room) is answered
    ``try_again`` and 1013: the meeting is never served in two places."""
    a, b = nodes
    ana, _ = await joined(http, a, "owned", "ana")
    cluster = a.server.app[CLUSTER]
    ws = Ws(
        await http.ws_connect(
            b.url + "/cluster/v1/ws", headers=cluster.signed("GET", "/cluster/v1/ws", "10.0.0.9")
        )
    )
    await ws.send({"type": "join", "token": join_token("owned", "mallory")})
    assert (await ws.expect("error"))["code"] == "try_again"
    assert await ws.closed() == 1013
    resp = await http.get(a.url + "/api/v1/rooms/owned/participants", headers=admin_headers())
    assert [p["identity"] for p in (await resp.json())["participants"]] == ["ana"]
    await ana.close()


async def test_a_draining_node_sends_new_rooms_elsewhere_and_is_not_ready(
    nodes: list[Node], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    before, _ = await joined(http, b, "before", "ana")  # a meeting b serves already
    resp = await http.post(a.url + "/api/v1/nodes/node-b/drain", headers=admin_headers())
    assert (resp.status, await resp.json()) == (200, {"id": "node-b", "draining": True})
    await b.server.app[CLUSTER].heartbeat()  # b learns it at its next heartbeat
    assert (await http.get(b.url + "/readyz")).status == 503
    assert (await http.get(a.url + "/readyz")).status == 200
    newcomer, _ = await joined(http, b, "after", "bob")
    assert b.server.app[CLUSTER].relayed == 1  # served by a, relayed through b
    await before.send({"type": "chat", "text": "still here"})
    assert (await before.expect("chat"))["text"] == "still here"
    listing = await (await http.get(a.url + "/api/v1/nodes", headers=admin_headers())).json()
    assert {n["id"]: n["state"] for n in listing["nodes"]} == {"node-a": "active", "node-b": "draining"}
    resp = await http.delete(a.url + "/api/v1/nodes/node-b/drain", headers=admin_headers())
    assert resp.status == 200
    await b.server.app[CLUSTER].heartbeat()
    assert (await http.get(b.url + "/readyz")).status == 200
    assert (await http.post(a.url + "/api/v1/nodes/nobody/drain", headers=admin_headers())).status == 404
    await before.close()
    await newcomer.close()


async def test_when_the_serving_node_stops_relayed_clients_are_told_to_reconnect(
    nodes: list[Node], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    ana, _ = await joined(http, a, "moving", "ana")
    bob, _ = await joined(http, b, "moving", "bob")
    await a.server.close()
    assert await ana.closed() in (1001, 1006)  # the test server drops connections as it stops
    assert await bob.closed() in (1001, 1013)  # a's shutdown close, or the broken relay
    # a gave its rooms up as it stopped: b takes the meeting at once
    again, hello = await joined(http, b, "moving", "bob")
    assert hello["participants"] == []
    assert b.server.app[CLUSTER].relayed == 0
    await again.close()


def test_config_refuses_a_short_cluster_secret() -> None:
    with pytest.raises(ConfigError, match=r"store\.cluster_secret"):
        load_config(env={"CONF_STORE_CLUSTER_SECRET": "short"})
    with pytest.raises(ConfigError, match=r"store\.node_ttl"):
        load_config(env={"CONF_STORE_NODE_TTL": "0"})


@pytest.mark.parametrize("bad", ["%ED%A0%80", "%FF", "a" * 3000, "%00x", "%F0%9F%98%80" * 40])
async def test_garbage_room_names_on_the_other_node_get_a_clear_error(
    nodes: list[Node], http: aiohttp.ClientSession, bad: str
) -> None:
    a, b = nodes
    ana, _ = await joined(http, a, "real", "ana")
    for method, suffix in (("GET", "/participants"), ("DELETE", ""), ("PATCH", ""), ("GET", "/lobby")):
        resp = await http.request(
            method, f"{b.url}/api/v1/rooms/{bad}{suffix}", headers=admin_headers(), json={}
        )
        assert 400 <= resp.status < 500, (method, resp.status, await resp.text())
        assert "error" in await resp.json()
    resp = await http.get(b.url + "/api/v1/rooms/real/participants", headers=admin_headers())
    assert [p["identity"] for p in (await resp.json())["participants"]] == ["ana"]
    await ana.close()


def test_config_refuses_a_node_id_the_signatures_cannot_carry() -> None:
    with pytest.raises(ConfigError, match=r"signaling\.node_id"):
        load_config(env={"CONF_SIGNALING_NODE_ID": "node a;ts=1"})
    assert load_config(env={"CONF_SIGNALING_NODE_ID": "node-a.1_x"}).signaling.node_id == "node-a.1_x"
