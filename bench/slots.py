"""What adding a subscribe connection's video slot costs the server: aiortc's own
``addTransceiver`` (its receiver builds a receive-side bitrate estimator of 1,000 objects)
against ``sfu.glue.receive.add_sending_transceiver`` (the same transceiver without it), alternated
round by round so the ratio holds still while the machine's speed drifts.

    .venv/bin/python -m bench.slots [--connections 20] [--slots 10] [--rounds 6]

A meeting of 100 in which everyone sees a 9-tile page and the speaker adds ~1,000 such slots
while it joins (a video slot per tile and one for the speaker, per subscriber).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCPeerConnection

from bench import positive
from sfu.glue.receive import add_sending_transceiver


def _aiortc(pc: RTCPeerConnection) -> None:
    pc.addTransceiver("video", direction="sendonly")


def _sfu(pc: RTCPeerConnection) -> None:
    add_sending_transceiver(pc, "video")


async def _round(add: Callable[[RTCPeerConnection], None], connections: int, slots: int) -> float:
    """CPU microseconds per video slot added."""
    pcs = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(connections)]
    gc.collect()
    start = time.process_time()
    for pc in pcs:
        for _ in range(slots):
            add(pc)
    spent = time.process_time() - start
    for pc in pcs:
        await pc.close()
    return spent / (connections * slots) * 1e6


async def measure(connections: int, slots: int, rounds: int) -> dict[str, float]:
    costs: dict[str, list[float]] = {"aiortc": [], "sfu": []}
    for _ in range(rounds):
        costs["aiortc"].append(await _round(_aiortc, connections, slots))
        costs["sfu"].append(await _round(_sfu, connections, slots))
    return {name: statistics.median(values) for name, values in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.slots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=positive, default=20)
    parser.add_argument("--slots", type=positive, default=10)
    parser.add_argument("--rounds", type=positive, default=6)
    ns = parser.parse_args()
    cost = asyncio.run(measure(ns.connections, ns.slots, ns.rounds))
    print(
        f"per video slot (median of {ns.rounds} rounds of {ns.connections * ns.slots}): aiortc's "
        f"addTransceiver {cost['aiortc']:.0f} µs, add_sending_transceiver {cost['sfu']:.0f} µs, "
        f"ratio {cost['sfu'] / cost['aiortc']:.2f}"
    )


if __name__ == "__main__":
    main()
