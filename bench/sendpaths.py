"""What a fan-out's sends would cost through one socket: ``send`` on N connected sockets (the
SFU today: one socket per subscriber connection) against ``sendto`` on one socket and
``sendmmsg`` of all N datagrams in one call on one socket (a single media port for every peer).

    .venv/bin/python -m bench.sendpaths [--destinations 100] [--rounds 60]

Only the sends are timed (1,200-byte datagrams already protected; no SRTP), to N loopback
sockets that are drained between batches, the three ways in alternation, batch by batch, so that
their ratios hold still while a shared virtual machine's speed drifts. ``sendmmsg`` is called
through cffi's ABI mode (libc, no compiler), with its message array built once: the figure is
the kernel's cost plus one Python call per N datagrams, the best a single-port design could do.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import time
from collections.abc import Callable

from cffi import FFI

from bench.floor import PACKET_SIZE, close_pairs, drain, open_pairs

PER_BATCH = 10  # datagrams to every destination per timed batch

_CDEF = """
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned int msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen; int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
"""


def sockaddr_in(host: str, port: int) -> bytes:
    """A ``struct sockaddr_in`` (Linux layout) for an IPv4 address."""
    return struct.pack("<H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)


class Batch:
    """``sendmmsg`` of one datagram to each of ``addresses`` (IPv4) from ``sock``."""

    def __init__(self, sock: socket.socket, addresses: list[tuple[str, int]], data: bytes) -> None:
        self._ffi = ffi = FFI()
        ffi.cdef(_CDEF)
        self._libc = ffi.dlopen(None)
        n = len(addresses)
        self._payload = ffi.new("char[]", data)
        self._names = [ffi.new("char[16]", sockaddr_in(host, port)) for host, port in addresses]
        self._iov = ffi.new("struct iovec[]", n)
        self._msgs = ffi.new("struct mmsghdr[]", n)
        for i, name in enumerate(self._names):
            self._iov[i].iov_base = self._payload
            self._iov[i].iov_len = len(data)
            hdr = self._msgs[i].msg_hdr
            hdr.msg_iov = ffi.addressof(self._iov, i)
            hdr.msg_iovlen = 1
            hdr.msg_name = name
            hdr.msg_namelen = 16
        self._fd = sock.fileno()
        self._n = n

    def send(self) -> int:
        return int(self._libc.sendmmsg(self._fd, self._msgs, self._n, 0))


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
        batch = Batch(one, addresses, data)

        def connected() -> None:
            for send in senders:
                send(data)

        def unconnected() -> None:
            for address in addresses:
                sendto(data, address)

        def mmsg() -> None:
            if batch.send() != destinations:
                raise SystemExit("sendmmsg did not send every datagram")

        ways: dict[str, Callable[[], None]] = {
            "send, N connected sockets": connected,
            "sendto, one socket": unconnected,
            "sendmmsg, one socket": mmsg,
        }
        costs: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(rounds):
            for name, way in ways.items():
                start = time.process_time()
                for _ in range(PER_BATCH):
                    way()
                costs[name].append((time.process_time() - start) / (PER_BATCH * destinations) * 1e6)
                for _srtp, _sender, receiver in pairs:
                    drain(receiver)
        return costs
    finally:
        one.close()
        close_pairs(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.sendpaths", description=__doc__.split("\n\n")[0])
    parser.add_argument("--destinations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=60)
    ns = parser.parse_args()
    costs = measure(ns.destinations, ns.rounds)
    base = costs["send, N connected sockets"]
    print(f"{PACKET_SIZE}-byte datagrams to {ns.destinations} loopback destinations, {ns.rounds} rounds:")
    for name, values in costs.items():
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        cost = statistics.median(values)
        print(f"  {name:<28} {cost:6.2f} µs per datagram  ({ratio:.2f} x connected send)")


if __name__ == "__main__":
    main()
