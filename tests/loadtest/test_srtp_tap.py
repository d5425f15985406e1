"""Counting at the socket (``confctl.loadtest.glue.tap_rtp_datagrams``) with two real aiortc peers on
127.0.0.1: the tap sees exactly the packets the decrypting path would have handed over, and
STUN, DTLS and RTCP keep flowing past it."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection

from confctl.loadtest.glue import RtpSender, gather_on_loopback, take_over_media, tap_rtp_datagrams
from confctl.loadtest.rtpstats import ReceiveCounter
from sfu.core.rtcp import ReceiverReport

SSRC = 0x1234ABCD
VP8 = 96
SRTP_TAGS = (10, 16)  # AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM


def rtp(seq: int, marker: bool = False) -> bytes:
    return (
        struct.pack("!BBHII", 0x80, VP8 | (0x80 if marker else 0), seq & 0xFFFF, seq * 3000, SSRC)
        + bytes([seq & 0xFF]) * 100
    )


class Sink:
    """Packets handed to one callback, in order; ``wait_for`` returns once ``n`` have come."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self._arrived = asyncio.Event()

    def __call__(self, data: bytes) -> None:
        self.packets.append(data)
        self._arrived.set()

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[bytes]:
        async with asyncio.timeout(timeout):
            while len(self.packets) < n:
                self._arrived.clear()
                await self._arrived.wait()
        return self.packets


@dataclass
class Sinks:
    decrypted: Sink = field(default_factory=Sink)
    rtcp: Sink = field(default_factory=Sink)
    tapped: Sink = field(default_factory=Sink)


@dataclass
class Link:
    sender: RTCPeerConnection
    receiver: RTCPeerConnection
    writer: RtpSender
    sinks: Sinks


def _ignore(data: bytes) -> None:
    pass


def config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


async def connected(*pcs: RTCPeerConnection, timeout: float = 10.0) -> None:
    changed = asyncio.Event()
    for pc in pcs:
        pc.on("connectionstatechange", changed.set)
    async with asyncio.timeout(timeout):
        while any(pc.connectionState != "connected" for pc in pcs):
            changed.clear()
            await changed.wait()


async def connect(tap_early: bool) -> Link:
    """A sender and a receiver connected on loopback, both with their media taken over."""
    sinks = Sinks()
    sender = RTCPeerConnection(config())
    receiver = RTCPeerConnection(config())
    sender.addTransceiver("video", direction="sendonly")
    up = asyncio.create_task(connected(sender, receiver))
    offer = await sender.createOffer()
    gather_on_loopback(sender)
    await sender.setLocalDescription(offer)
    await receiver.setRemoteDescription(sender.localDescription)
    take_over_media(sender, _ignore, _ignore)
    take_over_media(receiver, sinks.decrypted, sinks.rtcp)
    answer = await receiver.createAnswer()
    gather_on_loopback(receiver)
    await receiver.setLocalDescription(answer)
    if tap_early:  # before any STUN check or DTLS record has arrived
        tap_rtp_datagrams(receiver, sinks.tapped)
    await sender.setRemoteDescription(receiver.localDescription)
    await up
    writer = RtpSender.for_connection(sender)
    assert writer is not None
    return Link(sender, receiver, writer, sinks)


@pytest.fixture
async def tapped_from_the_start() -> AsyncIterator[Link]:
    link = await connect(tap_early=True)
    yield link
    await link.sender.close()
    await link.receiver.close()


@pytest.fixture
async def untapped() -> AsyncIterator[Link]:
    link = await connect(tap_early=False)
    yield link
    await link.sender.close()
    await link.receiver.close()


async def test_ice_and_dtls_complete_through_a_tapped_socket_and_rtcp_still_arrives(
    tapped_from_the_start: Link,
) -> None:
    link = tapped_from_the_start
    report = bytes(ReceiverReport(0x55))
    assert link.writer.send_rtcp(report)
    assert await link.sinks.rtcp.wait_for(1) == [report]  # SRTCP took the decrypting path
    assert link.sinks.tapped.packets == []
    assert link.receiver.connectionState == "connected"


async def test_the_tap_hands_over_every_rtp_packet_with_its_header_in_the_clear(
    tapped_from_the_start: Link,
) -> None:
    link = tapped_from_the_start
    sent = [rtp(seq, marker=seq % 5 == 0) for seq in range(65530, 65530 + 40)]  # across the wrap
    for packet in sent:
        assert link.writer.send_rtp(packet)
    tapped = await link.sinks.tapped.wait_for(len(sent))
    assert [p[:12] for p in tapped] == [p[:12] for p in sent]
    tag = len(tapped[0]) - len(sent[0])  # the auth tag trails the payload
    assert tag in SRTP_TAGS
    assert [len(p) for p in tapped] == [len(p) + tag for p in sent]
    assert all(t[12:-tag] != p[12:] for t, p in zip(tapped, sent, strict=True))  # still encrypted
    assert link.sinks.decrypted.packets == []
    assert link.receiver.connectionState == "connected"


async def test_counting_switches_from_decrypting_to_the_tap_without_loss_or_double_counting(
    untapped: Link,
) -> None:
    link = untapped
    for seq in range(100, 130):
        link.writer.send_rtp(rtp(seq))
    decrypted = await link.sinks.decrypted.wait_for(30)
    assert [p[:12] for p in decrypted] == [rtp(seq)[:12] for seq in range(100, 130)]

    tap_rtp_datagrams(link.receiver, link.sinks.tapped)
    tap_rtp_datagrams(link.receiver, link.sinks.tapped)  # idempotent: still one tap per socket
    for seq in range(130, 160):
        link.writer.send_rtp(rtp(seq))
    tapped = await link.sinks.tapped.wait_for(30)
    report = bytes(ReceiverReport(0x55))
    link.writer.send_rtcp(report)
    await link.sinks.rtcp.wait_for(1)  # after the RTCP sent last: nothing is still on the way
    assert len(decrypted) == 30 and len(tapped) == 30

    counter = ReceiveCounter(clock=lambda: 1.0)
    counter.set_streams({SSRC: "video"})
    for packet in decrypted + tapped:
        counter.on_rtp(packet)
    totals = counter.totals()
    assert (totals.video, totals.expected, totals.received, totals.other) == (60, 60, 60, 0)


def test_packets_still_queued_for_decryption_arriving_after_the_tapped_ones_are_not_loss() -> None:
    counter = ReceiveCounter(clock=lambda: 1.0)
    counter.set_streams({SSRC: "video"})
    for seq in (65534, 65535, 0, 1):  # the tap's first packets
        counter.on_rtp(rtp(seq))
    for seq in (65531, 65532, 65533):  # then the decrypting path's backlog
        counter.on_rtp(rtp(seq))
    totals = counter.totals()
    assert (totals.expected, totals.received) == (7, 7)
