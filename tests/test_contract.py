"""The contract between signaling and media: every media message is checked once where it enters,
is plain JSON both ways, and reaches the media side through an exhaustive dispatch. Close codes
are one list, the same in the server, the docs and the browser client."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from confserver.app import create_app
from confserver.contract import (
    MEDIA_CLASSES,
    MEDIA_TYPES,
    IceCandidate,
    MediaMessage,
    PublishedTrack,
    PublishOffer,
    ServiceError,
    SubscribeAnswer,
    SubscriptionChange,
    Unpublish,
    UpdateSubscription,
    parse_media,
)
from confserver.errors import ServiceError as ErrorsServiceError
from confserver.media import SendFn
from confserver.metrics import Metrics
from confserver.signaling import messages as m
from confserver.signaling.messages import CloseCode
from confserver.signaling.session import Session, SessionLimits
from confserver.store import MemoryStore
from tests.conftest import CREDS, base_config, create_room, join

ROOT = Path(__file__).resolve().parent.parent

EXAMPLES: list[MediaMessage] = [
    PublishOffer(
        sdp="v=0\r\n",
        tracks=(
            PublishedTrack("0", "microphone"),
            PublishedTrack("1", "camera", width=1280, height=720),
        ),
    ),
    PublishOffer(sdp="v=0\r\n", tracks=()),
    SubscribeAnswer(sdp="v=0\r\n"),
    IceCandidate("publish", "1 1 udp 2130706431 127.0.0.1 5000 typ host", sdp_mid="0", sdp_mline_index=0),
    IceCandidate("subscribe", "1 1 udp 2130706431 127.0.0.1 5000 typ host"),
    IceCandidate("subscribe", None),
    UpdateSubscription(
        tracks=(
            SubscriptionChange("TR_a", max_width=320, max_height=180),
            SubscriptionChange("TR_b", subscribe=False),
            SubscriptionChange("TR_c", paused=True),
        )
    ),
    Unpublish(track="TR_a"),
]


def code_of(obj: dict[str, Any]) -> str:
    with pytest.raises(ServiceError) as refused:
        parse_media(obj)
    return refused.value.code


# --- JSON both ways ----------------------------------------------------------------------------


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda msg: type(msg).__name__)
def test_every_media_message_survives_a_round_trip_through_json_text(message: MediaMessage) -> None:
    text = json.dumps(message.to_json())
    again = parse_media(json.loads(text))
    assert again == message
    assert type(message).from_json(json.loads(text)) == message


def test_every_media_message_type_has_an_example() -> None:
    assert {type(msg) for msg in EXAMPLES} == set(MEDIA_CLASSES)
    assert set(MEDIA_TYPES) == {
        "publish_offer",
        "subscribe_answer",
        "ice_candidate",
        "update_subscription",
        "unpublish",
    }


def test_a_candidate_keeps_what_the_browser_sent_in_every_form() -> None:
    text = "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
    as_string = parse_media({"type": "ice_candidate", "target": "publish", "candidate": text})
    as_init = parse_media(
        {"type": "ice_candidate", "target": "publish", "candidate": {"candidate": text, "sdpMid": "0"}}
    )
    assert isinstance(as_string, IceCandidate) and isinstance(as_init, IceCandidate)
    assert as_string.candidate == as_init.candidate == text.removeprefix("candidate:")
    assert as_init.sdp_mid == "0"
    assert parse_media({"type": "ice_candidate", "target": "publish", "candidate": ""}) == IceCandidate(
        "publish", None
    )


# --- refusals, with the codes the SFU used to answer ------------------------------------------------


def test_malformed_media_messages_are_refused_with_stable_codes() -> None:
    assert code_of({"type": "update_subscription", "tracks": "all"}) == "bad_field"
    assert code_of({"type": "update_subscription"}) == "missing_field"
    assert (
        code_of({"type": "update_subscription", "tracks": [{"id": "TR_a", "max_width": -1}]}) == "bad_field"
    )
    assert code_of({"type": "update_subscription", "tracks": [{"id": "TR_a"}, {"id": "TR_a"}]}) == "bad_field"
    assert code_of({"type": "update_subscription", "tracks": [{"id": "TR_a", "paused": 1}]}) == "bad_field"
    assert code_of({"type": "update_subscription", "tracks": [{"subscribe": True}]}) == "missing_field"
    hologram = [{"mid": "0", "source": "hologram"}]
    assert code_of({"type": "publish_offer", "sdp": "v=0", "tracks": hologram}) == "bad_field"
    twice = [{"mid": "0", "source": "camera"}, {"mid": "0", "source": "microphone"}]
    assert code_of({"type": "publish_offer", "sdp": "v=0", "tracks": twice}) == "bad_field"
    assert code_of({"type": "publish_offer", "sdp": "v=0", "tracks": [1]}) == "bad_field"
    many = [{"mid": str(i), "source": "camera"} for i in range(17)]
    assert code_of({"type": "publish_offer", "sdp": "v=0", "tracks": many}) == "bad_field"
    assert code_of({"type": "publish_offer", "tracks": []}) == "missing_field"
    assert code_of({"type": "publish_offer", "sdp": "x" * (64 * 1024 + 1), "tracks": []}) == "bad_field"
    assert code_of({"type": "subscribe_answer", "sdp": 5}) == "bad_field"
    assert code_of({"type": "ice_candidate", "target": "sideways", "candidate": None}) == "bad_field"
    assert code_of({"type": "ice_candidate", "target": "publish", "candidate": 7}) == "bad_field"
    assert code_of({"type": "ice_candidate", "target": "publish", "candidate": "x" * 1025}) == "bad_field"
    assert (
        code_of({"type": "ice_candidate", "target": "publish", "candidate": {"sdpMLineIndex": 1}})
        == "bad_field"
    )
    wide = {"candidate": "1 1 udp 1 127.0.0.1 9 typ host", "sdpMLineIndex": 999}
    assert code_of({"type": "ice_candidate", "target": "publish", "candidate": wide}) == "bad_field"
    assert code_of({"type": "unpublish"}) == "missing_field"
    assert code_of({"type": "unpublish", "track": "x" * 65}) == "bad_field"
    assert code_of({"type": "chat", "text": "not media"}) == "unknown_type"


def test_the_error_type_is_defined_once() -> None:
    assert ErrorsServiceError is ServiceError


def test_signaling_answers_a_malformed_media_message_with_the_contracts_code_and_its_ref() -> None:
    frame = json.dumps({"type": "update_subscription", "tracks": [{"id": "TR_a", "max_width": 0}]})
    with pytest.raises(m.ProtocolError) as refused:
        m.parse_client_message(frame, max_bytes=100_000)
    assert (refused.value.code, refused.value.ref) == ("bad_field", "update_subscription")
    # clients send the candidate's text (docs/PROTOCOL.md); the contract also takes the init object
    frame = json.dumps({"type": "ice_candidate", "target": "publish", "candidate": None})
    with pytest.raises(m.ProtocolError) as refused:
        m.parse_client_message(frame, max_bytes=100_000)
    assert (refused.value.code, refused.value.ref) == ("missing_field", "ice_candidate")


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda msg: type(msg).__name__)
def test_signaling_parses_media_messages_into_the_contracts_values(message: MediaMessage) -> None:
    wire = message.to_json()
    if isinstance(message, IceCandidate):
        if message.candidate is None:
            return  # clients never send end-of-candidates
        wire = {**wire, "candidate": wire["candidate"]["candidate"], "sdpMid": message.sdp_mid}
        message = IceCandidate(message.target, message.candidate)
    assert m.parse_client_message(json.dumps(wire), max_bytes=100_000) == message


# --- exhaustive dispatch ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rogue:
    """A message type no dispatcher knows (as a new one would be before it is handled)."""

    type = "rogue"


class _Peer:
    sid = ""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_text(self, text: str) -> None:
        self.sent.append(text)

    def close_with(self, msg: Any, close_code: int) -> None:
        self.sent.append(json.dumps(msg))


async def test_a_message_type_the_session_does_not_handle_fails_loudly() -> None:
    none: Any = None
    session = Session(
        peer=_Peer(),
        rooms=none,
        verifier=none,
        revocations=none,
        media=none,
        metrics=Metrics.create(process=False),
        limits=SessionLimits(chat_max_chars=100),
    )
    rogue: Any = Rogue()
    with pytest.raises(AssertionError):
        await session.handle(rogue)


MISSING_CASE = """
from typing import assert_never
from confserver.contract import IceCandidate, MediaMessage, PublishOffer, SubscribeAnswer, UpdateSubscription


def route(message: MediaMessage) -> str:
    match message:
        case PublishOffer() | SubscribeAnswer() | IceCandidate() | UpdateSubscription():
            return message.type
        case _:
            assert_never(message)
"""


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_mypy_refuses_a_dispatch_that_forgets_a_media_message_type(tmp_path: Path) -> None:
    source = tmp_path / "route.py"
    source.write_text(MISSING_CASE)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(source),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'has incompatible type "Unpublish"' in done.stdout, done.stdout


class _RecordingMedia:
    """A media service that records what reaches it."""

    def __init__(self) -> None:
        self.handled: list[MediaMessage] = []

    async def participant_joined(
        self, room: str, sid: str, permissions: frozenset[str], send: SendFn, identity: str = ""
    ) -> None:
        return None

    async def handle(self, room: str, sid: str, message: MediaMessage) -> None:
        self.handled.append(message)

    async def set_muted(self, room: str, sid: str, kind: str, muted: bool) -> None:
        return None

    async def participant_left(self, room: str, sid: str) -> None:
        return None

    def ice_servers(self, identity: str, *, not_after: float | None = None) -> list[dict[str, Any]]:
        return []

    async def close(self) -> None:
        return None


async def test_every_media_message_type_reaches_the_media_service_from_a_session(aiohttp_client: Any) -> None:
    media = _RecordingMedia()
    app = create_app(
        base_config(),
        store=MemoryStore(),
        credentials=CREDS,
        metrics=Metrics.create(process=False),
        media=media,
    )
    client = await aiohttp_client(app, connector=aiohttp.TCPConnector(limit=0))
    await create_room(client, "r1")
    ana, _ = await join(client, "r1", "ana")
    sent: list[MediaMessage] = []
    for message in EXAMPLES:
        if isinstance(message, IceCandidate):
            if message.candidate is None:
                continue
            message = IceCandidate(message.target, message.candidate)
            wire = {**message.to_json(), "candidate": "candidate:" + (message.candidate or "")}
        else:
            wire = message.to_json()
        sent.append(message)
        await ana.send(wire)
        await ana.send({"type": "ping", "t": len(sent)})
        await ana.expect("pong", t=len(sent))
    assert media.handled == sent
    assert {type(msg) for msg in media.handled} == set(MEDIA_CLASSES)


# --- close codes ---------------------------------------------------------------------------------


def test_the_protocol_docs_list_every_close_code() -> None:
    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    paragraph = text[text.index("Close codes") :].split("\n\n", 1)[0]
    listed = {int(n) for n in re.findall(r"\b(1\d{3}|4\d{3})\b", paragraph)}
    assert listed == {int(code) for code in CloseCode}


def test_the_browser_clients_close_codes_are_the_servers() -> None:
    text = (ROOT / "web" / "protocol.js").read_text()
    body = re.search(r"export const CLOSE = Object\.freeze\(\{(.*?)\}\);", text, re.DOTALL)
    assert body is not None
    in_js = {name: int(value) for name, value in re.findall(r"([A-Z_]+):\s*(\d+)", body.group(1))}
    assert in_js == {code.name: int(code) for code in CloseCode}
