"""What a synthetic participant publishes, on either sender.

- ``CraftedMedia`` (the default): transceivers without tracks, an offer turned into a simulcast
  offer when asked, then ``RawStream``s of the clips sent through the connection's SRTP session
  (``glue.RtpSender``) by the process's ``Pacer``; keyframe requests (PLI, FIR) make the
  requested stream jump to its next keyframe.
- ``add_aiortc_tracks``: tracks for aiortc's own ``RTCRtpSender`` (``--sender aiortc``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from functools import partial

from aiortc import MediaStreamTrack, RTCPeerConnection

from confctl.loadtest import sdpinfo
from confctl.loadtest.clips import LAYERS, ClipSet, dtx
from confctl.loadtest.glue import RtpSender, take_over_media
from confctl.loadtest.plan import Options, Role
from confctl.loadtest.rawmedia import Pacer, RawStream, one_byte_extensions, stamped_extensions
from confctl.loadtest.tracks import ClipTrack, SpeechTrack

Encrypt = Callable[[str, bytes], bytes | None]  # (codec, encoded frame) -> frame to send or None

RTCP_PSFB = 206
FMT_PLI = 1
FMT_FIR = 4


def _ignore(data: bytes) -> None:
    """A publisher receives no media."""


def add_aiortc_tracks(pc: RTCPeerConnection, role: Role, clips: ClipSet) -> None:
    """aiortc's sender packetizes the clips' packets; a speaker's PCM is encoded by it (see tracks)."""
    if role.video and clips.top is not None:
        pc.addTransceiver(ClipTrack(clips.top, random.choice(clips.top.keyframes)), direction="sendonly")
    if role.audio:
        track: MediaStreamTrack
        if role.speaker or clips.quiet is None:
            track = SpeechTrack()
        else:
            track = ClipTrack(clips.quiet)
        pc.addTransceiver(track, direction="sendonly")


def keyframe_requests(data: bytes) -> list[int]:
    """Media SSRCs asked for a keyframe in an RTCP compound packet (PLI and FIR)."""
    ssrcs: list[int] = []
    pos = 0
    while pos + 12 <= len(data):
        fmt, pt = data[pos] & 0x1F, data[pos + 1]
        length = (int.from_bytes(data[pos + 2 : pos + 4], "big") + 1) * 4
        if pt == RTCP_PSFB and fmt == FMT_PLI:
            ssrcs.append(int.from_bytes(data[pos + 8 : pos + 12], "big"))
        elif pt == RTCP_PSFB and fmt == FMT_FIR and pos + 16 <= len(data):
            ssrcs.append(int.from_bytes(data[pos + 12 : pos + 16], "big"))  # first FCI entry
        pos += length
    return ssrcs


class CraftedMedia:
    """Crafted RTP of one publish connection."""

    def __init__(
        self, role: Role, options: Options, clips: ClipSet, pacer: Pacer, encrypt: Encrypt | None = None
    ) -> None:
        """``encrypt``: applied to every frame before it is packetized (an E2EE room)."""
        self._role = role
        self._encrypt = encrypt
        self._clips = clips
        self._pacer = pacer
        self._rids = tuple(rid for rid, *_ in LAYERS) if options.simulcast and role.video else ()
        self._sections: list[sdpinfo.Section] = []
        self._rid_ext = 0
        self._video_mid: str | None = None
        self._audio_mid: str | None = None
        self.streams: list[RawStream] = []
        self._layers: dict[str, RawStream] = {}  # the video streams by rid ("" without simulcast)
        self._wanted: list[object] | None = None  # the last ``publish_layers`` (before ``start`` too)

    def add_transceivers(self, pc: RTCPeerConnection) -> None:
        self._pc = pc
        self._video = pc.addTransceiver("video", direction="sendonly") if self._role.video else None
        self._audio = pc.addTransceiver("audio", direction="sendonly") if self._role.audio else None

    def offer(self, sdp: str) -> str:
        """The offer sent to the server for aiortc's ``sdp`` (simulcast lines added if asked)."""
        self._sections = sdpinfo.sections(sdp)
        video = self._video
        if video is None or not self._rids:
            return sdp
        section = next(s for s in self._sections if s.mid == video.mid)
        self._rid_ext = sdpinfo.free_extension_id(section)
        return sdpinfo.simulcast_offer(sdp, str(video.mid), self._rids, self._rid_ext)

    def start(self, pc: RTCPeerConnection) -> None:
        """After the answer: take the connection's media over and start the streams."""
        take_over_media(pc, _ignore, self.on_rtcp)
        writer = RtpSender.for_connection(pc)
        if writer is None:
            raise RuntimeError("the publish connection has no transport")
        by_mid = {s.mid: s for s in self._sections}
        clips = self._clips
        answer = pc.remoteDescription.sdp if pc.remoteDescription is not None else ""
        if self._video is not None:
            mid = str(self._video.mid)
            v = by_mid[mid]
            ids = {v.extensions.get(sdpinfo.URI_MID, 1): mid.encode()}
            accepted = next((s for s in sdpinfo.sections(answer) if s.mid == mid), None)
            stamp_id = accepted.extensions.get(sdpinfo.URI_ABS_SEND_TIME, 0) if accepted else 0
            first = random.choice(clips.layers[0].keyframes)
            for rid, clip in zip(self._rids or ("",), clips.layers, strict=True):
                ext, at = stamped_extensions({**ids, self._rid_ext: rid.encode()} if rid else ids, stamp_id)
                stream = RawStream(
                    clip, v.codecs["vp8"], ext, writer.send_rtp, first, at, self._transform("vp8")
                )
                self.streams.append(stream)
                self._layers[rid] = stream
        if self._audio is not None:
            mid = str(self._audio.mid)
            a = by_mid[mid]
            sound = clips.speech if self._role.speaker else clips.quiet
            if sound is None:
                raise RuntimeError("no audio clip was prepared")
            if not self._role.speaker and sdpinfo.asks_for_dtx(answer, mid):
                sound = dtx(sound)
            elements = {a.extensions.get(sdpinfo.URI_MID, 1): mid.encode()}
            level_ext = a.extensions.get(sdpinfo.URI_AUDIO_LEVEL, 0)
            if level_ext:
                elements[level_ext] = bytes([(0x80 if self._role.speaker else 0) | sound.level])
            ext = one_byte_extensions(elements)
            self.streams.append(
                RawStream(sound, a.codecs["opus"], ext, writer.send_rtp, transform=self._transform("opus"))
            )
        for stream in self.streams:
            self._pacer.add(stream)
        if self._wanted is not None and self._video is not None:
            self.set_layers(self._video.mid, self._wanted, asyncio.get_running_loop().time())

    def _transform(self, codec: str) -> Callable[[bytes], bytes | None] | None:
        return None if self._encrypt is None else partial(self._encrypt, codec)

    def set_layers(self, mid: object, layers: object, now: float) -> None:
        """``publish_layers``: send only the video layers the server asks for."""
        video = self._video
        if video is None or mid != video.mid or not isinstance(layers, list):
            return
        self._wanted = layers
        for rid, stream in self._layers.items():
            if rid in layers:
                stream.resume(now)
            else:
                stream.pause(now)

    def on_rtcp(self, data: bytes) -> None:
        for ssrc in keyframe_requests(data):
            for stream in self.streams:
                if stream.ssrc == ssrc:
                    stream.request_keyframe()

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.streams)

    def stop(self) -> None:
        for stream in self.streams:
            self._pacer.remove(stream)
