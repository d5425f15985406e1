"""The SFU handles every media message of the contract, and refuses loudly a type it does not
know (a dispatch that forgot one is a mypy error: tests/test_contract.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from confserver.contract import (
    MEDIA_CLASSES,
    IceCandidate,
    MediaMessage,
    PublishedTrack,
    PublishOffer,
    ServiceError,
    SubscribeAnswer,
    SubscriptionChange,
    Unpublish,
    UpdateSubscription,
)
from sfu.controller import SfuController

# What each handler answers a participant with no permission and no connection yet: proof that the
# message reached its own handler.
ANSWERS: list[tuple[MediaMessage, str, str]] = [
    (PublishOffer("v=0\r\n", (PublishedTrack("0", "camera"),)), "forbidden", "publishing"),
    (SubscribeAnswer("v=0\r\n"), "forbidden", "subscribing"),
    (
        IceCandidate("publish", "1 1 udp 2130706431 127.0.0.1 5000 typ host"),
        "bad_field",
        "publish connection",
    ),
    (UpdateSubscription((SubscriptionChange("TR_x"),)), "forbidden", "subscribing"),
    (Unpublish("TR_x"), "unknown_track", "TR_x"),
]


def test_every_media_message_type_has_an_expected_answer() -> None:
    assert {type(message) for message, _code, _text in ANSWERS} == set(MEDIA_CLASSES)


@pytest.mark.parametrize(("message", "code", "text"), ANSWERS, ids=lambda v: type(v).__name__)
async def test_every_media_message_type_reaches_its_handler(
    sfu: SfuController, message: MediaMessage, code: str, text: str
) -> None:
    await sfu.participant_joined("room", "PA_a", frozenset(), lambda msg: None, identity="a")
    with pytest.raises(ServiceError) as refused:
        await sfu.handle("room", "PA_a", message)
    assert refused.value.code == code
    assert text in refused.value.message
    await sfu.participant_left("room", "PA_a")


@dataclass(frozen=True)
class Rogue:
    type = "rogue"


async def test_a_media_message_type_the_sfu_does_not_handle_fails_loudly(sfu: SfuController) -> None:
    await sfu.participant_joined("room", "PA_a", frozenset(), lambda msg: None, identity="a")
    rogue: Any = Rogue()
    with pytest.raises(AssertionError):
        await sfu.handle("room", "PA_a", rogue)
    await sfu.participant_left("room", "PA_a")
