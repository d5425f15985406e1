from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.core.actions import Drop, DropReason, SendNack, SendRtp
from sfu.core.downtrack import DownTrack, DownTrackParams
from sfu.core.munger import RtpMunger
from sfu.core.rtcp import SenderReport
from sfu.core.rtp import ExtensionRemapper, RtpView

from .packets import one_byte_extensions, rtp

LOW, HIGH = 0x1000, 0x2000
PARAMS = DownTrackParams(
    ssrc=0xD0D0, payload_type=100, clock_rate=90_000, first_sequence=500, first_timestamp=0
)


def packet(seq: int, ts: int = 0, ssrc: int = LOW, payload: bytes = b"frame") -> RtpView:
    return RtpView(
        rtp(
            seq=seq,
            ts=ts,
            ssrc=ssrc,
            pt=96,
            payload=payload,
            extension=one_byte_extensions({3: b"\x01\x02\x03"}),
        )
    )


class Received:
    """The SFU's packets as received (the up-track's history), as a ``SourceLookup``."""

    def __init__(self) -> None:
        self.packets: dict[tuple[int, int], RtpView] = {}

    def __call__(self, ssrc: int, seq: int, now: float) -> RtpView | None:
        return self.packets.get((ssrc, seq))


RECEIVED = Received()


@pytest.fixture(autouse=True)
def _nothing_received_yet() -> None:
    RECEIVED.packets.clear()


def forward(track: DownTrack, view: RtpView, now: float, switched: bool = False) -> bytes | Drop:
    """What ``track`` writes for ``view`` into a buffer of its own."""
    buffer = memoryview(bytearray(1500))
    size = track.write(view, now, buffer, switched=switched)
    return size if isinstance(size, Drop) else bytes(buffer[:size])


def sent(track: DownTrack, view: RtpView, now: float, switched: bool = False) -> RtpView:
    RECEIVED.packets[view.ssrc, view.sequence] = view
    out = forward(track, view, now, switched=switched)
    assert isinstance(out, bytes), out
    return RtpView(out)


def test_forwarded_packet_carries_the_subscriber_ssrc_payload_type_and_extension_ids() -> None:
    track = DownTrack(PARAMS, ExtensionRemapper({3: 7}))
    out = sent(track, packet(4000, ts=1234, payload=b"vp8-data"), 0.0)
    assert (out.ssrc, out.payload_type, out.sequence, out.timestamp) == (0xD0D0, 100, 500, 0)
    assert dict(out.extensions) == {7: b"\x01\x02\x03"}
    assert bytes(out.payload) == b"vp8-data"
    assert (track.packets_sent, track.octets_sent) == (1, len(b"vp8-data"))


def test_duplicate_is_reported_as_a_drop() -> None:
    track = DownTrack(PARAMS)
    sent(track, packet(1), 0.0)
    assert forward(track, packet(1), 0.01) == Drop(DropReason.DUPLICATE)


def test_nack_is_answered_from_the_source_packets_with_the_bytes_that_were_sent() -> None:
    track = DownTrack(PARAMS, ExtensionRemapper({3: 7}))
    originals = [sent(track, packet(10 + i, ts=3000 * i), 0.0).data for i in range(5)]
    actions = track.on_nack([502, 503], now=0.05, source=RECEIVED)
    assert actions == [SendRtp(originals[2], True), SendRtp(originals[3], True)]
    assert track.on_nack([502], now=0.06, source=RECEIVED) == []  # throttled: resent 10 ms ago
    assert track.on_nack([502], now=0.16, source=RECEIVED) == [SendRtp(originals[2], True)]


def test_nack_after_a_switch_resends_with_the_numbers_of_that_time() -> None:
    track = DownTrack(PARAMS)
    before = sent(track, packet(10, ts=1000), 0.0)  # out 500
    sent(track, packet(7000, ssrc=HIGH, ts=555_000), 0.5, switched=True)  # out 501, new ts offset
    (action,) = track.on_nack([500], now=0.6, source=RECEIVED)
    assert isinstance(action, SendRtp)
    assert action.packet == before.data


def test_nack_for_a_packet_lost_upstream_is_forwarded_to_the_publisher() -> None:
    track = DownTrack(PARAMS)
    sent(track, packet(10), 0.0)  # out 500
    sent(track, packet(13), 0.01)  # out 503: 11 and 12 never reached the SFU
    actions = track.on_nack([501, 502], now=0.05, source=RECEIVED)
    assert actions == [SendNack(LOW, (11, 12))]


def test_nack_across_a_layer_switch_goes_to_the_right_source() -> None:
    track = DownTrack(PARAMS)
    sent(track, packet(10), 0.0)  # out 500
    sent(track, packet(11), 0.01)  # out 501 (no longer kept, below)
    sent(track, packet(7000, ssrc=HIGH), 0.05, switched=True)  # out 502
    sent(track, packet(7002, ssrc=HIGH), 0.06)  # out 504
    del RECEIVED.packets[LOW, 11]
    actions = track.on_nack([501, 503], now=0.1, source=RECEIVED)
    assert SendNack(LOW, (11,)) in actions
    assert SendNack(HIGH, (7001,)) in actions


def test_retransmission_uses_rtx_when_negotiated() -> None:
    params = DownTrackParams(
        ssrc=1,
        payload_type=100,
        clock_rate=90_000,
        first_sequence=0,
        first_timestamp=0,
        rtx_ssrc=2,
        rtx_payload_type=101,
        rtx_first_sequence=900,
    )
    track = DownTrack(params)
    sent(track, packet(10, ts=5, payload=b"abc"), 0.0)
    (action,) = track.on_nack([0], now=0.05, source=RECEIVED)
    assert isinstance(action, SendRtp) and action.retransmission
    rtx = RtpView(action.packet)
    assert (rtx.ssrc, rtx.payload_type, rtx.sequence, rtx.timestamp) == (2, 101, 900, 0)
    assert bytes(rtx.payload) == b"\x00\x00abc"


def test_the_rtx_stream_numbers_its_packets_on_across_its_wrap() -> None:
    params = DownTrackParams(
        ssrc=1,
        payload_type=100,
        clock_rate=90_000,
        first_sequence=0,
        first_timestamp=0,
        rtx_ssrc=2,
        rtx_payload_type=101,
        rtx_first_sequence=0xFFFE,
    )
    track = DownTrack(params)
    for seq in range(10, 14):
        sent(track, packet(seq), 0.0)
    actions = track.on_nack([0, 1, 2, 3], now=0.05, source=RECEIVED)
    rtx = [RtpView(a.packet) for a in actions if isinstance(a, SendRtp)]
    assert [p.sequence for p in rtx] == [0xFFFE, 0xFFFF, 0, 1]
    assert [p.payload[:2].tobytes() for p in rtx] == [b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x00\x03"]


def test_switched_flag_keeps_the_stream_continuous_after_a_pause() -> None:
    track = DownTrack(PARAMS)
    first = sent(track, packet(10, ts=0), 0.0)
    resumed = sent(track, packet(400, ts=90_000), 1.0, switched=True)
    assert resumed.sequence == first.sequence + 1
    assert resumed.timestamp == first.timestamp + 90_000


def test_skipped_packet_leaves_no_gap() -> None:
    track = DownTrack(PARAMS)
    sent(track, packet(10), 0.0)
    track.skip(packet(11))
    assert sent(track, packet(12), 0.01).sequence == 501


def test_sender_report_is_translated_for_lip_sync() -> None:
    track = DownTrack(PARAMS)
    sent(track, packet(10, ts=1_000_000), 0.0)
    report = SenderReport(
        ssrc=LOW, ntp_timestamp=123 << 32, rtp_timestamp=1_000_000 + 9000, packet_count=9, octet_count=99
    )
    translated = track.translate_sender_report(report)
    assert translated == SenderReport(
        ssrc=0xD0D0, ntp_timestamp=123 << 32, rtp_timestamp=9000, packet_count=1, octet_count=len(b"frame")
    )
    other = SenderReport(ssrc=HIGH, ntp_timestamp=1, rtp_timestamp=1, packet_count=1, octet_count=1)
    assert track.translate_sender_report(other) is None


def test_a_reused_buffer_holds_exactly_the_packet_written_last() -> None:
    """The subscriber's SRTP buffer is written over for every packet: nothing of a longer packet
    before shows through."""
    a, b = DownTrack(PARAMS, ExtensionRemapper({3: 7})), DownTrack(PARAMS, ExtensionRemapper({3: 7}))
    buffer = memoryview(bytearray(1500))
    for seq in range(10, 14):
        view = packet(seq, ts=3000 * seq, payload=bytes([seq]) * (400 - 50 * (seq - 10)))
        size = b.write(view, 0.0, buffer)
        assert isinstance(size, int)
        assert bytes(buffer[:size]) == forward(a, view, 0.0)
    assert (b.packets_sent, b.octets_sent) == (a.packets_sent, a.octets_sent) == (4, 1300)
    assert b.write(packet(13), 0.0, buffer) == Drop(DropReason.DUPLICATE)


def test_a_packet_too_long_for_the_buffer_is_dropped_and_leaves_a_gap_like_a_lost_one() -> None:
    track = DownTrack(PARAMS)
    buffer = memoryview(bytearray(200))
    assert track.write(packet(1, payload=b"x" * 100), 0.0, buffer) == 112  # no extension negotiated
    assert track.write(packet(2, payload=b"x" * 400), 0.0, buffer) == Drop(DropReason.TOO_LONG)
    assert track.write(packet(3, payload=b"x" * 100), 0.0, buffer) == 112
    assert RtpView(bytes(buffer[:112])).sequence == 502  # 501 is missing, as if lost


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["forward", "forward", "forward", "switch", "skip"]),
            st.sampled_from([LOW, LOW, LOW, HIGH]),
            st.sampled_from([1, 1, 1, 1, 2, 5, 0, -1, -3]),  # sequence step: loss, duplicates, late
            st.sampled_from([0, 3000, 3000, 9000, -3000, 1 << 30]),  # timestamp step, wraps too
        ),
        min_size=20,
        max_size=80,
    ),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
)
def test_write_numbers_packets_exactly_as_the_munger_does(
    events: list[tuple[str, int, int, int]], first_seq: int, first_ts: int
) -> None:
    """Whatever arrives (switches, skips, loss, duplicates, late packets, wraps), ``write`` numbers
    each packet and translates sender reports as a bare ``RtpMunger`` does."""
    track = DownTrack(PARAMS)
    reference = RtpMunger(PARAMS.clock_rate, first_sequence=PARAMS.first_sequence, first_timestamp=0)
    buffer = memoryview(bytearray(1500))
    seq, ts = {LOW: first_seq, HIGH: first_seq ^ 0x8000}, {LOW: first_ts, HIGH: first_ts ^ 1 << 31}
    for i, (kind, ssrc, seq_step, ts_step) in enumerate(events):
        seq[ssrc] = (seq[ssrc] + seq_step) & 0xFFFF
        ts[ssrc] = (ts[ssrc] + ts_step) & 0xFFFFFFFF
        now = i * 0.01
        view = packet(seq[ssrc], ts=ts[ssrc], ssrc=ssrc)
        if kind == "skip":
            track.skip(view)
            reference.skip_sequence(ssrc, seq[ssrc])
            continue
        if kind == "switch":
            reference.resync()
        expected = reference.process(ssrc, seq[ssrc], ts[ssrc], now)
        written = track.write(view, now, buffer, switched=kind == "switch")
        if isinstance(expected, Drop):
            assert written == expected
        else:
            assert isinstance(written, int)
            header = RtpView(bytes(buffer[:written]))
            assert (header.sequence, header.timestamp) == (expected.sequence, expected.timestamp)
        assert (track.highest_sequence, track.highest_timestamp) == (
            reference.highest_sequence,
            reference.highest_timestamp,
        )
        report = SenderReport(
            ssrc=ssrc, ntp_timestamp=0, rtp_timestamp=ts[ssrc], packet_count=0, octet_count=0
        )
        translated = track.translate_sender_report(report)
        expected_ts = reference.translate_timestamp(ssrc, ts[ssrc])
        assert (None if translated is None else translated.rtp_timestamp) == expected_ts
