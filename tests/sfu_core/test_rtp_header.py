from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.core.rtp import (
    ExtensionRemapper,
    RtpParseError,
    RtpView,
    build_extension_block,
    build_rtx,
    clear_header,
    pack_fixed_header,
)

from .packets import one_byte_extensions, rtp, two_byte_extensions

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"


def test_parse_reads_fixed_header_fields() -> None:
    view = RtpView(rtp(seq=4242, ts=0xDEADBEEF, ssrc=0xCAFEBABE, pt=111, marker=True, payload=b"opus"))
    assert view.version == 2
    assert (view.sequence, view.timestamp, view.ssrc, view.payload_type) == (
        4242,
        0xDEADBEEF,
        0xCAFEBABE,
        111,
    )
    assert view.marker is True
    assert view.padding is False
    assert view.header_length == view.payload_offset == 12
    assert bytes(view.payload) == b"opus"
    assert view.extension_profile == 0
    assert dict(view.extensions) == {}


def test_parse_reads_csrcs_and_puts_payload_after_them() -> None:
    view = RtpView(rtp(csrcs=(1, 2, 3), payload=b"xyz"))
    assert view.csrc_count == 3
    assert view.csrcs == (1, 2, 3)
    assert view.header_length == 12 + 12
    assert bytes(view.payload) == b"xyz"


def test_parse_one_byte_extensions_by_id() -> None:
    ext = one_byte_extensions({1: b"\x00\x01\x02", 3: b"a", 14: b"0123456789abcdef"})
    view = RtpView(rtp(extension=ext, payload=b"P"))
    assert view.extension_profile == 0xBEDE
    assert view.extension(1) == b"\x00\x01\x02"
    assert view.extension(3) == b"a"
    assert view.extension(14) == b"0123456789abcdef"
    assert view.extension(2) is None
    assert bytes(view.payload) == b"P"


def test_parse_two_byte_extensions_including_empty_and_long_values() -> None:
    long_value = bytes(range(200))
    ext = two_byte_extensions({1: b"", 20: b"hi", 255: long_value}, appbits=3)
    view = RtpView(rtp(extension=ext, payload=b"P"))
    assert view.extension_profile == 0x1003
    assert view.extensions == {1: b"", 20: b"hi", 255: long_value}
    assert bytes(view.payload) == b"P"


def test_parse_skips_padding_bytes_between_extension_elements() -> None:
    ext = one_byte_extensions({2: b"ab", 5: b"c"}, padding_between=3)
    assert dict(RtpView(rtp(extension=ext)).extensions) == {2: b"ab", 5: b"c"}


def test_one_byte_id_15_stops_extension_parsing() -> None:
    body = bytes([0x10, 0x41, 0xF0, 0x20]) + bytes(4)
    ext = struct.pack("!HH", 0xBEDE, 2) + body
    assert dict(RtpView(rtp(extension=ext)).extensions) == {1: b"\x41"}


def test_unknown_extension_profile_is_skipped_without_elements() -> None:
    ext = struct.pack("!HH", 0xABCD, 1) + b"\x12\x34\x56\x78"
    view = RtpView(rtp(extension=ext, payload=b"data"))
    assert view.extension_profile == 0xABCD
    assert dict(view.extensions) == {}
    assert bytes(view.payload) == b"data"


def test_padding_is_excluded_from_payload() -> None:
    view = RtpView(rtp(payload=b"media", padding=7))
    assert view.padding is True
    assert bytes(view.payload) == b"media"
    assert view.payload_end == len(view.data) - 7


def test_payload_is_a_zero_copy_view() -> None:
    data = rtp(payload=b"q" * 1000)
    payload = RtpView(data).payload
    assert isinstance(payload, memoryview)
    assert payload.obj is data


def rewritten(view: RtpView, remapper: ExtensionRemapper, *, ssrc: int, pt: int, seq: int, ts: int) -> bytes:
    """The packet a subscriber with ``remapper``'s id map receives: a new fixed header over the
    tail the remapper built (as ``DownTrack.write`` puts them together)."""
    first, tail = remapper.tail(view)
    return pack_fixed_header(first, (view.data[1] & 0x80) | pt, seq, ts, ssrc) + tail


NONE = ExtensionRemapper({})


def test_rewrite_round_trip_changes_only_rewritten_fields() -> None:
    original = rtp(seq=100, ts=5000, ssrc=1, pt=96, marker=True, payload=b"frame-data", csrcs=(9,))
    out = rewritten(RtpView(original), NONE, ssrc=2, pt=100, seq=7, ts=9)
    view = RtpView(out)
    assert (view.ssrc, view.payload_type, view.sequence, view.timestamp) == (2, 100, 7, 9)
    assert view.marker is True
    assert view.csrcs == (9,)
    assert bytes(view.payload) == b"frame-data"
    same = rewritten(view, ExtensionRemapper({}), ssrc=1, pt=96, seq=100, ts=5000)
    assert same == original


@pytest.mark.parametrize("marker", [True, False])
def test_rewrite_keeps_the_marker(marker: bool) -> None:
    out = rewritten(RtpView(rtp(marker=marker)), NONE, ssrc=1, pt=96, seq=1, ts=1)
    assert RtpView(out).marker is marker


def test_rewrite_remaps_extension_ids_for_subscriber() -> None:
    publisher = {MID: 4, ABS_SEND_TIME: 2, AUDIO_LEVEL: 1}
    subscriber = {ABS_SEND_TIME: 3, AUDIO_LEVEL: 10}
    remapper = ExtensionRemapper.from_uris(publisher, subscriber)
    incoming = RtpView(rtp(extension=one_byte_extensions({4: b"0", 2: b"\x01\x02\x03", 1: b"\x9e"})))
    out = RtpView(rewritten(incoming, remapper, ssrc=5, pt=111, seq=1, ts=1))
    assert dict(out.extensions) == {3: b"\x01\x02\x03", 10: b"\x9e"}
    assert bytes(out.payload) == bytes(incoming.payload)


def test_rewrite_without_extensions_drops_extension_block() -> None:
    incoming = RtpView(rtp(extension=one_byte_extensions({1: b"x"}), payload=b"pp"))
    out = rewritten(incoming, NONE, ssrc=5, pt=96, seq=1, ts=1)
    view = RtpView(out)
    assert view.extension_profile == 0
    assert len(out) == 12 + 2
    assert bytes(view.payload) == b"pp"


def test_rewrite_preserves_csrcs_and_padding() -> None:
    incoming = RtpView(
        rtp(csrcs=(7, 8), payload=b"abc", padding=5, extension=one_byte_extensions({1: b"yz"}))
    )
    view = RtpView(rewritten(incoming, ExtensionRemapper({1: 2}), ssrc=1, pt=96, seq=1, ts=1))
    assert view.csrcs == (7, 8)
    assert view.padding is True
    assert bytes(view.payload) == b"abc"
    assert dict(view.extensions) == {2: b"yz"}


def test_build_extension_block_prefers_one_byte_form() -> None:
    block = build_extension_block({1: b"a", 14: b"b" * 16})
    assert block[:2] == b"\xbe\xde"
    assert len(block) % 4 == 0
    assert dict(RtpView(rtp(extension=block)).extensions) == {1: b"a", 14: b"b" * 16}


@pytest.mark.parametrize(
    "elements",
    [{15: b"a"}, {1: b"x" * 17}, {1: b""}, {200: b"abc", 1: b"a"}],
    ids=["id15", "long", "empty", "bigid"],
)
def test_build_extension_block_falls_back_to_two_byte_form(elements: dict[int, bytes]) -> None:
    block = build_extension_block(elements)
    assert block[:2] == b"\x10\x00"
    assert dict(RtpView(rtp(extension=block)).extensions) == elements


def test_build_extension_block_rejects_unencodable_elements() -> None:
    with pytest.raises(ValueError):
        build_extension_block({300: b"a"})
    with pytest.raises(ValueError):
        build_extension_block({1: b"x" * 256})


def test_build_extension_block_of_nothing_is_empty() -> None:
    assert build_extension_block({}) == b""


def test_extension_remapper_reuses_block_for_the_same_packet() -> None:
    remapper = ExtensionRemapper({1: 5})
    view = RtpView(rtp(extension=one_byte_extensions({1: b"z"})))
    first = remapper.block(view.extensions)
    assert remapper.block(view.extensions) is first
    assert dict(RtpView(rtp(extension=first)).extensions) == {5: b"z"}
    other = RtpView(rtp(extension=one_byte_extensions({1: b"w"})))
    assert dict(RtpView(rtp(extension=remapper.block(other.extensions))).extensions) == {5: b"w"}


def test_extension_remapper_gives_no_block_when_nothing_is_negotiated() -> None:
    remapper = ExtensionRemapper.from_uris({MID: 1}, {RID: 2})
    assert remapper.id_map == {}
    assert remapper.block(RtpView(rtp(extension=one_byte_extensions({1: b"0"}))).extensions) == b""


def test_extension_remapper_rejects_invalid_ids() -> None:
    with pytest.raises(ValueError):
        ExtensionRemapper({0: 1})


def test_build_rtx_prefixes_original_sequence_number() -> None:
    sent = RtpView(rtp(seq=0xBEEF, ts=1234, ssrc=1, pt=96, marker=True, payload=b"media", padding=4))
    rtx = RtpView(build_rtx(sent, ssrc=99, payload_type=97, sequence=12))
    assert (rtx.ssrc, rtx.payload_type, rtx.sequence, rtx.timestamp, rtx.marker) == (99, 97, 12, 1234, True)
    assert rtx.padding is False
    assert bytes(rtx.payload) == b"\xbe\xef" + b"media"


MALFORMED = {
    "empty": b"",
    "short": b"\x80\x60\x00\x01\x00\x00",
    "version1": b"\x40" + bytes(11),
    "version0": bytes(12),
    "csrc_past_end": bytes([0x83, 96]) + bytes(10) + bytes(8),
    "ext_header_truncated": bytes([0x90, 96]) + bytes(10) + b"\xbe\xde",
    "ext_past_end": bytes([0x90, 96]) + bytes(10) + b"\xbe\xde\x00\x02" + bytes(4),
    "one_byte_element_overrun": bytes([0x90, 96]) + bytes(10) + b"\xbe\xde\x00\x01" + b"\x13\x00\x00\x00",
    "two_byte_element_overrun": bytes([0x90, 96]) + bytes(10) + b"\x10\x00\x00\x01" + b"\x01\x09\x00\x00",
    "two_byte_element_header_cut": bytes([0x90, 96]) + bytes(10) + b"\x10\x00\x00\x01" + b"\x00\x00\x00\x05",
    "padding_zero": bytes([0xA0, 96]) + bytes(10) + b"ab\x00",
    "padding_too_long": bytes([0xA0, 96]) + bytes(10) + b"ab\x09",
    "padding_without_payload": bytes([0xA0, 96]) + bytes(10),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_packets_raise_rtp_parse_error(data: bytes) -> None:
    with pytest.raises(RtpParseError):
        RtpView.parse(data)


def test_rtp_parse_error_is_a_value_error() -> None:
    assert issubclass(RtpParseError, ValueError)


@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_nothing_but_rtp_parse_error(data: bytes) -> None:
    try:
        view = RtpView(data)
    except RtpParseError:
        return
    assert view.header_length <= view.payload_end <= len(data)
    assert len(view.payload) == view.payload_end - view.header_length
    assert view.csrcs is not None


@given(
    profile=st.sampled_from([0xBEDE, 0x1000, 0x1005, 0x4242]),
    body=st.binary(max_size=40),
    words=st.integers(min_value=0, max_value=12),
    tail=st.binary(max_size=20),
)
def test_arbitrary_extension_blocks_raise_nothing_but_rtp_parse_error(
    profile: int, body: bytes, words: int, tail: bytes
) -> None:
    data = bytes([0x90, 96]) + bytes(10) + struct.pack("!HH", profile, words) + body + tail
    try:
        view = RtpView(data)
    except RtpParseError:
        return
    assert view.header_length == 16 + 4 * words


@given(
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    pt=st.integers(0, 127),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    elements=st.dictionaries(st.integers(1, 255), st.binary(max_size=255), max_size=6),
    payload=st.binary(max_size=64),
)
def test_rewrite_then_parse_round_trips_every_field(
    seq: int,
    ts: int,
    ssrc: int,
    pt: int,
    marker: bool,
    csrcs: list[int],
    elements: dict[int, bytes],
    payload: bytes,
) -> None:
    block = build_extension_block(elements)
    source = RtpView(rtp(csrcs=tuple(csrcs), payload=payload, marker=marker, extension=block, pt=96))
    remapper = ExtensionRemapper({i: i for i in elements})
    out = RtpView(rewritten(source, remapper, ssrc=ssrc, pt=pt, seq=seq, ts=ts))
    assert (out.sequence, out.timestamp, out.ssrc, out.payload_type, out.marker) == (
        seq,
        ts,
        ssrc,
        pt,
        marker,
    )
    assert out.csrcs == tuple(csrcs)
    assert dict(out.extensions) == elements
    assert bytes(out.payload) == payload


def test_clear_header_reads_numbers_and_one_extension_without_parsing_the_payload() -> None:
    ext = one_byte_extensions({1: b"\x0a", 3: b"\xff"})
    data = rtp(seq=513, ts=960_000, ssrc=0xABCD, pt=111, payload=b"\x01" * 40 + b"tag", extension=ext, csrcs=(7,))
    assert clear_header(data, 1) == (0xABCD, 513, 960_000, 12 + 4 + len(ext), b"\x0a")
    assert clear_header(data, 3)[4] == b"\xff"  # type: ignore[index]
    assert clear_header(data, 9)[4] is None  # type: ignore[index]
    plain = rtp(seq=2, ssrc=5)
    assert clear_header(plain, 1) == (5, 2, 0, 12, None)


def test_clear_header_refuses_what_is_not_an_rtp_header() -> None:
    data = rtp(extension=one_byte_extensions({1: b"\x0a"}))
    assert clear_header(data[:11], 1) is None  # shorter than the fixed header
    assert clear_header(b"\x40" + data[1:], 1) is None  # version 1
    assert clear_header(data[:14], 1) is None  # extension header cut off
    assert clear_header(data[:17], 1) is None  # extension block runs past the end
    broken = bytearray(rtp(extension=b"\xbe\xde\x00\x01" + b"\x13\x00\x00\x00"))  # element of 2 bytes in 1 word
    broken[16] = 0x1F  # id 1, 16 bytes: past the block
    assert clear_header(bytes(broken), 1) is None
