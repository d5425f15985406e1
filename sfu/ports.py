"""Where media sockets bind: the addresses (``GatherPolicy``) and the UDP ports (a configured
range, tried round-robin); how large their receive buffers are (``size_receive_buffer``); and
what waits or was dropped in them (``udp_queues``, from Linux's ``/proc``); how long media may
wait in them before it is dropped unread (``StaleGuard``, for sockets with arrival stamps).

Each peer connection binds one socket per local address. With a range configured
(``sfu.port_min``-``sfu.port_max``) the binder asks ``PortRange.candidates()`` for the order in
which to try ports: it starts after the last port handed out, so a port that was just released
(and may still receive a late packet of the old connection) is reused last.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aioice.ice import get_host_addresses

from sfu.core.actions import DropReason

if TYPE_CHECKING:
    from sfu.metrics import Counters, ReceiveWaits

RECEIVE_BUFFER_SIZE = 4 << 20
"""Bytes of receive buffer asked for each media socket. A publisher's socket must hold the packets
that arrive while the server is busy with others: all cameras of a meeting send a keyframe (a
burst of dozens of packets) about once a second, and on loopback a 1,200-byte datagram takes
~2-5 KiB of buffer. With aioice's 256 KiB a 100-person meeting lost packets in its publishers'
sockets while the server averaged 95 % of a core. Linux caps it at ``net.core.rmem_max``."""

SO_RCVBUFFORCE: int | None = getattr(
    socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None
)
"""Linux's option for a receive buffer beyond ``net.core.rmem_max`` (CAP_NET_ADMIN); Python
does not name it."""


SHEDDING_HOLD = 1.0
"""Seconds after a stale drop during which the server asks publishers for no retransmissions
(``StaleGuard.shedding``): the gaps are its own doing, and resent packets would only add to the
load it could not carry (the NACK generator gives a gap up after 1 s)."""


class StaleGuard:
    """The media sockets' receive queue, bounded in time: called with how long an RTP datagram
    waited in its socket (from the kernel's arrival stamp; ``head``: the oldest of a wake-up's
    reading on, which the histogram samples), True to drop it unread as stale (counted) when it
    waited longer than ``max_delay`` (0: no bound). One guard serves all of a server's sockets."""

    __slots__ = ("_counters", "_waits", "max_delay", "stale_at")

    def __init__(
        self, counters: Counters | None = None, max_delay: float = 0.0, waits: ReceiveWaits | None = None
    ) -> None:
        self._counters = counters
        self._waits = waits
        self.max_delay = max_delay
        self.stale_at = -math.inf  # time.monotonic() of the last stale drop

    def __call__(self, seconds: float, head: bool) -> bool:
        if head and self._waits is not None:
            self._waits.observe(seconds)
        if 0 < self.max_delay < seconds:
            self.stale_at = time.monotonic()
            if self._counters is not None:
                self._counters.drop(DropReason.STALE)
            return True
        return False

    def shedding(self) -> bool:
        """True within ``SHEDDING_HOLD`` of a stale drop."""
        return time.monotonic() - self.stale_at < SHEDDING_HOLD


class PortRangeExhausted(OSError):
    """No port of the range could be bound."""


class PortRange:
    """Ports ``low``..``high`` inclusive; ``low == high == 0`` means any port the OS picks.
    ``guard``: the bound on how long media waits in the sockets bound here (the server's)."""

    __slots__ = ("_high", "_low", "_next", "guard")

    def __init__(self, low: int = 0, high: int = 0, guard: StaleGuard | None = None) -> None:
        if (low, high) != (0, 0) and not 1 <= low <= high <= 65535:
            raise ValueError(f"invalid UDP port range {low}-{high}")
        self._low = low
        self._high = high
        self._next = low
        self.guard = guard

    def shedding(self) -> bool:
        """Media went stale in one of the sockets within ``SHEDDING_HOLD``."""
        return self.guard is not None and self.guard.shedding()

    @property
    def any_port(self) -> bool:
        return self._low == 0

    @property
    def low(self) -> int:
        return self._low

    @property
    def high(self) -> int:
        return self._high

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and (self.any_port or self._low <= port <= self._high)

    def candidates(self) -> Iterator[int]:
        """Ports to try, in order; ``0`` alone for an unrestricted range. Each port yielded moves
        the round-robin start past it."""
        if self.any_port:
            yield 0
            return
        size = self._high - self._low + 1
        start = self._next
        for i in range(size):
            port = self._low + (start - self._low + i) % size
            self._next = self._low + (port - self._low + 1) % size
            yield port


@dataclass(frozen=True)
class GatherPolicy:
    """Where host candidates are bound: ``addresses`` (empty: every interface except loopback),
    ports from ``ports``, and ``public_ip`` written into every host candidate when set."""

    addresses: tuple[str, ...] = ()
    public_ip: str = ""


def local_addresses(policy: GatherPolicy) -> list[str]:
    if policy.addresses:
        return list(policy.addresses)
    return get_host_addresses(use_ipv4=True, use_ipv6=True)


def check_port_free(port: int, addresses: Iterable[str] = ()) -> None:
    """OSError (with the port in its message) when UDP ``port`` cannot be bound on each of
    ``addresses`` (none: on every interface)."""
    for address in tuple(addresses) or ("0.0.0.0",):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, port))
            except OSError as exc:
                raise OSError(exc.errno, f"cannot bind UDP port {port} on {address}: {exc.strerror}") from exc


def bind_udp(address: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to (``address``, ``port``; 0: any free port), for
    ``loop.create_datagram_endpoint(sock=...)``: the SFU keeps the socket itself, to read what it
    holds (``sfu.fastio.drain``) and send on it without asyncio's buffering."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        address, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.bind(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


def size_receive_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER_SIZE, *, force: bool = False) -> int:
    """Ask for a ``size``-byte receive buffer: the bytes granted (Linux caps them at
    ``net.core.rmem_max``; with ``force``, a process allowed to administer the network gets
    ``size`` beyond it)."""
    try:
        if not force or SO_RCVBUFFORCE is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)) // 2  # Linux reports it doubled


def receive_buffer_warning(size: int | None = None, *, force: bool = False) -> str | None:
    """What to tell the operator when media sockets would get less than ``size`` bytes of receive
    buffer (default ``RECEIVE_BUFFER_SIZE``; asked once, of a throwaway socket, when the SFU
    starts); None when they get it."""
    size = RECEIVE_BUFFER_SIZE if size is None else size
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        granted = size_receive_buffer(probe, size, force=force)
    if granted >= size:
        return None
    return (
        f"media sockets get a {granted >> 10} KiB receive buffer, not the {size >> 10} KiB asked "
        f"for: raise the kernel's limit (sysctl net.core.rmem_max={size}) or packets arriving in "
        "bursts may be lost"
    )


@dataclass(frozen=True)
class UdpQueues:
    """The process's UDP sockets as the kernel sees them (all of the SFU's are media sockets)."""

    queued_bytes: int  # buffer memory held by datagrams not yet read (Linux counts ~2-5 KiB each)
    drops: dict[int, int]  # socket inode -> datagrams dropped since it opened (a full buffer)


def parse_proc_net_udp(text: str) -> dict[int, tuple[int, int]]:
    """socket inode -> (receive queue bytes, drops), from ``/proc/net/udp`` or ``udp6``."""
    found: dict[int, tuple[int, int]] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 13:
            continue
        try:
            queued = int(fields[4].partition(":")[2], 16)
            found[int(fields[9])] = (queued, int(fields[12]))
        except ValueError:
            continue
    return found


def udp_queues(proc: Path = Path("/proc")) -> UdpQueues | None:
    """What waits in and was dropped by this process's UDP sockets; None without Linux's
    ``/proc``. Costs a directory listing of the process's descriptors and a read of the kernel's
    UDP tables: for a scrape, not for the packet path."""
    try:
        names = os.listdir(proc / "self" / "fd")
        tables = [(proc / "net" / name).read_text() for name in ("udp", "udp6")]
    except OSError:
        return None
    own: set[int] = set()
    for name in names:
        try:
            target = os.readlink(proc / "self" / "fd" / name)
        except OSError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            own.add(int(target[8:-1]))
    queued = 0
    drops: dict[int, int] = {}
    for table in tables:
        for inode, (waiting, dropped) in parse_proc_net_udp(table).items():
            if inode in own:
                queued += waiting
                drops[inode] = dropped
    return UdpQueues(queued, drops)
