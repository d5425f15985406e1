"""RTP header view and header rewrite (RFC 3550, header extensions per RFC 8285).

``RtpView`` parses the fixed header, the CSRC list and the header-extension block of a received
datagram without copying the payload. The packet a subscriber receives is a new fixed header
(``pack_fixed_header``: its SSRC, payload type, sequence number and timestamp, the marker kept)
followed by ``ExtensionRemapper.tail``: the CSRCs, an extension block rebuilt with the
subscriber's negotiated extension ids, the payload and its padding.

All input is untrusted: anything malformed raises ``RtpParseError`` (a ``ValueError``), never
``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from types import MappingProxyType

RTP_VERSION = 2
FIXED_HEADER_SIZE = 12
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000
TWO_BYTE_PROFILE_MASK = 0xFFF0

_FIXED = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
_OSN = struct.Struct("!H")
_EMPTY: Mapping[int, bytes] = MappingProxyType({})


class RtpParseError(ValueError):
    """Malformed RTP or RTCP input. The message says what is wrong."""


def _parse_one_byte(data: bytes, pos: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while pos < end:
        b = data[pos]
        if b < 0x10:  # id 0: a padding byte
            pos += 1
            continue
        if b >= 0xF0:  # id 15 is reserved: stop processing the block (RFC 8285 section 4.2)
            break
        nxt = pos + 2 + (b & 0x0F)
        if nxt > end:
            raise RtpParseError("one-byte header extension element runs past the extension block")
        out[b >> 4] = data[pos + 1 : nxt]
        pos = nxt
    return out


def _parse_two_byte(data: bytes, pos: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while pos < end:
        ext_id = data[pos]
        if ext_id == 0:  # padding byte
            pos += 1
            continue
        if pos + 2 > end:
            raise RtpParseError("two-byte header extension element header is truncated")
        size = data[pos + 1]
        pos += 2
        if pos + size > end:
            raise RtpParseError("two-byte header extension element runs past the extension block")
        out[ext_id] = data[pos : pos + size]
        pos += size
    return out


def clear_header(data: bytes, extension_id: int) -> tuple[int, int, int, int, bytes | None] | None:
    """(SSRC, sequence number, timestamp, header length, value of one-byte header extension
    ``extension_id`` or None) read from an RTP packet's header only, which SRTP leaves in the
    clear; None when ``data`` is not a well-formed RTP header. Nothing here is authenticated."""
    size = len(data)
    if size < FIXED_HEADER_SIZE or data[0] >> 6 != RTP_VERSION:
        return None
    b0, _b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    pos = FIXED_HEADER_SIZE + 4 * (b0 & 0x0F)
    value = None
    if b0 & 0x10:
        if pos + 4 > size:
            return None
        profile, words = _EXT_HEADER.unpack_from(data, pos)
        start, pos = pos + 4, pos + 4 + 4 * words
        if pos > size:
            return None
        if profile == ONE_BYTE_PROFILE:
            try:
                value = _parse_one_byte(data, start, pos).get(extension_id)
            except RtpParseError:
                return None
    return ssrc, seq, ts, pos, value


class RtpView:
    """Parsed header of one RTP packet; the payload stays in ``data``.

    ``header_length`` is the offset of the payload; ``payload_end`` excludes RTP padding.
    ``extensions`` maps extension id to value for the one-byte and two-byte forms; for any other
    profile it is empty and ``extension_profile`` tells which profile was present (0 = none).
    """

    __slots__ = (
        "csrc_count",
        "data",
        "extension_profile",
        "extensions",
        "header_length",
        "marker",
        "padding",
        "payload_end",
        "payload_type",
        "sequence",
        "ssrc",
        "timestamp",
    )

    def __init__(self, data: bytes) -> None:
        size = len(data)
        if size < FIXED_HEADER_SIZE:
            raise RtpParseError(f"RTP packet too short: {size} bytes")
        b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise RtpParseError(f"RTP version {b0 >> 6} is not 2")
        cc = b0 & 0x0F
        pos = FIXED_HEADER_SIZE + 4 * cc
        extensions = _EMPTY
        profile = 0
        if b0 & 0x10:
            if pos + 4 > size:
                raise RtpParseError("RTP header extension header is truncated")
            profile, words = _EXT_HEADER.unpack_from(data, pos)
            start = pos + 4
            pos = start + 4 * words
            if pos > size:
                raise RtpParseError("RTP header extension runs past the end of the packet")
            if profile == ONE_BYTE_PROFILE:
                extensions = _parse_one_byte(data, start, pos)
            elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
                extensions = _parse_two_byte(data, start, pos)
        elif pos > size:
            raise RtpParseError("RTP CSRC list runs past the end of the packet")
        end = size
        if b0 & 0x20:
            pad = data[size - 1] if size > pos else 0
            if pad == 0 or pos + pad > size:
                raise RtpParseError("RTP padding length is invalid")
            end = size - pad
        self.data: bytes = data
        self.padding: bool = bool(b0 & 0x20)
        self.marker: bool = bool(b1 & 0x80)
        self.payload_type: int = b1 & 0x7F
        self.sequence: int = seq
        self.timestamp: int = ts
        self.ssrc: int = ssrc
        self.csrc_count: int = cc
        self.extension_profile: int = profile
        self.extensions: Mapping[int, bytes] = extensions
        self.header_length: int = pos
        self.payload_end: int = end

    @classmethod
    def parse(cls, data: bytes) -> RtpView:
        """Parse ``data``; raises ``RtpParseError`` if it is not a well-formed RTP packet."""
        return cls(data)

    @property
    def version(self) -> int:
        """Always 2: other versions are rejected while parsing."""
        return RTP_VERSION

    @property
    def payload_offset(self) -> int:
        """Offset of the payload in ``data`` (same as ``header_length``)."""
        return self.header_length

    @property
    def payload(self) -> memoryview:
        """The payload without RTP padding, as a zero-copy view."""
        return memoryview(self.data)[self.header_length : self.payload_end]

    @property
    def csrcs(self) -> tuple[int, ...]:
        """The contributing sources listed in the header."""
        return struct.unpack_from(f"!{self.csrc_count}I", self.data, FIXED_HEADER_SIZE)

    def extension(self, ext_id: int) -> bytes | None:
        """Value of header extension ``ext_id``, or None if the packet does not carry it."""
        return self.extensions.get(ext_id)


def build_extension_block(elements: Mapping[int, bytes]) -> bytes:
    """Encode extension elements (id -> value) as an RFC 8285 block including its 4-byte header.

    The one-byte form is used when every id is 1..14 and every value 1..16 bytes long, the two-byte
    form otherwise. Returns ``b""`` for no elements. Raises ``ValueError`` for ids or values that no
    form can carry (a programming error, not untrusted input).
    """
    if not elements:
        return b""
    body = bytearray()
    one_byte = True
    for ext_id, value in elements.items():
        if not (0 < ext_id < 15 and 0 < len(value) <= 16):
            one_byte = False
            break
        body.append((ext_id << 4) | (len(value) - 1))
        body += value
    if one_byte:
        profile = ONE_BYTE_PROFILE
    else:
        profile = TWO_BYTE_PROFILE
        body.clear()
        for ext_id, value in elements.items():
            if not 0 < ext_id <= 255 or len(value) > 255:
                raise ValueError(f"header extension {ext_id} with {len(value)} bytes cannot be encoded")
            body.append(ext_id)
            body.append(len(value))
            body += value
    pad = -len(body) % 4
    if pad:
        body += bytes(pad)
    return _EXT_HEADER.pack(profile, len(body) >> 2) + body


pack_fixed_header = _FIXED.pack
"""``pack_fixed_header(first_byte, marker_and_payload_type, sequence, timestamp, ssrc)``: the
12-byte fixed RTP header (values already wrapped to their field widths)."""

pack_fixed_header_into = _FIXED.pack_into
"""``pack_fixed_header_into(buffer, offset, first_byte, marker_and_payload_type, sequence,
timestamp, ssrc)``: ``pack_fixed_header`` written into a writable buffer."""


def build_rtx(view: RtpView, *, ssrc: int, payload_type: int, sequence: int) -> bytes:
    """RFC 4588 retransmission packet for ``view`` (an already rewritten packet): same timestamp,
    marker, CSRCs and extensions; the original sequence number prefixed to the payload; RTP
    padding is not carried over. ``sequence`` (the RTX stream's) is wrapped to 16 bits here, so
    an extended counter may be passed."""
    data = view.data
    header_length = view.header_length
    header = _FIXED.pack(
        data[0] & 0xDF,
        (data[1] & 0x80) | (payload_type & 0x7F),
        sequence & 0xFFFF,
        view.timestamp,
        ssrc,
    )
    osn = _OSN.pack(view.sequence)
    return header + data[FIXED_HEADER_SIZE:header_length] + osn + data[header_length : view.payload_end]


def unwrap_rtx(view: RtpView, *, ssrc: int, payload_type: int) -> bytes:
    """The original packet carried by RFC 4588 retransmission packet ``view``: the sequence number
    comes from the first two payload bytes, ``ssrc``/``payload_type`` are the original stream's.
    Header extensions and CSRCs are kept. Raises ``RtpParseError`` if the payload is too short."""
    start = view.header_length
    end = view.payload_end
    if end - start < 2:
        raise RtpParseError("RTX packet has no original sequence number")
    data = view.data
    (osn,) = _OSN.unpack_from(data, start)
    header = _FIXED.pack(
        data[0] & 0xDF,
        (data[1] & 0x80) | (payload_type & 0x7F),
        osn,
        view.timestamp,
        ssrc,
    )
    return header + data[FIXED_HEADER_SIZE:start] + data[start + 2 : end]


class ExtensionRemapper:
    """Maps header extensions from a publisher's negotiated ids to a subscriber's.

    Built from ``{uri: id}`` maps of both sides; extensions the subscriber did not negotiate are
    dropped. ``block()`` and ``tail()`` remember the last packet they encoded, so one remapper
    shared by every subscriber with the same id map encodes each incoming packet once; the
    forwarding path reads ``last_tail`` itself when ``tail_view`` is its packet (no call).
    """

    __slots__ = ("_id_map", "_last_block", "_last_in", "last_tail", "tail_view")

    def __init__(self, id_map: Mapping[int, int]) -> None:
        for src, dst in id_map.items():
            if not 1 <= src <= 255 or not 1 <= dst <= 255:
                raise ValueError(f"invalid extension id mapping {src} -> {dst}")
        self._id_map = dict(id_map)
        self._last_in: Mapping[int, bytes] | None = None
        self._last_block = b""
        self.tail_view: RtpView | None = None  # the packet ``last_tail`` is of
        self.last_tail: tuple[int, bytes] = (0, b"")

    @classmethod
    def from_uris(cls, publisher: Mapping[str, int], subscriber: Mapping[str, int]) -> ExtensionRemapper:
        """Remapper for the extension URIs both sides negotiated (``{uri: id}`` each)."""
        return cls({pid: subscriber[uri] for uri, pid in publisher.items() if uri in subscriber})

    @property
    def id_map(self) -> Mapping[int, int]:
        """Publisher id -> subscriber id."""
        return MappingProxyType(self._id_map)

    def remap(self, extensions: Mapping[int, bytes]) -> dict[int, bytes]:
        """The elements the subscriber understands, keyed by the subscriber's ids."""
        id_map = self._id_map
        return {id_map[i]: v for i, v in extensions.items() if i in id_map}

    def tail(self, view: RtpView) -> tuple[int, bytes]:
        """What every subscriber of this id map gets of ``view`` beyond the first 12 bytes: the
        rewritten first header byte (padding, extension and CSRC count bits) and the bytes after
        the fixed header (CSRCs, rebuilt extension block, payload, padding). With them a packet
        is ``pack_fixed_header(first_byte, ...) + tail``."""
        if view is self.tail_view:
            return self.last_tail
        data = view.data
        block = self.block(view.extensions)
        cc = view.csrc_count
        first = 0x80 | (data[0] & 0x20) | (0x10 if block else 0) | cc
        if cc or block:
            rest = data[FIXED_HEADER_SIZE : FIXED_HEADER_SIZE + 4 * cc] + block + data[view.header_length :]
        else:
            rest = data[view.header_length :]
        self.tail_view = view
        self.last_tail = (first, rest)
        return self.last_tail

    def block(self, extensions: Mapping[int, bytes]) -> bytes:
        """Encoded extension block for the subscriber (``b""`` when nothing is left)."""
        if extensions is self._last_in:
            return self._last_block
        block = build_extension_block(self.remap(extensions)) if extensions else b""
        self._last_in = extensions
        self._last_block = block
        return block
