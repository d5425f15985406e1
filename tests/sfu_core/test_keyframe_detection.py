from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.core.keyframe import (
    always_keyframe,
    av1_is_keyframe,
    h264_is_keyframe,
    is_keyframe,
    keyframe_detector,
    parse_vp8_descriptor,
    parse_vp9_descriptor,
    vp8_is_keyframe,
    vp9_is_keyframe,
)

from .packets import (
    NAL_IDR,
    NAL_PPS,
    NAL_SLICE,
    NAL_SPS,
    av1,
    h264_fu_a,
    h264_single,
    h264_stap_a,
    vp8,
    vp9,
    vp9_scalability_structure,
)

# --- VP8 ---


def test_vp8_keyframe_start_is_detected() -> None:
    assert vp8_is_keyframe(vp8(True))


def test_vp8_keyframe_with_extended_descriptor_is_detected() -> None:
    assert vp8_is_keyframe(vp8(True, picture_id=12345, long_picture_id=True, tl0=9, tid=0, key_idx=3))


@pytest.mark.parametrize(
    "payload",
    [vp8(False), vp8(True, start=False), vp8(True, partition=1), vp8(False, picture_id=5, tl0=1, tid=2)],
    ids=["interframe", "not_start", "partition_1", "interframe_extended"],
)
def test_vp8_non_keyframes_are_rejected(payload: bytes) -> None:
    assert not vp8_is_keyframe(payload)


def test_vp8_keyframe_needs_the_start_code() -> None:
    payload = bytearray(vp8(True))
    payload[4] = 0x00  # corrupt the 0x9d 0x01 0x2a start code
    assert not vp8_is_keyframe(bytes(payload))


def test_vp8_descriptor_reads_15_bit_picture_id_tl0picidx_and_temporal_id() -> None:
    d = parse_vp8_descriptor(
        vp8(False, picture_id=0x1ABC, long_picture_id=True, tl0=200, tid=2, layer_sync=True)
    )
    assert d is not None
    assert (d.picture_id, d.picture_id_bits, d.tl0_pic_idx, d.temporal_id, d.layer_sync) == (
        0x1ABC,
        15,
        200,
        2,
        True,
    )
    assert d.key_index is None
    assert d.header_size == 1 + 1 + 2 + 1 + 1
    assert not d.is_keyframe


def test_vp8_descriptor_reads_7_bit_picture_id_and_key_index() -> None:
    d = parse_vp8_descriptor(vp8(True, picture_id=0x55, key_idx=17))
    assert d is not None
    assert (d.picture_id, d.picture_id_bits, d.tl0_pic_idx, d.temporal_id, d.key_index) == (
        0x55,
        7,
        None,
        None,
        17,
    )
    assert d.is_keyframe


def test_vp8_descriptor_without_extension_has_no_layer_info() -> None:
    d = parse_vp8_descriptor(vp8(False))
    assert d is not None
    assert (d.picture_id, d.tl0_pic_idx, d.temporal_id, d.header_size) == (None, None, None, 1)


@pytest.mark.parametrize(
    "payload", [b"", b"\x90", b"\x90\x80", b"\x90\x80\x80", b"\x90\x40", b"\x90\x20", b"\x10"]
)
def test_truncated_vp8_payloads_are_not_keyframes(payload: bytes) -> None:
    assert not vp8_is_keyframe(payload)


# --- H.264 ---


@pytest.mark.parametrize("nal", [NAL_IDR, NAL_SPS])
def test_h264_single_idr_or_sps_nal_is_a_keyframe(nal: int) -> None:
    assert h264_is_keyframe(h264_single(nal))


@pytest.mark.parametrize("nal", [NAL_SLICE, NAL_PPS])
def test_h264_single_non_idr_nal_is_not_a_keyframe(nal: int) -> None:
    assert not h264_is_keyframe(h264_single(nal))


def test_h264_stap_a_with_sps_pps_idr_is_a_keyframe() -> None:
    assert h264_is_keyframe(h264_stap_a(NAL_SPS, NAL_PPS, NAL_IDR))


def test_h264_stap_a_with_idr_after_other_units_is_a_keyframe() -> None:
    assert h264_is_keyframe(h264_stap_a(NAL_PPS, NAL_SLICE, NAL_IDR))


def test_h264_stap_a_without_idr_is_not_a_keyframe() -> None:
    assert not h264_is_keyframe(h264_stap_a(NAL_PPS, NAL_SLICE))


def test_h264_truncated_stap_a_is_not_a_keyframe() -> None:
    assert not h264_is_keyframe(bytes([0x78, 0x00, 0x20, NAL_SLICE]))
    assert not h264_is_keyframe(bytes([0x78, 0x00, 0x00, NAL_IDR]))
    assert not h264_is_keyframe(bytes([0x78, 0x00]))


def test_h264_fu_a_start_of_idr_is_a_keyframe() -> None:
    assert h264_is_keyframe(h264_fu_a(NAL_IDR, start=True))


@pytest.mark.parametrize(
    "payload",
    [
        h264_fu_a(NAL_IDR, start=False),
        h264_fu_a(NAL_IDR, start=False, end=True),
        h264_fu_a(NAL_SLICE, start=True),
    ],
    ids=["middle", "end", "non_idr_start"],
)
def test_h264_fu_a_other_fragments_are_not_keyframes(payload: bytes) -> None:
    assert not h264_is_keyframe(payload)


def test_h264_empty_or_cut_payloads_are_not_keyframes() -> None:
    assert not h264_is_keyframe(b"")
    assert not h264_is_keyframe(bytes([0x7C]))


# --- VP9 ---


def test_vp9_non_flexible_keyframe_is_detected() -> None:
    assert vp9_is_keyframe(vp9(predicted=False, sid=0))


def test_vp9_keyframe_without_layer_indices_is_detected() -> None:
    assert vp9_is_keyframe(vp9(predicted=False))


def test_vp9_keyframe_with_scalability_structure_is_detected() -> None:
    payload = vp9(predicted=False, sid=0, ss=vp9_scalability_structure(3))
    d = parse_vp9_descriptor(payload)
    assert d is not None and d.is_keyframe
    assert d.has_scalability_structure
    assert d.header_size == 1 + 2 + 1 + 1 + (1 + 12 + 1 + 1 + 1)


@pytest.mark.parametrize(
    "payload",
    [vp9(predicted=True, sid=0), vp9(predicted=False, start=False), vp9(predicted=False, sid=1)],
    ids=["inter_predicted", "not_start_of_frame", "upper_spatial_layer"],
)
def test_vp9_non_keyframes_are_rejected(payload: bytes) -> None:
    assert not vp9_is_keyframe(payload)


def test_vp9_flexible_mode_reads_past_reference_indices() -> None:
    d = parse_vp9_descriptor(vp9(predicted=True, flexible=True, sid=0, tid=2, p_diffs=(1, 2, 3)))
    assert d is not None
    assert d.flexible and d.inter_predicted
    assert (d.temporal_id, d.spatial_id, d.tl0_pic_idx, d.picture_id) == (2, 0, None, 0x1234)
    assert d.header_size == 1 + 2 + 1 + 3
    assert not d.is_keyframe


def test_vp9_flexible_mode_keyframe_is_detected() -> None:
    assert vp9_is_keyframe(vp9(predicted=False, flexible=True, sid=0))


def test_vp9_non_flexible_mode_reads_tl0picidx() -> None:
    d = parse_vp9_descriptor(vp9(predicted=True, sid=1, tid=1, tl0=99, picture_id=None))
    assert d is not None
    assert (d.tl0_pic_idx, d.temporal_id, d.spatial_id, d.picture_id) == (99, 1, 1, None)


@pytest.mark.parametrize("payload", [b"", b"\x88", b"\xa8\x80", b"\x28", b"\x0a", b"\x0a\x18", b"\x5c\x03"])
def test_truncated_vp9_payloads_are_not_keyframes(payload: bytes) -> None:
    assert not vp9_is_keyframe(payload)


# --- AV1 and audio ---


def test_av1_new_coded_video_sequence_is_a_keyframe() -> None:
    assert av1_is_keyframe(av1(new_sequence=True))


def test_av1_other_packets_are_not_keyframes() -> None:
    assert not av1_is_keyframe(av1(new_sequence=False))
    assert not av1_is_keyframe(av1(new_sequence=False, continuation=True))
    assert not av1_is_keyframe(b"")


def test_opus_packets_are_always_keyframes() -> None:
    assert is_keyframe("audio/opus", b"\x78\x01")
    assert keyframe_detector("audio/opus") is always_keyframe


# --- dispatch ---


@pytest.mark.parametrize(
    ("mime", "payload"),
    [
        ("video/VP8", vp8(True)),
        ("VP9", vp9(predicted=False)),
        ("video/h264", h264_single(NAL_IDR)),
        ("video/AV1", av1(new_sequence=True)),
    ],
)
def test_detector_is_chosen_by_mime_type(mime: str, payload: bytes) -> None:
    assert keyframe_detector(mime)(payload)


def test_unknown_video_codec_has_no_detector() -> None:
    with pytest.raises(ValueError):
        keyframe_detector("video/H265")


def test_detectors_accept_a_memoryview() -> None:
    assert vp8_is_keyframe(memoryview(b"junk" + vp8(True))[4:])
    assert h264_is_keyframe(memoryview(h264_stap_a(NAL_SPS, NAL_IDR)))


@given(st.binary(max_size=40))
def test_detectors_never_raise_on_garbage(payload: bytes) -> None:
    for detector in (vp8_is_keyframe, vp9_is_keyframe, h264_is_keyframe, av1_is_keyframe):
        assert detector(payload) in (True, False)
    parse_vp8_descriptor(payload)
    parse_vp9_descriptor(payload)


@given(st.binary(max_size=24), st.booleans())
def test_vp8_fast_check_agrees_with_the_full_descriptor(tail: bytes, keyframe_like: bool) -> None:
    payload = tail[:4] + (b"\x10\x02\x00\x9d\x01\x2a" if keyframe_like else b"") + tail[4:]
    descriptor = parse_vp8_descriptor(payload)
    assert vp8_is_keyframe(payload) == (descriptor is not None and descriptor.is_keyframe)
