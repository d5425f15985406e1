"""Simulcast: three RID layers in, the layer that fits each subscriber out, switched on keyframes."""

from __future__ import annotations

import asyncio
import itertools
import re

from sfu.controller import SfuController
from sfu.core.rtcp import Remb
from sfu.glue.send import RtpWriter
from tests.sfu.peers import Peer, wait_until
from tests.sfu.rawpublisher import RawPublisher


def layers_seen(peer: Peer, since: int = 0) -> list[str]:
    out = []
    for data in peer.raw[since:]:
        marker = data.rfind(b"LAYER:")
        if marker >= 0:
            out.append(data[marker + 6 : data.index(b"|", marker)].decode())
    return out


async def test_each_subscriber_gets_the_layer_that_fits_and_switches_on_a_keyframe(
    sfu: SfuController,
) -> None:
    alice = Peer(sfu, "sim", "alice")
    small = Peer(sfu, "sim", "small", decode=False)
    large = Peer(sfu, "sim", "large", decode=False)
    publisher = RawPublisher(alice)
    try:
        for p in (alice, small, large):
            await p.join()
        await publisher.publish(1280, 720)
        assert "a=simulcast:recv q;h;f" in publisher.answer
        announced = (await small.expect("track_published"))["track"]
        assert [(la["rid"], la["width"], la["height"]) for la in announced["layers"]] == [
            ("q", 320, 180),
            ("h", 640, 360),
            ("f", 1280, 720),
        ]
        await small.subscribe(announced["id"], max_width=320, max_height=180)
        await large.subscribe(announced["id"], max_width=1280, max_height=720)
        await wait_until(
            lambda: len(layers_seen(small)) >= 10 and len(layers_seen(large)) >= 10, 5, what="layers"
        )
        assert set(layers_seen(small)) == {"q"}
        assert set(layers_seen(large)) == {"f"}
        assert publisher.plis  # each subscriber's first packet had to be a keyframe

        mark = len(small.raw)
        await small.subscribe(announced["id"], max_width=640, max_height=360)
        await wait_until(lambda: "h" in layers_seen(small, mark), 3, what="switch up to h")
        after = layers_seen(small, mark)
        first_h = after.index("h")
        assert set(after[first_h:]) == {"h"}  # no going back once switched
        assert set(after[:first_h]) <= {"q"}
        # the outgoing stream stayed one stream: same SSRC, consecutive sequence numbers
        ssrcs = {int.from_bytes(d[8:12], "big") for d in small.raw}
        assert len(ssrcs) == 1
        seqs = [int.from_bytes(d[2:4], "big") for d in small.raw]
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
        await asyncio.sleep(0)
    finally:
        await publisher.close()
        for p in (alice, small, large):
            await p.close()


async def test_a_subscriber_whose_bandwidth_estimate_drops_gets_a_lower_layer(sfu: SfuController) -> None:
    alice = Peer(sfu, "remb", "alice")
    viewer = Peer(sfu, "remb", "viewer", decode=False)
    publisher = RawPublisher(alice)
    try:
        for p in (alice, viewer):
            await p.join()
        await publisher.publish(1280, 720)
        track = (await viewer.expect("track_published"))["track"]["id"]
        await viewer.subscribe(track, max_width=1280, max_height=720)
        await wait_until(lambda: layers_seen(viewer)[-1:] == ["f"], 5, what="top layer")
        await asyncio.sleep(1.2)  # the SFU measures each layer's bitrate once a second
        assert viewer.subscribe_pc is not None
        writer = RtpWriter.for_connection(viewer.subscribe_pc)
        assert writer is not None
        mark = len(viewer.raw)
        writer.send_rtcp(bytes(Remb(sender_ssrc=1, bitrate=150_000, ssrcs=())))
        await wait_until(lambda: "h" in layers_seen(viewer, mark), 3, what="down to h")
        assert "q" not in layers_seen(viewer, mark)
    finally:
        await publisher.close()
        for p in (alice, viewer):
            await p.close()


async def test_vp9_which_aiortc_cannot_decode_is_negotiated_and_forwarded(sfu: SfuController) -> None:
    alice = Peer(sfu, "vp9", "alice")
    viewer = Peer(sfu, "vp9", "viewer", decode=False, accept_vp9=True)
    publisher = RawPublisher(alice, vp9=True)
    try:
        for p in (alice, viewer):
            await p.join()
        await publisher.publish(1280, 720)
        assert re.search(r"a=rtpmap:\d+ VP9/90000", publisher.answer)
        track = (await viewer.expect("track_published"))["track"]["id"]
        await viewer.subscribe(track, max_width=640, max_height=360)
        await wait_until(lambda: len(layers_seen(viewer)) >= 10, 5, what="VP9 forwarded")
        offered = re.search(r"a=rtpmap:(\d+) VP9/90000", viewer.of_type("subscribe_offer")[-1]["sdp"])
        assert offered is not None
        assert set(layers_seen(viewer)) == {"h"}
        video = [d for d in viewer.raw if b"LAYER:" in d]
        assert {d[1] & 0x7F for d in video} == {int(offered.group(1))}  # the subscriber's VP9 payload type
        first_payload = video[0][video[0].rfind(b"LAYER:") - 2 :]
        assert first_payload[0] & 0x48 == 0x08  # it started on a keyframe (B set, P clear)
    finally:
        await publisher.close()
        for p in (alice, viewer):
            await p.close()
