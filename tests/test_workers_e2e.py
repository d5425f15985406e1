"""The ``confserver`` process with two media workers (``sfu.workers = 2``), as an operator runs
it: real aiortc peers join through ``/ws`` and exchange media that they decode; one worker is
killed with SIGKILL, and media is back within 5 s while nobody leaves the meeting."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.workers import worker_pids
from confserver.contract import MediaMessage, PublishOffer, ServiceError

from .conftest import free_port
from .sfu.peers import Peer, wait_until
from .test_e2e_server import Server, _get, start_server, ws_join

MEDIA_TYPES = {
    "publish_answer", "publish_layers", "subscribe_offer", "ice_candidate", "track_published",
    "track_unpublished", "track_muted", "track_map", "speakers", "media_reset",
}  # fmt: skip


def free_udp_pair() -> int:
    """A UDP port p with p + 1 free too (on 127.0.0.1)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            if port >= 65535:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                    second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two adjacent free UDP ports")


class WsMedia:
    """What ``Peer`` drives (``MediaController``'s calls), carried over a real signaling WebSocket:
    media messages from the server go to the peer, the rest is kept in ``signaling``."""

    def __init__(self, srv: Server, token: str) -> None:
        self._srv = srv
        self._token = token
        self.signaling: list[dict[str, Any]] = []
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def participant_joined(
        self, room: str, sid: str, permissions: Any, send: Any, identity: str = ""
    ) -> None:
        self._session, self._ws, joined = await ws_join(self._srv, self._token, room)
        assert joined["type"] == "joined", joined
        self.signaling.append(joined)
        self._reader = asyncio.create_task(self._read(send))

    async def _read(self, send: Any) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            msg = json.loads(frame.data)
            if msg["type"] in MEDIA_TYPES:
                send(msg)
            else:
                self.signaling.append(msg)
            if msg["type"] == "publish_answer" or (
                msg["type"] == "error" and msg.get("ref") == "publish_offer"
            ):
                self._answers.put_nowait(msg)

    async def handle(self, room: str, sid: str, message: MediaMessage) -> None:
        assert self._ws is not None
        await self._ws.send_json(message.to_json())
        if isinstance(message, PublishOffer):  # the peer reads the answer right after this call
            answer = await asyncio.wait_for(self._answers.get(), 10)
            if answer["type"] == "error":
                raise ServiceError(answer["code"], answer["message"])

    async def chat(self, text: str) -> None:
        assert self._ws is not None
        await self._ws.send_json({"type": "chat", "text": text})

    async def participant_left(self, room: str, sid: str) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._session is not None:
            await self._session.close()


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Server]:
    udp = free_udp_pair()
    srv = start_server(
        tmp_path, free_port(), free_port(),
        {"CONF_SFU_WORKERS": "2", "CONF_SFU_UDP_PORT": str(udp), "CONF_SFU_BIND_ADDRESSES": "127.0.0.1"},
    )  # fmt: skip
    srv.udp_port = udp  # type: ignore[attr-defined]
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()


def sample(metrics: str, name: str, labels: Mapping[str, str]) -> float | None:
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "} "
    for line in metrics.splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    return None


def announced(peer: Peer, owner: str) -> list[str]:
    """The ids of ``owner``'s video tracks announced to ``peer`` since its last ``media_reset``."""
    resets = [i for i, m in enumerate(peer.messages) if m["type"] == "media_reset"]
    since = peer.messages[resets[-1] + 1 if resets else 0 :]
    return [m["track"]["id"] for m in since if m["type"] == "track_published"
            and m["track"]["kind"] == "video" and m["track"]["identity"] == owner]  # fmt: skip


async def decodes(viewer: Peer, owner_identity: str, frames: int, timeout: float) -> None:
    await wait_until(lambda: announced(viewer, owner_identity), timeout, what="announced")
    track = announced(viewer, owner_identity)[-1]
    await viewer.subscribe(track)
    await wait_until(
        lambda: (r := viewer.video_for(track)) is not None and r.frames >= frames, timeout, what="decoded"
    )


async def test_two_workers_forward_media_and_a_killed_worker_loses_nobody(two_workers: Server) -> None:
    srv = two_workers
    udp = srv.udp_port  # type: ignore[attr-defined]
    assert f"UDP ports {udp}-{udp + 1}, one per media worker (2 workers)" in srv.banner
    pids = worker_pids(srv.proc.pid)
    assert sorted(pids) == [0, 1]
    tokens = {
        who: srv.confctl_json("token", "create", "--room", "board", "--identity", who, "--ttl", "15m")[
            "token"
        ]
        for who in ("alice", "bob")
    }
    links = {who: WsMedia(srv, token) for who, token in tokens.items()}
    alice, bob = (Peer(links[who], "board", who) for who in ("alice", "bob"))  # type: ignore[arg-type]
    alice.identity, bob.identity = "alice", "bob"
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=(320, 240), audio=True)
        await decodes(bob, "alice", 10, 15)

        metrics = await _get(f"http://127.0.0.1:{srv.metrics_port}/metrics")
        worker = next(
            i for i in (0, 1) if sample(metrics, "conf_media_worker_rooms", {"worker": str(i)}) == 1.0
        )
        killed = time.monotonic()
        os.kill(pids[worker], signal.SIGKILL)
        await wait_until(lambda: alice.resets == 1 and bob.resets == 1, 5, what="both told")
        await alice.publish(video=(320, 240), audio=True)
        await decodes(bob, "alice", 5, 5)
        back = time.monotonic() - killed
        assert back < 5.0, f"media back after {back:.1f} s"
        print(f"media back {back:.2f} s after SIGKILL of worker {worker}")

        await links["alice"].chat("still here")
        await wait_until(lambda: any(m["type"] == "chat" for m in links["bob"].signaling), 5, what="chat")
        for link in links.values():
            assert not [m for m in link.signaling if m["type"] in ("participant_left", "kicked", "bye")]
        await wait_until(lambda: len(worker_pids(srv.proc.pid)) == 2, 10, what="worker restarted")
        assert worker_pids(srv.proc.pid)[worker] != pids[worker]
        metrics = await _get(f"http://127.0.0.1:{srv.metrics_port}/metrics")
        assert sample(metrics, "conf_media_worker_restarts_total", {"worker": str(worker)}) == 1.0
        assert sample(metrics, "conf_media_worker_rooms", {"worker": str(1 - worker)}) == 1.0
        assert "conf_participants 2.0" in metrics
    finally:
        await alice.close()
        await bob.close()
        for link in links.values():
            await link.close()
    srv.stop()
    assert worker_pids(srv.proc.pid) == {}
