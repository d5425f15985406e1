"""What is refused leaves nothing behind: a refused join keeps no session alive, and room metadata
that would break every later join is refused when an admin sets it."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from confserver import text
from confserver.errors import ServiceError
from confserver.rooms import check_metadata, claim_error
from confserver.signaling.session import Session
from confserver.signaling.websocket import WsPeer
from confserver.store import ClaimResult

from .conftest import AppMaker, admin_headers, base_config, connect, create_room, join, join_token

REFUSED_JOINS = 300
BATCH = 10
"""Refused joins in flight at once (below the cap on unjoined connections per address)."""


def _alive(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


async def _refused(client: TestClient, room: str, identity: str) -> str:
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token(room, identity), "room": room})
    msg = await ws.recv()
    await ws.closed()
    assert msg["type"] == "error", msg
    return str(msg["code"])


async def test_hundreds_of_refused_joins_keep_no_session_alive(make_client: AppMaker) -> None:
    cfg = base_config()
    client = await make_client(replace(cfg, rooms=replace(cfg.rooms, auto_create=False)))
    await create_room(client, "full", max_participants=1)
    await create_room(client, "locked")
    resp = await client.patch("/api/v1/rooms/locked", json={"locked": True}, headers=admin_headers())
    assert resp.status == 200
    inside, _ = await join(client, "full", "inside")
    before = _alive(WsPeer), _alive(Session)

    rooms = ["full", "locked", "missing"]
    codes: list[str] = []
    for start in range(0, REFUSED_JOINS, BATCH):
        codes += await asyncio.gather(
            *(_refused(client, rooms[i % 3], f"p{i}") for i in range(start, start + BATCH))
        )
    assert {c: codes.count(c) for c in set(codes)} == {
        "room_full": REFUSED_JOINS // 3,
        "room_locked": REFUSED_JOINS // 3,
        "room_not_found": REFUSED_JOINS // 3,
    }

    # the server's handlers finish a moment after the client saw the close
    deadline = time.monotonic() + 5
    while (_alive(WsPeer), _alive(Session)) != before:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert (_alive(WsPeer), _alive(Session)) == before
    await inside.close()


def test_each_refused_claim_is_a_new_error() -> None:
    for result in (
        ClaimResult.ROOM_FULL,
        ClaimResult.ROOM_LOCKED,
        ClaimResult.ROOM_NOT_FOUND,
        ClaimResult.DUPLICATE,
    ):
        first, second = claim_error(result), claim_error(result)
        assert first is not second
        assert (first.code, first.status) == (second.code, second.status)


# --- room metadata ----------------------------------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "metadata",
    [
        {"topic": "\ud800"},
        {"\udfff": "key"},
        {"list": ["ok", "\ud83d"]},
        {"n": float("nan")},
        {"n": float("inf")},
        {"n": 10**400},
        _nested(text.MAX_DEPTH + 1),
    ],
    ids=["lone_surrogate", "surrogate_key", "surrogate_in_list", "nan", "infinity", "huge_int", "too_deep"],
)
def test_metadata_that_cannot_be_sent_to_participants_is_refused(metadata: dict[str, Any]) -> None:
    with pytest.raises(ServiceError) as refused:
        check_metadata(metadata)
    assert refused.value.code == "invalid_field"
    assert refused.value.message.startswith("metadata")


def test_metadata_within_the_rules_is_accepted() -> None:
    metadata = {"topic": "Budget 2025 — café ☕", "floor": 3, "ratio": 0.5, "tags": ["a"], "deep": _nested(3)}
    assert check_metadata(metadata) == metadata


@pytest.mark.parametrize(
    "raw",
    ['{"metadata": {"topic": "\\ud800"}}', '{"metadata": {"n": NaN}}', '{"metadata": {"n": -Infinity}}'],
    ids=["lone_surrogate", "nan", "infinity"],
)
async def test_room_stays_joinable_after_an_admin_sets_bad_metadata(client: TestClient, raw: str) -> None:
    await create_room(client, "council", metadata={"topic": "budget"})
    headers = {**admin_headers(), "Content-Type": "application/json"}
    resp = await client.patch("/api/v1/rooms/council", data=raw, headers=headers)
    assert resp.status == 400, await resp.text()
    created = await client.post(
        "/api/v1/rooms", data=raw.replace("{", '{"name": "other", ', 1), headers=headers
    )
    assert created.status == 400, await created.text()
    ws, joined = await join(client, "council", "alice")
    assert joined["room"]["metadata"] == {"topic": "budget"}
    json.dumps(joined)
    await ws.close()


async def test_room_service_refuses_metadata_whatever_the_caller(client: TestClient) -> None:
    from confserver.signaling.websocket import SIGNALING
    from confserver.store import RoomUpdate

    from .conftest import app_of

    rooms = app_of(client)[SIGNALING].rooms.admin
    await create_room(client, "council", metadata={"topic": "budget"})
    with pytest.raises(ServiceError, match="surrogate"):
        await rooms.update_room("council", RoomUpdate(metadata={"topic": "\ud800"}))
    with pytest.raises(ServiceError, match="finite"):
        await rooms.create_room("other", max_participants=None, empty_timeout=0, metadata={"n": float("nan")})
    ws, joined = await join(client, "council", "alice")
    assert joined["room"]["metadata"] == {"topic": "budget"}
    await ws.close()
