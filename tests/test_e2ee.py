"""End-to-end encrypted rooms, the server's part: the ``e2ee`` room option through the API and the
config default, identity keys shown to the room, key messages delivered to their one recipient
only, every refusal with a stable code on a connection that stays open, a budget of key entries,
and key data that never reaches a log or the audit log."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from confserver.app import create_app
from confserver.audit.sinks import FileSink
from confserver.config import RoomsConfig, load_config
from confserver.metrics import Metrics
from confserver.signaling import session as session_module
from confserver.signaling.messages import E2EE_TEXT_RE, ProtocolError, parse_client_message
from confserver.store import MemoryStore

from .audit.test_actions import SIGNER
from .conftest import CREDS, AppMaker, Ws, admin_headers, base_config, connect, create_room, join
from .test_lobby import knock
from .test_signaling_fuzz import LIVE, check_frame_in_room, exchange, frames, fuzz_config
from .test_webhooks import Receiver, hook

H = admin_headers


async def room_of(client: TestClient, name: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/rooms/{name}", headers=H())
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def patch(client: TestClient, name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.patch(f"/api/v1/rooms/{name}", json=body, headers=H())
    return resp.status, await resp.json()


async def quiet(ws: Ws) -> list[dict[str, Any]]:
    """Everything ``ws`` received up to the answer to a ping sent now."""
    marker = secrets.randbelow(10**9)
    await ws.send({"type": "ping", "t": marker})
    got = []
    while (msg := await ws.recv())["type"] != "pong" or msg["t"] != marker:
        got.append(msg)
    return got


async def e2ee_trio(client: TestClient, room: str = "sec") -> tuple[Ws, Ws, Ws, dict[str, str]]:
    """ana, bob and cy in a fresh E2EE room (cy a viewer); their sids by name."""
    await create_room(client, room, e2ee=True)
    ana, a = await join(client, room, "ana")
    bob, b = await join(client, room, "bob")
    cy, c = await join(client, room, "cy", role="viewer")
    await quiet(ana)
    await quiet(bob)
    return ana, bob, cy, {"ana": a["sid"], "bob": b["sid"], "cy": c["sid"]}


# --- the room option -------------------------------------------------------------------------


async def test_the_e2ee_option_round_trips_through_the_api(client: TestClient) -> None:
    created = await create_room(client, "sec", e2ee=True)
    assert created["e2ee"] is True and (await room_of(client, "sec"))["e2ee"] is True
    plain = await create_room(client, "plain")
    assert plain["e2ee"] is False
    listed = (await (await client.get("/api/v1/rooms", headers=H())).json())["rooms"]
    assert {r["name"]: r["e2ee"] for r in listed} == {"plain": False, "sec": True}
    assert await patch(client, "sec", {"e2ee": False}) == (200, await room_of(client, "sec"))
    assert (await room_of(client, "sec"))["e2ee"] is False
    status, body = await patch(client, "sec", {"e2ee": "yes"})
    assert (status, body["error"]) == (400, "invalid_field")
    resp = await client.post("/api/v1/rooms", json={"name": "x", "e2ee": 1}, headers=H())
    assert (resp.status, (await resp.json())["error"]) == (400, "invalid_field")


async def test_switching_e2ee_is_refused_while_anyone_is_in_the_room(client: TestClient) -> None:
    await create_room(client, "sec", e2ee=True)
    ana, joined = await join(client, "sec", "ana")
    assert joined["room"]["e2ee"] is True
    status, body = await patch(client, "sec", {"e2ee": False})
    assert (status, body["error"]) == (409, "room_in_use")
    assert (await room_of(client, "sec"))["e2ee"] is True
    assert (await patch(client, "sec", {"e2ee": True, "locked": True}))[0] == 200  # no switch: fine
    await ana.close()
    for _ in range(100):
        if (await room_of(client, "sec"))["num_participants"] == 0:
            break
        await asyncio.sleep(0.02)
    status, body = await patch(client, "sec", {"e2ee": False})
    assert (status, body["e2ee"]) == (200, False)


async def test_the_config_default_applies_to_rooms_created_without_saying(make_client: AppMaker) -> None:
    assert load_config(env={"CONF_ROOMS_E2EE_DEFAULT": "true"}).rooms.e2ee_default is True
    assert load_config(env={}).rooms.e2ee_default is False
    client = await make_client(base_config(rooms=replace(RoomsConfig(), e2ee_default=True)))
    assert (await create_room(client, "api"))["e2ee"] is True
    assert (await create_room(client, "open", e2ee=False))["e2ee"] is False
    _, joined = await join(client, "auto", "ana")  # created by the first join
    assert joined["room"]["e2ee"] is True and (await room_of(client, "auto"))["auto_created"] is True


# --- identity keys -------------------------------------------------------------------------------


async def test_an_identity_key_is_shown_to_the_others_and_to_late_joiners(client: TestClient) -> None:
    ana, bob, cy, sid = await e2ee_trio(client)
    await ana.send({"type": "e2ee_identity", "key": "QU5BLWtleS0x"})
    announced = {"type": "e2ee_identity", "sid": sid["ana"], "identity": "ana", "key": "QU5BLWtleS0x"}
    assert await bob.expect("e2ee_identity") == announced
    assert await cy.expect("e2ee_identity") == announced
    assert await quiet(ana) == []  # the sender is not told its own key
    await cy.send({"type": "e2ee_identity", "key": "Q1kta2V5"})  # a viewer announces one too
    await ana.expect("e2ee_identity", sid=sid["cy"], key="Q1kta2V5")
    await bob.expect("e2ee_identity", sid=sid["cy"], key="Q1kta2V5")

    dee, joined = await join(client, "sec", "dee")
    keys = {p["identity"]: p.get("e2ee_key") for p in joined["participants"]}
    assert keys == {"ana": "QU5BLWtleS0x", "bob": None, "cy": "Q1kta2V5"}
    assert "e2ee_key" not in joined["self"]

    await ana.send({"type": "e2ee_identity", "key": "QU5BLWtleS0y"})  # a new key replaces the old
    await dee.expect("e2ee_identity", sid=sid["ana"], key="QU5BLWtleS0y")
    await ana.send({"type": "update", "state": {"hand_raised": True}})
    updated = await bob.expect("participant_updated")
    assert (
        updated["participant"]["identity"] == "ana" and updated["participant"]["e2ee_key"] == "QU5BLWtleS0y"
    )
    _, joined = await join(client, "sec", "eve")
    assert next(p for p in joined["participants"] if p["identity"] == "ana")["e2ee_key"] == "QU5BLWtleS0y"


# --- key messages -----------------------------------------------------------------------------


async def test_a_key_message_reaches_its_recipient_and_nobody_else(client: TestClient) -> None:
    ana, bob, cy, sid = await e2ee_trio(client)
    await ana.send({"type": "e2ee_keys", "keys": [{"to": sid["bob"], "data": "Zm9yLWJvYi1vbmx5"}]})
    got = await bob.expect("e2ee_key")
    assert got == {"type": "e2ee_key", "from": sid["ana"], "identity": "ana", "data": "Zm9yLWJvYi1vbmx5"}
    assert await quiet(ana) == []  # no error: delivered
    assert not [m for m in await quiet(cy) if "Zm9yLWJvYi1vbmx5" in json.dumps(m)]
    # a viewer answers with its own key, and one frame reaches several people
    await cy.send(
        {"type": "e2ee_keys", "keys": [{"to": sid["ana"], "data": "eDE"}, {"to": sid["bob"], "data": "eDI"}]}
    )
    assert (await ana.expect("e2ee_key"))["data"] == "eDE"
    assert (await bob.expect("e2ee_key")) == {
        "type": "e2ee_key",
        "from": sid["cy"],
        "identity": "cy",
        "data": "eDI",
    }


async def test_keys_for_someone_not_in_the_room_are_reported_back_and_the_rest_delivered(
    client: TestClient,
) -> None:
    ana, bob, cy, sid = await e2ee_trio(client)
    await create_room(client, "other", e2ee=True)
    _, elsewhere = await join(client, "other", "zed")
    entries = [
        {"to": "PA_nobody", "data": "bm9ib2R5"},
        {"to": sid["bob"], "data": "Ym9i"},
        {"to": sid["ana"], "data": "bWU"},  # oneself
        {"to": elsewhere["sid"], "data": "b3RoZXI"},  # another room
    ]
    await ana.send({"type": "e2ee_keys", "keys": entries})
    error = await ana.expect("error")
    assert (error["code"], error["ref"]) == ("participant_not_found", "e2ee_keys")
    assert error["sids"] == ["PA_nobody", sid["ana"], elsewhere["sid"]]
    assert (await bob.expect("e2ee_key"))["data"] == "Ym9i"
    assert [m for m in await quiet(cy) if m["type"] == "e2ee_key"] == []


async def test_e2ee_messages_are_refused_in_a_room_without_e2ee(client: TestClient) -> None:
    await create_room(client, "plain")
    ana, _ = await join(client, "plain", "ana")
    bob, b = await join(client, "plain", "bob")
    for msg in (
        {"type": "e2ee_identity", "key": "a2V5"},
        {"type": "e2ee_keys", "keys": [{"to": b["sid"], "data": "a2V5"}]},
    ):
        await ana.send(msg)
        error = await ana.expect("error")
        assert (error["code"], error["ref"]) == ("e2ee_off", msg["type"])
    assert not [m for m in await quiet(bob) if m["type"].startswith("e2ee")]
    assert await quiet(ana) == []  # the connection goes on


async def test_someone_in_the_lobby_or_not_joined_cannot_send_keys(client: TestClient) -> None:
    await create_room(client, "cab", e2ee=True, lobby=True)
    chair, _ = await join(client, "cab", "chair", role="moderator")
    ana, _ = await knock(client, "cab", "ana")
    stranger = await connect(client)
    for ws in (ana, stranger):
        for msg in (
            {"type": "e2ee_identity", "key": "a2V5"},
            {"type": "e2ee_keys", "keys": [{"to": "PA_x", "data": "a2V5"}]},
        ):
            await ws.send(msg)
            assert (await ws.expect("error"))["code"] == "not_joined"
    assert not [m for m in await quiet(chair) if m["type"].startswith("e2ee")]
    await chair.send({"type": "admit", "identity": "ana"})  # still waiting, and admitted normally
    await ana.expect("joined")


BAD_FRAMES: list[tuple[str, str]] = [
    ('{"type":"e2ee_identity"}', "missing_field"),
    ('{"type":"e2ee_identity","key":""}', "bad_field"),
    ('{"type":"e2ee_identity","key":7}', "bad_field"),
    ('{"type":"e2ee_identity","key":"' + "A" * 257 + '"}', "bad_field"),
    ('{"type":"e2ee_identity","key":"a+b/c="}', "bad_field"),
    ('{"type":"e2ee_identity","key":"ab\\ud800cd"}', "bad_field"),
    ('{"type":"e2ee_keys"}', "missing_field"),
    ('{"type":"e2ee_keys","keys":[]}', "bad_field"),
    ('{"type":"e2ee_keys","keys":{"to":"BOB","data":"QQ"}}', "bad_field"),
    ('{"type":"e2ee_keys","keys":["BOB"]}', "bad_field"),
    ('{"type":"e2ee_keys","keys":[{"data":"QQ"}]}', "missing_field"),
    ('{"type":"e2ee_keys","keys":[{"to":"BOB"}]}', "missing_field"),
    ('{"type":"e2ee_keys","keys":[{"to":"BOB","data":""}]}', "bad_field"),
    ('{"type":"e2ee_keys","keys":[{"to":"BOB","data":"' + "Q" * 1025 + '"}]}', "bad_field"),
    ('{"type":"e2ee_keys","keys":[{"to":"BOB","data":"a b"}]}', "bad_field"),
    ('{"type":"e2ee_keys","keys":[{"to":"BOB","data":"QQ\\udfff"}]}', "bad_field"),
    ('{"type":"e2ee_keys","keys":[{"to":"BOB","data":"QQ"},{"to":"BOB","data":"Qg"}]}', "bad_field"),
    ('{"type":"e2ee_keys","keys":[' + ",".join(['{"to":"BOB","data":"QQ"}'] * 101) + "]}", "bad_field"),
    ('{"type":"e2ee_keys","keys":[{"to":"' + "B" * 65 + '","data":"QQ"}]}', "bad_field"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES, ids=range(len(BAD_FRAMES)))
async def test_malformed_e2ee_messages_are_refused_and_the_connection_stays(
    client: TestClient, frame: str, code: str
) -> None:
    ana, bob, _, sid = await e2ee_trio(client)
    text = frame.replace("BOB", sid["bob"])
    answer = await exchange(ana, text)
    assert answer.closed is None
    assert [(m["type"], m.get("code"), m.get("ref")) for m in answer.messages] == [
        ("error", code, text.split('"type":"', 1)[1].split('"', 1)[0])
    ]
    assert [m for m in await quiet(bob) if m["type"].startswith("e2ee")] == []


async def test_a_key_frame_beyond_the_frame_limit_is_too_large_and_nothing_is_delivered(
    client: TestClient,
) -> None:
    ana, bob, _, sid = await e2ee_trio(client)
    keys = [{"to": sid["bob"], "data": "Q" * 1024}] + [
        {"to": f"PA_{i}", "data": "Q" * 1024} for i in range(69)
    ]
    answer = await exchange(ana, json.dumps({"type": "e2ee_keys", "keys": keys}))  # about 72 KiB
    assert answer.closed is None and [m["code"] for m in answer.messages] == ["too_large"]
    assert [m for m in await quiet(bob) if m["type"] == "e2ee_key"] == []


async def test_a_rotation_in_a_full_room_is_one_frame_and_a_flood_of_entries_is_rate_limited(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana, bob, _, sid = await e2ee_trio(client)
    rotation = [{"to": sid["bob"], "data": "cm90YXRl"}] + [{"to": f"PA_{i}", "data": "eA"} for i in range(98)]
    await ana.send({"type": "e2ee_keys", "keys": rotation})  # 99 entries: one frame, delivered
    assert (await bob.expect("e2ee_key"))["data"] == "cm90YXRl"
    assert len((await ana.expect("error", code="participant_not_found"))["sids"]) == 98

    monkeypatch.setattr(session_module, "KEYS_PER_SECOND", 0.001)  # no refill within the test
    await create_room(client, "flood", e2ee=True)
    eve, _ = await join(client, "flood", "eve")
    _, target = await join(client, "flood", "tgt")
    full = {"type": "e2ee_keys", "keys": [{"to": f"PA_{i}", "data": "eA"} for i in range(99)]}
    full["keys"][0] = {"to": target["sid"], "data": "eA"}
    codes = []
    for _ in range(5):  # 4 x 99 entries fit the burst of 400; the fifth frame does not
        answer = await exchange(eve, json.dumps(full))
        codes.append([m["code"] for m in answer.messages if m["type"] == "error"])
    assert codes == [["participant_not_found"]] * 4 + [["rate_limited"]]
    assert await quiet(eve) == []  # still connected


# --- nothing of the key data is kept ---------------------------------------------------------


@pytest.fixture
async def hooks() -> AsyncIterator[Receiver]:
    """A webhook receiver on loopback."""
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    rec.url = str(server.make_url("/hook"))
    try:
        yield rec
    finally:
        await server.close()


async def test_key_data_reaches_no_log_no_audit_entry_and_no_webhook(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, hooks: Receiver
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app(
        base_config(webhooks=(hook(hooks.url),)),
        store=MemoryStore(),
        credentials=CREDS,
        metrics=Metrics.create(process=False),
        audit_sink=FileSink(tmp_path / "audit"),
        audit_signer=SIGNER,
    )
    client: TestClient = await aiohttp_client(app, connector=aiohttp.TCPConnector(limit=0))
    secret = "c2VjcmV0LWtleS1kYXRh" + secrets.token_hex(8)
    ana, bob, _, sid = await e2ee_trio(client)
    await ana.send({"type": "e2ee_keys", "keys": [{"to": sid["bob"], "data": secret}]})
    assert (await bob.expect("e2ee_key"))["data"] == secret
    await ana.send({"type": "e2ee_keys", "keys": [{"to": "PA_gone", "data": secret}]})  # refused
    await ana.expect("error", code="participant_not_found")
    await ana.send({"type": "e2ee_keys", "keys": [{"to": sid["bob"], "data": secret + "!"}]})  # bad
    await ana.expect("error", code="bad_field")
    await ana.close()
    entries: list[dict[str, Any]] = []
    for _ in range(250):  # until the writer wrote ana's leave
        resp = await client.get("/api/v1/audit", params={"limit": "1000"}, headers=H())
        entries = (await resp.json())["entries"]
        if any(e["event"]["action"] == "participant.leave" for e in entries):
            break
        await asyncio.sleep(0.02)
    assert any(e["event"]["action"] == "participant.leave" for e in entries)
    assert secret not in json.dumps(entries)
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "audit").rglob("*") if p.is_file())
    assert written and secret not in written
    assert caplog.records and not [r for r in caplog.records if secret in str(r.__dict__)]
    await hooks.wait_for(5)  # room_started, joined x3, ana left
    assert not [body for _, body in hooks.requests if secret.encode() in body]


# --- generated hostile frames -----------------------------------------------------------------


@pytest.fixture
async def live_e2ee(make_client: AppMaker) -> TestClient:
    """The fuzzers' server, every room end-to-end encrypted."""
    cfg = fuzz_config()
    return await make_client(replace(cfg, rooms=replace(cfg.rooms, e2ee_default=True)))


@LIVE
@given(frame=frames(("e2ee_identity", "e2ee_keys")))
async def test_hostile_e2ee_frames_get_documented_answers_and_the_room_goes_on(
    live_e2ee: TestClient, frame: str
) -> None:
    await check_frame_in_room(live_e2ee, frame)


@LIVE
@given(frame=frames(("e2ee_identity", "e2ee_keys")))
async def test_a_viewer_sending_hostile_e2ee_frames_gets_documented_answers(
    live_e2ee: TestClient, frame: str
) -> None:
    await check_frame_in_room(live_e2ee, frame, fuzzer_role="viewer")


base64ish = st.text(st.sampled_from("AZaz09_-+/= é"), max_size=70)


@given(
    key=st.text(max_size=20) | base64ish | st.text("Ab-", min_size=250, max_size=260),
    entries=st.lists(
        st.fixed_dictionaries(
            {
                "to": base64ish | st.text(max_size=5),
                "data": base64ish | st.text("x_", min_size=1020, max_size=1030),
            }
        ),
        max_size=110,
    ),
)
def test_the_parser_accepts_exactly_the_documented_shapes(key: str, entries: list[dict[str, str]]) -> None:
    def ok_text(s: str, limit: int) -> bool:
        return 1 <= len(s) <= limit and E2EE_TEXT_RE.fullmatch(s) is not None

    for raw, good in (
        ({"type": "e2ee_identity", "key": key}, ok_text(key, 256)),
        (
            {"type": "e2ee_keys", "keys": entries},
            1 <= len(entries) <= 100
            and len({e["to"] for e in entries}) == len(entries)
            and all(ok_text(e["to"], 64) and ok_text(e["data"], 1024) for e in entries),
        ),
    ):
        text = json.dumps(raw)
        try:
            parse_client_message(text, max_bytes=1 << 20)
        except ProtocolError as e:
            assert not good, (e.code, e.message)
            assert e.code in {"bad_field", "missing_field"}
        else:
            assert good
