"""The RTCP packets a forwarding unit reads and writes (RFC 3550, RFC 4585, RFC 5104, REMB).

Each packet type is a frozen dataclass with ``parse()`` and ``__bytes__``. ``parse_rtcp`` splits a
compound packet and parses what it knows; anything else (SDES, BYE, transport-wide feedback, ...)
comes back as ``UnknownRtcp`` so it is never mistaken for something it is not.
Malformed input raises ``RtcpParseError`` (a subclass of ``RtpParseError``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from sfu.core.rtp import RtpParseError

PT_SR = 200
PT_RR = 201
PT_SDES = 202
PT_BYE = 203
PT_RTPFB = 205
PT_PSFB = 206
FMT_NACK = 1
FMT_PLI = 1
FMT_FIR = 4
FMT_AFB = 15

_HEADER = struct.Struct("!BBH")
_II = struct.Struct("!II")
_HH = struct.Struct("!HH")
_SR_INFO = struct.Struct("!IQIII")
_BLOCK = struct.Struct("!IB3sIIII")
_REMB_ID = b"REMB"


class RtcpParseError(RtpParseError):
    """Malformed RTCP input."""


def is_rtcp(data: bytes) -> bool:
    """True when a datagram multiplexed with RTP is RTCP (RFC 5761: second byte 192..223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def _header(count: int, packet_type: int, body_length: int) -> bytes:
    return _HEADER.pack(0x80 | count, packet_type, (body_length + 4) // 4 - 1)


def split_compound(data: bytes) -> list[bytes]:
    """Split a compound RTCP packet into its packets (RTCP padding removed from the last one)."""
    packets: list[bytes] = []
    pos = 0
    size = len(data)
    if size == 0:
        raise RtcpParseError("empty RTCP packet")
    while pos < size:
        if pos + 4 > size:
            raise RtcpParseError("RTCP header is truncated")
        b0, _pt, words = _HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise RtcpParseError(f"RTCP version {b0 >> 6} is not 2")
        end = pos + 4 * (words + 1)
        if end > size:
            raise RtcpParseError("RTCP packet runs past the end of the datagram")
        packet = data[pos:end]
        if b0 & 0x20:
            pad = packet[-1]
            if end != size or pad == 0 or pad > len(packet) - 4:
                raise RtcpParseError("RTCP padding is invalid")
            packet = packet[: len(packet) - pad]
        packets.append(packet)
        pos = end
    return packets


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 section 6.4.1)."""

    ssrc: int
    fraction_lost: int
    packets_lost: int  # cumulative, signed 24-bit
    highest_sequence: int  # extended highest sequence number received
    jitter: int
    last_sr: int  # middle 32 bits of the NTP time of the last SR received
    delay_since_last_sr: int  # in units of 1/65536 s

    SIZE: ClassVar[int] = 24

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        if offset + cls.SIZE > len(data):
            raise RtcpParseError("RTCP report block is truncated")
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        packets_lost = int.from_bytes(lost, "big", signed=True)
        return cls(ssrc, fraction, packets_lost, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)).to_bytes(3, "big", signed=True)
        return _BLOCK.pack(
            self.ssrc,
            self.fraction_lost,
            lost,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )


def _parse_blocks(packet: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + count * ReportBlock.SIZE > len(packet):
        raise RtcpParseError("RTCP report count exceeds the packet length")
    return tuple(ReportBlock.parse(packet, offset + i * ReportBlock.SIZE) for i in range(count))


@dataclass(frozen=True, slots=True)
class SenderReport:
    """Sender report: the NTP/RTP timestamp pair used for lip sync, plus sender counters."""

    ssrc: int
    ntp_timestamp: int  # 64-bit NTP time: seconds << 32 | fraction
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    @classmethod
    def parse(cls, packet: bytes) -> SenderReport:
        if len(packet) < 28:
            raise RtcpParseError("RTCP sender report is truncated")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(packet, 4)
        return cls(ssrc, ntp, rtp_ts, packets, octets, _parse_blocks(packet, 28, packet[0] & 0x1F))

    def __bytes__(self) -> bytes:
        body = _SR_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        ) + b"".join(bytes(r) for r in self.reports)
        return _header(len(self.reports), PT_SR, len(body)) + body

    @property
    def ntp_seconds(self) -> float:
        """NTP time as float seconds since 1900."""
        return self.ntp_timestamp / (1 << 32)

    @property
    def ntp_middle(self) -> int:
        """The middle 32 bits of the NTP time, as echoed in a report block's ``last_sr``."""
        return (self.ntp_timestamp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """Receiver report: reception statistics about the sources ``ssrc`` receives."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    @classmethod
    def parse(cls, packet: bytes) -> ReceiverReport:
        if len(packet) < 8:
            raise RtcpParseError("RTCP receiver report is truncated")
        (ssrc,) = struct.unpack_from("!I", packet, 4)
        return cls(ssrc, _parse_blocks(packet, 8, packet[0] & 0x1F))

    def __bytes__(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(bytes(r) for r in self.reports)
        return _header(len(self.reports), PT_RR, len(body)) + body


@dataclass(frozen=True, slots=True)
class Pli:
    """Picture loss indication (RFC 4585 section 6.3.1): asks ``media_ssrc`` for a keyframe."""

    sender_ssrc: int
    media_ssrc: int

    @classmethod
    def parse(cls, packet: bytes) -> Pli:
        if len(packet) < 12:
            raise RtcpParseError("RTCP PLI is truncated")
        return cls(*_II.unpack_from(packet, 4))

    def __bytes__(self) -> bytes:
        return _header(FMT_PLI, PT_PSFB, 8) + _II.pack(self.sender_ssrc, self.media_ssrc)


@dataclass(frozen=True, slots=True)
class Fir:
    """Full intra request (RFC 5104 section 4.3.1): ``entries`` are (media ssrc, command seq nr)."""

    sender_ssrc: int
    entries: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, packet: bytes) -> Fir:
        if len(packet) < 12 or (len(packet) - 12) % 8:
            raise RtcpParseError("RTCP FIR has an invalid length")
        (sender,) = struct.unpack_from("!I", packet, 4)
        entries = tuple(
            (struct.unpack_from("!I", packet, pos)[0], packet[pos + 4]) for pos in range(12, len(packet), 8)
        )
        return cls(sender, entries)

    def __bytes__(self) -> bytes:
        body = _II.pack(self.sender_ssrc, 0) + b"".join(
            struct.pack("!IB3x", ssrc, seq & 0xFF) for ssrc, seq in self.entries
        )
        return _header(FMT_FIR, PT_PSFB, len(body)) + body


def nack_pairs(lost: Iterable[int]) -> list[tuple[int, int]]:
    """Compress lost sequence numbers into (pid, blp) pairs (RFC 4585 section 6.2.1).

    ``lost`` must be in ascending order (extended numbers, or 16-bit ones in modular order).
    Each pair covers ``pid`` and the 16 numbers after it, bit ``i`` of ``blp`` meaning pid + i + 1.
    """
    pairs: list[tuple[int, int]] = []
    pid = -1
    blp = 0
    for seq in lost:
        seq &= 0xFFFF
        if pid >= 0:
            d = (seq - pid) & 0xFFFF
            if d == 0:
                continue
            if d <= 16:
                blp |= 1 << (d - 1)
                continue
            pairs.append((pid, blp))
        pid = seq
        blp = 0
    if pid >= 0:
        pairs.append((pid, blp))
    return pairs


def expand_nack_pair(pid: int, blp: int) -> list[int]:
    """The 16-bit sequence numbers one (pid, blp) pair reports lost, in order."""
    out = [pid & 0xFFFF]
    for bit in range(16):
        if blp & (1 << bit):
            out.append((pid + bit + 1) & 0xFFFF)
    return out


@dataclass(frozen=True, slots=True)
class Nack:
    """Generic NACK (RFC 4585 section 6.2.1): ``lost`` are 16-bit sequence numbers of ``media_ssrc``."""

    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]

    @classmethod
    def parse(cls, packet: bytes) -> Nack:
        if len(packet) < 16 or len(packet) % 4:
            raise RtcpParseError("RTCP NACK has an invalid length")
        sender, media = _II.unpack_from(packet, 4)
        lost: list[int] = []
        for pos in range(12, len(packet), 4):
            lost.extend(expand_nack_pair(*_HH.unpack_from(packet, pos)))
        return cls(sender, media, tuple(lost))

    def __bytes__(self) -> bytes:
        body = _II.pack(self.sender_ssrc, self.media_ssrc) + b"".join(
            _HH.pack(pid, blp) for pid, blp in nack_pairs(self.lost)
        )
        return _header(FMT_NACK, PT_RTPFB, len(body)) + body


@dataclass(frozen=True, slots=True)
class Remb:
    """Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb), in bits per second."""

    sender_ssrc: int
    bitrate: int
    ssrcs: tuple[int, ...]

    @classmethod
    def parse(cls, packet: bytes) -> Remb:
        if len(packet) < 20 or packet[12:16] != _REMB_ID:
            raise RtcpParseError("not a REMB packet")
        (sender,) = struct.unpack_from("!I", packet, 4)
        count = packet[16]
        exponent = packet[17] >> 2
        mantissa = ((packet[17] & 0x03) << 16) | (packet[18] << 8) | packet[19]
        if 20 + 4 * count > len(packet):
            raise RtcpParseError("REMB SSRC list runs past the end of the packet")
        ssrcs = struct.unpack_from(f"!{count}I", packet, 20)
        return cls(sender, mantissa << exponent, ssrcs)

    def __bytes__(self) -> bytes:
        exponent = 0
        mantissa = max(0, self.bitrate)
        while mantissa >= 1 << 18:
            mantissa >>= 1
            exponent += 1
        if exponent > 63:
            raise ValueError("REMB bitrate too large to encode")
        body = (
            _II.pack(self.sender_ssrc, 0)
            + _REMB_ID
            + bytes(
                (len(self.ssrcs), (exponent << 2) | (mantissa >> 16), (mantissa >> 8) & 0xFF, mantissa & 0xFF)
            )
            + b"".join(struct.pack("!I", s) for s in self.ssrcs)
        )
        return _header(FMT_AFB, PT_PSFB, len(body)) + body


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """An RTCP packet the forwarder does not interpret, kept verbatim."""

    packet_type: int
    fmt: int
    data: bytes

    def __bytes__(self) -> bytes:
        return self.data


RtcpPacket = SenderReport | ReceiverReport | Pli | Fir | Nack | Remb | UnknownRtcp


def parse_packet(packet: bytes) -> RtcpPacket:
    """Parse one RTCP packet as returned by ``split_compound``."""
    if len(packet) < 4:
        raise RtcpParseError("RTCP header is truncated")
    fmt = packet[0] & 0x1F
    pt = packet[1]
    if pt == PT_SR:
        return SenderReport.parse(packet)
    if pt == PT_RR:
        return ReceiverReport.parse(packet)
    if pt == PT_RTPFB and fmt == FMT_NACK:
        return Nack.parse(packet)
    if pt == PT_PSFB:
        if fmt == FMT_PLI:
            return Pli.parse(packet)
        if fmt == FMT_FIR:
            return Fir.parse(packet)
        if fmt == FMT_AFB and packet[12:16] == _REMB_ID:
            return Remb.parse(packet)
    return UnknownRtcp(pt, fmt, packet)


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a (compound) RTCP datagram."""
    return [parse_packet(p) for p in split_compound(data)]


def build_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Serialise packets back to back into one compound datagram."""
    return b"".join(bytes(p) for p in packets)
