"""``sfu.glue.send.RtpWriter`` between two real aiortc peers on 127.0.0.1: a packet written into
the writer's buffer is protected and sent where it lies, and still arrives when the connection's
send path changed after the buffer was handed out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiortc import RTCPeerConnection

from sfu.glue.gathering import prepare_gathering
from sfu.glue.receive import take_over_media
from sfu.glue.send import RtpWriter
from sfu.ports import GatherPolicy, PortRange
from tests.loadtest.test_srtp_tap import Sink, config, connected, rtp

LOOPBACK = GatherPolicy(addresses=("127.0.0.1",))


@dataclass
class Link:
    sender: RTCPeerConnection
    receiver: RTCPeerConnection
    writer: RtpWriter
    decrypted: Sink


def _ignore(data: bytes) -> None:
    pass


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    """A sender and a receiver on the server's sockets, both with their media taken over."""
    sender, receiver, decrypted = RTCPeerConnection(config()), RTCPeerConnection(config()), Sink()
    sender.addTransceiver("video", direction="sendonly")
    up = asyncio.create_task(connected(sender, receiver))
    offer = await sender.createOffer()
    prepare_gathering(sender, LOOPBACK, PortRange())
    await sender.setLocalDescription(offer)
    await receiver.setRemoteDescription(sender.localDescription)
    take_over_media(sender, _ignore, _ignore)
    take_over_media(receiver, decrypted, _ignore)
    answer = await receiver.createAnswer()
    prepare_gathering(receiver, LOOPBACK, PortRange())
    await receiver.setLocalDescription(answer)
    await sender.setRemoteDescription(receiver.localDescription)
    await up
    writer = RtpWriter.for_connection(sender)
    assert writer is not None
    yield Link(sender, receiver, writer, decrypted)
    await sender.close()
    await receiver.close()


async def test_a_packet_written_into_the_buffer_arrives_decrypted(link: Link) -> None:
    writer = link.writer
    sent = [rtp(seq) for seq in range(1, 11)]
    for packet in sent:
        buffer = writer.buffer if writer.buffer is not None else writer.prepare()
        assert buffer is not None
        buffer[: len(packet)] = packet
        assert writer.emit(len(packet))
    assert await link.decrypted.wait_for(len(sent)) == sent


async def test_a_buffer_handed_out_before_the_send_path_changed_is_still_sent(link: Link) -> None:
    writer = link.writer
    buffer = writer.prepare()
    assert buffer is not None
    packet = rtp(1)
    buffer[: len(packet)] = packet
    writer.invalidate()  # as when an ICE restart replaces the agent: resolved again on the next packet
    assert writer.emit(len(packet))
    assert await link.decrypted.wait_for(1) == [packet]
    assert writer.buffer is not None and writer.buffer is not buffer


async def test_a_packet_longer_than_the_buffer_is_refused(link: Link) -> None:
    writer = link.writer
    buffer = writer.prepare()
    assert buffer is not None
    assert not writer.send_rtp(b"\x80\x60" + bytes(len(buffer)))
    assert writer.send_rtp(rtp(2))
    assert await link.decrypted.wait_for(1) == [rtp(2)]


async def test_a_closed_transport_drops_the_send_path_and_nothing_more_is_sent(link: Link) -> None:
    writer = link.writer
    assert writer.send_rtp(rtp(1))
    assert writer.buffer is not None
    await link.sender.close()  # the DTLS transport's state changes: the writer is told
    assert writer.prepare() is None
    assert not writer.send_rtp(rtp(2))
    assert not writer.send_rtcp(b"\x80\xc9\x00\x01\x00\x00\x00\x01")
