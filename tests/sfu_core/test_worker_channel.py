"""The channel between the signaling process and a media worker: typed JSON frames that round
trip, and every rule a less trusted worker could break refused with ``ChannelError``."""

from __future__ import annotations

import asyncio
import struct

import pytest

from confserver.contract import PublishedTrack, PublishOffer
from sfu.worker.channel import (
    MAX_FRAME,
    ChannelError,
    Handle,
    Join,
    Leave,
    Load,
    Mute,
    Reply,
    Send,
    decode,
    encode,
    parse_event,
    parse_request,
    read_frame,
)


def roundtrip(message: dict[str, object]) -> dict[str, object]:
    return decode(encode(message)[4:])


@pytest.mark.parametrize(
    "request_",
    [
        Join(1, "room", "sid", frozenset({"subscribe", "publish_audio"}), "ana"),
        Handle(2, "room", "sid", PublishOffer("v=0\r\n", (PublishedTrack("0", "camera", 640, 480),))),
        Mute(3, "room", "sid", "audio", True),
        Leave(4, "room", "sid"),
    ],
)
def test_requests_round_trip(request_: object) -> None:
    assert parse_request(roundtrip(request_.to_json())) == request_  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "event",
    [
        Reply(7),
        Reply(8, "bad_sdp", "no"),
        Send("room", "sid", {"type": "publish_answer", "sdp": "v=0"}),
        Load(1.5),
    ],
)
def test_events_round_trip(event: object) -> None:
    assert parse_event(roundtrip(event.to_json())) == event  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "send", "room": "r", "sid": "s", "message": {"type": "kicked"}},
        {"type": "send", "room": "r", "sid": "", "message": {"type": "speakers"}},
        {"type": "send", "room": "r" * 300, "sid": "s", "message": {"type": "speakers"}},
        {"type": "reply", "id": "1"},
        {"type": "reply", "id": True},
        {"type": "reply", "id": -1},
        {"type": "reply", "id": 1, "error": {"code": "Not A Code", "message": ""}},
        {"type": "reply", "id": 1, "error": "boom"},
        {"type": "load", "cpu_seconds": -1},
        {"type": "load", "cpu_seconds": "1"},
        {"type": "ready", "pid": 0},
        {"type": "exec", "code": "import os"},
    ],
)
def test_a_worker_frame_that_breaks_a_rule_is_refused(frame: dict[str, object]) -> None:
    with pytest.raises(ChannelError):
        parse_event(frame)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"no": "type"}', b'{"type": NaN}', b"\xff\xfe"])
def test_bytes_that_are_not_a_json_object_with_a_type_are_refused(body: bytes) -> None:
    with pytest.raises(ChannelError):
        decode(body)


async def test_a_frame_announcing_more_than_the_cap_is_refused_before_it_is_read() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(ChannelError):
        await read_frame(reader)


async def test_frames_are_read_in_order_and_the_end_of_the_stream_is_none() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(encode(Load(1.0).to_json()) + encode(Reply(3).to_json()))
    reader.feed_eof()
    assert parse_event(await read_frame(reader) or {}) == Load(1.0)
    assert parse_event(await read_frame(reader) or {}) == Reply(3)
    assert await read_frame(reader) is None


async def test_a_stream_cut_inside_a_frame_is_refused() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(encode(Load(1.0).to_json())[:-2])
    reader.feed_eof()
    with pytest.raises(ChannelError):
        await read_frame(reader)


def test_a_frame_over_the_cap_is_not_sent() -> None:
    with pytest.raises(ChannelError):
        encode({"type": "metrics", "text": "x" * MAX_FRAME})
