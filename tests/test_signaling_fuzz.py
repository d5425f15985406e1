"""Property tests: random frames at the parser and at a live session never raise anything but
ProtocolError, and the room keeps serving."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confserver.config import SignalingConfig
from confserver.signaling.messages import CLIENT_TYPES, ProtocolError, parse_client_message

from .conftest import AppMaker, base_config, join

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from([*CLIENT_TYPES, "bogus"])},
    optional={
        "token": json_values,
        "text": json_values,
        "to": json_values,
        "identity": json_values,
        "kind": json_values,
        "state": json_values,
        "name": json_values,
        "room": json_values,
        "v": json_values,
        "locked": json_values,
        "sdp": json_values,
        "candidate": json_values,
        "tracks": json_values,
        "t": json_values,
    },
)


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_parser_on_arbitrary_text_raises_only_protocol_errors(data: Any) -> None:
    try:
        parse_client_message(data, max_bytes=4096)
    except ProtocolError as e:
        assert e.code and e.message


@given(messages)
def test_parser_on_typed_random_messages_raises_only_protocol_errors(msg: dict[str, Any]) -> None:
    try:
        parse_client_message(json.dumps(msg), max_bytes=65536)
    except ProtocolError as e:
        assert e.code and e.message


async def test_random_messages_in_a_live_room_never_break_it(make_client: AppMaker) -> None:
    # a generous rate limit: this test sends hundreds of frames at once on purpose
    client: TestClient = await make_client(
        base_config(signaling=SignalingConfig(rate_per_second=10_000, rate_burst=10_000))
    )
    fuzzer, _ = await join(client, "r1", "fuzzer", role="moderator")
    witness, _ = await join(client, "r1", "witness")
    sent: list[dict[str, Any]] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(messages)
    def collect(msg: dict[str, Any]) -> None:
        sent.append(msg)

    collect()
    for msg in sent:
        if msg["type"] in ("leave", "end_room", "kick", "join"):
            continue  # these end or refuse the session by design; covered elsewhere
        await fuzzer.send(msg)
        await fuzzer.send({"type": "ping", "t": 1})
        await fuzzer.expect("pong")
    assert not any(m.get("code") == "internal" for m in fuzzer.seen), [
        m for m in fuzzer.seen if m.get("code") == "internal"
    ]
    await witness.send({"type": "chat", "text": "still fine"})
    assert (await witness.expect("chat"))["text"] == "still fine"
