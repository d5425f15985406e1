"""Crafted RTP: how publishers send by default, and the only way to send simulcast.

aiortc's sender cannot send simulcast, and it writes the RFC 6464 audio level only for audio it
encodes itself (encoding speech cost more CPU than everything else the load generator does). A
browser sends three VP8 layers on one m-line, each on its own unsignalled SSRC named by the
rtp-stream-id header extension. ``RawStream`` does the same from a pre-encoded clip: it cuts each
frame into RTP packets (VP8 payload descriptor with a 15-bit picture id, RFC 7741), adds the
MID/RID and abs-send-time (video) or MID/audio-level (audio) extensions, and numbers packets
and timestamps; abs-send-time is what subscribers measure the delay with
(``confctl.loadtest.rtpstats``). On a
keyframe request (PLI) it jumps to the clip's next keyframe, as an encoder would produce one.

Packets leave through ``confctl.loadtest.glue.RtpSender`` (SRTP protect and ``sendto`` on the connection's
nominated pair), driven by one ``Pacer`` per process rather than a task per stream.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
from collections.abc import Callable

from confctl.loadtest.clips import Clip
from confctl.loadtest.rtpstats import abs_send_time

VP8_MAX_PAYLOAD = 1200
_RTP_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")

SendFn = Callable[[bytes], bool]
Transform = Callable[[bytes], bytes | None]  # an encoded frame -> what is sent (None: drop it)


def one_byte_extensions(elements: dict[int, bytes]) -> bytes:
    """An RFC 8285 one-byte header extension block (ids 1-14, values 1-16 bytes)."""
    body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in elements.items())
    body += bytes(-len(body) % 4)
    return _EXT_HEADER.pack(0xBEDE, len(body) // 4) + body


def stamped_extensions(elements: dict[int, bytes], stamp_id: int) -> tuple[bytes, int]:
    """``one_byte_extensions`` with an abs-send-time element ``stamp_id`` last (none when 0),
    and where its 3-byte value lies in the block (0: nowhere)."""
    if not stamp_id:
        return one_byte_extensions(elements), 0
    block = one_byte_extensions({**elements, stamp_id: bytes(3)})
    return block, _EXT_HEADER.size + sum(1 + len(v) for i, v in elements.items() if i != stamp_id) + 1


def vp8_payloads(frame: bytes, picture_id: int) -> list[bytes]:
    """RFC 7741 packetization: descriptor X=1, I=1 (15-bit picture id), S=1 on the first packet."""
    pid = bytes([0x80 | ((picture_id >> 8) & 0x7F), picture_id & 0xFF])
    first = b"\x90\x80" + pid
    rest = b"\x80\x80" + pid
    size = VP8_MAX_PAYLOAD - 4
    return [(first if pos == 0 else rest) + frame[pos : pos + size] for pos in range(0, len(frame), size)]


def planned_rate(clip: Clip) -> float:
    """RTP packets per second of ``clip`` played at its frame rate (one loop's average)."""
    if clip.kind == "video":
        size = VP8_MAX_PAYLOAD - 4
        packets = sum(-(-len(frame) // size) for frame in clip.frames)
    else:
        packets = len(clip.frames)
    return packets / (len(clip.frames) * clip.frame_duration)


class RawStream:
    """One SSRC looping one clip."""

    __slots__ = (
        "_ext",
        "_index",
        "_picture_id",
        "_pt",
        "_sequence",
        "_stamp_at",
        "_timestamp",
        "clip",
        "due",
        "paused_at",
        "rate",
        "send",
        "sent",
        "ssrc",
        "transform",
    )

    def __init__(
        self,
        clip: Clip,
        payload_type: int,
        extensions: bytes,
        send: SendFn,
        first: int = 0,
        stamp_at: int = 0,
        transform: Transform | None = None,
    ) -> None:
        """``stamp_at``: where in ``extensions`` each frame's abs-send-time goes (0: none);
        ``transform``: applied to each encoded frame before it is packetized (E2EE encryption)."""
        self.clip = clip
        self.ssrc = secrets.randbits(32) or 1
        self.send = send
        self.sent = 0
        self.due = 0.0
        self.paused_at: float | None = None  # loop time the server paused the stream (dynacast)
        self.rate = planned_rate(clip)
        self.transform = transform
        self._pt = payload_type
        self._ext = extensions
        self._stamp_at = stamp_at
        self._index = first
        self._sequence = secrets.randbelow(0x8000)
        self._timestamp = secrets.randbits(32)
        self._picture_id = secrets.randbelow(0x8000)

    def request_keyframe(self) -> None:
        if self.clip.kind == "video":
            self._index = self.clip.next_keyframe(self._index)

    def pause(self, now: float) -> None:
        """Stop sending, as a browser does for an encoding set inactive."""
        if self.paused_at is None:
            self.paused_at = now

    def resume(self, now: float) -> None:
        """Send again as a browser's encoder does: from a keyframe, numbering continuing, the
        timestamp advanced by the time paused."""
        paused_at, self.paused_at = self.paused_at, None
        if paused_at is None:
            return
        self._timestamp += int(max(0.0, now - paused_at) * self.clip.clock_rate)
        self.due = now
        self.request_keyframe()

    def send_frame(self) -> None:
        """Send the next frame's packets (nothing is counted while not connected)."""
        clip = self.clip
        frame = clip.frames[self._index % len(clip.frames)]
        self._index = (self._index + 1) % len(clip.frames)
        if self.transform is not None:
            sealed = self.transform(frame)
            if sealed is None:  # dropped, as an encoder's frame that may not leave in clear
                self._timestamp += clip.ticks_per_frame
                return
            frame = sealed
        if clip.kind == "video":
            payloads = vp8_payloads(frame, self._picture_id)
            self._picture_id = (self._picture_id + 1) & 0x7FFF
        else:
            payloads = [frame]
        last = len(payloads) - 1
        ts = self._timestamp & 0xFFFFFFFF
        ext, at = self._ext, self._stamp_at
        if at:  # the frame's packets leave now, together
            ext = ext[:at] + abs_send_time(time.monotonic()) + ext[at + 3 :]
        for i, payload in enumerate(payloads):
            header = _RTP_HEADER.pack(
                0x90 if ext else 0x80,
                (0x80 if i == last else 0) | self._pt,
                self._sequence & 0xFFFF,
                ts,
                self.ssrc,
            )
            if self.send(header + ext + payload):
                self.sent += 1
            self._sequence += 1
        self._timestamp += clip.ticks_per_frame


class Pacer:
    """Sends every registered stream's frames on time, from one task.

    A stream whose frames fell due while the task waited (a busy event loop wakes it late) gets
    all of them at once, as an encoder's queue would be sent; more than ``CATCH_UP`` seconds
    behind, the stream skips ahead instead. What was skipped shows as ``sent`` falling short of
    ``planned`` (the generator is overloaded), never as loss: numbering stays continuous.
    """

    TICK = 0.005
    CATCH_UP = 0.25

    def __init__(self) -> None:
        self._streams: list[RawStream] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, stream: RawStream) -> None:
        stream.due = asyncio.get_running_loop().time()
        self._streams.append(stream)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loadtest-pacer")

    def remove(self, stream: RawStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self._streams)

    @property
    def asked_less(self) -> tuple[int, int, int]:
        """(video streams, those paused by the server, microphones in DTX)."""
        video = [s for s in self._streams if s.clip.kind == "video"]
        paused = sum(1 for s in video if s.paused_at is not None)
        return len(video), paused, sum(1 for s in self._streams if s.clip.dtx)

    @property
    def planned(self) -> float:
        """Packets per second the streams are meant to send (paused ones send nothing)."""
        return sum(s.rate for s in self._streams if s.paused_at is None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            next_due = now + 0.1
            for stream in self._streams:
                if stream.paused_at is not None:
                    continue
                step = stream.clip.frame_duration
                if stream.due < now - self.CATCH_UP:  # overloaded: skip rather than burst
                    stream.due = now
                while stream.due <= now:
                    stream.send_frame()
                    stream.due += step
                if stream.due < next_due:
                    next_due = stream.due
            await asyncio.sleep(max(self.TICK, next_due - loop.time()))

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._streams.clear()
