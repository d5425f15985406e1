"""The load generator's own seams into aiortc's and aioice's internals (a client of the server,
it uses none of the server's glue). Written against the same pinned aiortc 1.16.0 and aioice
0.13 as the server; re-check each seam when the pin moves:

- ``take_over_media``: decrypted RTP/RTCP to callbacks (``RTCDtlsTransport._handle_rtp_data`` /
  ``_handle_rtcp_data`` replaced per instance), receivers and senders neutered
  (``RTCRtpReceiver.receive`` / ``RTCRtpSender.send``): a counting subscriber never decodes, a
  crafted publisher's transceivers never encode.
- ``RtpSender``: SRTP protect (``RTCDtlsTransport._tx_srtp``, pylibsrtp's public ``protect``)
  and send on the nominated pair (aioice ``Connection._nominated``) synchronously, without a
  coroutine per packet as aiortc's ``_send_rtp`` has.
- ``gather_on_loopback``: one host candidate on 127.0.0.1, which aioice's gathering skips
  (``Connection.gather_candidates`` replaced; ``_local_candidates``, ``_protocols``), on a
  socket whose backlog is read in one callback (``sfu.fastio.Drainer``).
- ``tap_rtp_datagrams``: SRTP datagrams handed over still encrypted, from the socket callback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from functools import partial
from typing import Any

from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol
from aiortc import RTCDtlsTransport, RTCPeerConnection
from aiortc.rtcdtlstransport import State as DtlsState
from pylibsrtp import Error as SrtpError

from sfu.fastio import Drainer
from sfu.ports import size_receive_buffer

log = logging.getLogger("confctl.loadtest")

PacketSink = Callable[[bytes], None]
LOOPBACK = "127.0.0.1"


async def _no_decoding(parameters: Any) -> None:
    """Replaces ``RTCRtpReceiver.receive``: no decoder thread."""


async def _no_encoding(parameters: Any) -> None:
    """Replaces ``RTCRtpSender.send``: no encoder, no RTP or RTCP task."""


def _transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    seen: list[RTCDtlsTransport] = []
    for transceiver in pc.getTransceivers():
        if transceiver.receiver.transport not in seen:
            seen.append(transceiver.receiver.transport)
    return seen


def take_over_media(pc: RTCPeerConnection, on_rtp: PacketSink, on_rtcp: PacketSink) -> None:
    """Hand ``pc``'s decrypted RTP/RTCP to ``on_rtp``/``on_rtcp`` and neuter its receivers and
    senders. Idempotent; call after ``setRemoteDescription``, before yielding to the loop."""
    for transceiver in pc.getTransceivers():
        transceiver.receiver.receive = _no_decoding  # type: ignore[method-assign]
        transceiver.sender.send = _no_encoding  # type: ignore[method-assign]
    for dtls in _transports(pc):
        if "_handle_rtp_data" in dtls.__dict__:
            continue

        dtls._handle_rtp_data = partial(_handle, on_rtp)  # type: ignore[method-assign]
        dtls._handle_rtcp_data = partial(_handle, on_rtcp)  # type: ignore[method-assign]


async def _handle(sink: PacketSink, data: bytes, arrival_time_ms: int = 0) -> None:
    """A decrypted packet to ``sink``; a failing sink must not end the transport's receive loop."""
    try:
        sink(data)
    except Exception:
        log.exception("packet handler failed")


class RtpSender:
    """Sends RTP/RTCP on one DTLS transport: protected, then handed to the nominated pair's
    socket at once. ``send_rtp``/``send_rtcp`` return False when nothing was sent (not
    connected, or the socket refused it)."""

    __slots__ = ("_dtls",)

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls

    @classmethod
    def for_connection(cls, pc: RTCPeerConnection) -> RtpSender | None:
        found = _transports(pc)
        return cls(found[0]) if found else None

    def send_rtp(self, data: bytes) -> bool:
        return self._send(data, rtcp=False)

    def send_rtcp(self, data: bytes) -> bool:
        return self._send(data, rtcp=True)

    def _send(self, data: bytes, rtcp: bool) -> bool:
        dtls = self._dtls
        session = dtls._tx_srtp
        if session is None or dtls._state is not DtlsState.CONNECTED:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return False
        try:
            packet = session.protect_rtcp(data) if rtcp else session.protect(data)
            pair.protocol.transport.sendto(packet, pair.remote_addr)
        except (SrtpError, OSError):
            return False
        return True


class _LoopbackProtocol(StunProtocol):
    """aioice's socket protocol on a socket of ours: reads its backlog at once, and hands SRTP
    to ``tap`` when set (STUN, DTLS and SRTCP keep aioice's path, RFC 7983/5761)."""

    def __init__(self, connection: Connection, sock: socket.socket) -> None:
        super().__init__(connection)
        self.tap: PacketSink | None = None
        self._drainer = Drainer(sock, self._one, self.error_received)

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        self._one(data, addr)  # type: ignore[arg-type]
        self._drainer()

    def _one(self, data: bytes, addr: tuple[Any, ...]) -> None:
        tap = self.tap
        if tap is not None and len(data) > 12 and 127 < data[0] < 192 and not 63 < (data[1] & 0x7F) < 96:
            try:
                tap(data)
            except Exception:  # a failing counter must not break the socket's protocol
                log.exception("SRTP datagram handler failed")
            return
        super().datagram_received(data, addr)


async def _gather(connection: Connection) -> None:
    if connection._local_candidates_start:
        return
    connection._local_candidates_start = True
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((LOOPBACK, 0))
        size_receive_buffer(sock)
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            partial(_LoopbackProtocol, connection, sock), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    foundation = candidate_foundation("host", "udp", LOOPBACK)
    protocol.local_candidate = Candidate(
        foundation, 1, "udp", candidate_priority(1, "host"), LOOPBACK, port, "host"
    )
    connection._protocols.append(protocol)
    connection._local_candidates.append(protocol.local_candidate)
    connection._local_candidates_end = True


def gather_on_loopback(pc: RTCPeerConnection) -> None:
    """Make ``pc`` gather one host candidate on 127.0.0.1; call before every ``setLocalDescription``."""
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport.iceGatherer._connection
        if "gather_candidates" not in connection.__dict__:
            connection.gather_candidates = partial(_gather, connection)  # type: ignore[method-assign]


def tap_rtp_datagrams(pc: RTCPeerConnection, on_datagram: PacketSink) -> None:
    """Hand ``pc``'s incoming SRTP datagrams, still encrypted (the fixed RTP header is in the
    clear), to ``on_datagram`` straight from the socket callback. No authentication, no replay
    check: for counting on a trusted loopback only. For sockets bound by ``gather_on_loopback``;
    call once connected. Idempotent (one tap per socket)."""
    for dtls in _transports(pc):
        for protocol in dtls.transport._connection._protocols:
            if isinstance(protocol, _LoopbackProtocol):
                protocol.tap = on_datagram
