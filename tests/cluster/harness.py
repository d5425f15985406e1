"""Real processes for the scenario suite: a redis-server and ``confserver`` nodes on loopback.

Every node runs on 127.0.0.1 with TLS off (allowed on a loopback host) or, in ``nodes-tls``, with
dev TLS (a CA and certificate of each node's own); all have the same API key and secret, and each
its own media UDP port and audit directory. ``Cluster`` is what a test gets: the nodes' URLs, the
admin API and ``confctl`` through any node, and join tokens minted by the real admin API. For the one-process set-ups every node index maps to the one process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis

from confserver.config import StoreConfig
from confserver.tokens import mint_admin_token
from tests.conftest import free_port, skip_or_fail

API_KEY = "AKclustertests01"
API_SECRET = "cluster-tests-secret-" + "c" * 24
BIN = Path(sys.executable).parent
NODE_TTL = 2  # seconds a node's heartbeat lives (the node-loss tests wait for it to lapse)
KINDS = ("single", "workers", "nodes", "nodes-tls")

# a server that knows the cluster settings; before they exist the env stays valid for it
_STORE_FIELDS = {f.name for f in dataclasses.fields(StoreConfig)}


def free_udp_ports(count: int) -> int:
    """A UDP port p with p .. p+count-1 free on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
        if port + count > 65535:
            continue
        socks = []
        try:
            for p in range(port, port + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return port
    raise AssertionError(f"no {count} adjacent free UDP ports")


@dataclass
class RedisServer:
    """A redis-server of the suite's own, with append-only persistence so that a restart keeps
    the service's state (as a production Redis would)."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            skip_or_fail("redis-server is not installed (apt-get install redis-server)")
            raise AssertionError("unreachable")
        for _ in range(5):
            self.port = self.port or free_port()
            self.proc = subprocess.Popen(
                [binary, "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                 "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)],
                cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
            deadline = time.monotonic() + 10
            try:
                while self.proc.poll() is None and time.monotonic() < deadline:
                    try:
                        if client.ping():
                            return
                    except redis.exceptions.RedisError:
                        time.sleep(0.05)
            finally:
                client.close()
            self.kill()
            self.port = 0
        raise AssertionError("redis-server did not start on a free loopback port")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass
class Node:
    """One ``confserver`` process."""

    index: int
    node_id: str
    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    udp_port: int = 0
    tls: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/ws"

    @property
    def cacert(self) -> Path:
        """The dev CA this node made (``tls``)."""
        return self.workdir / f"certs-{self.node_id}" / "ca.pem"

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.cacert)) if self.tls else None

    @property
    def log(self) -> Path:
        return self.workdir / f"confserver-{self.node_id}.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONF_")}
        env.update(self.env, CONF_SERVER_PORT=str(self.port))
        exe = BIN / "confserver"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "confserver.main"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"confserver {self.node_id} exited: {self.tail()}")
            try:
                with urllib.request.urlopen(
                    self.url + "/readyz", timeout=1, context=self.ssl_context()
                ) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"confserver {self.node_id} not ready in {timeout} s: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL, as a crashed machine: the process leaves nothing tidy behind. Its media
        workers (children) are killed too."""
        if self.proc is None:
            return
        for pid in _children(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None:
            return
        children = _children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in children:  # media workers left behind by a server that did not stop them
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry.name))
    return out


class ApiError(AssertionError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Cluster:
    """One service: one process (``single``, ``workers``) or three nodes on one Redis (``nodes``)."""

    kind: str
    workdir: Path
    nodes: list[Node]
    redis: RedisServer | None = None
    cluster_secret: str = ""
    """``store.cluster_secret`` as configured (empty: derived from the API secret)."""

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def size(self) -> int:
        """How many distinct entry points a scenario spreads its participants over (3 for every
        set-up: in the one-process set-ups they are all the same process)."""
        return 3

    def node(self, i: int) -> Node:
        return self.nodes[i % len(self.nodes)]

    def url(self, i: int) -> str:
        return self.node(i).url

    @property
    def multi(self) -> bool:
        return len(self.nodes) > 1

    # --- admin API ----------------------------------------------------------------------------

    @staticmethod
    def admin_headers() -> dict[str, str]:
        return {"Authorization": "Bearer " + mint_admin_token(API_KEY, API_SECRET, now=time.time())}

    async def api(
        self, i: int, method: str, path: str, body: dict[str, Any] | None = None, *, ok: bool = True
    ) -> tuple[int, Any]:
        """``method`` ``/api/v1`` + ``path`` on node ``i``; with ``ok`` a status >= 400 fails."""
        async with (
            client_session() as session,
            session.request(
                method,
                self.url(i) + "/api/v1" + path,
                json=body,
                headers=self.admin_headers(),
                timeout=aiohttp.ClientTimeout(total=15),
            ) as resp,
        ):
            raw = await resp.read()
            data = json.loads(raw) if raw else None
            if ok and resp.status >= 400:
                raise ApiError(resp.status, data)
            return resp.status, data

    async def create_room(self, i: int, name: str, **fields: Any) -> dict[str, Any]:
        _, body = await self.api(i, "POST", "/rooms", {"name": name, **fields})
        return body  # type: ignore[no-any-return]

    async def mint(
        self, i: int, room: str, identity: str, role: str = "participant", **kw: Any
    ) -> dict[str, Any]:
        """A join token from node ``i``'s admin API: {token, jti, expires_at, join_url}."""
        _, body = await self.api(
            i, "POST", "/tokens", {"room": room, "identity": identity, "role": role, "ttl": 3600, **kw}
        )
        return body  # type: ignore[no-any-return]

    async def token(self, i: int, room: str, identity: str, role: str = "participant") -> str:
        return str((await self.mint(i, room, identity, role))["token"])

    async def participants(self, i: int, room: str) -> list[dict[str, Any]]:
        status, body = await self.api(i, "GET", f"/rooms/{room}/participants", ok=False)
        if status == 404:
            return []
        if status >= 400:
            raise ApiError(status, body)
        return list(body["participants"])

    async def seat_count(self, i: int, room: str) -> int:
        status, body = await self.api(i, "GET", f"/rooms/{room}", ok=False)
        if status == 404:
            return 0
        if status >= 400:
            raise ApiError(status, body)
        return int(body["num_participants"])

    async def node_list(self, i: int = 0) -> list[dict[str, Any]]:
        _, body = await self.api(i, "GET", "/nodes")
        return list(body["nodes"])

    def confctl(self, i: int, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONF_")}
        env.update(
            CONF_URL=self.url(i), CONF_API_KEY=API_KEY, CONF_API_SECRET=API_SECRET, HOME=str(self.workdir)
        )
        if self.node(i).tls:  # confctl checks the certificate: against the node's own dev CA
            env["CONF_CACERT"] = str(self.node(i).cacert)
        return subprocess.run(
            [str(BIN / "confctl"), *args], env=env, cwd=self.workdir, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def readyz(self, i: int) -> int:
        try:
            with urllib.request.urlopen(
                self.url(i) + "/readyz", timeout=3, context=self.node(i).ssl_context()
            ) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    def stop(self) -> None:
        for n in self.nodes:
            try:
                n.stop()
            except Exception:  # teardown goes on: every process must go
                if n.proc is not None:
                    n.proc.kill()
        if self.redis is not None:
            self.redis.kill()


def _node_env(workdir: Path, node_id: str, extra: dict[str, str]) -> dict[str, str]:
    env = {
        "CONF_TLS_MODE": "off",
        "CONF_SERVER_HOST": "127.0.0.1",
        "CONF_METRICS_ENABLED": "false",
        "CONF_AUTH_CREDENTIALS_FILE": str(workdir / "credentials.json"),
        "CONF_AUTH_API_KEY": API_KEY,
        "CONF_AUTH_API_SECRET": API_SECRET,
        "CONF_AUDIT_DIR": str(workdir / f"audit-{node_id}"),  # one writer per directory
        "CONF_AUDIT_KEY_FILE": str(workdir / "audit-key.pem"),
        "CONF_LOG_LEVEL": "info",
        "CONF_LOG_FORMAT": "json",
        "CONF_ROOMS_AUTO_CREATE": "true",
        "CONF_SFU_ENABLED": "true",
        "CONF_SFU_BIND_ADDRESSES": "127.0.0.1",
        # the exact-cap scenario opens 1,000 connections from 127.0.0.1 at once
        "CONF_SIGNALING_MAX_UNJOINED": "5000",
        "CONF_SIGNALING_MAX_UNJOINED_PER_ADDRESS": "5000",
        "CONF_SERVER_MAX_CONNECTIONS_PER_ADDRESS": "5000",
        "CONF_SIGNALING_JOIN_TIMEOUT": "30",
        "CONF_SIGNALING_NODE_ID": node_id,
    }
    env.update(extra)
    return env


def start_cluster(kind: str, workdir: Path, extra_env: dict[str, str] | None = None) -> Cluster:
    """Start a set-up and wait until every node answers ``/readyz``; on failure everything started
    is stopped."""
    extra = dict(extra_env or {})
    cluster = Cluster(kind, workdir, [])
    try:
        if kind in ("single", "workers"):
            workers = 2 if kind == "workers" else 1
            udp = free_udp_ports(workers)
            env = _node_env(workdir, f"{kind}-0", {
                "CONF_STORE_KIND": "memory", "CONF_SFU_UDP_PORT": str(udp), "CONF_SFU_WORKERS": str(workers),
                **extra,
            })  # fmt: skip
            cluster.nodes.append(Node(0, f"{kind}-0", workdir, env, udp_port=udp))
        elif kind in ("nodes", "nodes-tls"):
            tls = kind == "nodes-tls"
            cluster.redis = RedisServer(workdir)
            cluster.redis.start()
            prefix = f"cl{secrets.token_hex(3)}:"
            if kind == "nodes-tls":
                cluster.cluster_secret = secrets.token_urlsafe(32)
            for i in range(3):
                node_id = f"node-{'abc'[i]}"
                udp = free_udp_ports(1)
                env = {
                    "CONF_STORE_KIND": "redis",
                    "CONF_STORE_REDIS_URL": cluster.redis.url,
                    "CONF_STORE_PREFIX": prefix,
                    "CONF_SFU_UDP_PORT": str(udp),
                }
                if "node_ttl" in _STORE_FIELDS:
                    env["CONF_STORE_NODE_TTL"] = str(NODE_TTL)
                if "seat_lease" in _STORE_FIELDS:
                    env["CONF_STORE_SEAT_LEASE"] = "30"
                if tls:  # dev TLS, a CA and certificate of each node's own, and a cluster secret set
                    env["CONF_TLS_MODE"] = "dev"
                    env["CONF_TLS_DEV_DIR"] = str(workdir / f"certs-{node_id}")
                    env["CONF_STORE_CLUSTER_SECRET"] = cluster.cluster_secret
                env.update(extra)
                cluster.nodes.append(
                    Node(i, node_id, workdir, _node_env(workdir, node_id, env), udp_port=udp, tls=tls)
                )
        else:
            raise ValueError(kind)
        for n in cluster.nodes:
            n.start()
        for n in cluster.nodes:
            n.wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def client_session() -> aiohttp.ClientSession:
    """A session for the test's clients: no pool limit (a test opens 1,000 sockets at once) and no
    certificate check (the nodes' dev certificates; ``confctl`` checks them, with each node's CA)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=False))


async def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what} (last: {last!r})")
        await asyncio.sleep(interval)
