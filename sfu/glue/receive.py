"""Receive take-over: decrypted RTP/RTCP go to the SFU's callbacks, and nothing decodes.

- ``take_over_media``: ``RTCDtlsTransport._handle_rtp_data`` / ``_handle_rtcp_data`` replaced per
  instance; ``RTCRtpReceiver.receive`` / ``RTCRtpSender.send`` neutered (no decoder thread,
  encoder task or aiortc RTCP loop); the receiver's bitrate estimator
  (``_RTCRtpReceiver__remote_bitrate_estimator``, never fed) let go.
- ``add_sending_transceiver``: a send-only transceiver whose video receiver never builds that
  estimator (aiortc's module-level ``RemoteBitrateEstimator`` swapped while it is made).
- ``MediaProtocol``: aioice's ``StunProtocol`` for the sockets ``sfu.glue.gathering`` binds: SRTP
  and SRTCP are unprotected in the socket callback itself (``RTCDtlsTransport._rx_srtp``, no
  aioice queue, no ``_recv_next`` task switch), and the socket's backlog is read at once.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from aioice.ice import Connection, StunProtocol
from aiortc import RTCDtlsTransport, RTCPeerConnection, rtcrtpreceiver
from aiortc.rtcdtlstransport import State as DtlsState

from sfu.fastio import Drainer
from sfu.glue.srtp import SrtpSession

log = logging.getLogger("sfu.glue")

PacketSink = Callable[[bytes], None]
PacketFilter = Callable[[bytes], bool]
"""Test hook: returns True to drop a packet (loss injection)."""
Waited = Callable[[float, bool], bool]
"""``sfu.ports.StaleGuard``: told how long RTP waited in a socket, True to drop it unread."""

CONNECTED = DtlsState.CONNECTED
_FAST_RECEIVE = "_sfu_srtp_receive"  # attribute of an aioice Connection: its SRTP fast path


async def _receive_without_decoding(parameters: Any) -> None:
    """Replaces ``RTCRtpReceiver.receive``: no decoder thread, no jitter buffer, no RTCP loop."""


async def _send_without_encoding(parameters: Any) -> None:
    """Replaces ``RTCRtpSender.send``: no encoder, no RTP task, no sender reports with NTP 0."""


def transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    """``pc``'s DTLS transports (one with BUNDLE), in transceiver order."""
    seen: list[RTCDtlsTransport] = []
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls not in seen:
            seen.append(dtls)
    return seen


def take_over_media(
    pc: RTCPeerConnection,
    on_rtp: PacketSink,
    on_rtcp: PacketSink,
    *,
    drop_incoming: PacketFilter | None = None,
    skip_encrypted: PacketFilter | None = None,
) -> None:
    """Route ``pc``'s decrypted RTP/RTCP to ``on_rtp``/``on_rtcp`` and neuter its receivers and
    senders; an SRTP packet for which ``skip_encrypted`` (given its clear header) returns True is
    not decrypted. Idempotent; call after every ``setRemoteDescription`` (new transceivers,
    BUNDLE) before yielding to the event loop (``sfu.glue.negotiation.negotiate`` does)."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        sender = transceiver.sender
        if receiver.__dict__.get("receive") is not _receive_without_decoding:
            receiver.receive = _receive_without_decoding  # type: ignore[method-assign]
            # never fed here; 1,000 objects per video receiver, which every full GC would walk
            receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
        if sender.__dict__.get("send") is not _send_without_encoding:
            sender.send = _send_without_encoding  # type: ignore[method-assign]
    for dtls in transports(pc):
        if "_handle_rtp_data" in dtls.__dict__:
            continue
        dtls._handle_rtp_data = _rtp_hook(on_rtp, drop_incoming)  # type: ignore[method-assign]
        dtls._handle_rtcp_data = _rtcp_hook(on_rtcp)  # type: ignore[method-assign]
        fast = _SrtpReceiver(dtls, on_rtp, on_rtcp, drop_incoming, skip_encrypted)
        setattr(dtls.transport._connection, _FAST_RECEIVE, fast)


def decoding_disabled(pc: RTCPeerConnection) -> bool:
    """True when every receiver of ``pc`` is neutered (no decoder can start)."""
    return all(t.receiver.__dict__.get("receive") is _receive_without_decoding for t in pc.getTransceivers())


def add_sending_transceiver(pc: RTCPeerConnection, kind: str) -> None:
    """``pc.addTransceiver(kind, direction="sendonly")`` without the bitrate estimator aiortc builds
    for a video receiver (never fed here): ~1 ms and 1,000 objects, ~1,000 while 100 join."""
    estimator = vars(rtcrtpreceiver)["RemoteBitrateEstimator"]
    vars(rtcrtpreceiver)["RemoteBitrateEstimator"] = type(None)  # builds None
    try:  # synchronous: nothing else runs before it is restored
        pc.addTransceiver(kind, direction="sendonly")
    finally:
        vars(rtcrtpreceiver)["RemoteBitrateEstimator"] = estimator


def carry_fast_receive(old: Connection, new: Connection) -> None:
    """An ICE restart's ``new`` agent unprotects in its socket callbacks as ``old`` did."""
    if _FAST_RECEIVE in old.__dict__:
        setattr(new, _FAST_RECEIVE, old.__dict__[_FAST_RECEIVE])


def _rtp_hook(sink: PacketSink, drop: PacketFilter | None) -> Callable[..., Any]:
    async def handle_rtp_data(data: bytes, arrival_time_ms: int = 0) -> None:
        if drop is not None and drop(data):
            return
        try:
            sink(data)
        except Exception:  # never let one bad packet end the transport's receive loop
            log.exception("RTP handler failed")

    return handle_rtp_data


def _rtcp_hook(sink: PacketSink) -> Callable[..., Any]:
    async def handle_rtcp_data(data: bytes) -> None:
        try:
            sink(data)
        except Exception:
            log.exception("RTCP handler failed")

    return handle_rtcp_data


class _SrtpReceiver:
    """Unprotects one DTLS transport's SRTP/SRTCP datagrams for the callbacks, in the socket
    callback (aiortc's receive task minus aioice's queue and a task switch per datagram). Without
    SRTP keys (before the handshake, after closing) it declines: aiortc's path drops it alike."""

    __slots__ = ("_drop", "_dtls", "_on_rtcp", "_on_rtp", "_skip", "_srtp")

    def __init__(
        self,
        dtls: RTCDtlsTransport,
        on_rtp: PacketSink,
        on_rtcp: PacketSink,
        drop: PacketFilter | None,
        skip: PacketFilter | None,
    ) -> None:
        self._dtls = dtls
        self._skip = skip
        self._on_rtp, self._on_rtcp = on_rtp, on_rtcp
        self._drop = drop
        self._srtp: SrtpSession | None = None

    def __call__(self, data: bytes) -> bool:
        dtls = self._dtls
        session = dtls._rx_srtp
        if session is None or dtls._state is not CONNECTED:
            return False
        srtp = self._srtp
        if srtp is None or srtp.session is not session:
            srtp = self._srtp = SrtpSession(session)
        try:
            if 191 < data[1] < 209:  # RTCP, as aiortc tells it apart (RFC 5761)
                packet = srtp.unprotect_rtcp(data)
                if packet is not None:
                    self._on_rtcp(packet)
            elif self._skip is None or not self._skip(data):
                packet = srtp.unprotect(data)
                if packet is not None and (self._drop is None or not self._drop(packet)):
                    self._on_rtp(packet)
        except Exception:  # never let one bad packet break the socket's protocol
            log.exception("SRTP receive handler failed")
        return True


class MediaProtocol(StunProtocol):
    """aioice's socket protocol, with its connection's SRTP fast path. ``sock``: the socket the
    transport reads, when bound here (``sfu.ports.bind_udp``): its backlog is read in the first
    datagram's callback (``sfu.fastio.Drainer``), RTP that waited too long dropped unread
    (``waited``). Without it (an endpoint of the shared port) the shared socket does that."""

    def __init__(
        self, connection: Connection, sock: socket.socket | None = None, waited: Waited | None = None
    ) -> None:
        super().__init__(connection)
        self.sock = sock
        self._waited = waited
        self._drainer: Drainer | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.sock is not None:
            self._drainer = Drainer(self.sock, self.handle_datagram, self.error_received, self._waited)

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        self.handle_datagram(data, addr)  # type: ignore[arg-type]
        if self._drainer is not None:
            self._drainer()

    def handle_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """One datagram: SRTP/SRTCP to the connection's fast path, anything else to aioice."""
        if len(data) > 12 and 127 < data[0] < 192:
            receive = self.receiver.__dict__.get(_FAST_RECEIVE)
            if receive is not None and receive(data):
                return
        super().datagram_received(data, addr)
