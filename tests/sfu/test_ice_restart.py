"""ICE restart: a publisher whose network path changed offers new ICE credentials; the SFU
answers with new ones of its own, moves the session to the new path and media keeps flowing."""

from __future__ import annotations

import re

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu.controller import SfuController
from sfu.glue.gathering import local_ports
from sfu.glue.icerestart import IceRestart
from sfu.ports import PortRange
from sfu.udpmux import UdpMux
from tests.sfu.conftest import config
from tests.sfu.peers import LOOPBACK, Peer, wait_until
from tests.sfu.test_forwarding import video_track_of


def ufrag(sdp: str) -> str:
    found = re.search(r"a=ice-ufrag:(\S+)", sdp)
    assert found is not None
    return found.group(1)


def on_new_path(sfu: SfuController, pc: RTCPeerConnection, ports_before: list[int], old_ufrag: str) -> bool:
    """The server's old ICE agent is closed: its own socket (a port per connection), or its
    endpoint on the shared port."""
    ports = sfu._ctx.ports if sfu._ctx is not None else None
    if isinstance(ports, UdpMux):
        return old_ufrag not in ports.ufrags()
    return local_ports(pc) != ports_before


@pytest.mark.parametrize(
    "sfu_config",
    [config(), config(port_min=47130, port_max=47139)],
    ids=["shared port", "port per connection"],
)
async def test_a_publish_offer_with_new_ice_credentials_restarts_ice_and_media_keeps_flowing(
    sfu: SfuController,
) -> None:
    alice, bob = Peer(sfu, "restart", "alice"), Peer(sfu, "restart", "bob")
    try:
        await alice.join()
        await bob.join()
        mids = await alice.publish(video=(160, 120), audio=False)
        track = video_track_of(bob, "alice")
        await bob.subscribe(track)
        await wait_until(lambda: (r := bob.video_for(track)) is not None and r.frames >= 5, 5, what="video")
        server_pc = sfu._rooms["restart"].members["alice"].publisher.pc  # type: ignore[union-attr]
        ports_before = local_ports(server_pc)
        first_answer = alice.of_type("publish_answer")[0]["sdp"]
        assert not on_new_path(sfu, server_pc, ports_before, ufrag(first_answer))

        pc = alice.publish_pc
        assert pc is not None
        restart = await IceRestart.begin(pc, LOOPBACK, PortRange())  # the client side of the restart
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        assert ufrag(offer) != ufrag(alice.of_type("publish_answer")[0]["sdp"])
        await alice.request("publish_offer", sdp=offer, tracks=[{"mid": mids["camera"], "source": "camera"}])
        answer = alice.of_type("publish_answer")[-1]["sdp"]
        assert ufrag(answer) != ufrag(first_answer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        restart.start(ufrag(answer), re.search(r"a=ice-pwd:(\S+)", answer).group(1))  # type: ignore[union-attr]
        await restart.wait()

        await wait_until(
            lambda: on_new_path(sfu, server_pc, ports_before, ufrag(first_answer)),
            5,
            what="server on the new path",
        )
        assert len(local_ports(server_pc)) == 1
        got = bob.video_for(track)
        assert got is not None
        before = got.frames
        await wait_until(lambda: got.frames >= before + 15, 5, what="video after the restart")
        assert [m for m in bob.of_type("track_unpublished")] == []  # subscribers saw nothing happen
        assert server_pc.connectionState == "connected"
    finally:
        await alice.close()
        await bob.close()
