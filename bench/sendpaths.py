"""What a fan-out's sends would cost through one socket: ``send`` on N connected sockets (the
SFU today: one socket per subscriber connection) against ``sendto`` on one socket and
``sendmmsg`` of all N datagrams in one call on one socket (a single media port for every peer).

    .venv/bin/python -m bench.sendpaths [--destinations 100] [--rounds 60]
    .venv/bin/python -m bench.sendpaths --per-socket K

Only the sends are timed (1,200-byte datagrams already protected; no SRTP), to N loopback
sockets that are drained between batches, the three ways in alternation, batch by batch, so that
their ratios hold still while a shared virtual machine's speed drifts. ``sendmmsg`` is called
through cffi's ABI mode (libc, no compiler), with its message array built once: the figure is
the kernel's cost plus one Python call per N datagrams, the best a single-port design could do.
``--per-socket K`` instead measures batching on today's connected sockets: K packets for each
subscriber protected and sent one by one, or protected into a ring and sent with one
``sendmmsg`` per socket.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import time
from collections.abc import Callable

from cffi import FFI

from bench import positive
from bench.floor import PACKET_SIZE, Pair, close_pairs, drain, open_pairs, test_packets
from sfu.fastio import MMSG_CDEF

PER_BATCH = 10  # datagrams to every destination per timed batch


def sockaddr_in(host: str, port: int) -> bytes:
    """A ``struct sockaddr_in`` (Linux layout) for an IPv4 address."""
    return struct.pack("<H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)


class Batch:
    """``sendmmsg`` from ``sock`` of up to ``count`` datagrams, each from its own buffer: to
    ``addresses`` (IPv4, one per message) or, without them, on a connected socket."""

    SIZE = 1500

    def __init__(
        self, sock: socket.socket, count: int, addresses: list[tuple[str, int]] | None = None
    ) -> None:
        self._ffi = ffi = FFI()
        ffi.cdef(MMSG_CDEF)
        self._libc = ffi.dlopen(None)
        self._buffers = ffi.new("char[]", self.SIZE * count)
        self.view = memoryview(ffi.buffer(self._buffers))  # message i at i * SIZE
        self._names = [ffi.new("char[16]", sockaddr_in(host, port)) for host, port in addresses or ()]
        self._iov = ffi.new("struct iovec[]", count)
        self._msgs = ffi.new("struct mmsghdr[]", count)
        for i in range(count):
            self._iov[i].iov_base = self._buffers + self.SIZE * i
            hdr = self._msgs[i].msg_hdr
            hdr.msg_iov = ffi.addressof(self._iov, i)
            hdr.msg_iovlen = 1
            if self._names:
                hdr.msg_name = self._names[i]
                hdr.msg_namelen = 16
        self._fd = sock.fileno()

    def put(self, index: int, data: bytes | memoryview) -> None:
        start = self.SIZE * index
        self.view[start : start + len(data)] = data
        self._iov[index].iov_len = len(data)

    def send(self, count: int) -> int:
        return int(self._libc.sendmmsg(self._fd, self._msgs, count, 0))


def alternate(
    ways: dict[str, Callable[[], None]], pairs: list[Pair], rounds: int, repeat: int, datagrams: int
) -> dict[str, list[float]]:
    """Each way ``repeat`` times per round, in turn, ``rounds`` times: CPU µs per datagram of each
    (a way sends ``datagrams / repeat``), the receivers drained after each."""
    costs: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            start = time.process_time()
            for _ in range(repeat):
                way()
            costs[name].append((time.process_time() - start) / datagrams * 1e6)
            for _srtp, _sender, receiver in pairs:
                drain(receiver)
    return costs


def measure(destinations: int = 100, rounds: int = 60) -> dict[str, list[float]]:
    """µs per datagram of each way, one figure per alternation round."""
    pairs = open_pairs(destinations)
    one = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        one.bind(("127.0.0.1", 0))
        data = bytes(PACKET_SIZE)
        addresses = [receiver.getsockname() for _srtp, _sender, receiver in pairs]
        senders = [sender.send for _srtp, sender, _receiver in pairs]
        sendto = one.sendto
        batch = Batch(one, destinations, addresses)
        for i in range(destinations):
            batch.put(i, data)

        def connected() -> None:
            for send in senders:
                send(data)

        def unconnected() -> None:
            for address in addresses:
                sendto(data, address)

        def mmsg() -> None:
            if batch.send(destinations) != destinations:
                raise SystemExit("sendmmsg did not send every datagram")

        ways: dict[str, Callable[[], None]] = {
            "send, N connected sockets": connected,
            "sendto, one socket": unconnected,
            "sendmmsg, one socket": mmsg,
        }
        return alternate(ways, pairs, rounds, PER_BATCH, PER_BATCH * destinations)
    finally:
        one.close()
        close_pairs(pairs)


def measure_per_socket(packets: int, destinations: int = 100, rounds: int = 60) -> dict[str, list[float]]:
    """µs per packet of SRTP protect + ``send`` for each of ``packets`` packets to each connected
    socket, against protecting them into a per-socket ring and one ``sendmmsg`` per socket (as
    if a socket callback held ``packets`` packets for every subscriber; the copy into the ring,
    ~0.1 µs, stands in for protecting in place there)."""
    pairs = open_pairs(destinations)
    try:
        batches = [Batch(sender, packets) for _srtp, sender, _receiver in pairs]
        data = test_packets(packets)

        def each() -> None:
            for srtp, sender, _receiver in pairs:
                protect, send = srtp.protect, sender.send
                for packet in data:
                    protected = protect(packet)
                    if protected is not None:
                        send(protected)

        def batched() -> None:
            for (srtp, _sender, _receiver), batch in zip(pairs, batches, strict=True):
                protect, put = srtp.protect, batch.put
                for i, packet in enumerate(data):
                    protected = protect(packet)
                    if protected is not None:
                        put(i, protected)
                if batch.send(packets) != packets:
                    raise SystemExit("sendmmsg did not send every datagram")

        ways: dict[str, Callable[[], None]] = {
            "protect + send, each packet": each,
            f"protect, sendmmsg of {packets}": batched,
        }
        return alternate(ways, pairs, rounds, 1, packets * destinations)
    finally:
        close_pairs(pairs)


def show(costs: dict[str, list[float]]) -> None:
    base = next(iter(costs.values()))
    for name, values in costs.items():
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        cost = statistics.median(values)
        print(f"  {name:<30} {cost:6.2f} µs per datagram  ({ratio:.2f} x the first)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.sendpaths", description=__doc__.split("\n\n")[0])
    parser.add_argument("--destinations", type=positive, default=100)
    parser.add_argument("--rounds", type=positive, default=60)
    parser.add_argument(
        "--per-socket",
        type=positive,
        metavar="K",
        help="instead: K packets protected for each connected socket, sent one by one or with one sendmmsg",
    )
    ns = parser.parse_args()
    if ns.per_socket:
        print(f"{ns.per_socket} packets to each of {ns.destinations} connected sockets, {ns.rounds} rounds:")
        show(measure_per_socket(ns.per_socket, ns.destinations, ns.rounds))
        return
    print(f"{PACKET_SIZE}-byte datagrams to {ns.destinations} loopback destinations, {ns.rounds} rounds:")
    show(measure(ns.destinations, ns.rounds))


if __name__ == "__main__":
    main()
