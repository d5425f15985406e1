"""How long a meeting is gone when the node serving it dies.

Three confserver nodes on one redis-server; three synthetic participants of the load tool
(VP8 + Opus each, publishing and receiving), each connected through a different node. Each round
kills the node serving the room with SIGKILL; every participant that loses its session joins
again through the next live node, as the browser does (backoff 0.3 s), until the room is taken
over once the dead node's heartbeat lapsed (``store.node_ttl``). Measured per participant: from
the kill to its first media packet after it joined again. The killed node is started again
before the next round.

    python -m bench.failover --rounds 5 --node-ttl 3
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path

import aiohttp

from bench.server import Server, start, start_redis
from confctl.loadtest.clips import build
from confctl.loadtest.participant import Environment, Participant
from confctl.loadtest.plan import Options, Role
from confctl.loadtest.rawmedia import Pacer
from confctl.loadtest.signaling import tls_context
from confserver.tokens import SigningKey, mint_join_token

API_KEY = "AKbenchfailover1"
API_SECRET = "f" * 43
ROOM = "failover"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Cluster:
    def __init__(self, redis_port: int, certs: Path, ttl: float) -> None:
        self.env = {
            "CONF_STORE_KIND": "redis",
            "CONF_STORE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "CONF_STORE_NODE_TTL": str(ttl),
            "CONF_AUTH_API_KEY": API_KEY,
            "CONF_AUTH_API_SECRET": API_SECRET,
            "CONF_TLS_DEV_DIR": str(certs),
        }
        self.nodes: list[Server] = []
        self.started = 0

    def start_node(self) -> Server:
        self.started += 1
        node = start({**self.env, "CONF_SIGNALING_NODE_ID": f"node-{self.started}"})
        self.nodes.append(node)
        return node

    def live(self) -> list[Server]:
        return [n for n in self.nodes if n.proc.poll() is None]

    async def owner(self, http: aiohttp.ClientSession, ca: str) -> Server:
        """The node that says it serves the room."""
        from confctl.client import mint_admin_token

        headers = {"Authorization": "Bearer " + mint_admin_token(API_KEY, API_SECRET)}
        node = self.live()[0]
        async with http.get(
            f"https://127.0.0.1:{node.port}/api/v1/nodes", headers=headers, ssl=tls_context(ca)
        ) as resp:
            listing = await resp.json()
        serving = [n["id"] for n in listing["nodes"] if n["rooms"] > 0 and n["state"] == "active"]
        for candidate in self.live():
            if f"node-{self.nodes.index(candidate) + 1}" in serving:
                return candidate
        raise RuntimeError(f"no node serves the room yet: {listing}")


class Member:
    """One participant that joins again after losing its session."""

    def __init__(self, index: int, envs: list[Environment], token: str) -> None:
        self.role = Role(
            index, f"fo-{index}", video=True, audio=True, speaker=True, subscribe=True, decode=False
        )
        self.envs = envs
        self.token = token
        self.node = index
        self.current: Participant | None = None
        self.task: asyncio.Task[None] | None = None

    async def keep_joining(self, live: list[int]) -> None:
        while True:
            env = self.envs[self.node]
            self.current = Participant(self.role, self.token, env)
            await self.current.run()
            await self.current.close()
            self.node = next((i for i in live if i != self.node), live[0]) if live else self.node
            await asyncio.sleep(0.3)


async def run(ns: argparse.Namespace, cluster: Cluster, work: Path) -> list[float]:
    back: list[float] = []
    ca = str(work / "certs" / "ca.pem")
    options = Options(room=ROOM, video_publishers=3, audio_publishers=3, subscribers=3, metrics_url=None)
    clips = build(video=True, simulcast=False, speech=True, quiet=False)
    pacer = Pacer()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        slots = list(cluster.nodes)  # the participants' node i is slots[i]
        ports = [n.port for n in slots]
        envs = [
            Environment(http, f"wss://127.0.0.1:{p}/ws", tls_context(ca), options, clips, pacer)
            for p in ports
        ]
        key = SigningKey.hs256(API_KEY, API_SECRET)
        members = []
        for i in range(3):
            token, _ = mint_join_token(
                key,
                room=ROOM,
                identity=f"fo-{i}",
                now=time.time(),
                ttl=3600,
                permissions=frozenset({"publish_audio", "publish_video", "subscribe"}),
            )
            members.append(Member(i, envs, token))
        live_indexes = [0, 1, 2]
        for m in members:
            m.task = asyncio.create_task(m.keep_joining(live_indexes))
            await asyncio.sleep(0.5)
        for round_ in range(ns.rounds):
            await asyncio.sleep(ns.settle)
            owner = await cluster.owner(http, ca)
            index = slots.index(owner)
            killed = time.monotonic()
            owner.proc.send_signal(signal.SIGKILL)
            owner.proc.wait()
            live_indexes.remove(index)
            got: dict[int, float] = {}
            deadline = killed + ns.node_ttl + 30
            while len(got) < 3 and time.monotonic() < deadline:
                for m in members:
                    p = m.current
                    if m.role.index in got or p is None or p.started_at is None or p.started_at < killed:
                        continue
                    if p.first_media_at is not None:
                        got[m.role.index] = p.first_media_at - killed
                await asyncio.sleep(0.05)
            print(
                f"round {round_ + 1}: killed {index}; media back after "
                + ", ".join(f"{t:.2f} s" for t in sorted(got.values()))
                + ("" if len(got) == 3 else f" ({3 - len(got)} never)"),
                flush=True,
            )
            back.extend(got.values())
            # the node comes back (new id, same port slot) for the next round
            replacement = cluster.start_node()
            slots[index] = replacement
            envs[index] = Environment(
                http, f"wss://127.0.0.1:{replacement.port}/ws", tls_context(ca), options, clips, pacer
            )
            live_indexes.append(index)
            live_indexes.sort()
        for m in members:
            if m.task is not None:
                m.task.cancel()
        for m in members:
            if m.current is not None:
                await m.current.close()
        await pacer.close()
    return back


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.failover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--node-ttl", type=float, default=3.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of meeting before each kill")
    ns = parser.parse_args(argv)
    redis, redis_port, work = start_redis("failover-")
    cluster = Cluster(redis_port, work / "certs", ns.node_ttl)
    try:
        for _ in range(3):
            cluster.start_node()
        back = asyncio.run(run(ns, cluster, work))
    finally:
        for node in cluster.nodes:
            node.stop()
        redis.kill()
        redis.wait()
    if back:
        print(
            f"store.node_ttl {ns.node_ttl:g} s: kill to media back, {len(back)} participants: "
            f"p50 {quantile(back, 0.5):.2f} s, p95 {quantile(back, 0.95):.2f} s, max {max(back):.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
