"""The SFU's libsrtp calls (``sfu.glue.srtp.SrtpSession``) give exactly what pylibsrtp gives."""

from __future__ import annotations

import os
import struct

from pylibsrtp import Policy, Session

from sfu.glue.srtp import SrtpSession

KEY = bytes(range(44))  # AES-256-GCM: 32-byte key + 12-byte salt


def sessions() -> tuple[Session, Session]:
    tx = Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
    rx = Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
    tx.allow_repeat_tx = True
    return Session(tx), Session(rx)


def rtp(seq: int, size: int = 1000) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 0x1234) + os.urandom(size)


def test_protect_matches_pylibsrtp_and_unprotect_round_trips() -> None:
    tx, rx = sessions()
    ours_tx = SrtpSession(tx)
    reference_tx, _ = sessions()
    ours_rx = SrtpSession(rx)
    for seq in range(100, 140):
        packet = rtp(seq)
        protected = ours_tx.protect(packet)
        assert protected is not None
        assert bytes(protected) == reference_tx.protect(packet)
        assert ours_rx.unprotect(bytes(protected)) == packet
    rtcp = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)
    protected_rtcp = ours_tx.protect_rtcp(rtcp)
    assert protected_rtcp is not None
    assert ours_rx.unprotect_rtcp(bytes(protected_rtcp)) == rtcp


def test_tampered_replayed_or_oversized_packets_are_refused() -> None:
    tx, rx = sessions()
    ours_tx, ours_rx = SrtpSession(tx), SrtpSession(rx)
    protected = ours_tx.protect(rtp(7))
    assert protected is not None
    good = bytes(protected)
    tampered = bytearray(good)
    tampered[20] ^= 1
    assert ours_rx.unprotect(bytes(tampered)) is None
    assert ours_rx.unprotect(good) is not None
    assert ours_rx.unprotect(good) is None  # replayed
    assert ours_tx.protect(rtp(8, size=1400)) is None  # no room for the auth tag
    assert ours_rx.unprotect(b"\x80" * 1600) is None


def test_a_packet_written_into_the_buffer_is_protected_in_place_as_protect_would() -> None:
    tx, rx = sessions()
    ours_tx, ours_rx = SrtpSession(tx), SrtpSession(rx)
    reference_tx, _ = sessions()
    sent: list[bytes] = []
    emit = ours_tx.sender(lambda packet: sent.append(bytes(packet)))
    buffer = ours_tx.rtp_buffer
    assert len(buffer) == SrtpSession.SIZE - SrtpSession.RTP_TRAILER
    for seq in range(1, 20):
        packet = rtp(seq)
        buffer[: len(packet)] = packet
        assert emit(len(packet))
        assert sent[-1] == reference_tx.protect(packet)
        assert ours_rx.unprotect(sent[-1]) == packet


def test_a_sender_whose_socket_refuses_reports_nothing_sent() -> None:
    tx, _ = sessions()
    ours = SrtpSession(tx)

    def full(packet: memoryview) -> None:
        raise BlockingIOError("the socket buffer is full")

    packet = rtp(1)
    ours.rtp_buffer[: len(packet)] = packet
    assert not ours.sender(full)(len(packet))
