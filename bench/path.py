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
"""

from __future__ import annotations

import argparse
import statistics
import struct
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram

from bench import positive
from bench.floor import close_pairs, drain, open_pairs
from sfu.core.rtp import RtpView
from sfu.core.simulcast import LayerLimits
from sfu.fastio import SrtpSession
from sfu.forwarder import VideoForwarder
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


class Upstream:
    def request_keyframe(self, ssrc: int, now: float) -> None:
        pass

    def send_nack(self, ssrc: int, lost: list[int]) -> None:
        pass

    def keyframe_arrived(self, ssrc: int) -> None:
        pass


def measure(subscribers: int, batches: int) -> tuple[float, float]:
    """Medians over ``batches`` of (path, floor), CPU microseconds per forwarded packet."""
    pairs = open_pairs(subscribers)
    try:
        counters = Counters()
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
        writers = [Writer(srtp, sender.send) for srtp, sender, _receiver in pairs]
        for i, writer in enumerate(writers):
            slot = Slot("video", counters, 64)
            ssrc = 1000 + i
            params = SlotParams(mid="1", kind="video", ssrc=ssrc, rtx_ssrc=None, codecs=(VP8,), extensions={})
            slot.set_negotiated(params, writer)  # type: ignore[arg-type]  # duck-typed RtpWriter
            VideoForwarder(track, f"s{i}", LayerLimits(), 0.0, wait).attach(slot, 0.0)
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
        track.on_rtp(packets(1, KEYFRAME + PAYLOAD)[0], "", False, clock)  # every subscription starts

        def path(views: list[RtpView]) -> float:
            nonlocal clock
            start = time.process_time()
            for view in views:
                clock += 0.001
                track.on_rtp(view, "", False, clock)
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

        costs: dict[str, list[float]] = {"path": [], "floor": []}
        sent = counters.packets_out_video
        for _ in range(batches):
            for name, run in (("path", path), ("floor", floor)):
                views = packets(BATCH)
                costs[name].append(run(views) / (BATCH * subscribers) * 1e6)
                for _srtp, _sender, receiver in pairs:
                    drain(receiver)
        forwarded = counters.packets_out_video - sent
        if forwarded != batches * BATCH * subscribers:
            raise SystemExit(f"forwarded {forwarded} packets, expected {batches * BATCH * subscribers}")
        return statistics.median(costs["path"]), statistics.median(costs["floor"])
    finally:
        close_pairs(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.path", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=positive, default=100)
    parser.add_argument("--batches", type=positive, default=80)
    ns = parser.parse_args()
    path, floor = measure(ns.subscribers, ns.batches)
    print(
        f"per forwarded packet ({ns.subscribers} subscribers): path {path:.2f} µs, floor {floor:.2f} µs, "
        f"path - floor {path - floor:.2f} µs, path / floor {path / floor:.2f}"
    )


if __name__ == "__main__":
    main()
