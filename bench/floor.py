"""The machine's floor for forwarding one packet: SRTP protect + send, in CPU microseconds.

    .venv/bin/python -m bench.floor [--destinations 100]

A forwarding unit cannot spend less per forwarded packet than protecting it for its subscriber
and handing it to the kernel. This measures exactly that with the SFU's own code
(``sfu.glue.srtp.SrtpSession``, AES-256-GCM as negotiated between aiortc peers, a 1,200-byte packet,
``send`` on a connected loopback UDP socket, whose CPU includes the kernel's delivery into the
receiving socket), cycling over as many destinations (one SRTP session and socket pair each) as
a fan-out has subscribers: one packet goes to each in turn. The benchmarks report the server's
cost per forwarded packet as a multiple of this floor too: on a shared virtual machine whose
speed drifts, the ratio moves less than the microseconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import threading
import time

from pylibsrtp import Policy, Session

from bench import positive
from sfu.glue.srtp import SrtpSession

PACKET_SIZE = 1200
ROUNDS = 20  # packets to every destination per timed batch


Pair = tuple[SrtpSession, socket.socket, socket.socket]
"""An SRTP session (AES-256-GCM, outbound) with a sending socket connected to a receiving one."""


def open_pairs(count: int) -> list[Pair]:
    """``count`` destinations on loopback; the caller closes their sockets."""
    pairs: list[Pair] = []
    for _ in range(count):
        policy = Policy(
            key=os.urandom(44),
            ssrc_type=Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
        )
        policy.allow_repeat_tx = True
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pairs.append((SrtpSession(Session(policy)), sender, receiver))
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        sender.bind(("127.0.0.1", 0))
        sender.connect(receiver.getsockname())
    return pairs


def floor_us(destinations: int = 100, batches: int = 15) -> float:
    """Median over ``batches`` of the CPU microseconds per protect + send."""
    pairs = open_pairs(destinations)
    try:
        packets = test_packets(ROUNDS)
        return statistics.median(batch_us(pairs, packets) for _ in range(batches))
    finally:
        close_pairs(pairs)


def test_packets(count: int) -> list[bytes]:
    payload = os.urandom(PACKET_SIZE - 12)
    return [struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 0x5EED) + payload for seq in range(count)]


def batch_us(pairs: list[Pair], packets: list[bytes]) -> float:
    """CPU microseconds per protect + send of every packet to every destination in turn; the
    receiving sockets are drained afterwards, outside the timing."""
    targets = [(srtp.protect, sender.send) for srtp, sender, _receiver in pairs]
    start = time.process_time()
    for packet in packets:
        for protect, send in targets:
            protected = protect(packet)
            if protected is not None:
                send(protected)
    cost = (time.process_time() - start) / (len(packets) * len(pairs)) * 1e6
    for _srtp, _sender, receiver in pairs:
        drain(receiver)
    return cost


def close_pairs(pairs: list[Pair]) -> None:
    for _srtp, sender, receiver in pairs:
        sender.close()
        receiver.close()


class FloorSampler:
    """The floor sampled every ``interval`` seconds in a thread while something else runs (a load
    test): the virtual machine's speed can change within a run, and a floor taken only before
    and after misses it. A sample is ``rounds`` packets to each destination (~500 protect + send,
    a few ms: well under 1 % of a core)."""

    def __init__(self, destinations: int = 100, interval: float = 2.0, rounds: int = 5) -> None:
        self.samples: list[tuple[float, float]] = []  # (Unix time, µs)
        self._destinations = destinations
        self._interval = interval
        self._rounds = rounds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="floor-sampler", daemon=True)

    def __enter__(self) -> FloorSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> float | None:
        """Median of the samples taken from ``start`` to ``end`` (Unix time), None if none."""
        inside = [us for at, us in self.samples if start <= at <= end]
        return statistics.median(inside) if inside else None

    def _run(self) -> None:
        pairs = open_pairs(self._destinations)
        try:
            packets = test_packets(self._rounds)
            while not self._stop.wait(self._interval):
                self.samples.append((time.time(), batch_us(pairs, packets)))
        finally:
            close_pairs(pairs)


def drain(sock: socket.socket) -> None:
    """Read what a non-blocking socket holds."""
    try:
        while True:
            sock.recv(2048)
    except BlockingIOError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--destinations", type=positive, default=100)
    ns = parser.parse_args()
    cost = floor_us(ns.destinations)
    print(
        f"SRTP protect + send of a {PACKET_SIZE}-byte packet to {ns.destinations} destinations: {cost:.2f} µs"
    )


if __name__ == "__main__":
    main()
