"""``sfu.glue.RtpWriter`` between two real aiortc peers on 127.0.0.1: a packet written into the
writer's buffer is protected and sent where it lies, and still arrives when the connection's
send path changed after the buffer was handed out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.loadtest.test_srtp_tap import Link, connect, rtp


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    link = await connect(tap_early=False)
    yield link
    await link.sender.close()
    await link.receiver.close()


async def test_a_packet_written_into_the_buffer_arrives_decrypted(link: Link) -> None:
    writer = link.writer
    sent = [rtp(seq) for seq in range(1, 11)]
    for packet in sent:
        buffer = writer.buffer if writer.buffer is not None else writer.prepare()
        assert buffer is not None
        buffer[: len(packet)] = packet
        assert writer.emit(len(packet))
    assert await link.sinks.decrypted.wait_for(len(sent)) == sent


async def test_a_buffer_handed_out_before_the_send_path_changed_is_still_sent(link: Link) -> None:
    writer = link.writer
    buffer = writer.prepare()
    assert buffer is not None
    packet = rtp(1)
    buffer[: len(packet)] = packet
    writer.invalidate()  # as when an ICE restart replaces the agent: resolved again on the next packet
    assert writer.emit(len(packet))
    assert await link.sinks.decrypted.wait_for(1) == [packet]
    assert writer.buffer is not None and writer.buffer is not buffer


async def test_a_packet_longer_than_the_buffer_is_refused(link: Link) -> None:
    writer = link.writer
    buffer = writer.prepare()
    assert buffer is not None
    assert not writer.send_rtp(b"\x80\x60" + bytes(len(buffer)))
    assert writer.send_rtp(rtp(2))
    assert await link.sinks.decrypted.wait_for(1) == [rtp(2)]


async def test_a_closed_transport_drops_the_send_path_and_nothing_more_is_sent(link: Link) -> None:
    writer = link.writer
    assert writer.send_rtp(rtp(1))
    assert writer.buffer is not None
    await link.sender.close()  # the DTLS transport's state changes: the writer is told
    assert writer.prepare() is None
    assert not writer.send_rtp(rtp(2))
    assert not writer.send_rtcp(b"\x80\xc9\x00\x01\x00\x00\x00\x01")
