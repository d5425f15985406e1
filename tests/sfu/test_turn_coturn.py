"""TURN with a real coturn on loopback: the credentials the SFU hands to clients (coturn's
use-auth-secret scheme) are accepted, a wrong secret is refused, and media flows through the
relay when clients may use nothing else."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint
from aiortc import RTCIceServer

from confserver.config import IceServerConfig
from sfu.controller import SfuController
from sfu.turn import turn_credentials

from ..conftest import free_port, skip_or_fail
from .conftest import LOOPBACK_SFU
from .peers import Peer, wait_until
from .test_forwarding import close_all, video_track_of

SECRET = "coturn-shared-secret-for-tests"


@dataclass
class Coturn:
    port: int
    url: str


def _udp_port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    binary = shutil.which("turnserver")
    if binary is None:
        skip_or_fail("coturn is not installed (apt-get install coturn)")
        raise AssertionError("unreachable")
    port = free_port()
    while not _udp_port_free(port):
        port = free_port()
    relay_min = 50000 + (port % 1000) * 10
    proc = subprocess.Popen(
        [
            binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
            "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=conf.test",
            "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--no-tcp-relay",
            f"--min-port={relay_min}", f"--max-port={relay_min + 9}",
            f"--pidfile={tmp_path / 'turn.pid'}", "--log-file=stdout", "--simple-log",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    try:
        if proc.poll() is not None:
            pytest.fail(f"turnserver exited with {proc.returncode}")
        yield Coturn(port, f"turn:127.0.0.1:{port}?transport=udp")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _allocate(server: Coturn, username: str, password: str) -> tuple[str, int]:
    for _ in range(20):  # coturn may take a moment to open its listener
        try:
            transport, _protocol = await create_turn_endpoint(
                asyncio.DatagramProtocol, ("127.0.0.1", server.port), username, password
            )
        except (ConnectionRefusedError, TimeoutError, OSError):
            await asyncio.sleep(0.2)
            continue
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        transport.close()
        return relayed
    raise AssertionError("coturn never answered")


def _sfu_with(server: Coturn, secret: str = SECRET) -> SfuController:
    return SfuController(
        replace(LOOPBACK_SFU, ice_servers=(IceServerConfig(urls=(server.url,)),), turn_secret=secret)
    )


async def test_coturn_accepts_the_credentials_the_sfu_hands_out(coturn: Coturn) -> None:
    sfu = _sfu_with(coturn)
    try:
        [entry] = sfu.ice_servers("ana@example.gov")
        assert entry["urls"] == [coturn.url]
        expiry, identity = entry["username"].split(":", 1)
        assert identity == "ana@example.gov" and int(expiry) > time.time()
        host, port = await _allocate(coturn, entry["username"], entry["credential"])
        assert host == "127.0.0.1" and port > 0
    finally:
        await sfu.close()


async def test_coturn_refuses_a_wrong_secret_and_an_expired_credential(coturn: Coturn) -> None:
    await _allocate(coturn, *turn_credentials(SECRET, "warmup", now=time.time(), ttl=60))  # coturn is up
    forged = turn_credentials("not-the-secret", "mallory", now=time.time(), ttl=3600)
    with pytest.raises(TransactionFailed):
        await _allocate(coturn, *forged)
    expired = turn_credentials(SECRET, "ana", now=time.time() - 7200, ttl=3600)
    with pytest.raises(TransactionFailed):
        await _allocate(coturn, *expired)


async def test_media_flows_through_the_turn_relay_with_relay_only_clients(coturn: Coturn) -> None:
    sfu = _sfu_with(coturn)

    def relay_peer(name: str) -> Peer:
        [entry] = sfu.ice_servers(f"id-{name}")
        ice = [RTCIceServer(urls=entry["urls"], username=entry["username"], credential=entry["credential"])]
        return Peer(sfu, "turn", name, ice_servers=ice, relay_only=True)

    alice, bob = relay_peer("alice"), relay_peer("bob")
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=(320, 240), audio=False)
        await bob.expect("track_published")
        video_id = video_track_of(bob, "alice")
        await bob.subscribe(video_id, max_width=320, max_height=240)
        await wait_until(
            lambda: (r := bob.video_for(video_id)) is not None and r.frames >= 5, 20, what="video via TURN"
        )
        pc = bob.subscribe_pc
        assert pc is not None
        connection = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection
        assert [c.type for c in connection.local_candidates] == ["relay"]
        pair = connection._nominated.get(1)
        assert pair is not None and pair.local_candidate.type == "relay"
    finally:
        await close_all(alice, bob)
        await sfu.close()
