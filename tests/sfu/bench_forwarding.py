"""Measure the forwarder's CPU per packet on real loopback connections.

    python -m tests.sfu.bench_forwarding [subscribers ...]

One publisher sends 320x240 VP8 to N subscribers (which count packets, no decoding) until
media flows; then the publisher's encoder is paused and captured packets (with fresh sequence
numbers and timestamps) are replayed straight into the SFU's packet handler in a tight loop.
What is timed is the SFU's whole synchronous path for one incoming packet: parse once, route,
then per subscriber munge, rewrite the header, keep it for NACKs, SRTP-protect and ``sendto``.
aiortc's own receive path (``recvfrom``, SRTP unprotect, its queue) is not included.
Not a test: run it by hand.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time

from sfu.controller import SfuController
from sfu.publisher import Publisher
from tests.sfu.conftest import config
from tests.sfu.peers import Peer, wait_until
from tests.sfu.test_forwarding import video_track_of

REPLAYED = 5000
BATCH = 20


async def run(subscribers: int) -> tuple[float, int]:
    sfu = SfuController(config(max_audio_streams=1))
    publisher = Peer(sfu, "bench", "pub", decode=False)
    viewers = [Peer(sfu, "bench", f"v{i}", decode=False) for i in range(subscribers)]
    captured: list[bytes] = []
    original = Publisher.on_rtp

    def capture(self: Publisher, data: bytes) -> None:
        captured.append(data)
        original(self, data)

    Publisher.on_rtp = capture  # type: ignore[method-assign]
    try:
        await publisher.join()
        for v in viewers:
            await v.join()
        await publisher.publish(video=(320, 240), audio=False)
        track = video_track_of(viewers[0], "pub")
        for v in viewers:
            await v.subscribe(track)
        await wait_until(lambda: all(v.rtp_packets.get(97, 0) > 10 for v in viewers), 10)
        assert publisher.publish_pc is not None
        publisher.publish_pc.getSenders()[0].replaceTrack(None)  # the encoder stops
        await asyncio.sleep(0.3)
        server = sfu._rooms["bench"].members["pub"].publisher
        assert server is not None
        last = captured[-1]
        seq, ts = struct.unpack_from("!HI", last, 2)
        sample = captured[-2]  # a delta frame
        packets = [
            sample[:2]
            + struct.pack("!HI", (seq + 1 + i) & 0xFFFF, (ts + 3000 * (i + 1)) & 0xFFFFFFFF)
            + sample[8:]
            for i in range(REPLAYED)
        ]
        sfu.metrics.flush()
        before = sfu.metrics.registry.get_sample_value(
            "conf_sfu_packets_total", {"direction": "out", "kind": "video"}
        )
        spent = 0.0
        for first in range(0, REPLAYED, BATCH):
            start = time.thread_time()  # CPU time of this thread: other processes' load does not count
            for data in packets[first : first + BATCH]:
                original(server, data)
            spent += time.thread_time() - start
            await asyncio.sleep(0.005)  # let the subscribers drain their sockets (not timed)
        sfu.metrics.flush()
        after = sfu.metrics.registry.get_sample_value(
            "conf_sfu_packets_total", {"direction": "out", "kind": "video"}
        )
        return spent, int((after or 0) - (before or 0))
    finally:
        Publisher.on_rtp = original  # type: ignore[method-assign]
        for p in (publisher, *viewers):
            await p.close()
        await sfu.close()


async def main(counts: list[int]) -> None:
    print("subscribers  forwarded  us/incoming  us/forwarded")
    for n in counts:
        spent, forwarded = await run(n)
        print(
            f"{n:11d}  {forwarded:9d}  {spent / REPLAYED * 1e6:11.1f}  {spent / max(forwarded, 1) * 1e6:12.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [1, 5, 10, 20, 50]))
