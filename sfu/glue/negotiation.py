"""Negotiation: the steps around aiortc's offer/answer in the one order the SFU needs, and the
transceiver internals they touch (``RTCRtpTransceiver._codecs``, ``RTCRtpSender._stream_id``).

``negotiate`` is that order, for both connections: the publish connection answers the client's
offer, the subscribe connection makes the server's offer.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCRtpCodecParameters, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtcpFeedback

from confserver.errors import ServiceError
from sfu.deadline import within
from sfu.glue.aiortcseam import PacketFilter, PacketSink, take_over_media
from sfu.glue.gathering import local_ports, prepare_gathering
from sfu.ports import GatherPolicy
from sfu.sdp import FORWARD_ONLY_NAMES, SessionInfo, add_forward_only_codecs
from sfu.udpmux import MediaPorts


@dataclass(frozen=True)
class MediaHooks:
    """Where a connection's decrypted packets go (``take_over_media``)."""

    on_rtp: PacketSink
    on_rtcp: PacketSink
    drop_incoming: PacketFilter | None = None
    skip_encrypted: PacketFilter | None = None


@dataclass(frozen=True)
class RemoteOffer:
    """A client's offer: its SDP and that SDP parsed and checked (``sfu.sdp.check_bundle``)."""

    sdp: str
    info: SessionInfo


async def negotiate(
    pc: RTCPeerConnection,
    media: MediaHooks,
    policy: GatherPolicy,
    ports: MediaPorts,
    seconds: float,
    remote: RemoteOffer | None = None,
) -> str:
    """Answer ``remote`` on ``pc`` or, without it, make an offer; returns the local description's
    SDP once applied. Every await has ``seconds`` (``media_timeout``). The order is the point:

    1. (answer) the offer applied: ``bad_sdp`` when aiortc refuses it;
    2. ``take_over_media`` before anything yields to the event loop: a transceiver the remote
       description (or ``addTransceiver``) just made must not start aiortc's decoder or sender,
       which an earlier negotiation's connect task could otherwise reach;
    3. the transceivers adjusted: (answer) the offer's VP9/AV1 accepted, in its codec order,
       before ``createAnswer``; (offer) every m-line its own media stream;
    4. the description created; (offer) VP9/AV1 added to it;
    5. ``prepare_gathering`` before ``setLocalDescription``, which starts gathering;
    6. the description applied; ``media_unavailable`` when no UDP port could be bound."""
    if remote is not None:
        try:
            await within(
                seconds,
                pc.setRemoteDescription(RTCSessionDescription(sdp=remote.sdp, type="offer")),
                "applying the offer",
            )
        except ServiceError:
            raise
        except Exception as exc:
            raise ServiceError("bad_sdp", f"the offer was refused: {exc}") from None
    take_over_media(
        pc,
        media.on_rtp,
        media.on_rtcp,
        drop_incoming=media.drop_incoming,
        skip_encrypted=media.skip_encrypted,
    )
    if remote is not None:
        accept_forward_only_codecs(pc, remote.info)
        local = await within(seconds, pc.createAnswer(), "creating the answer")
        applying = "applying the answer"
    else:
        separate_streams(pc)
        created = await within(seconds, pc.createOffer(), "creating a subscribe offer")
        local = RTCSessionDescription(sdp=add_forward_only_codecs(created.sdp), type="offer")
        applying = "applying a subscribe offer"
    prepare_gathering(pc, policy, ports)
    await within(seconds, pc.setLocalDescription(local), applying)
    if not local_ports(pc):
        raise ServiceError("media_unavailable", "no UDP port is free for media on this server")
    return str(pc.localDescription.sdp)


def accept_forward_only_codecs(pc: RTCPeerConnection, offer: SessionInfo) -> None:
    """Also accept the offer's VP9 and AV1 (and their RTX), which aiortc leaves out because it
    cannot decode them: the SFU only forwards them. Call after ``setRemoteDescription(offer)``,
    before ``createAnswer``; the offer's codec order is kept (the first one is what the
    publisher sends)."""
    for transceiver in pc.getTransceivers():
        section = offer.section(transceiver.mid) if transceiver.mid is not None else None
        if transceiver.kind != "video" or section is None:
            continue
        if not any(c.name.lower() in FORWARD_ONLY_NAMES for c in section.codecs):
            continue
        common = {c.payloadType: c for c in transceiver._codecs}
        media = {
            c.payload_type
            for c in section.codecs
            if not c.is_rtx and (c.payload_type in common or c.name.lower() in FORWARD_ONLY_NAMES)
        }
        codecs: list[RTCRtpCodecParameters] = []
        for c in section.codecs:
            if c.payload_type in common:
                codecs.append(common[c.payload_type])
            elif c.is_rtx and c.apt in media:
                rtx = RTCRtpCodecParameters("video/rtx", c.clock_rate, payloadType=c.payload_type)
                rtx.parameters = {"apt": c.apt}
                codecs.append(rtx)
            elif not c.is_rtx and c.name.lower() in FORWARD_ONLY_NAMES:
                codec = RTCRtpCodecParameters(f"video/{c.name}", c.clock_rate, payloadType=c.payload_type)
                codec.rtcpFeedback = [RTCRtcpFeedback("nack"), RTCRtcpFeedback("nack", "pli")]
                codec.parameters = dict(c.fmtp_params())
                codecs.append(codec)
        transceiver._codecs = codecs


def separate_streams(pc: RTCPeerConnection) -> None:
    """Give every m-line of ``pc`` its own media stream id (``a=msid``): in aiortc's one stream a
    browser would synchronise unrelated slots against each other's sender reports."""
    for transceiver in pc.getTransceivers():
        sender = transceiver.sender
        if not sender._stream_id.startswith("sfu-"):
            sender._stream_id = f"sfu-{transceiver.kind}-{id(transceiver):x}"
