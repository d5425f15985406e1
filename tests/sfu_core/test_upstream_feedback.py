"""Loss detection towards publishers (NACK) and receiver-report statistics."""

from __future__ import annotations

from sfu.core.nackgen import NackGenerator
from sfu.core.receivestats import ReceiveStats
from sfu.core.rtp import RtpView, build_rtx, unwrap_rtx
from tests.sfu_core.packets import one_byte_extensions, rtp


def test_a_gap_is_nacked_at_once_then_retried_until_the_packets_arrive() -> None:
    gen = NackGenerator(retry_interval=0.1, max_tries=3)
    assert not gen.on_packet(100, 0.0)
    assert gen.on_packet(104, 0.01)
    assert gen.due(0.01) == [101, 102, 103]
    assert gen.due(0.05) == []  # not before the retry interval
    gen.on_packet(102, 0.06)  # a retransmission arrives
    assert gen.due(0.12) == [101, 103]
    assert gen.due(0.23) == [101, 103]
    assert gen.due(0.34) == []  # asked three times: given up
    assert gen.missing == []


def test_losses_across_the_sequence_wrap_are_reported_as_16_bit_numbers() -> None:
    gen = NackGenerator()
    gen.on_packet(65534, 0.0)
    assert gen.on_packet(1, 0.0)
    assert gen.due(0.0) == [65535, 0]


def test_a_huge_gap_is_not_repaired() -> None:
    gen = NackGenerator(max_gap=50)
    gen.on_packet(10, 0.0)
    assert not gen.on_packet(1000, 0.0)
    assert gen.due(0.0) == []


def test_old_losses_expire() -> None:
    gen = NackGenerator(max_age=0.5, max_tries=100)
    gen.on_packet(1, 0.0)
    gen.on_packet(3, 0.0)
    assert gen.due(0.0) == [2]
    assert gen.due(0.6) == []


def test_receive_stats_report_loss_jitter_and_the_last_sender_report() -> None:
    stats = ReceiveStats(0xABC, 90000)
    now = 0.0
    for seq in range(1000, 1100):
        if seq % 10 == 5:
            continue  # 10% lost
        stats.on_packet(seq, seq * 3000, now + (seq - 1000) / 30)
    stats.on_sender_report(0x12345678, 3.0)
    block = stats.report_block(3.5)
    assert block is not None
    assert block.ssrc == 0xABC
    assert block.highest_sequence == 1099
    assert block.packets_lost == 10
    assert 20 <= block.fraction_lost <= 30  # 10% of 256
    assert block.jitter < 10  # packets arrived exactly on their timestamps
    assert block.last_sr == 0x12345678
    assert block.delay_since_last_sr == 32768  # 0.5 s in 1/65536 units
    second = stats.report_block(4.5)
    assert second is not None and second.fraction_lost == 0  # nothing new was lost


def test_no_report_before_the_first_packet() -> None:
    assert ReceiveStats(1, 48000).report_block(0.0) is None


def test_rtx_unwrap_restores_the_original_packet() -> None:
    ext = one_byte_extensions({3: b"\x01\x02\x03"})
    original = RtpView(
        rtp(seq=500, ts=9000, ssrc=0x1111, pt=96, marker=True, payload=b"frame-data", extension=ext)
    )
    rtx = RtpView(build_rtx(original, ssrc=0x2222, payload_type=97, sequence=7))
    assert rtx.ssrc == 0x2222 and rtx.payload_type == 97 and rtx.sequence == 7
    restored = RtpView(unwrap_rtx(rtx, ssrc=0x1111, payload_type=96))
    assert restored.data == original.data
