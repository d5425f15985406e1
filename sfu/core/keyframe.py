"""Keyframe detection from RTP payloads, without decoding.

A subscriber can only start (or switch layers) on a keyframe, so the forwarder must recognise the
first packet of one. Each detector looks at the codec's RTP payload descriptor / NAL header only:

- VP8 (RFC 7741): start of partition 0 and the P bit of the VP8 frame tag cleared, with the
  keyframe start code present.
- VP9 (RFC 9628): beginning of a frame that is not inter-picture predicted, base spatial layer.
- H.264 (RFC 6184): an IDR slice or SPS as a single NAL unit, inside a STAP-A, or at the start of
  an FU-A.
- AV1 (RTP payload format for AV1): the aggregation header's N bit (new coded video sequence).
- Audio (Opus, ...): every packet can be decoded on its own, so every packet counts.

Detectors accept ``bytes``, ``bytearray`` or a ``memoryview`` (e.g. ``RtpView.payload``) and
never raise on malformed payloads: they answer False.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

Payload = bytes | bytearray | memoryview
KeyframeDetector = Callable[[Payload], bool]

_VP8_START_CODE = b"\x9d\x01\x2a"
H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28


@dataclass(frozen=True, slots=True)
class Vp8Descriptor:
    """The VP8 payload descriptor (RFC 7741 section 4.2) of one packet."""

    start_of_partition: bool
    partition_index: int
    non_reference: bool
    picture_id: int | None  # 7 or 15 bits
    picture_id_bits: int  # 0, 7 or 15
    tl0_pic_idx: int | None
    temporal_id: int | None
    layer_sync: bool
    key_index: int | None
    header_size: int  # offset of the VP8 payload after the descriptor
    is_keyframe: bool


def parse_vp8_descriptor(payload: Payload) -> Vp8Descriptor | None:
    """Parse the VP8 payload descriptor; None if the payload is too short for it."""
    size = len(payload)
    if size < 1:
        return None
    b0 = payload[0]
    pos = 1
    picture_id: int | None = None
    pid_bits = 0
    tl0: int | None = None
    tid: int | None = None
    sync = False
    key_idx: int | None = None
    if b0 & 0x80:
        if size < 2:
            return None
        x = payload[1]
        pos = 2
        if x & 0x80:  # I: picture id
            if pos >= size:
                return None
            if payload[pos] & 0x80:  # M: 15-bit picture id
                if pos + 2 > size:
                    return None
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                pid_bits = 15
                pos += 2
            else:
                picture_id = payload[pos]
                pid_bits = 7
                pos += 1
        if x & 0x40:  # L: TL0PICIDX
            if pos >= size:
                return None
            tl0 = payload[pos]
            pos += 1
        if x & 0x30:  # T or K: TID/Y/KEYIDX byte
            if pos >= size:
                return None
            b = payload[pos]
            if x & 0x20:
                tid = b >> 6
                sync = bool(b & 0x20)
            if x & 0x10:
                key_idx = b & 0x1F
            pos += 1
    start = bool(b0 & 0x10)
    part = b0 & 0x07
    keyframe = (
        start
        and part == 0
        and pos + 6 <= size
        and not payload[pos] & 0x01
        and payload[pos + 3 : pos + 6] == _VP8_START_CODE
    )
    return Vp8Descriptor(
        start, part, bool(b0 & 0x20), picture_id, pid_bits, tl0, tid, sync, key_idx, pos, keyframe
    )


def vp8_is_keyframe(payload: Payload) -> bool:
    """True for the first packet of a VP8 keyframe (same answer as ``parse_vp8_descriptor``,
    without building the descriptor: this runs for every incoming video packet)."""
    size = len(payload)
    if size < 1 or payload[0] & 0x17 != 0x10:  # S set, partition index 0
        return False
    pos = 1
    if payload[0] & 0x80:
        if size < 2:
            return False
        x = payload[1]
        pos = 2
        if x & 0x80:
            if pos >= size:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if x & 0x40:
            pos += 1
        if x & 0x30:
            pos += 1
    return pos + 6 <= size and not payload[pos] & 0x01 and payload[pos + 3 : pos + 6] == _VP8_START_CODE


@dataclass(frozen=True, slots=True)
class Vp9Descriptor:
    """The VP9 payload descriptor (RFC 9628 section 4.2) of one packet."""

    inter_predicted: bool  # P
    flexible: bool  # F
    start_of_frame: bool  # B
    end_of_frame: bool  # E
    picture_id: int | None
    temporal_id: int | None
    spatial_id: int | None
    switching_up: bool
    inter_layer_dependent: bool  # D
    tl0_pic_idx: int | None
    has_scalability_structure: bool  # V
    header_size: int

    @property
    def is_keyframe(self) -> bool:
        return (
            self.start_of_frame
            and not self.inter_predicted
            and (self.spatial_id is None or self.spatial_id == 0)
        )


def parse_vp9_descriptor(payload: Payload) -> Vp9Descriptor | None:
    """Parse the VP9 payload descriptor; None if it is truncated."""
    size = len(payload)
    if size < 1:
        return None
    b0 = payload[0]
    predicted, layers, flexible = bool(b0 & 0x40), bool(b0 & 0x20), bool(b0 & 0x10)
    pos = 1
    picture_id: int | None = None
    tid: int | None = None
    sid: int | None = None
    switching_up = dependent = False
    tl0: int | None = None
    if b0 & 0x80:  # I: picture id
        if pos >= size:
            return None
        if payload[pos] & 0x80:
            if pos + 2 > size:
                return None
            picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
            pos += 2
        else:
            picture_id = payload[pos]
            pos += 1
    if layers:
        if pos >= size:
            return None
        b = payload[pos]
        tid, switching_up, sid, dependent = b >> 5, bool(b & 0x10), (b >> 1) & 0x07, bool(b & 0x01)
        pos += 1
        if not flexible:
            if pos >= size:
                return None
            tl0 = payload[pos]
            pos += 1
    if flexible and predicted:  # up to 3 reference indices, N bit chains them
        for _ in range(3):
            if pos >= size:
                return None
            more = payload[pos] & 0x01
            pos += 1
            if not more:
                break
    if b0 & 0x02:  # V: scalability structure
        pos = _skip_vp9_ss(payload, pos)
        if pos < 0:
            return None
    if pos > size:
        return None
    return Vp9Descriptor(
        inter_predicted=predicted,
        flexible=flexible,
        start_of_frame=bool(b0 & 0x08),
        end_of_frame=bool(b0 & 0x04),
        picture_id=picture_id,
        temporal_id=tid,
        spatial_id=sid,
        switching_up=switching_up,
        inter_layer_dependent=dependent,
        tl0_pic_idx=tl0,
        has_scalability_structure=bool(b0 & 0x02),
        header_size=pos,
    )


def _skip_vp9_ss(payload: Payload, pos: int) -> int:
    """Offset after a VP9 scalability structure starting at ``pos``, or -1 if truncated."""
    size = len(payload)
    if pos >= size:
        return -1
    b = payload[pos]
    pos += 1
    if b & 0x10:  # Y: resolutions of the N_S + 1 spatial layers
        pos += 4 * ((b >> 5) + 1)
    if b & 0x08:  # G: picture group description
        if pos >= size:
            return -1
        groups = payload[pos]
        pos += 1
        for _ in range(groups):
            if pos >= size:
                return -1
            refs = (payload[pos] >> 2) & 0x03
            pos += 1 + refs
    return pos if pos <= size else -1


def vp9_is_keyframe(payload: Payload) -> bool:
    """True for the first packet of a VP9 keyframe (base spatial layer)."""
    if len(payload) < 1 or payload[0] & 0x48 != 0x08:  # B set, P clear
        return False
    d = parse_vp9_descriptor(payload)
    return d is not None and d.is_keyframe


def h264_is_keyframe(payload: Payload) -> bool:
    """True for a packet that starts an H.264 IDR picture or carries an SPS."""
    size = len(payload)
    if size < 1:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == H264_NAL_IDR or nal_type == H264_NAL_SPS:
        return True
    if nal_type == H264_STAP_A:
        pos = 1
        while pos + 2 < size:
            length = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if length == 0 or pos + length > size:
                return False
            inner = payload[pos] & 0x1F
            if inner == H264_NAL_IDR or inner == H264_NAL_SPS:
                return True
            pos += length
        return False
    if nal_type == H264_FU_A:
        if size < 2:
            return False
        fu = payload[1]
        return bool(fu & 0x80) and (fu & 0x1F) in (H264_NAL_IDR, H264_NAL_SPS)
    return False


def av1_is_keyframe(payload: Payload) -> bool:
    """True for the first packet of a new AV1 coded video sequence (aggregation header N bit)."""
    return len(payload) >= 1 and bool(payload[0] & 0x08)


def always_keyframe(payload: Payload) -> bool:
    """Audio codecs: every packet is independently decodable."""
    return True


def keyframe_detector(mime_type: str) -> KeyframeDetector:
    """Detector for a codec given as ``"video/VP8"``, ``"VP8"``, ``"audio/opus"``...

    Chosen once per track, so the per-packet path is a single call. Raises ``ValueError`` for a
    video codec it does not know.
    """
    kind, _, name = mime_type.lower().rpartition("/")
    detector = _DETECTORS.get(name)
    if detector is not None:
        return detector
    if kind == "audio" or name in ("opus", "pcmu", "pcma", "g722"):
        return always_keyframe
    raise ValueError(f"no keyframe detector for {mime_type!r}")


def is_keyframe(mime_type: str, payload: Payload) -> bool:
    """Convenience form of ``keyframe_detector(mime_type)(payload)``."""
    return keyframe_detector(mime_type)(payload)


_DETECTORS: Mapping[str, KeyframeDetector] = MappingProxyType(
    {
        "vp8": vp8_is_keyframe,
        "vp9": vp9_is_keyframe,
        "h264": h264_is_keyframe,
        "av1": av1_is_keyframe,
    }
)
