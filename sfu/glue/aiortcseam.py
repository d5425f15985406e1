"""Every use of aiortc's private internals, in one module (``sfu.glue.receive``, ``send`` and
``icerestart`` re-export from here), so an aiortc upgrade has one place to re-check.

Receive take-over: decrypted RTP/RTCP go to the SFU's callbacks, and nothing decodes.

- ``take_over_media``: ``RTCDtlsTransport._handle_rtp_data`` / ``_handle_rtcp_data`` replaced per
  instance; ``RTCRtpReceiver.receive`` / ``RTCRtpSender.send`` neutered (no decoder thread,
  encoder task or aiortc RTCP loop); the receiver's bitrate estimator
  (``_RTCRtpReceiver__remote_bitrate_estimator``, never fed) let go.
- ``add_sending_transceiver``: a send-only transceiver whose video receiver never builds that
  estimator (aiortc's module-level ``RemoteBitrateEstimator`` swapped while it is made).
- ``MediaProtocol``: aioice's ``StunProtocol`` for the sockets ``sfu.glue.gathering`` binds: SRTP
  and SRTCP are unprotected in the socket callback itself (``RTCDtlsTransport._rx_srtp``, no
  aioice queue, no ``_recv_next`` task switch), and the socket's backlog is read at once.

The send path: SRTP protect and send synchronously on the nominated ICE pair's socket.
``RtpWriter`` is ``RTCDtlsTransport._send_rtp`` without a coroutine per packet or asyncio's
datagram buffer: it reads the transport's ``_state`` and ``_tx_srtp`` and its ICE agent's
nominated pair (``RTCIceTransport._connection._nominated``), and wraps ``_set_state`` per
instance so a state change (new keys included) drops the resolved path.

ICE restart (``IceRestart``): a fresh ICE agent (new credentials, new sockets or a new endpoint on
the shared port) under an established DTLS/SRTP session, which aiortc cannot do. Reaches
``RTCIceGatherer._connection``, ``RTCIceTransport._connection``/``_recv``/``_send``/``_monitor``
and ``_RTCIceTransport__monitor_task``, and aioice's ``Connection._queue`` and
``_remote_candidates_end``.

Not named ``sfu/glue/aiortc.py``: ``sfu.glue`` imports the ``aiortc`` package under that name
(``check_versions``), which importing a submodule of the same name would overwrite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from aioice.candidate import Candidate
from aioice.ice import Connection, StunProtocol
from aiortc import RTCDtlsTransport, RTCIceTransport, RTCPeerConnection, rtcrtpreceiver
from aiortc.rtcdtlstransport import State as DtlsState

from sfu.fastio import DatagramBatch, Drainer
from sfu.glue.srtp import SrtpSession
from sfu.ports import GatherPolicy
from sfu.udpmux import MediaPorts, MuxTransport

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


# The send path.

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


# ICE restart.

_WAKE = b"\x00"  # a datagram the DTLS receive loop ignores (neither DTLS nor SRTP)


class IceRestart:
    """A new ICE agent (new local credentials and sockets) for ``pc``'s bundled transport, keeping
    its DTLS/SRTP session. ``begin`` installs it so the next local description carries the new
    credentials and remote candidates added from now on go to it; ``start`` runs the checks and,
    once a pair is nominated, moves the transport's traffic over and closes the old agent."""

    def __init__(self, dtls: RTCDtlsTransport, old: Connection, new: Connection) -> None:
        self._dtls = dtls
        self._ice: RTCIceTransport = dtls.transport
        self._old: Connection | None = old
        self._new = new
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def begin(cls, pc: RTCPeerConnection, policy: GatherPolicy, ports: MediaPorts) -> IceRestart:
        found = transports(pc)
        if not found:
            raise RuntimeError("nothing to restart: the connection has no transport")
        from sfu.glue.gathering import install_gatherer  # gathering imports this module

        ice = found[0].transport
        old = ice._connection
        new = Connection(ice_controlling=old.ice_controlling)
        install_gatherer(new, policy, ports)
        await new.gather_candidates()
        ice.iceGatherer._connection = new
        carry_fast_receive(old, new)
        ice._connection = new
        ice.iceGatherer._remote_candidates_end = False
        invalidate_writers(found[0])
        return cls(found[0], old, new)

    def start(
        self, remote_ufrag: str, remote_pwd: str, candidates: Iterable[str] = (), end: bool = False
    ) -> None:
        """Run the checks against the peer's new credentials (and candidates, SDP form)."""
        new = self._new
        new.remote_username = remote_ufrag
        new.remote_password = remote_pwd
        self._task = asyncio.create_task(self._run(list(candidates), end), name="sfu-ice-restart")

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_old()

    async def _run(self, candidates: list[str], end: bool) -> None:
        new = self._new
        for text in candidates:
            with contextlib.suppress(ValueError):
                await new.add_remote_candidate(Candidate.from_sdp(text))
        if end and not new._remote_candidates_end:
            await new.add_remote_candidate(None)
        try:
            await new.connect()
        except ConnectionError:
            log.info("ICE restart failed; the previous path stays in use")
            return
        ice = self._ice
        old = self._old
        ice._recv = new.recv
        ice._send = new.send
        invalidate_writers(self._dtls)
        monitor = ice._RTCIceTransport__monitor_task  # type: ignore[attr-defined]
        if monitor is not None:
            monitor.cancel()
        ice._RTCIceTransport__monitor_task = asyncio.ensure_future(ice._monitor())  # type: ignore[attr-defined]
        if old is not None:
            old._queue.put_nowait((_WAKE, 1))  # the DTLS loop wakes up and reads from the new agent
        await self._close_old()

    async def _close_old(self) -> None:
        old = self._old
        if old is None:
            return
        self._old = None
        if self._ice._connection is old:
            return
        old._queue = asyncio.Queue()  # its close() must not end the DTLS receive loop
        await old.close()
