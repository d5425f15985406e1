from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.core.rtcp import (
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpParseError,
    SenderReport,
    UnknownRtcp,
    build_compound,
    expand_nack_pair,
    is_rtcp,
    nack_pairs,
    parse_rtcp,
    split_compound,
)
from sfu.core.rtp import RtpParseError

from .packets import rtp

BLOCK = ReportBlock(
    ssrc=0x1234,
    fraction_lost=25,
    packets_lost=-3,
    highest_sequence=70000,
    jitter=12,
    last_sr=0xABCD,
    delay_since_last_sr=655,
)


def test_nack_pid_and_blp_cover_the_16_following_sequence_numbers() -> None:
    assert nack_pairs([100, 101, 116, 117]) == [(100, 0b1000_0000_0000_0001), (117, 0)]
    assert expand_nack_pair(100, 0b1000_0000_0000_0001) == [100, 101, 116]


def test_nack_pairs_handle_wraparound() -> None:
    pairs = nack_pairs([65534, 65535, 0, 2])
    assert pairs == [(65534, 0b1011)]
    assert expand_nack_pair(*pairs[0]) == [65534, 65535, 0, 2]


def test_nack_pairs_ignore_repeated_numbers() -> None:
    assert nack_pairs([5, 5, 6]) == [(5, 1)]


def test_nack_pairs_of_nothing_is_empty() -> None:
    assert nack_pairs([]) == []


@given(st.integers(0, 0xFFFF), st.lists(st.integers(1, 200), max_size=60))
def test_nack_pid_blp_round_trip(start: int, steps: list[int]) -> None:
    lost = [start]
    for step in steps:
        lost.append(lost[-1] + step)
    wrapped = [s & 0xFFFF for s in lost]
    expanded = [seq for pid, blp in nack_pairs(lost) for seq in expand_nack_pair(pid, blp)]
    assert expanded == wrapped


def test_nack_packet_round_trip() -> None:
    nack = Nack(sender_ssrc=1, media_ssrc=2, lost=(10, 11, 30, 65535, 0))
    data = bytes(nack)
    assert data[0] == 0x81 and data[1] == 205
    assert struct.unpack_from("!H", data, 2)[0] == len(data) // 4 - 1
    assert parse_rtcp(data) == [nack]


def test_pli_round_trip() -> None:
    pli = Pli(sender_ssrc=0xAAAA, media_ssrc=0xBBBB)
    data = bytes(pli)
    assert data == bytes([0x81, 206, 0, 2]) + struct.pack("!II", 0xAAAA, 0xBBBB)
    assert parse_rtcp(data) == [pli]


def test_fir_round_trip() -> None:
    fir = Fir(sender_ssrc=1, entries=((0x55, 3), (0x66, 255)))
    data = bytes(fir)
    assert data[0] & 0x1F == 4
    assert parse_rtcp(data) == [fir]


def test_remb_parse_reads_bitrate_and_ssrcs() -> None:
    # exponent 3, mantissa 150000 -> 1.2 Mbit/s, two SSRCs
    mantissa, exponent = 150000, 3
    fci = b"REMB" + bytes([2, (exponent << 2) | (mantissa >> 16), (mantissa >> 8) & 0xFF, mantissa & 0xFF])
    fci += struct.pack("!II", 0x11, 0x22)
    data = bytes([0x8F, 206]) + struct.pack("!H", (8 + len(fci)) // 4) + struct.pack("!II", 0x99, 0) + fci
    assert parse_rtcp(data) == [Remb(sender_ssrc=0x99, bitrate=1_200_000, ssrcs=(0x11, 0x22))]


@pytest.mark.parametrize("bitrate", [0, 1, 262_143, 262_144, 2_500_000, 123_456_789_000])
def test_remb_round_trip_keeps_18_significant_bits(bitrate: int) -> None:
    (parsed,) = parse_rtcp(bytes(Remb(sender_ssrc=1, bitrate=bitrate, ssrcs=(5,))))
    assert isinstance(parsed, Remb)
    assert parsed.ssrcs == (5,)
    assert parsed.bitrate <= bitrate
    assert bitrate - parsed.bitrate <= bitrate >> 17


def test_sender_report_round_trip_with_report_blocks() -> None:
    sr = SenderReport(
        ssrc=7,
        ntp_timestamp=(3_900_000_000 << 32) | 0x80000000,
        rtp_timestamp=90000,
        packet_count=10,
        octet_count=12000,
        reports=(BLOCK,),
    )
    data = bytes(sr)
    assert data[0] & 0x1F == 1 and data[1] == 200
    (parsed,) = parse_rtcp(data)
    assert parsed == sr
    assert isinstance(parsed, SenderReport)
    assert parsed.ntp_seconds == pytest.approx(3_900_000_000.5)
    assert parsed.ntp_middle == ((3_900_000_000 & 0xFFFF) << 16) | 0x8000


def test_report_block_keeps_negative_cumulative_loss() -> None:
    assert ReportBlock.parse(bytes(BLOCK)) == BLOCK


def test_receiver_report_round_trip() -> None:
    rr = ReceiverReport(ssrc=1, reports=(BLOCK, BLOCK))
    assert parse_rtcp(bytes(rr)) == [rr]
    assert parse_rtcp(bytes(ReceiverReport(ssrc=1))) == [ReceiverReport(ssrc=1)]


def test_compound_packet_is_split_and_unknown_parts_kept_verbatim() -> None:
    sdes = bytes([0x81, 202, 0, 2]) + struct.pack("!I", 7) + b"\x01\x00\x00\x00"
    sr = SenderReport(ssrc=7, ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4)
    remb = Remb(sender_ssrc=7, bitrate=300_000, ssrcs=(1,))
    data = build_compound([sr, UnknownRtcp(202, 1, sdes), remb])
    assert split_compound(data) == [bytes(sr), sdes, bytes(remb)]
    assert parse_rtcp(data) == [sr, UnknownRtcp(202, 1, sdes), remb]


def test_transport_wide_feedback_is_not_mistaken_for_a_nack() -> None:
    twcc = bytes([0x8F, 205, 0, 4]) + struct.pack("!II", 1, 2) + bytes(8)
    (parsed,) = parse_rtcp(twcc)
    assert parsed == UnknownRtcp(205, 15, twcc)


def test_afb_that_is_not_remb_stays_unknown() -> None:
    afb = bytes([0x8F, 206, 0, 3]) + struct.pack("!II", 1, 0) + b"XYZW"
    assert parse_rtcp(afb) == [UnknownRtcp(206, 15, afb)]


def test_rtcp_padding_is_removed_from_the_last_packet() -> None:
    pli = bytes(Pli(1, 2))
    padded = bytes([pli[0] | 0x20, pli[1]]) + struct.pack("!H", 3) + pli[4:] + b"\x00\x00\x00\x04"
    assert parse_rtcp(padded) == [Pli(1, 2)]


def test_is_rtcp_tells_rtcp_from_rtp() -> None:
    assert is_rtcp(bytes(Pli(1, 2)))
    assert is_rtcp(bytes(SenderReport(1, 0, 0, 0, 0)))
    assert not is_rtcp(rtp(pt=96))
    assert not is_rtcp(rtp(pt=111, marker=True))
    assert not is_rtcp(b"\x80")


MALFORMED = {
    "empty": b"",
    "short_header": b"\x81\xce",
    "version": bytes([0x41, 206, 0, 2]) + bytes(8),
    "length_past_end": bytes([0x81, 206, 0, 5]) + bytes(8),
    "pli_truncated": bytes([0x81, 206, 0, 1]) + bytes(4),
    "sr_truncated": bytes([0x80, 200, 0, 3]) + bytes(12),
    "report_count_too_big": bytes([0x82, 201, 0, 1]) + bytes(4),
    "nack_without_fci": bytes([0x81, 205, 0, 2]) + bytes(8),
    "fir_bad_length": bytes([0x84, 206, 0, 3]) + bytes(12),
    "remb_ssrcs_past_end": bytes([0x8F, 206, 0, 4]) + bytes(8) + b"REMB" + bytes([3, 0, 0, 1]),
    "padding_zero": bytes([0xA1, 206, 0, 2]) + bytes(8),
    "padding_not_last": bytes([0xA1, 206, 0, 2]) + bytes(7) + b"\x04" + bytes(Pli(1, 2)),
    "padding_too_big": bytes([0xA1, 206, 0, 2]) + bytes(7) + b"\x0c",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_rtcp_raises_rtcp_parse_error(data: bytes) -> None:
    with pytest.raises(RtcpParseError):
        parse_rtcp(data)


def test_rtcp_parse_error_is_an_rtp_parse_error() -> None:
    assert issubclass(RtcpParseError, RtpParseError)


@given(st.binary(max_size=120))
def test_arbitrary_bytes_raise_nothing_but_rtcp_parse_error(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except RtcpParseError:
        return
    assert sum(len(bytes(p)) for p in packets) <= len(data)


@given(st.lists(st.integers(0, 255), max_size=8).map(bytes), st.integers(0, 3))
def test_arbitrary_feedback_bodies_raise_nothing_but_rtcp_parse_error(body: bytes, fmt_index: int) -> None:
    fmt = (1, 4, 15, 15)[fmt_index]
    fci = b"REMB" + body if fmt_index == 3 else body
    fci += bytes(-len(fci) % 4)
    data = bytes([0x80 | fmt, 206]) + struct.pack("!H", 2 + len(fci) // 4) + struct.pack("!II", 1, 2) + fci
    try:
        parse_rtcp(data)
    except RtcpParseError:
        pass
