"""Hand-built RTP packets and codec payloads for the core tests.

Written independently of ``sfu.core`` so the tests do not check the code against itself.
"""

from __future__ import annotations

import struct


def one_byte_extensions(elements: dict[int, bytes], padding_between: int = 0) -> bytes:
    body = b""
    for ext_id, value in elements.items():
        body += bytes([(ext_id << 4) | (len(value) - 1)]) + value + bytes(padding_between)
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def two_byte_extensions(elements: dict[int, bytes], appbits: int = 0) -> bytes:
    body = b""
    for ext_id, value in elements.items():
        body += bytes([ext_id, len(value)]) + value
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0x1000 | appbits, len(body) // 4) + body


def rtp(
    seq: int = 1,
    ts: int = 0,
    ssrc: int = 0x11111111,
    pt: int = 96,
    marker: bool = False,
    payload: bytes = b"\xaa" * 10,
    csrcs: tuple[int, ...] = (),
    extension: bytes = b"",
    padding: int = 0,
) -> bytes:
    """An RTP packet; ``extension`` is a complete extension block (profile + length + body)."""
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | len(csrcs)
    b1 = (0x80 if marker else 0) | pt
    header = struct.pack("!BBHII", b0, b1, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    header += b"".join(struct.pack("!I", c) for c in csrcs)
    pad = bytes(padding - 1) + bytes([padding]) if padding else b""
    return header + extension + payload + pad


# --- VP8 (RFC 7741) ---------------------------------------------------------------------------


def vp8(
    keyframe: bool,
    *,
    start: bool = True,
    partition: int = 0,
    picture_id: int | None = None,
    long_picture_id: bool = False,
    tl0: int | None = None,
    tid: int | None = None,
    layer_sync: bool = False,
    key_idx: int | None = None,
) -> bytes:
    extended = picture_id is not None or tl0 is not None or tid is not None or key_idx is not None
    out = bytes([(0x80 if extended else 0) | (0x10 if start else 0) | partition])
    if extended:
        x = 0
        x |= 0x80 if picture_id is not None else 0
        x |= 0x40 if tl0 is not None else 0
        x |= 0x20 if tid is not None else 0
        x |= 0x10 if key_idx is not None else 0
        out += bytes([x])
        if picture_id is not None:
            if long_picture_id:
                out += struct.pack("!H", 0x8000 | picture_id)
            else:
                out += bytes([picture_id & 0x7F])
        if tl0 is not None:
            out += bytes([tl0])
        if tid is not None or key_idx is not None:
            out += bytes([((tid or 0) << 6) | (0x20 if layer_sync else 0) | (key_idx or 0)])
    if keyframe:
        # frame tag: P=0, version 0, show_frame, then the start code and 640x360
        out += bytes([0x10, 0x02, 0x00]) + b"\x9d\x01\x2a" + struct.pack("<HH", 640, 360)
    else:
        out += bytes([0x11, 0x02, 0x00])
    return out + b"\x55" * 20


# --- H.264 (RFC 6184) -------------------------------------------------------------------------

NAL_SLICE = 0x41  # NRI 2, type 1
NAL_IDR = 0x65  # NRI 3, type 5
NAL_SPS = 0x67
NAL_PPS = 0x68


def h264_single(nal_header: int) -> bytes:
    return bytes([nal_header]) + b"\x88" * 30


def h264_stap_a(*nal_headers: int) -> bytes:
    out = bytes([0x78])  # NRI 3, type 24
    for header in nal_headers:
        nal = bytes([header]) + b"\x42" * 5
        out += struct.pack("!H", len(nal)) + nal
    return out


def h264_fu_a(nal_header: int, *, start: bool, end: bool = False) -> bytes:
    indicator = (nal_header & 0xE0) | 28
    fu = (0x80 if start else 0) | (0x40 if end else 0) | (nal_header & 0x1F)
    return bytes([indicator, fu]) + b"\x99" * 40


# --- VP9 (RFC 9628) ---------------------------------------------------------------------------


def vp9(
    *,
    predicted: bool,
    start: bool = True,
    end: bool = True,
    picture_id: int | None = 0x1234,
    flexible: bool = False,
    sid: int | None = None,
    tid: int = 0,
    tl0: int = 7,
    p_diffs: tuple[int, ...] = (),
    ss: bytes | None = None,
) -> bytes:
    b0 = 0
    b0 |= 0x80 if picture_id is not None else 0
    b0 |= 0x40 if predicted else 0
    b0 |= 0x20 if sid is not None else 0
    b0 |= 0x10 if flexible else 0
    b0 |= 0x08 if start else 0
    b0 |= 0x04 if end else 0
    b0 |= 0x02 if ss is not None else 0
    out = bytes([b0])
    if picture_id is not None:
        out += struct.pack("!H", 0x8000 | picture_id)
    if sid is not None:
        out += bytes([(tid << 5) | (sid << 1)])
        if not flexible:
            out += bytes([tl0])
    if flexible and predicted:
        for i, diff in enumerate(p_diffs):
            more = 1 if i < len(p_diffs) - 1 else 0
            out += bytes([(diff << 1) | more])
    if ss is not None:
        out += ss
    return out + b"\x77" * 20


def vp9_scalability_structure(layers: int = 2) -> bytes:
    """SS with Y=1 (resolutions) and G=1 (one group with one reference)."""
    out = bytes([((layers - 1) << 5) | 0x10 | 0x08])
    for i in range(layers):
        out += struct.pack("!HH", 320 << i, 180 << i)
    out += bytes([1])  # N_G = 1
    out += bytes([(0 << 5) | (1 << 2)])  # TID 0, U 0, R = 1
    out += bytes([1])  # P_DIFF
    return out


# --- AV1 --------------------------------------------------------------------------------------


def av1(*, new_sequence: bool, continuation: bool = False) -> bytes:
    header = (0x80 if continuation else 0) | 0x10 | (0x08 if new_sequence else 0)
    return bytes([header]) + b"\x0a\x0b\x00\x00\x00" + b"\x33" * 20
