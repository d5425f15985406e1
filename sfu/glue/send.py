"""The send path: SRTP protect and send synchronously on the nominated ICE pair's socket.

``RtpWriter`` is ``RTCDtlsTransport._send_rtp`` without a coroutine per packet or asyncio's
datagram buffer: it reads the transport's ``_state`` and ``_tx_srtp`` and its ICE agent's
nominated pair (``RTCIceTransport._connection._nominated``), and wraps ``_set_state`` per
instance so a state change (new keys included) drops the resolved path.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from aiortc import RTCDtlsTransport, RTCPeerConnection
from aiortc.rtcdtlstransport import State as DtlsState

from sfu.fastio import DatagramBatch
from sfu.glue.receive import CONNECTED, PacketFilter, transports
from sfu.glue.srtp import SrtpSession
from sfu.udpmux import MuxTransport

log = logging.getLogger("sfu.glue")

_WRITERS = "_sfu_writers"  # attribute of an RTCDtlsTransport: its RtpWriters


class RtpWriter:
    """Sends RTP/RTCP on one DTLS transport: SRTP protect, then send on the nominated pair's
    socket, directly: a datagram the socket cannot take now is dropped, never queued (NACK/PLI
    repair a congested path). ``send_rtp``/``send_rtcp`` return False when nothing was sent.

    The forwarding path writes its packet into the SRTP session's buffer (``buffer``, or
    ``prepare()`` when None) and calls ``emit(size)``: protected in place and sent, or on a shared
    socket (``sfu.udpmux``) queued for one ``sendmmsg`` (``buffer`` None until then). The send
    path is resolved once and dropped when the DTLS state changes or an ICE restart replaces the
    ICE agent. ``connect=True`` ``connect()``s a socket of its own to the remote address (``send``
    on a cached route, ~20 % cheaper; right for a subscribe connection, whose peer restarts ICE
    when it moves)."""

    __slots__ = (
        "__weakref__",
        "_batch",
        "_connect",
        "_drop",
        "_dtls",
        "_send",
        "_srtp",
        "buffer",
        "emit",
        "ready_buffer",
    )

    def __init__(
        self, dtls: RTCDtlsTransport, drop_outgoing: PacketFilter | None = None, *, connect: bool = False
    ) -> None:
        self._dtls = dtls
        self._drop = drop_outgoing
        self._connect = connect
        self._send: Callable[[Any], Any] = _not_sent
        self._srtp: SrtpSession | None = None
        self._batch: DatagramBatch | None = None
        self.buffer: memoryview | None = None
        self.ready_buffer: memoryview | None = None  # ``buffer`` while a batch holds it
        self.emit: Callable[[int], bool] = self._emit_written
        _writers(dtls).add(self)

    @classmethod
    def for_connection(
        cls, pc: RTCPeerConnection, drop_outgoing: PacketFilter | None = None, *, connect: bool = False
    ) -> RtpWriter | None:
        found = transports(pc)
        return cls(found[0], drop_outgoing, connect=connect) if found else None

    @property
    def connected(self) -> bool:
        return self._dtls._state is CONNECTED

    def invalidate(self) -> None:
        """The send path may have changed: resolve it again before the next packet (a packet
        already written into ``buffer`` is copied into the new one)."""
        self._flush()
        self._srtp = self._batch = None
        self.emit = self._emit_written

    def _flush(self) -> None:
        """Send what a batch holds in ``buffer`` (the buffer is about to be written or freed)."""
        if self._batch is not None and self._batch.count:
            self._batch.flush()

    def prepare(self) -> memoryview | None:
        """``buffer``, resolving the send path first if needed (None when not connected)."""
        self._flush()
        srtp = self._srtp if self._srtp is not None else self._resolve()
        return srtp.rtp_buffer if srtp is not None else None

    def _resolve(self) -> SrtpSession | None:
        dtls = self._dtls
        pair = dtls._transport._connection._nominated.get(1) if dtls._state is CONNECTED else None
        if pair is None:
            return None
        transport = pair.protocol.transport
        shared = transport.owner if isinstance(transport, MuxTransport) else None
        sock = shared.sock if shared is not None else getattr(pair.protocol, "sock", None)  # MediaProtocol's
        addr, sendto = pair.remote_addr, sock.sendto if sock is not None else transport.sendto
        self._send = lambda packet: sendto(packet, addr)
        srtp = self._srtp = SrtpSession(dtls._tx_srtp)
        self.buffer = self.ready_buffer = srtp.rtp_buffer
        emit = shared.emitter(srtp, addr, self) if shared is not None and self._drop is None else None
        if shared is not None and emit is not None:  # a fan-out sent in one system call
            self._batch, self.emit = shared.batch, emit
            return srtp
        if self._connect and shared is None and sock is not None:
            try:
                sock.connect(addr)
            except OSError as exc:
                log.warning("cannot connect the media socket to %s: %s", addr, exc)
            else:
                self._send = sock.send
        self.emit = srtp.sender(self._send) if self._drop is None else self._emit_written
        return srtp

    def _emit_written(self, size: int) -> bool:
        """``emit`` the long way: after the send path changed, or with a loss filter."""
        written, srtp = self.buffer, self._srtp
        if srtp is None:
            # handed out before the send path changed: copied into the current one, if any
            return written is not None and self.send_rtp(bytes(written[:size]))
        if self._drop is not None and self._drop(bytes(srtp.rtp_buffer[:size])):
            return True  # "sent" and lost on the way
        return srtp.sender(self._send)(size)

    def send_rtp(self, data: bytes) -> bool:
        buffer = self.prepare()
        if buffer is None or len(data) > len(buffer):
            return False
        buffer[: len(data)] = data
        return self.emit(len(data))

    def send_rtcp(self, data: bytes) -> bool:
        self._flush()
        srtp = self._srtp if self._srtp is not None else self._resolve()
        packet = srtp.protect_rtcp(data) if srtp is not None else None
        if packet is None:
            return False
        try:
            self._send(packet)
        except OSError:
            return False
        return True


def invalidate_writers(dtls: RTCDtlsTransport) -> None:
    """The send path of ``dtls``'s writers may have changed: each resolves it again."""
    for writer in list(_writers(dtls)):
        writer.invalidate()


def _not_sent(packet: Any) -> None:
    raise OSError("not connected")


def _writers(dtls: RTCDtlsTransport) -> weakref.WeakSet[RtpWriter]:
    """``dtls``'s writers, each invalidated when its state changes (``_set_state``: the one place
    aiortc changes it, DTLS keys included) or an ``IceRestart`` replaces its ICE agent."""
    writers: weakref.WeakSet[RtpWriter] | None = dtls.__dict__.get(_WRITERS)
    if writers is None:
        writers = dtls.__dict__[_WRITERS] = weakref.WeakSet()
        set_state = dtls._set_state

        def set_state_and_invalidate(state: DtlsState) -> None:
            set_state(state)
            invalidate_writers(dtls)

        dtls._set_state = set_state_and_invalidate  # type: ignore[method-assign]
    return writers
