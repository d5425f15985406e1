"""Every use of aiortc's and aioice's private internals, in one place (pinned to aiortc 1.16.0 /
aioice 0.13, checked at start): aiortc's public API hands out decoded frames, an SFU needs packets.

- ``take_over_media``: decrypted RTP/RTCP go to our callbacks (``RTCDtlsTransport.
  _handle_rtp_data`` / ``_handle_rtcp_data``); receivers and senders are neutered (no decoder
  thread, encoder task or aiortc RTCP loop). On the sockets this module binds, SRTP/SRTCP is
  unprotected in the socket callback itself (no aioice queue, no ``_recv_next`` task switch).
  ``add_sending_transceiver``: a video receiver without its bitrate estimator (never fed).
- ``RtpWriter``: SRTP protect and ``send`` synchronously on the nominated ICE pair's socket
  (``RTCDtlsTransport._send_rtp`` without a coroutine per packet or asyncio's datagram buffer).
- ``tap_rtp_datagrams``: the load generator counts SRTP at the socket, unauthenticated (not the SFU).
- ``accept_forward_only_codecs`` / ``separate_streams``: transceiver ``_codecs``, ``_stream_id``.
- ``prepare_gathering``: host candidates on chosen addresses, on the shared media port or in the
  UDP port range, optionally advertising a public address (NAT 1:1).
- ``IceRestart``: a fresh ICE agent under an established DTLS/SRTP session.
- ``remote_candidate_count`` / ``release_sockets``: the candidates an agent holds (capped per
  connection); a connection whose close is stuck gives its sockets back anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import aioice
import aiortc
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol
from aiortc import RTCDtlsTransport, RTCIceTransport, RTCPeerConnection, RTCRtpCodecParameters, rtcrtpreceiver
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtcpFeedback

from sfu.fastio import DatagramBatch, Drainer, SrtpSession, enable_timestamps
from sfu.ports import GatherPolicy, PortRangeExhausted, local_addresses, size_receive_buffer
from sfu.sdp import FORWARD_ONLY_NAMES, SessionInfo
from sfu.udpmux import MediaPorts, MuxTransport, UdpMux

log = logging.getLogger("sfu.glue")

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION_PREFIX = "0.13."

PacketSink = Callable[[bytes], None]
PacketFilter = Callable[[bytes], bool]
"""Test hook: returns True to drop a packet (loss injection)."""

_WAKE = b"\x00"  # a datagram the DTLS receive loop ignores (neither DTLS nor SRTP)
_CONNECTED = DtlsState.CONNECTED
_FAST_RECEIVE = "_sfu_srtp_receive"  # attribute of an aioice Connection: its SRTP fast path
_WRITERS = "_sfu_writers"  # attribute of an RTCDtlsTransport: its RtpWriters


def check_versions() -> None:
    """Refuse to run on an aiortc/aioice whose internals this module was not written against."""
    if aiortc.__version__ != AIORTC_VERSION:
        raise RuntimeError(f"sfu.glue needs aiortc=={AIORTC_VERSION}, found {aiortc.__version__}")
    if not aioice.__version__.startswith(AIOICE_VERSION_PREFIX):
        raise RuntimeError(f"sfu.glue needs aioice {AIOICE_VERSION_PREFIX}x, found {aioice.__version__}")


# --- receive: decrypted packets to our callbacks, no decoders ------------------------------------


async def _receive_without_decoding(parameters: Any) -> None:
    """Replaces ``RTCRtpReceiver.receive``: no decoder thread, no jitter buffer, no RTCP loop."""


async def _send_without_encoding(parameters: Any) -> None:
    """Replaces ``RTCRtpSender.send``: no encoder, no RTP task, no sender reports with NTP 0."""


def _transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
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
    BUNDLE) before yielding to the event loop."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        sender = transceiver.sender
        if receiver.__dict__.get("receive") is not _receive_without_decoding:
            receiver.receive = _receive_without_decoding  # type: ignore[method-assign]
            # never fed here; 1,000 objects per video receiver, which every full GC would walk
            receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
        if sender.__dict__.get("send") is not _send_without_encoding:
            sender.send = _send_without_encoding  # type: ignore[method-assign]
    for dtls in _transports(pc):
        if "_handle_rtp_data" in dtls.__dict__:
            continue
        dtls._handle_rtp_data = _rtp_hook(on_rtp, drop_incoming)  # type: ignore[method-assign]
        dtls._handle_rtcp_data = _rtcp_hook(on_rtcp)  # type: ignore[method-assign]
        fast = _SrtpReceiver(dtls, on_rtp, on_rtcp, drop_incoming, skip_encrypted)
        setattr(dtls.transport._connection, _FAST_RECEIVE, fast)


def add_sending_transceiver(pc: RTCPeerConnection, kind: str) -> None:
    """``pc.addTransceiver(kind, direction="sendonly")`` without the bitrate estimator aiortc builds
    for a video receiver (never fed here): ~1 ms and 1,000 objects, ~1,000 while 100 join."""
    estimator = vars(rtcrtpreceiver)["RemoteBitrateEstimator"]
    vars(rtcrtpreceiver)["RemoteBitrateEstimator"] = type(None)  # builds None
    try:  # synchronous: nothing else runs before it is restored
        pc.addTransceiver(kind, direction="sendonly")
    finally:
        vars(rtcrtpreceiver)["RemoteBitrateEstimator"] = estimator


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
        if session is None or dtls._state is not _CONNECTED:
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


class _MediaProtocol(StunProtocol):
    """aioice's socket protocol, with its connection's SRTP fast path, draining the socket."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._drainer = Drainer(self, self._one)

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        self._one(data, addr)  # type: ignore[arg-type]
        self._drainer()

    def _one(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) > 12 and 127 < data[0] < 192:
            receive = self.receiver.__dict__.get(_FAST_RECEIVE)
            if receive is not None and receive(data):
                return
        super().datagram_received(data, addr)


def tap_rtp_datagrams(pc: RTCPeerConnection, on_datagram: PacketSink) -> None:
    """Hand ``pc``'s incoming SRTP datagrams, still encrypted (the fixed RTP header is in the
    clear), to ``on_datagram`` straight from the socket callback; STUN, DTLS and SRTCP (RFC
    7983/5761) keep their path. No authentication, no replay check: for the load generator's
    counting subscribers on a trusted loopback only, never the server. For sockets bound by
    ``prepare_gathering``; call once connected. Idempotent."""
    for dtls in _transports(pc):
        connection = dtls.transport._connection
        fast = connection.__dict__.get(_FAST_RECEIVE)
        if not isinstance(fast, _SrtpTap):
            setattr(connection, _FAST_RECEIVE, _SrtpTap(fast, on_datagram))


class _SrtpTap:
    __slots__ = ("_next", "_sink")

    def __init__(self, next_receive: Callable[[bytes], bool] | None, sink: PacketSink) -> None:
        self._next, self._sink = next_receive, sink

    def __call__(self, data: bytes) -> bool:
        if 63 < (data[1] & 0x7F) < 96:  # SRTCP
            return self._next is not None and self._next(data)
        try:
            self._sink(data)
        except Exception:  # a failing counter must not break the socket's protocol
            log.exception("SRTP datagram handler failed")
        return True


def accept_forward_only_codecs(pc: RTCPeerConnection, offer: SessionInfo) -> None:
    """Also accept the offer's VP9 and AV1 (and their RTX), which aiortc leaves out because it
    cannot decode them: the SFU only forwards them. Call after ``setRemoteDescription(offer)``,
    before ``createAnswer``; the offer's codec order is kept (the first one is what the
    publisher sends)."""
    for transceiver in pc.getTransceivers():
        section = offer.section(transceiver.mid) if transceiver.mid is not None else None
        if transceiver.kind != "video" or section is None:
            continue
        if not any(c.name.lower() in FORWARD_ONLY_NAMES for c in section.codecs):
            continue
        common = {c.payloadType: c for c in transceiver._codecs}
        media = {
            c.payload_type
            for c in section.codecs
            if not c.is_rtx and (c.payload_type in common or c.name.lower() in FORWARD_ONLY_NAMES)
        }
        codecs: list[RTCRtpCodecParameters] = []
        for c in section.codecs:
            if c.payload_type in common:
                codecs.append(common[c.payload_type])
            elif c.is_rtx and c.apt in media:
                rtx = RTCRtpCodecParameters("video/rtx", c.clock_rate, payloadType=c.payload_type)
                rtx.parameters = {"apt": c.apt}
                codecs.append(rtx)
            elif not c.is_rtx and c.name.lower() in FORWARD_ONLY_NAMES:
                codec = RTCRtpCodecParameters(f"video/{c.name}", c.clock_rate, payloadType=c.payload_type)
                codec.rtcpFeedback = [RTCRtcpFeedback("nack"), RTCRtcpFeedback("nack", "pli")]
                codec.parameters = dict(c.fmtp_params())
                codecs.append(codec)
        transceiver._codecs = codecs


def separate_streams(pc: RTCPeerConnection) -> None:
    """Give every m-line of ``pc`` its own media stream id (``a=msid``): in aiortc's one stream a
    browser would synchronise unrelated slots against each other's sender reports."""
    for transceiver in pc.getTransceivers():
        sender = transceiver.sender
        if not sender._stream_id.startswith("sfu-"):
            sender._stream_id = f"sfu-{transceiver.kind}-{id(transceiver):x}"


def decoding_disabled(pc: RTCPeerConnection) -> bool:
    """True when every receiver of ``pc`` is neutered (no decoder can start)."""
    return all(t.receiver.__dict__.get("receive") is _receive_without_decoding for t in pc.getTransceivers())


# --- send: protect and send synchronously ---------------------------------------------------------


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
        transports = _transports(pc)
        return cls(transports[0], drop_outgoing, connect=connect) if transports else None

    @property
    def connected(self) -> bool:
        return self._dtls._state is _CONNECTED

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
        pair = dtls._transport._connection._nominated.get(1) if dtls._state is _CONNECTED else None
        if pair is None:
            return None
        transport = pair.protocol.transport
        shared = transport.owner if isinstance(transport, MuxTransport) else None
        sock = shared.sock if shared is not None else getattr(transport, "_sock", None)  # asyncio's
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


def _invalidate_writers(dtls: RTCDtlsTransport) -> None:
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
            _invalidate_writers(dtls)

        dtls._set_state = set_state_and_invalidate  # type: ignore[method-assign]
    return writers


# --- ICE: addresses, port range, public address --------------------------------------------------


async def _bind(connection: Connection, address: str, ports: MediaPorts) -> StunProtocol:
    if isinstance(ports, UdpMux):  # an endpoint of the shared socket
        shared, protocol = await ports.socket_for(address), _MediaProtocol(connection)
        shared.attach(protocol, connection.local_username, connection.local_password, protocol._one)
        return protocol
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for port in ports.candidates():
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _MediaProtocol(connection), local_addr=(address, port)
            )
        except OSError as exc:
            last = exc
            continue
        sock = getattr(transport, "_sock", None) or transport.get_extra_info("socket")  # asyncio's
        if sock is not None:
            size_receive_buffer(sock)
            if ports.guard is not None and enable_timestamps(sock):  # the bound on waiting media
                protocol._drainer = Drainer(protocol, protocol._one, ports.guard)
        return protocol
    raise PortRangeExhausted(f"no free UDP port on {address} in {ports.low}-{ports.high}: {last}")


async def _gather(connection: Connection, policy: GatherPolicy, ports: MediaPorts) -> None:
    """Replaces ``Connection.gather_candidates``: host candidates only (no STUN/TURN), per policy."""
    if connection._local_candidates_start:
        return
    connection._local_candidates_start = True
    candidates: list[Candidate] = []
    for address in local_addresses(policy):
        try:
            protocol = await _bind(connection, address, ports)
        except OSError as exc:
            log.warning("cannot bind a media socket on %s: %s", address, exc)
            continue
        host, port = protocol.transport.get_extra_info("sockname")[:2]
        advertised = policy.public_ip or host
        foundation, priority = candidate_foundation("host", "udp", advertised), candidate_priority(1, "host")
        protocol.local_candidate = Candidate(foundation, 1, "udp", priority, advertised, port, "host")
        connection._protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    connection._local_candidates += candidates
    connection._local_candidates_end = True


def _install_gatherer(connection: Connection, policy: GatherPolicy, ports: MediaPorts) -> None:
    if "gather_candidates" in connection.__dict__:
        return

    async def gather_candidates() -> None:
        await _gather(connection, policy, ports)

    connection.gather_candidates = gather_candidates  # type: ignore[method-assign]


def prepare_gathering(pc: RTCPeerConnection, policy: GatherPolicy, ports: MediaPorts) -> None:
    """Make ``pc`` gather per ``policy``; call before every ``setLocalDescription``."""
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport.iceGatherer._connection
        _install_gatherer(connection, policy, ports)


def local_ports(pc: RTCPeerConnection) -> list[int]:
    """UDP ports the connection's sockets are bound to."""
    out: list[int] = []
    for dtls in _transports(pc):
        for protocol in dtls.transport._connection._protocols:
            out.append(protocol.transport.get_extra_info("sockname")[1])
    return out


def remote_candidate_count(pc: RTCPeerConnection) -> int:
    """Remote candidates ``pc``'s ICE agent holds (each one gets connectivity checks)."""
    return sum(len(dtls.transport._connection.remote_candidates) for dtls in _transports(pc))


def release_sockets(pc: RTCPeerConnection) -> None:
    """Close the sockets of ``pc``'s ICE agents without waiting on anything: for a connection
    whose ``close()`` did not finish in time (a stuck close must not hold ports forever)."""
    for dtls in _transports(pc):
        ice = dtls.transport
        connections = {ice._connection, ice.iceGatherer._connection}
        for connection in connections:
            for protocol in connection._protocols:
                transport = protocol.transport
                if transport is not None and not transport.is_closing():
                    transport.close()


# --- ICE restart ----------------------------------------------------------------------------------


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
        transports = _transports(pc)
        if not transports:
            raise RuntimeError("nothing to restart: the connection has no transport")
        ice = transports[0].transport
        old = ice._connection
        new = Connection(ice_controlling=old.ice_controlling)
        _install_gatherer(new, policy, ports)
        await new.gather_candidates()
        ice.iceGatherer._connection = new
        if _FAST_RECEIVE in old.__dict__:
            setattr(new, _FAST_RECEIVE, old.__dict__[_FAST_RECEIVE])
        ice._connection = new
        ice.iceGatherer._remote_candidates_end = False
        _invalidate_writers(transports[0])
        return cls(transports[0], old, new)

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
        _invalidate_writers(self._dtls)
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
