"""One UDP port for every peer connection's media (an ICE mux, as Jitsi's and LiveKit's single
media port): a firewall opens one port, and a packet's fan-out to all subscribers on it is one
``sendmmsg`` (``sfu.fastio.DatagramBatch``) instead of one system call per subscriber.

``UdpMux`` binds one socket per local address, on ``sfu.udp_port`` (0: a free port, the same on
every address where it is free). Each ICE agent's host candidate on an address is an *endpoint*
of that address's ``MuxSocket``, with a ``MuxTransport`` standing in for its own socket. Incoming
datagrams are told apart by the sender's address, learnt from the ICE checks:

- a STUN binding request goes to the endpoint whose ICE username fragment it names; when its
  MESSAGE-INTEGRITY holds with that endpoint's password, its source address is that endpoint's
  from then on (so an ICE restart's new agent takes over a peer that keeps its address);
- a STUN response goes to the endpoint that sent the request with its transaction id;
- an address an endpoint sends a check to is that endpoint's unless another already holds it;
- anything else from an address no endpoint holds is dropped and counted (``unknown_address``).

After each datagram the socket's batch is sent, so what one incoming packet fanned out leaves at
once; datagrams queued outside a socket callback (timers) are sent at the end of the loop
iteration.

The receive queue is bounded in time, not only in bytes (``sfu.ports.StaleGuard``, as on the
sockets of a port range): the kernel stamps each datagram's arrival, the wait is measured
(``conf_sfu_receive_wait_seconds``), and RTP that waited longer than ``sfu.max_receive_delay`` is
dropped unread and counted (``stale``). A server that falls behind (a join storm, an overloaded
core) then loses what it cannot forward in time, as a full buffer would, instead of delaying
every meeting by seconds from then on; and for a second after a stale drop it asks publishers
for no retransmissions (``shedding``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aioice import stun

from sfu.core.actions import DropReason
from sfu.fastio import DatagramBatch, Drainer, enable_timestamps
from sfu.metrics import Counters
from sfu.ports import PortRange, StaleGuard, bind_udp, size_receive_buffer

if TYPE_CHECKING:
    from sfu.glue.srtp import SrtpSession

log = logging.getLogger("sfu.udpmux")

Emit = Callable[[int], bool]
Deliver = Callable[[bytes, tuple[Any, ...]], None]
"""An endpoint's handler of one datagram from an address."""

RECEIVE_BUFFER_SIZE = 16 << 20
"""Bytes of receive buffer asked for a shared socket: it holds what every connection's own socket
held before (4 MiB each, ``sfu.ports.RECEIVE_BUFFER_SIZE``) while the server is busy."""
SEND_BUFFER_SIZE = 4 << 20
"""Bytes of send buffer asked for: a keyframe fanned out to 100 subscribers is a few MiB waiting
for a network card (on loopback it leaves at once)."""
PENDING_REQUESTS = 4096
"""STUN requests remembered for routing their responses (checks to unreachable candidates are
never answered: the oldest are forgotten first)."""


class _Entry:
    __slots__ = ("addresses", "deliver", "password", "ufrag")

    def __init__(self, ufrag: str, password: str, deliver: Deliver) -> None:
        self.ufrag = ufrag
        self.password = password.encode()
        self.deliver = deliver
        self.addresses: set[tuple[Any, ...]] = set()


class MuxTransport(asyncio.DatagramTransport):
    """An endpoint's view of the shared socket: what aioice calls on its own socket's transport.
    ``close`` detaches the endpoint (its protocol sees ``connection_lost``); the socket stays."""

    def __init__(self, owner: MuxSocket, entry: _Entry, protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self.owner = owner
        self._entry = entry
        self._protocol = protocol
        self._closed = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closed or self.owner.transport is None:
            return
        self.owner.sent(self._entry, bytes(data), addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self.owner.transport
        return transport.get_extra_info(name, default) if transport is not None else default

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.owner.detach(self._entry)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


class MuxSocket(asyncio.DatagramProtocol):
    """One shared socket: its endpoints, the addresses they hold, and its send batch. ``sock``:
    the socket the transport reads (``bind_udp``), read on and sent on directly; without it
    nothing is batched or drained."""

    def __init__(
        self,
        counters: Counters | None = None,
        guard: StaleGuard | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.guard = guard if guard is not None else StaleGuard(counters)
        self.sock = sock
        self.batch: DatagramBatch | None = None
        self.family = socket.AF_INET
        self._counters = counters
        self._by_addr: dict[tuple[Any, ...], _Entry] = {}
        self._by_ufrag: dict[str, _Entry] = {}
        self._requests: dict[bytes, _Entry] = {}
        self._flush_scheduled = False
        self._drainer: Drainer | None = None

    # --- endpoints -------------------------------------------------------------------------------

    def attach(self, protocol: asyncio.DatagramProtocol, ufrag: str, password: str, deliver: Deliver) -> None:
        """Make ``protocol`` (an ICE agent's socket protocol, with username fragment ``ufrag``
        and ``password``) an endpoint: ``deliver`` gets its datagrams; ``connection_made``
        hands it its ``MuxTransport``."""
        entry = _Entry(ufrag, password, deliver)
        self._by_ufrag[ufrag] = entry
        protocol.connection_made(MuxTransport(self, entry, protocol))

    def ufrags(self) -> set[str]:
        return set(self._by_ufrag)

    def detach(self, entry: _Entry) -> None:
        if self._by_ufrag.get(entry.ufrag) is entry:
            del self._by_ufrag[entry.ufrag]
        for addr in entry.addresses:
            if self._by_addr.get(addr) is entry:
                del self._by_addr[addr]
        entry.addresses.clear()
        for tid in [t for t, e in self._requests.items() if e is entry]:
            del self._requests[tid]

    def _hold(self, addr: tuple[Any, ...], entry: _Entry) -> None:
        old = self._by_addr.get(addr)
        if old is not None:
            old.addresses.discard(addr)
        self._by_addr[addr] = entry
        entry.addresses.add(addr)

    def sent(self, entry: _Entry, data: bytes, addr: tuple[Any, ...]) -> None:
        """``entry`` sends ``data`` to ``addr`` (aioice's STUN and DTLS; media goes through
        ``batch`` or the socket directly)."""
        addr = (addr[0], addr[1])
        if len(data) >= 20 and data[0] == 0 and data[1] == 1:  # a STUN binding request: a check
            if addr not in self._by_addr:
                self._hold(addr, entry)
            requests = self._requests
            if len(requests) >= PENDING_REQUESTS:
                del requests[next(iter(requests))]
            requests[data[8:20]] = entry
        if self.transport is not None:
            self.transport.sendto(data, addr)

    # --- receiving -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = self.sock
        if sock is None:
            return
        self.family = sock.family
        size_receive_buffer(sock, RECEIVE_BUFFER_SIZE, force=True)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_SIZE)
        batch = DatagramBatch(sock, self._schedule_flush, self._failed)
        self.batch = batch if batch.available else None
        self._drainer = Drainer(
            sock, self._one, self.error_received, self.guard if enable_timestamps(sock) else None
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        batch = self.batch
        if batch is not None:
            batch.in_callback = True
        try:
            self._one(data, addr)
            if self._drainer is not None:
                self._drainer()
        finally:
            if batch is not None:
                batch.in_callback = False

    def _one(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(addr) > 2:  # IPv6: (host, port, flowinfo, scope id)
            addr = (addr[0], addr[1])
        entry = self._by_addr.get(addr)
        if data and data[0] < 4:  # STUN (RFC 7983)
            entry = self._stun_entry(data, addr, entry)
        if entry is None:
            if self._counters is not None:
                self._counters.drop(DropReason.UNKNOWN_ADDRESS)
            return
        try:
            entry.deliver(data, addr)
        except Exception:  # one endpoint's failure must not stop the shared socket
            log.exception("media datagram handler failed")
        batch = self.batch
        if batch is not None and batch.count:
            batch.flush()

    def _stun_entry(self, data: bytes, addr: tuple[Any, ...], known: _Entry | None) -> _Entry | None:
        if len(data) >= 20 and data[0] == 1 and data[1] in (0x01, 0x11):  # binding success / error
            return self._requests.pop(data[8:20], known)  # by transaction id, without parsing
        try:
            message = stun.parse_message(data)
        except ValueError:
            return known
        if message.message_class != stun.Class.REQUEST:
            return known
        username = message.attributes.get("USERNAME")
        entry = self._by_ufrag.get(username.partition(":")[0]) if isinstance(username, str) else None
        if entry is None:
            return known
        if entry is not known and message.check_message_integrity(entry.password):
            self._hold(addr, entry)
        return entry

    # --- sending ---------------------------------------------------------------------------------

    def emitter(self, session: SrtpSession, addr: tuple[Any, ...], owner: Any) -> Emit | None:
        """``DatagramBatch.emitter`` for ``addr`` on this socket; None without a batch (no
        ``sendmmsg`` here) or for an address that is not numeric."""
        batch = self.batch
        name = batch.address(self.family, addr[0], addr[1]) if batch is not None else None
        return batch.emitter(session, name, owner) if batch is not None and name is not None else None

    def _failed(self, count: int) -> None:
        if self._counters is not None:
            self._counters.drop(DropReason.NOT_SENT, count)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_scheduled = False
        if self.batch is not None:
            self.batch.flush()


class UdpMux:
    """The shared media sockets, one per local address, all on one port where possible."""

    def __init__(self, port: int, counters: Counters | None = None, guard: StaleGuard | None = None) -> None:
        self._port = port
        self._any_port = port == 0
        self._counters = counters
        self.guard = guard if guard is not None else StaleGuard(counters)
        self._sockets: dict[str, asyncio.Future[MuxSocket]] = {}

    @property
    def port(self) -> int:
        return self._port

    async def socket_for(self, address: str) -> MuxSocket:
        """The shared socket on ``address``, bound on first use (OSError when it cannot be)."""
        found = self._sockets.get(address)
        if found is None:
            found = self._sockets[address] = asyncio.ensure_future(self._bind(address))
        try:
            return await asyncio.shield(found)
        except OSError:
            if self._sockets.get(address) is found:
                del self._sockets[address]  # try again at the next connection
            raise

    async def _bind(self, address: str) -> MuxSocket:
        loop = asyncio.get_running_loop()
        try:
            sock = bind_udp(address, self._port)
        except OSError:
            if not self._any_port or self._port == 0:
                raise
            sock = bind_udp(address, 0)  # the port is taken on this address
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: MuxSocket(self._counters, self.guard, sock), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        if protocol.transport is not None:
            port = protocol.transport.get_extra_info("sockname")[1]
            self._port = self._port or port  # the other addresses too
            log.info("media on UDP port %d of %s (shared by every connection)", port, address)
        return protocol

    def shedding(self) -> bool:
        """True within ``SHEDDING_HOLD`` of a stale drop on any of the sockets."""
        return self.guard.shedding()

    def ufrags(self) -> set[str]:
        """The ICE username fragments of the endpoints on the bound sockets."""
        return {
            u for f in self._sockets.values() if f.done() and not f.exception() for u in f.result().ufrags()
        }

    def close(self) -> None:
        for found in self._sockets.values():
            if found.done() and not found.cancelled() and found.exception() is None:
                sock = found.result()
                if sock.batch is not None:
                    sock.batch.flush()
                if sock.transport is not None:
                    sock.transport.close()
            else:
                found.cancel()
        self._sockets.clear()


MediaPorts = PortRange | UdpMux
"""Where a connection's sockets come from: its own, in a port range, or the shared ones."""
