"""Network policy: the pinned aiortc version, TURN credentials, UDP port range, NAT 1:1, socket buffers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import socket
import time
from pathlib import Path
from typing import Any

import aiortc
import pylibsrtp
import pytest

from confserver.config import IceServerConfig
from confserver.errors import ServiceError
from sfu import glue, ports, udpmux
from sfu.controller import SfuController
from sfu.glue import gathering
from sfu.ports import PortRange
from tests.sfu.conftest import config
from tests.sfu.peers import Peer, wait_until
from tests.sfu.test_forwarding import video_track_of


def test_aiortc_is_exactly_the_version_the_glue_was_written_for() -> None:
    assert aiortc.__version__ == "1.16.0", (
        f"aiortc {aiortc.__version__} is installed; sfu/glue/ reaches into aiortc 1.16.0 internals. "
        "Re-check every seam in sfu/glue/ against the new version before changing the pin."
    )
    glue.check_versions()


def test_the_controller_refuses_to_start_on_another_pylibsrtp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pylibsrtp, "__version__", "1.1.0")
    with pytest.raises(RuntimeError, match=r"pylibsrtp==1\.0\.0"):
        SfuController(config())


def test_the_controller_refuses_to_start_on_another_aiortc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(RuntimeError, match=r"aiortc==1\.16\.0"):
        SfuController(config())


def test_turn_credentials_follow_coturns_rest_scheme() -> None:
    cfg = config(
        ice_servers=(
            IceServerConfig(urls=("stun:turn.example.gov:3478",)),
            IceServerConfig(urls=("turn:turn.example.gov:3478?transport=udp", "turns:turn.example.gov:5349")),
        ),
        turn_secret="s3cret",
        turn_credential_ttl=3600,
    )
    before = int(time.time())
    servers = SfuController(cfg).ice_servers("alice@example.gov")
    assert servers[0] == {"urls": ["stun:turn.example.gov:3478"]}
    turn = servers[1]
    assert turn["urls"] == ["turn:turn.example.gov:3478?transport=udp", "turns:turn.example.gov:5349"]
    expiry, identity = turn["username"].split(":", 1)
    assert identity == "alice@example.gov"
    assert before + 3600 <= int(expiry) <= int(time.time()) + 3600
    expected = base64.b64encode(
        hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()
    ).decode()
    assert turn["credential"] == expected


def test_static_turn_credentials_are_passed_through_without_a_secret() -> None:
    cfg = config(ice_servers=(IceServerConfig(urls=("turn:t.example:3478",), username="u", credential="p"),))
    assert SfuController(cfg).ice_servers("x") == [
        {"urls": ["turn:t.example:3478"], "username": "u", "credential": "p"}
    ]
    assert SfuController(config()).ice_servers("x") == []


def candidate_ports(sdp: str) -> list[tuple[str, int]]:
    return [(m[0], int(m[1])) for m in re.findall(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", sdp)]


@pytest.mark.parametrize("sfu_config", [config(port_min=47100, port_max=47103)])
async def test_media_sockets_bind_inside_the_configured_port_range(sfu: SfuController) -> None:
    peers = [Peer(sfu, "ports", f"p{i}") for i in range(2)]
    for p in peers:
        await p.join()
    await peers[0].publish(video=(160, 120), audio=False)
    track = video_track_of(peers[1], "p0")
    await peers[1].subscribe(track)
    await wait_until(lambda: (r := peers[1].video_for(track)) is not None and r.frames >= 2, 5, what="video")
    room = sfu._rooms["ports"]
    used: list[int] = []
    for member in room.members.values():
        for side in (member.publisher, member.subscriber):
            if side is not None:
                used += gathering.local_ports(side.pc)
    assert len(used) == 3 and len(set(used)) == 3
    assert all(47100 <= port <= 47103 for port in used)
    answer = peers[0].of_type("publish_answer")[0]["sdp"]
    assert all(47100 <= port <= 47103 for _host, port in candidate_ports(answer))
    for p in peers:
        await p.close()


@pytest.mark.parametrize("sfu_config", [config(port_min=47110, port_max=47110)])
async def test_a_full_port_range_refuses_new_connections_cleanly(sfu: SfuController) -> None:
    first, second = Peer(sfu, "full", "a"), Peer(sfu, "full", "b")
    await first.join()  # its subscribe connection takes the only port
    await second.join()
    error = await second.expect("error")
    assert error["code"] == "media_unavailable"
    with pytest.raises(ServiceError) as info:
        await second.publish(video=(160, 120), audio=False)
    assert info.value.code == "media_unavailable"
    assert sfu.metrics.registry.get_sample_value("conf_sfu_peer_connections") == 1
    await first.leave()  # the port is free again
    await second.publish(video=(160, 120), audio=False)
    await second.close()


@pytest.mark.parametrize("sfu_config", [config(public_ip="203.0.113.7")])
async def test_the_public_address_is_written_into_host_candidates(sfu: SfuController) -> None:
    alice = Peer(sfu, "nat", "alice")
    await alice.join()
    offer = (await alice.expect("subscribe_offer"))["sdp"]
    hosts = candidate_ports(offer)
    assert hosts and all(host == "203.0.113.7" for host, _port in hosts)
    await alice.close()


def test_port_ranges_rotate_and_reject_nonsense() -> None:
    ports = PortRange(5000, 5002)
    assert list(ports.candidates()) == [5000, 5001, 5002]
    assert next(ports.candidates()) == 5000
    it = ports.candidates()
    assert next(it) == 5001
    assert list(PortRange().candidates()) == [0]
    with pytest.raises(ValueError):
        PortRange(6000, 5000)


def may_administer_network() -> bool:
    """This process holds CAP_NET_ADMIN (bit 12 of its effective capabilities)."""
    status = Path("/proc/self/status").read_text().splitlines()
    effective = next(line.split()[1] for line in status if line.startswith("CapEff:"))
    return bool(int(effective, 16) >> 12 & 1)


def test_a_media_socket_gets_the_receive_buffer_asked_for_up_to_the_kernels_limit() -> None:
    limit = int(Path("/proc/sys/net/core/rmem_max").read_text())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert ports.size_receive_buffer(sock, min(limit, 1 << 20)) == min(limit, 1 << 20)
        assert ports.size_receive_buffer(sock, limit * 2) == limit
        # beyond the limit only for a process allowed to administer the network (CAP_NET_ADMIN)
        assert ports.size_receive_buffer(sock, limit * 2, force=True) in (limit, limit * 2)
        if may_administer_network():
            assert ports.size_receive_buffer(sock, limit * 2, force=True) == limit * 2
    assert ports.receive_buffer_warning(limit) is None
    assert "net.core.rmem_max" in (ports.receive_buffer_warning(limit * 2) or "")


def test_the_sfu_warns_at_start_when_the_kernel_grants_less(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = int(Path("/proc/sys/net/core/rmem_max").read_text())

    def warnings() -> list[str]:
        return [r.levelname for r in caplog.records if "net.core.rmem_max" in r.getMessage()]

    per_connection = config(port_min=47140, port_max=47149)
    SfuController(per_connection)
    assert warnings() == ([] if limit >= ports.RECEIVE_BUFFER_SIZE else ["WARNING"])
    caplog.clear()
    monkeypatch.setattr(ports, "RECEIVE_BUFFER_SIZE", limit * 2)
    SfuController(per_connection)
    assert warnings() == ["WARNING"]
    caplog.clear()
    monkeypatch.setattr(udpmux, "RECEIVE_BUFFER_SIZE", limit * 2)  # the shared port's buffer
    monkeypatch.setattr(ports, "SO_RCVBUFFORCE", None)  # as for a process that may not force it
    SfuController(config())
    assert warnings() == ["WARNING"]


@pytest.mark.parametrize(
    ("sfu_config", "binder"),
    [(config(), udpmux), (config(port_min=47120, port_max=47129), gathering)],
    ids=["shared port", "port per connection"],
)
async def test_the_servers_media_sockets_are_given_large_receive_buffers(
    sfu: SfuController, binder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sized: list[int] = []
    original = binder.size_receive_buffer

    def spy(sock: socket.socket, *args: Any, **kwargs: Any) -> int:
        sized.append(sock.getsockname()[1])
        return int(original(sock, *args, **kwargs))

    monkeypatch.setattr(binder, "size_receive_buffer", spy)
    peer = Peer(sfu, "buffers", "a")
    await peer.join()
    await peer.publish(video=(160, 120), audio=False)
    member = sfu._rooms["buffers"].members["a"]
    used = [
        port
        for side in (member.publisher, member.subscriber)
        if side is not None
        for port in gathering.local_ports(side.pc)
    ]
    assert used and set(used) <= set(sized)
    await peer.close()
