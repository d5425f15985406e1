"""Reading offers and answers, completing answers for simulcast, and the payload types of the
SFU's subscribe offers."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from sfu.controller import SfuController
from sfu.sdp import (
    URI_MID,
    URI_RID,
    URI_RRID,
    Codec,
    MediaSection,
    SdpError,
    add_forward_only_codecs,
    parse_sdp,
)
from sfu.sdpanswer import complete_simulcast_answer, request_opus_dtx
from tests.sfu.conftest import config
from tests.sfu.peers import Peer, wait_until

CHROMIUM_OFFER = (
    (Path(__file__).parent / "data" / "chromium_simulcast_offer.sdp").read_text().replace("\n", "\r\n")
)


def test_a_chromium_simulcast_offer_is_read() -> None:
    info = parse_sdp(CHROMIUM_OFFER)
    audio, video = info.media
    assert (audio.kind, audio.mid, audio.direction) == ("audio", "0", "sendonly")
    assert audio.ssrcs == (1111111111,)
    assert video.rids == ("q", "h", "f")
    assert (
        video.extensions[URI_RID] == 10
        and video.extensions[URI_RRID] == 11
        and video.extensions[URI_MID] == 4
    )
    vp8 = video.codec(96)
    assert vp8 is not None and vp8.name == "VP8" and vp8.clock_rate == 90000
    rtx = video.rtx_for(96)
    assert rtx is not None and rtx.payload_type == 97
    assert video.ice_ufrag == "Xy7d"
    assert info.bundle == ("0", "1")


@pytest.mark.parametrize(
    ("sdp", "reason"),
    [
        (None, "string"),
        ("", "v=0"),
        ("v=0\r\nm=video 9 RTP/AVP 96\r\n", "o= line"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", "no m-line"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fingerprint:x\r\n", "mid"),
        ("v=0\r\no=x\r\nnonsense\r\n", "not an sdp line"),
        ("v=0\r\no=x\r\nm=video 99999 UDP 96\r\n", "port"),
        ("v=0\r\n" + "a=x\r\n" * 5000, "more than 4000 lines"),
        ("x" * 70000, "longer"),
    ],
)
def test_malformed_descriptions_are_refused_with_a_reason(sdp: object, reason: str) -> None:
    with pytest.raises(SdpError, match=reason):
        parse_sdp(sdp)


async def test_the_answer_is_completed_with_rids_and_simulcast_in_the_offers_order() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=CHROMIUM_OFFER, type="offer"))
        answer = (await pc.createAnswer()).sdp
    finally:
        await pc.close()
    assert "a=simulcast" not in answer  # aiortc leaves it out
    completed = complete_simulcast_answer(answer, parse_sdp(CHROMIUM_OFFER))
    video = completed.split("m=video")[1]
    assert "a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n" in video
    assert f"a=extmap:10 {URI_RID}" in video and f"a=extmap:11 {URI_RRID}" in video
    assert "a=rid" not in completed.split("m=video")[0]
    again = complete_simulcast_answer(completed, parse_sdp(CHROMIUM_OFFER))
    assert again.count("a=simulcast:recv") == 1 and again.count(URI_RID) == 1


# --- payload types: one number, one codec configuration in the whole BUNDLE group ---------------

Config = tuple[object, ...]


def configuration(codec: Codec, section: MediaSection) -> Config:
    """rtpmap and format parameters; an RTX stands for the configuration it repairs."""
    params = codec.fmtp_params()
    if codec.is_rtx and codec.apt is not None:
        base = section.codec(codec.apt)
        assert base is not None and not base.is_rtx, f"rtx {codec.payload_type} repairs nothing"
        del params["apt"]
        return ("rtx", codec.clock_rate, configuration(base, section))
    return (codec.name.lower(), codec.clock_rate, codec.channels or 1, sorted(params.items()))


def payload_type_conflicts(sdp: str) -> dict[int, list[Config]]:
    """Payload types that name different configurations on different m-lines."""
    seen: dict[int, list[Config]] = {}
    for section in parse_sdp(sdp).media:
        for codec in section.codecs:
            configs = seen.setdefault(codec.payload_type, [])
            config = configuration(codec, section)
            if config not in configs:
                configs.append(config)
    return {pt: configs for pt, configs in seen.items() if len(configs) > 1}


def payload_type_of(section: MediaSection, name: str) -> int:
    return next(c.payload_type for c in section.codecs if c.name.lower() == name.lower())


async def subscribe_offer(*kinds: str) -> str:
    """An offer as the SFU's subscribe connection makes it: aiortc's, with forward-only codecs."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for kind in kinds:
            pc.addTransceiver(kind, direction="sendonly")
        return add_forward_only_codecs((await pc.createOffer()).sdp)
    finally:
        await pc.close()


async def test_no_payload_type_of_a_subscribe_offer_names_two_codecs_across_m_lines() -> None:
    offer = await subscribe_offer("audio", "audio", "video", "video")
    info = parse_sdp(offer)
    audio, _, video1, video2 = info.media
    assert info.bundle == ("0", "1", "2", "3")
    for video in (video1, video2):
        names = {c.name.lower() for c in video.media_codecs()}
        assert {"vp8", "h264", "vp9", "av1"} <= names
        assert payload_type_of(audio, "opus") not in {c.payload_type for c in video.codecs}
        for codec in video.media_codecs():
            assert video.rtx_for(codec.payload_type) is not None, f"{codec.name} has no rtx"
    assert payload_type_conflicts(offer) == {}
    # one configuration keeps its number on every m-line
    assert [c.payload_type for c in video1.codecs] == [c.payload_type for c in video2.codecs]


async def test_aiortcs_own_payload_types_are_kept_in_the_subscribe_offer() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
        plain = parse_sdp((await pc.createOffer()).sdp)
    finally:
        await pc.close()
    completed = parse_sdp(await subscribe_offer("audio", "video"))
    for before, after in zip(plain.media, completed.media, strict=True):
        assert after.codecs[: len(before.codecs)] == before.codecs


OFFER_REUSING_96 = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "a=fingerprint:sha-256 00",
        "a=ice-ufrag:u",
        "a=ice-pwd:p",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96 0",
        "a=mid:0",
        "a=sendonly",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:0 PCMU/8000",
        *(
            line
            for mid in ("1", "2")
            for line in (
                "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
                f"a=mid:{mid}",
                "a=sendonly",
                "a=rtpmap:96 VP8/90000",
                "a=rtcp-fb:96 nack pli",
                "a=rtpmap:97 rtx/90000",
                "a=fmtp:97 apt=96",
            )
        ),
        "",
    ]
)


def test_a_payload_type_the_offer_gave_two_codecs_is_renumbered_with_its_rtx() -> None:
    assert 96 in payload_type_conflicts(OFFER_REUSING_96)
    offer = add_forward_only_codecs(OFFER_REUSING_96)
    assert payload_type_conflicts(offer) == {}
    audio, video1, video2 = parse_sdp(offer).media
    assert payload_type_of(audio, "opus") == 96  # the first m-line keeps its numbers
    vp8 = payload_type_of(video1, "VP8")
    assert vp8 != 96 and payload_type_of(video2, "VP8") == vp8
    rtx = video1.rtx_for(vp8)
    assert rtx is not None and rtx.payload_type == 97
    assert offer.count(f"a=rtcp-fb:{vp8} nack pli") == 2 and "a=rtcp-fb:96" not in offer
    assert {"vp9", "av1"} <= {c.name.lower() for c in video1.codecs}


async def test_a_subscriber_accepting_vp9_gets_an_offer_without_payload_type_conflicts(
    sfu: SfuController,
) -> None:
    alice, bob = Peer(sfu, "pt", "alice"), Peer(sfu, "pt", "bob", accept_vp9=True)
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=(160, 120), audio=True)
        track = next(
            m["track"]["id"] for m in bob.of_type("track_published") if m["track"]["kind"] == "video"
        )
        await bob.subscribe(track)
        await wait_until(lambda: (r := bob.video_for(track)) is not None and r.frames >= 3, 10, what="video")
        await wait_until(lambda: bob.audio_frames() >= 5, 10, what="audio")
        offers = [m["sdp"] for m in bob.of_type("subscribe_offer")]
        assert len(offers) >= 2  # audio slots first, then the video m-line
        for offer in offers:
            assert payload_type_conflicts(offer) == {}
        info = parse_sdp(offers[-1])
        video = next(m for m in info.media if m.kind == "video")
        audio = next(m for m in info.media if m.kind == "audio")
        assert payload_type_of(video, "VP9") not in {c.payload_type for c in audio.codecs}
        assert not bob.errors and not alice.errors
    finally:
        await alice.close()
        await bob.close()


AUDIO_ANSWER = "\r\n".join(
    [
        "v=0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
        "a=mid:0",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:0 PCMU/8000",
        "m=audio 9 UDP/TLS/RTP/SAVPF 109",
        "a=mid:1",
        "a=rtpmap:109 OPUS/48000/2",
        "a=fmtp:109 minptime=10;useinbandfec=1",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=mid:2",
        "a=rtpmap:96 VP8/90000",
        "a=fmtp:96 max-fs=12288",
        "",
    ]
)


def test_the_answer_asks_for_opus_dtx_on_every_opus_payload_type_only() -> None:
    answer = request_opus_dtx(AUDIO_ANSWER)
    lines = answer.split("\r\n")
    assert lines[lines.index("a=rtpmap:111 opus/48000/2") + 1] == "a=fmtp:111 usedtx=1"
    assert "a=fmtp:109 minptime=10;useinbandfec=1;usedtx=1" in lines
    assert "a=fmtp:96 max-fs=12288" in lines and not any(line.startswith("a=fmtp:0") for line in lines)
    assert request_opus_dtx(answer) == answer  # asked once
    no_opus = AUDIO_ANSWER.replace("opus", "G722").replace("OPUS", "G722")
    assert request_opus_dtx(no_opus) == no_opus


@pytest.mark.parametrize("dtx", [True, False])
async def test_a_publisher_is_asked_for_dtx_unless_switched_off(dtx: bool, registry: object) -> None:
    sfu = SfuController(config(opus_dtx=dtx), registry)  # type: ignore[arg-type]
    alice = Peer(sfu, "dtx", "alice")
    try:
        await alice.join()
        await alice.publish(video=None)
        answer = alice.of_type("publish_answer")[-1]["sdp"]
        assert ("usedtx=1" in answer) is dtx
    finally:
        await alice.close()
        await sfu.close()
