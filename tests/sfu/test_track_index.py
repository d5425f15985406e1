"""The up-track's index of who takes its packets: a forwarder in the steady state is indexed by its
slot (packets go straight in, no decision), the others decide per packet. Crafted packets, a
buffer standing in for the subscriber's SRTP session; no sockets."""

from __future__ import annotations

import gc
from typing import cast

import pytest
from prometheus_client import CollectorRegistry, Histogram

from sfu.core.rtp import RtpView
from sfu.core.simulcast import LayerLimits
from sfu.forwarder import VideoForwarder
from sfu.glue.send import RtpWriter
from sfu.metrics import Counters
from sfu.sdp import Codec
from sfu.slot import Slot, SlotParams
from sfu.uptrack import UpTrack
from tests.sfu_core.packets import rtp, vp8

VP8 = Codec(96, "VP8", 90_000)
FIRST, SECOND = 0x1111, 0x2222


class Upstream:
    def __init__(self) -> None:
        self.keyframe_requests: list[int] = []

    def request_keyframe(self, ssrc: int, now: float) -> None:
        self.keyframe_requests.append(ssrc)

    def send_nack(self, ssrc: int, lost: list[int]) -> None:
        pass

    def keyframe_arrived(self, ssrc: int) -> None:
        pass


class Writer:
    """What a slot needs of an ``RtpWriter``: a buffer to write into and ``emit``."""

    def __init__(self) -> None:
        self.buffer: memoryview | None = memoryview(bytearray(1500))
        self.sent: list[RtpView] = []

    def prepare(self) -> memoryview | None:
        return self.buffer

    def emit(self, size: int) -> bool:
        assert self.buffer is not None
        self.sent.append(RtpView(bytes(self.buffer[:size])))
        return True


class Setup:
    def __init__(self) -> None:
        self.counters = Counters()
        self.upstream = Upstream()
        self.track = UpTrack(
            track_id="t",
            owner="pub",
            identity="pub",
            mid="0",
            kind="video",
            source="camera",
            upstream=self.upstream,
            counters=self.counters,
        )
        self.track.configure((VP8,), {}, 0)
        self.writer = Writer()
        self.slot = Slot("video", self.counters, 64)
        params = SlotParams(mid="1", kind="video", ssrc=0xABC, rtx_ssrc=None, codecs=(VP8,), extensions={})
        self.slot.set_negotiated(params, cast(RtpWriter, self.writer))
        wait = Histogram("wait", "keyframe wait", registry=CollectorRegistry())
        self.forwarder = VideoForwarder(self.track, "sub", LayerLimits(), 0.0, wait)
        self.forwarder.attach(self.slot, 0.0)
        self.sequence = {FIRST: 100, SECOND: 5000}

    def send(
        self, ssrc: int, *, keyframe: bool = False, padding_only: bool = False, now: float = 0.1
    ) -> None:
        self.sequence[ssrc] += 1
        seq = self.sequence[ssrc]
        payload = b"" if padding_only else vp8(keyframe)
        data = rtp(seq=seq, ts=seq * 3000, ssrc=ssrc, payload=payload, padding=4 if padding_only else 0)
        self.track.on_rtp(RtpView(data), "", False, now)

    @property
    def direct(self) -> bool:
        """The slot is indexed for direct forwarding (and the forwarder not asked)."""
        direct = self.slot in self.track._direct.get("", ())
        deciding = self.forwarder in self.track._listeners.get("", ())
        assert direct != deciding, "indexed both ways, or not at all"
        return direct


def test_a_forwarder_decides_until_its_keyframe_then_its_slot_takes_packets_directly() -> None:
    s = Setup()
    s.send(FIRST)
    assert not s.direct and s.writer.sent == []  # waiting for a keyframe
    s.send(FIRST, keyframe=True)
    assert s.direct
    for _ in range(3):
        s.send(FIRST)
    sequences = [p.sequence for p in s.writer.sent]
    assert len(sequences) == 4
    assert sequences == list(range(sequences[0], sequences[0] + 4))
    assert {p.ssrc for p in s.writer.sent} == {0xABC}
    assert s.counters.packets_out_video == 4  # counted on either path
    assert s.counters.bytes_out_video == sum(p.payload_end - p.header_length for p in s.writer.sent)


def test_a_direct_slot_follows_its_layers_step_chain_and_leaves_it_for_a_skip() -> None:
    """In the steady state the down-track only takes the layer's in-order step (its numbers are
    the chain's minus its offsets); a skipped packet makes it number its own way for a packet."""
    s = Setup()
    s.send(FIRST, keyframe=True)
    s.send(FIRST)
    downtrack = s.slot.downtrack
    assert downtrack is not None and s.direct and downtrack.following
    s.send(FIRST, padding_only=True)
    assert not downtrack.following
    s.send(FIRST)
    assert downtrack.following
    for _ in range(3):
        s.send(FIRST)
    sequences = [p.sequence for p in s.writer.sent]
    assert sequences == list(range(sequences[0], sequences[0] + 6))
    assert downtrack.packets_sent == 6


def test_kept_packets_are_no_work_for_the_garbage_collector_and_still_answer_nacks() -> None:
    """The up-track keeps each layer's last packets for retransmission. Kept as received (bytes,
    in tuples of bytes and numbers), they are nothing the garbage collector tracks; kept as parsed
    views, seconds of them would reach its oldest generation and set off full collections, each a
    pause of the whole server, every few tens of seconds in a meeting."""
    s = Setup()
    s.send(FIRST, keyframe=True)
    s.writer.sent.clear()
    gc.collect()
    tracked = len(gc.get_objects())
    for _ in range(300):
        s.send(FIRST)
    s.writer.sent.clear()
    gc.collect()
    assert len(gc.get_objects()) - tracked < 30  # not one or more per kept packet
    kept = s.track.source_packet(FIRST, s.sequence[FIRST] - 5, 0.2)
    assert kept is not None and kept.sequence == s.sequence[FIRST] - 5 and kept.ssrc == FIRST


def test_padding_skipped_on_the_direct_path_leaves_no_gap() -> None:
    s = Setup()
    s.send(FIRST, keyframe=True)
    s.send(FIRST, padding_only=True)
    s.send(FIRST)
    first, second = s.writer.sent
    assert second.sequence == first.sequence + 1


def test_a_new_stream_of_the_layer_takes_the_slot_back_to_deciding_until_its_keyframe() -> None:
    s = Setup()
    s.send(FIRST, keyframe=True)
    s.send(FIRST)
    assert s.direct
    requests = len(s.upstream.keyframe_requests)
    s.send(SECOND)  # the publisher restarted its stream: a delta frame of a new SSRC
    assert not s.direct
    assert len(s.writer.sent) == 2
    assert s.upstream.keyframe_requests[requests:] == [SECOND]
    s.send(SECOND, keyframe=True)
    assert s.direct
    s.send(SECOND)
    assert [p.ssrc for p in s.writer.sent] == [0xABC] * 4
    sequences = [p.sequence for p in s.writer.sent]
    assert sequences == list(range(sequences[0], sequences[0] + 4))  # one continuous stream


@pytest.mark.parametrize("how", ["detach", "pause"])
def test_a_forwarder_that_stops_leaves_the_index(how: str) -> None:
    s = Setup()
    s.send(FIRST, keyframe=True)
    assert s.direct
    if how == "detach":
        s.forwarder.detach()
    else:
        s.forwarder.set_limits(LayerLimits(paused=True), 0.2)
    assert s.slot not in s.track._direct.get("", ())
    sent = len(s.writer.sent)
    s.send(FIRST)
    assert len(s.writer.sent) == sent


def test_the_shared_remappers_of_a_track_are_bounded() -> None:
    """Extension-id maps come from clients' descriptions: a subscriber renegotiating with ever new
    ids must not grow the track's cache without end."""
    from sfu.sdp import URI_ABS_SEND_TIME as URI_ABS
    from sfu.slot import MAX_SHARED_REMAPPERS, _remapper

    s = Setup()
    s.track.configure((VP8,), {URI_ABS: 3}, 0)
    first = _remapper(s.track, {URI_ABS: 1})
    assert _remapper(s.track, {URI_ABS: 1}) is first  # shared by subscribers with the same map
    for i in range(2, 2 + 4 * MAX_SHARED_REMAPPERS):
        _remapper(s.track, {URI_ABS: i})
    assert len(s.track.remappers) == MAX_SHARED_REMAPPERS
    assert _remapper(s.track, {URI_ABS: 1}) is first
