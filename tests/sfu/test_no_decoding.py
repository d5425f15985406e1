"""The server forwards packets: no decoder and no encoder ever runs on its side.

In this test the subscribing clients count RTP packets instead of decoding, so nothing in the
process may decode at all while media flows from an encoding publisher through the SFU."""

from __future__ import annotations

import gc
import threading
from typing import Any

import aioice.ice
import aiortc.codecs
import aiortc.rtcrtpreceiver
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.exceptions import InternalError
from aiortc.rate import RateBucket, RemoteBitrateEstimator

from sfu.controller import SfuController
from sfu.glue import receive
from sfu.glue.receive import decoding_disabled
from tests.sfu.peers import Peer, wait_until
from tests.sfu.test_forwarding import video_track_of


def decoder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-decoder")]


def bitrate_estimators(pc: RTCPeerConnection) -> int:
    """aiortc's receive-side bitrate estimators held by ``pc``'s receivers."""
    receivers = [t.receiver for t in pc.getTransceivers()]
    return sum(isinstance(value, RemoteBitrateEstimator) for r in receivers for value in vars(r).values())


def rate_buckets() -> int:
    return sum(isinstance(o, RateBucket) for o in gc.get_objects())


async def test_taken_over_receivers_free_their_bitrate_estimators() -> None:
    """aiortc gives every video receiver a bitrate estimator of 1,000 small objects, which the SFU
    never feeds (it takes the packets before aiortc's receiver sees them). Taking over media frees
    them, so a full garbage collection has that many fewer objects to walk per receiver."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for _ in range(3):
            pc.addTransceiver("video", direction="sendonly")
        pc.addTransceiver("audio", direction="sendonly")
        assert bitrate_estimators(pc) == 3
        before = rate_buckets()
        receive.take_over_media(pc, lambda data: None, lambda data: None)
        assert bitrate_estimators(pc) == 0
        assert rate_buckets() <= before - 3 * 1000
    finally:
        await pc.close()


async def test_subscribe_slots_are_added_without_building_bitrate_estimators() -> None:
    """A subscribe connection adds a video transceiver per video slot, ~1,000 of them while a
    meeting of 100 joins; aiortc would build a 1,000-object estimator for each receiver (~1 ms),
    which the SFU never feeds. They are not built at all, and aiortc's own stays as it was."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        before = rate_buckets()
        for kind in ("video", "video", "audio"):
            receive.add_sending_transceiver(pc, kind)
        assert [(t.kind, t.direction) for t in pc.getTransceivers()] == [
            ("video", "sendonly"),
            ("video", "sendonly"),
            ("audio", "sendonly"),
        ]
        assert bitrate_estimators(pc) == 0 and rate_buckets() == before
        assert vars(aiortc.rtcrtpreceiver)["RemoteBitrateEstimator"] is RemoteBitrateEstimator
        with pytest.raises(InternalError):  # aiortc refuses the kind; its module is restored
            receive.add_sending_transceiver(pc, "subtitles")
        assert vars(aiortc.rtcrtpreceiver)["RemoteBitrateEstimator"] is RemoteBitrateEstimator
        pc.addTransceiver("video", direction="sendonly")  # aiortc's own way: with its estimator
        assert bitrate_estimators(pc) == 1
    finally:
        await pc.close()


async def test_no_decoding_happens_on_the_server_while_media_flows(
    sfu: SfuController, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original_receive = aiortc.rtcrtpreceiver.RTCRtpReceiver.receive

    async def spy_receive(self: Any, parameters: Any) -> None:
        calls.append("RTCRtpReceiver.receive")  # the only place aiortc starts a decoder thread
        await original_receive(self, parameters)

    def spy_get_decoder(codec: Any) -> Any:
        calls.append(f"get_decoder({codec.mimeType})")
        return original_get_decoder(codec)

    original_get_decoder = aiortc.codecs.get_decoder
    monkeypatch.setattr(aiortc.rtcrtpreceiver.RTCRtpReceiver, "receive", spy_receive)
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", spy_get_decoder)
    monkeypatch.setattr(aiortc.codecs, "get_decoder", spy_get_decoder)

    alice = Peer(sfu, "nodec", "alice", decode=False)
    bob = Peer(sfu, "nodec", "bob", decode=False)
    carol = Peer(sfu, "nodec", "carol", decode=False)
    try:
        for p in (alice, bob, carol):
            await p.join()
        await alice.publish(video=(320, 240), audio=True)
        track = video_track_of(bob, "alice")
        for p in (bob, carol):
            await p.subscribe(track)
        for p in (bob, carol):
            # VP8 is payload type 97 and Opus 96 in aiortc's offers: both kinds arrive
            await wait_until(
                lambda p=p: p.rtp_packets.get(97, 0) >= 30 and p.rtp_packets.get(96, 0) >= 30,
                8,
                what=f"{p.sid} receives forwarded RTP",
            )
        room = sfu._rooms["nodec"]
        for member in room.members.values():
            for side in (member.publisher, member.subscriber):
                if side is not None:
                    assert decoding_disabled(side.pc)
                    assert bitrate_estimators(side.pc) == 0
        assert calls == []
        assert decoder_threads() == []
    finally:
        for p in (alice, bob, carol):
            await p.close()


async def test_server_srtp_skips_aioices_queue_and_the_dtls_receive_task(
    sfu: SfuController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's SRTP and SRTCP are unprotected in the socket callback: none of it reaches
    aioice's per-connection queue (which feeds aiortc's DTLS receive task), on the server's
    sockets, while media and RTCP flow both ways."""
    queued: list[bytes] = []
    original = aioice.ice.Connection.data_received

    def spy(self: Any, data: bytes, component: int) -> None:
        if "_sfu_srtp_receive" in self.__dict__ and 127 < data[0] < 192:
            queued.append(data)
        original(self, data, component)

    handled: list[int] = []
    fast = receive._SrtpReceiver.__call__

    def count(self: Any, data: bytes) -> bool:
        done = fast(self, data)
        if done:
            handled.append(data[1])
        return done

    monkeypatch.setattr(aioice.ice.Connection, "data_received", spy)
    monkeypatch.setattr(receive._SrtpReceiver, "__call__", count)
    alice = Peer(sfu, "fastrx", "alice", decode=False)
    bob = Peer(sfu, "fastrx", "bob", decode=False)
    try:
        for p in (alice, bob):
            await p.join()
        await alice.publish(video=(320, 240), audio=True)
        await bob.subscribe(video_track_of(bob, "alice"))
        await wait_until(lambda: bob.rtp_packets.get(97, 0) >= 60, 8, what="bob receives forwarded video")
        assert len(handled) >= 60
        assert queued == []
    finally:
        for p in (alice, bob):
            await p.close()
