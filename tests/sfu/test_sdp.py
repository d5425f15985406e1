"""Reading offers and answers, and completing answers for simulcast."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from sfu.sdp import URI_MID, URI_RID, URI_RRID, SdpError, complete_simulcast_answer, parse_sdp

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
        ("v=0\r\n" + "a=x\r\n" * 5000, "too many lines"),
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
