"""A publisher that sends hand-made RTP, as a browser sending three simulcast layers would:
unsignalled SSRCs named by MID and RID header extensions, VP8 keyframes when asked (PLI).

The payloads are not real video: each carries its layer name after the VP8 descriptor, so a
subscriber can tell which layer the SFU forwarded."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from sfu.core.rtcp import Pli, RtcpParseError, parse_rtcp
from sfu.glue.gathering import prepare_gathering
from sfu.glue.receive import take_over_media
from sfu.glue.send import RtpWriter
from sfu.ports import PortRange
from tests.sfu.peers import LOOPBACK, Peer, wait_until

MID_EXT = 1  # aiortc's id for sdes:mid in its own offers
RID_EXT = 10
RRID_EXT = 11
LAYERS = ("q", "h", "f")
LAYER_FILLER = {"q": 50, "h": 400, "f": 1000}  # bytes per frame: ~15, ~100, ~240 kbit/s
VP8_PT = 97  # aiortc offers VP8 as payload type 97
VP9_PT = 120


def one_byte_block(elements: dict[int, bytes]) -> bytes:
    body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in elements.items())
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def vp8_payload(keyframe: bool, layer: str, picture_id: int) -> bytes:
    descriptor = bytes([0x90, 0x80, 0x80 | ((picture_id >> 8) & 0x7F), picture_id & 0xFF])
    if keyframe:
        frame = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00])  # P=0, start code
    else:
        frame = bytes([0x11, 0x02, 0x00])
    filler = bytes(LAYER_FILLER[layer])  # so the layers differ in bitrate like real ones
    return descriptor + frame + b"LAYER:" + layer.encode() + b"|" + filler


def vp9_payload(keyframe: bool, layer: str, picture_id: int) -> bytes:
    """VP9 payload descriptor (I, B, E bits; P set on delta frames) and the layer marker."""
    first = 0x8C if keyframe else 0xCC
    return bytes([first, picture_id & 0x7F]) + b"LAYER:" + layer.encode() + b"|" + bytes(LAYER_FILLER[layer])


def simulcast_offer(sdp: str, mid: str, vp9: bool = False) -> str:
    """aiortc's offer for one video m-line, turned into a browser-style simulcast offer
    (preferring VP9 when ``vp9``)."""
    out: list[str] = []
    in_video = False
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            in_video = line.startswith("m=video")
            if in_video and vp9:
                head = line.split(" ")
                line = " ".join([*head[:3], str(VP9_PT), *head[3:]])
        if in_video and line.startswith(("a=ssrc", "a=msid")):
            continue  # simulcast streams are unsignalled
        out.append(line)
        if in_video and vp9 and line == f"a=mid:{mid}":
            out += [f"a=rtpmap:{VP9_PT} VP9/90000", f"a=fmtp:{VP9_PT} profile-id=0"]
        if in_video and line == f"a=mid:{mid}":
            out += [
                f"a=extmap:{RID_EXT} urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                f"a=extmap:{RRID_EXT} urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
                *(f"a=rid:{rid} send" for rid in LAYERS),
                "a=simulcast:send " + ";".join(LAYERS),
            ]
    return "\r\n".join(out)


class RawPublisher:
    def __init__(self, peer: Peer, *, vp9: bool = False, dynacast: bool = False) -> None:
        self.peer = peer
        self.vp9 = vp9
        self.dynacast = dynacast  # obey publish_layers
        self.mid = ""
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.plis: list[int] = []
        self.answer = ""
        self._task: asyncio.Task[None] | None = None
        self.ssrcs = {rid: 0x5000 + i for i, rid in enumerate(LAYERS)}

    async def publish(self, width: int = 1280, height: int = 720) -> None:
        transceiver = self.pc.addTransceiver("video", direction="sendonly")
        offer = await self.pc.createOffer()
        prepare_gathering(self.pc, LOOPBACK, PortRange())
        await self.pc.setLocalDescription(offer)
        mid = self.mid = transceiver.mid or "0"
        sdp = simulcast_offer(self.pc.localDescription.sdp, mid, vp9=self.vp9)
        await self.peer.request(
            "publish_offer",
            sdp=sdp,
            tracks=[{"mid": mid, "source": "camera", "width": width, "height": height}],
        )
        self.answer = self.peer.of_type("publish_answer")[-1]["sdp"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer, type="answer"))
        take_over_media(self.pc, lambda data: None, self._on_rtcp)
        writer = RtpWriter.for_connection(self.pc)
        assert writer is not None
        await wait_until(lambda: writer.connected, 5, what="raw publisher connected")
        self._task = asyncio.create_task(self._send(writer, mid.encode()))

    def _on_rtcp(self, data: bytes) -> None:
        with contextlib.suppress(RtcpParseError):
            self.plis += [p.media_ssrc for p in parse_rtcp(data) if isinstance(p, Pli)]

    def active_layers(self) -> set[str]:
        """The layers the SFU last asked for (``publish_layers``), every one before it asks."""
        asked = [m for m in self.peer.of_type("publish_layers") if m["mid"] == self.mid]
        return set(asked[-1]["layers"]) if asked else set(LAYERS)

    async def _send(self, writer: RtpWriter, mid: bytes) -> None:
        seq = dict.fromkeys(LAYERS, 100)
        handled = 0
        frame = 0
        sending = set(LAYERS)
        while True:
            wanted = {ssrc for ssrc in self.plis[handled:]}
            handled = len(self.plis)
            active = self.active_layers() if self.dynacast else set(LAYERS)
            resumed, sending = active - sending, active
            for rid in LAYERS:
                if rid not in active:
                    continue  # switched off, as a browser does with an inactive encoding
                ssrc = self.ssrcs[rid]
                key = frame == 0 or ssrc in wanted or rid in resumed
                ext = one_byte_block({MID_EXT: mid, RID_EXT: rid.encode()})
                pt = VP9_PT if self.vp9 else VP8_PT
                payload = vp9_payload(key, rid, frame) if self.vp9 else vp8_payload(key, rid, frame)
                header = struct.pack("!BBHII", 0x90, 0x80 | pt, seq[rid] & 0xFFFF, frame * 3000, ssrc)
                writer.send_rtp(header + ext + payload)
                seq[rid] += 1
            frame += 1
            await asyncio.sleep(1 / 30)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pc.close()
