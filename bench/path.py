"""The SFU's forwarding path for one incoming packet, over the floor, measured in one process.

    .venv/bin/python -m bench.path [--subscribers 100] [--batches 80]

A video track (``UpTrack``) with N subscriptions in the steady state, each with its own slot,
down-track, SRTP session (AES-256-GCM) and connected loopback UDP socket, as a fan-out has
them. Timed: ``UpTrack.on_rtp`` for a 1,100-byte VP8 delta frame packet, which is everything
the server does synchronously for it after decryption (history, reception statistics, keyframe
detection, fan-out; per subscriber: munge, header rewrite, SRTP protect in place, ``send``).
Alternating with it, batch by batch: the floor, the same packets protected and sent to the same
sockets and nothing else. Both change with the machine's speed within seconds on a shared
virtual machine; measured in alternation, their difference and ratio hold still where the
load tests' figures drift. Not included: receiving (``recvfrom``, SRTP unprotect), RTCP, the
event loop, and a receiver being woken (nothing reads the sockets).

A third way, in the same alternation: the same path on one shared, unconnected socket (the
SFU's single media port, ``sfu.udpmux``): each subscriber's copy queued in a
``DatagramBatch`` and the packet's whole fan-out sent with one ``sendmmsg``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram

from bench import positive
from bench.floor import close_pairs, drain, open_pairs
from sfu.core.rtp import RtpView
from sfu.core.simulcast import LayerLimits
from sfu.fastio import DatagramBatch
from sfu.forwarder import VideoForwarder
from sfu.glue.srtp import SrtpSession
from sfu.metrics import Counters
from sfu.sdp import Codec
from sfu.slot import Slot, SlotParams
from sfu.uptrack import UpTrack

VP8 = Codec(96, "VP8", 90_000)
PAYLOAD = b"\x55" * 1100
KEYFRAME = bytes([0x10, 0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", 640, 360)
DELTA = bytes([0x10, 0x11, 0x02, 0x00])
BATCH = 10  # packets per timed batch


class Writer:
    """The part of ``RtpWriter`` the forwarding path uses, on a plain socket."""

    def __init__(self, srtp: SrtpSession, send: Callable[[memoryview], object]) -> None:
        self.buffer: memoryview | None = srtp.rtp_buffer
        self.emit = srtp.sender(send)

    def prepare(self) -> memoryview | None:
        return self.buffer


class BatchWriter:
    """The same on one shared socket: each copy queued in ``batch``, sent at its flush."""

    def __init__(self, srtp: SrtpSession, batch: DatagramBatch, name: object) -> None:
        self.buffer: memoryview | None = srtp.rtp_buffer
        self.ready_buffer = srtp.rtp_buffer
        self._batch = batch
        self.emit = batch.emitter(srtp, name, self)

    def prepare(self) -> memoryview | None:
        if self._batch.count:
            self._batch.flush()
        return self.buffer


class Upstream:
    def request_keyframe(self, ssrc: int, now: float) -> None:
        pass

    def send_nack(self, ssrc: int, lost: list[int]) -> None:
        pass

    def keyframe_arrived(self, ssrc: int) -> None:
        pass


def fan_out(writers: list[Writer] | list[BatchWriter], counters: Counters, first_ssrc: int) -> UpTrack:
    """A video track with one steady subscription per writer, sending from ``first_ssrc`` on."""
    track = UpTrack(
        track_id="t",
        owner="pub",
        identity="pub",
        mid="0",
        kind="video",
        source="camera",
        upstream=Upstream(),
        counters=counters,
    )
    track.configure((VP8,), {}, 0)
    wait = Histogram("wait", "keyframe wait", registry=CollectorRegistry())
    for i, writer in enumerate(writers):
        slot = Slot("video", counters, 64)
        params = SlotParams(
            mid="1", kind="video", ssrc=first_ssrc + i, rtx_ssrc=None, codecs=(VP8,), extensions={}
        )
        slot.set_negotiated(params, writer)  # type: ignore[arg-type]  # duck-typed RtpWriter
        VideoForwarder(track, f"s{i}", LayerLimits(), 0.0, wait).attach(slot, 0.0)
    return track


def measure(subscribers: int, batches: int) -> dict[str, float]:
    """Medians over ``batches`` of each way's CPU microseconds per forwarded packet: ``path``,
    ``shared`` (the path on one socket) and ``floor``."""
    pairs = open_pairs(subscribers)
    shared_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        shared_socket.bind(("127.0.0.1", 0))
        batch = DatagramBatch(shared_socket, lambda: None)
        if not batch.available:
            raise SystemExit("no usable sendmmsg here")
        counters = Counters()
        writers = [Writer(srtp, sender.send) for srtp, sender, _receiver in pairs]
        track = fan_out(writers, counters, 1000)
        batch_writers = [
            BatchWriter(
                SrtpSession(srtp.session), batch, batch.address(socket.AF_INET, *receiver.getsockname())
            )
            for srtp, _sender, receiver in pairs
        ]
        shared_track = fan_out(batch_writers, counters, 5000)  # the sessions are shared
        sequence = 0

        def packets(count: int, payload: bytes = DELTA + PAYLOAD) -> list[RtpView]:
            nonlocal sequence
            out = []
            for _ in range(count):
                sequence += 1
                header = struct.pack("!BBHII", 0x80, 96, sequence, sequence * 3000, 0x5EED)
                out.append(RtpView(header + payload))
            return out

        clock = 0.0
        for each in (track, shared_track):
            each.on_rtp(packets(1, KEYFRAME + PAYLOAD)[0], "", False, clock)  # every subscription starts
        batch.flush()

        def path(views: list[RtpView]) -> float:
            nonlocal clock
            start = time.process_time()
            for view in views:
                clock += 0.001
                track.on_rtp(view, "", False, clock)
            return time.process_time() - start

        def shared(views: list[RtpView]) -> float:
            nonlocal clock
            start = time.process_time()
            for view in views:
                clock += 0.001
                shared_track.on_rtp(view, "", False, clock)
                batch.flush()  # as the shared socket does after each datagram
            return time.process_time() - start

        def floor(views: list[RtpView]) -> float:
            start = time.process_time()
            for view in views:
                data = view.data
                size = len(data)
                for writer in writers:
                    writer.buffer[:size] = data  # type: ignore[index]
                    writer.emit(size)
            return time.process_time() - start

        costs: dict[str, list[float]] = {"path": [], "shared": [], "floor": []}
        sent = counters.packets_out_video
        for _ in range(batches):
            for name, run in (("path", path), ("shared", shared), ("floor", floor)):
                views = packets(BATCH)
                costs[name].append(run(views) / (BATCH * subscribers) * 1e6)
                for _srtp, _sender, receiver in pairs:
                    drain(receiver)
        forwarded = counters.packets_out_video - sent
        if forwarded != 2 * batches * BATCH * subscribers or batch.failed:
            raise SystemExit(f"forwarded {forwarded} packets, expected {2 * batches * BATCH * subscribers}")
        return {name: statistics.median(values) for name, values in costs.items()}
    finally:
        shared_socket.close()
        close_pairs(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.path", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=positive, default=100)
    parser.add_argument("--batches", type=positive, default=80)
    ns = parser.parse_args()
    cost = measure(ns.subscribers, ns.batches)
    path, shared, floor = cost["path"], cost["shared"], cost["floor"]
    print(
        f"per forwarded packet ({ns.subscribers} subscribers): path {path:.2f} µs, floor {floor:.2f} µs, "
        f"path - floor {path - floor:.2f} µs, path / floor {path / floor:.2f}"
    )
    print(
        f"the path on one shared socket (sendmmsg per packet): {shared:.2f} µs, "
        f"{shared / path:.2f} x the path, {shared / floor:.2f} x the floor"
    )


if __name__ == "__main__":
    main()
