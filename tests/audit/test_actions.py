"""Every action an admin or a moderator takes, and every join and leave, writes exactly one audit
entry with the right actor and outcome; refusals are recorded under the action attempted."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from confserver.app import create_app
from confserver.audit import Signer, verify
from confserver.audit.sinks import FileSink
from confserver.metrics import Metrics
from confserver.store import MemoryStore
from confserver.tokens import mint_admin_token

from ..conftest import API_KEY, CREDS, admin_headers, base_config, connect, create_room, join, join_token

SIGNER = Signer(Ed25519PrivateKey.generate())


@pytest.fixture
async def audited(aiohttp_client: Any, tmp_path: Path) -> tuple[TestClient, Path]:
    app = create_app(
        base_config(),
        store=MemoryStore(),
        credentials=CREDS,
        metrics=Metrics.create(process=False),
        audit_sink=FileSink(tmp_path / "audit"),
        audit_signer=SIGNER,
    )
    client: TestClient = await aiohttp_client(app, connector=aiohttp.TCPConnector(limit=0))
    return client, tmp_path / "audit"


async def _entries(client: TestClient, **query: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/audit", params={"limit": "1000", **query}, headers=admin_headers())
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return [e for e in body["entries"] if not e["event"]["action"].startswith("audit.")]


async def _one(client: TestClient, action: str, **match: Any) -> dict[str, Any]:
    """The one entry of ``action`` (waiting briefly for the writer)."""
    deadline = time.monotonic() + 5
    while True:
        found = [e for e in await _entries(client, action=action) if _matches(e, match)]
        if found or time.monotonic() > deadline:
            break
    assert len(found) == 1, (action, match, found)
    return found[0]


def _matches(entry: dict[str, Any], match: dict[str, Any]) -> bool:
    flat = {
        "outcome": entry["event"]["outcome"],
        "reason": entry["event"].get("reason", ""),
        "actor": entry["user"].get("id", ""),
        "role": entry["user"]["roles"][0],
        "room": entry.get("conf", {}).get("room", ""),
        "target": entry["user"].get("target", {}).get("id", ""),
    }
    return all(flat[k] == v for k, v in match.items())


Admin = Callable[[str, str, dict[str, Any] | None], Awaitable[tuple[int, Any]]]


async def _admin(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    resp = await client.request(method, "/api/v1" + path, json=body, headers=admin_headers())
    return resp.status, (await resp.json() if resp.status != 204 else None)


async def test_each_admin_action_writes_one_entry_naming_the_key(audited: tuple[TestClient, Path]) -> None:
    client, _ = audited
    key = {"actor": API_KEY, "role": "api_key", "outcome": "success"}
    assert (await _admin(client, "POST", "/rooms", {"name": "cab"}))[0] == 201
    await _one(client, "room.create", room="cab", **key)
    assert (await _admin(client, "PATCH", "/rooms/cab", {"max_participants": 5}))[0] == 200
    await _one(client, "room.update", room="cab", **key)
    assert (await _admin(client, "PATCH", "/rooms/cab", {"locked": True}))[0] == 200
    await _one(client, "room.lock", room="cab", **key)
    assert (await _admin(client, "PATCH", "/rooms/cab", {"locked": False}))[0] == 200
    await _one(client, "room.unlock", room="cab", **key)
    status, token = await _admin(client, "POST", "/tokens", {"room": "cab", "identity": "ana"})
    assert status == 201
    minted = await _one(client, "token.create", room="cab", target="ana", **key)
    assert minted["conf"]["jti"] == token["jti"]
    assert token["token"] not in json.dumps(minted)  # never the token itself
    ana, _ = await join(client, "cab", "ana")
    await _one(client, "participant.join", room="cab", actor="ana", role="participant", outcome="success")
    assert (await _admin(client, "POST", "/rooms/cab/participants/ana/mute", {"kind": "audio"}))[0] == 200
    await _one(client, "participant.mute", room="cab", target="ana", **key)
    assert (await _admin(client, "DELETE", "/rooms/cab/participants/ana"))[0] == 204
    await _one(client, "participant.kick", room="cab", target="ana", **key)
    left = await _one(client, "participant.leave", room="cab", actor="ana")
    assert left["event"]["reason"] == "removed"
    assert (await _admin(client, "POST", f"/tokens/{token['jti']}/revoke"))[0] == 200
    await _one(client, "token.revoke", **key)
    status, created = await _admin(client, "POST", "/keys", {"name": "ops robot", "scopes": ["rooms:read"]})
    assert status == 201
    made = await _one(client, "api_key.create", target=created["id"], **key)
    assert created["secret"] not in json.dumps(made)
    assert (await _admin(client, "DELETE", f"/keys/{created['id']}"))[0] == 200
    await _one(client, "api_key.revoke", target=created["id"], **key)
    assert (await _admin(client, "DELETE", "/rooms/cab"))[0] == 204
    await _one(client, "room.delete", room="cab", **key)
    await ana.close()


async def test_refusals_are_recorded_under_the_action_attempted(audited: tuple[TestClient, Path]) -> None:
    client, _ = audited
    await create_room(client, "r1")
    status, _ = await _admin(client, "POST", "/rooms", {"name": "r1"})  # exists already
    assert status == 409
    await _one(client, "room.create", room="r1", outcome="failure", reason="room_exists")
    _, created = await _admin(client, "POST", "/keys", {"name": "reader", "scopes": ["rooms:read"]})
    weak = {"Authorization": "Bearer " + mint_admin_token(created["id"], created["secret"], now=time.time())}
    resp = await client.delete("/api/v1/rooms/r1", headers=weak)
    assert resp.status == 403
    refused = await _one(client, "room.delete", room="r1", outcome="failure")
    assert refused["event"]["reason"] == "insufficient_scope"
    assert refused["user"]["name"] == "reader"
    resp = await client.post(
        "/api/v1/tokens", json={"room": "r1", "identity": "x"}, headers={"Authorization": "Bearer nope"}
    )
    assert resp.status == 401
    stranger = await _one(client, "token.create", outcome="failure", role="unknown")
    assert stranger["event"]["reason"] == "unauthorized" and stranger["client"]["ip"] == "127.0.0.1"


async def test_joins_leaves_and_moderation_through_the_websocket(audited: tuple[TestClient, Path]) -> None:
    client, _ = audited
    await create_room(client, "m", max_participants=2)
    mod, _ = await join(client, "m", "chair", role="moderator")
    ana, _ = await join(client, "m", "ana")
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token("m", "bob"), "room": "m"})
    await ws.expect("error", code="room_full")
    await _one(client, "participant.join", room="m", actor="bob", outcome="failure", reason="room_full")
    ws = await connect(client)
    await ws.send({"type": "join", "token": join_token("m", "eve") + "x", "room": "m"})
    await ws.expect("error", code="token_rejected")
    forged = await _one(client, "participant.join", room="m", outcome="failure", role="unknown")
    assert forged["event"]["reason"].startswith("token_rejected:")
    by_chair = {"actor": "chair", "role": "participant", "room": "m"}
    await mod.send({"type": "mute", "identity": "ana", "kind": "audio"})
    await ana.expect("muted")
    await _one(client, "participant.mute", target="ana", outcome="success", **by_chair)
    await mod.send({"type": "lock_room", "locked": True})
    await ana.expect("room_updated")
    await _one(client, "room.lock", outcome="success", **by_chair)
    await mod.send({"type": "kick", "identity": "nobody"})
    await mod.expect("error", code="participant_not_found")
    await _one(client, "participant.kick", target="nobody", outcome="failure", **by_chair)
    await mod.send({"type": "kick", "identity": "ana"})
    await ana.closed()
    await _one(client, "participant.kick", target="ana", outcome="success", **by_chair)
    await mod.send({"type": "end_room"})
    await mod.closed()
    await _one(client, "room.end", outcome="success", **by_chair)
    await _one(client, "participant.leave", actor="ana", reason="removed")
    await _one(client, "participant.leave", actor="chair")
    joins = await _entries(client, action="participant.join", room="m")
    assert [(e["user"].get("id"), e["event"]["outcome"]) for e in joins] == [
        ("chair", "success"),
        ("ana", "success"),
        ("bob", "failure"),
        (None, "failure"),
    ]


async def test_the_written_log_verifies_and_an_edit_is_found(audited: tuple[TestClient, Path]) -> None:
    client, directory = audited
    await create_room(client, "v")
    ws, _ = await join(client, "v", "ana")
    await ws.close()
    head = (await (await client.get("/api/v1/audit/head", headers=admin_headers())).json())["head"]
    files = sorted(directory.glob("audit-*.jsonl"))
    lines = b"".join(f.read_bytes() for f in files).splitlines()
    keys = {SIGNER.key_id: SIGNER.public}
    report = verify(lines, keys, head=head)
    assert report.ok, report.error
    assert report.signed_through == head["event"]["sequence"]
    lines[1] = lines[1].replace(b"confserver", b"confservex", 1)
    assert not verify(lines, keys, head=head).ok


async def test_the_lobby_and_passwords_are_recorded(audited: tuple[TestClient, Path]) -> None:
    client, _ = audited
    await create_room(client, "lob", lobby=True, password="sesame street")
    chair, _ = await join(client, "lob", "chair", role="moderator")
    waiting = []
    for identity in ("ana", "eve"):
        ws = await connect(client)
        await ws.send(
            {"type": "join", "token": join_token("lob", identity), "room": "lob", "password": "sesame street"}
        )
        await ws.expect("lobby")
        waiting.append(ws)
    wrong = await connect(client)
    await wrong.send(
        {"type": "join", "token": join_token("lob", "mallory"), "room": "lob", "password": "guess"}
    )
    await wrong.expect("error", code="bad_password")
    await _one(client, "participant.join", actor="mallory", outcome="failure", reason="bad_password")
    await _one(client, "participant.knock", actor="ana", room="lob")
    await chair.send({"type": "admit", "identity": "ana"})
    await waiting[0].expect("joined")
    await _one(client, "participant.admit", actor="chair", target="ana", outcome="success")
    await _one(client, "participant.join", actor="ana", outcome="success")
    resp = await client.post("/api/v1/rooms/lob/lobby/eve/deny", headers=admin_headers())
    assert resp.status == 204
    await _one(client, "participant.deny", actor=API_KEY, target="eve", outcome="success")
    created = await _one(client, "room.create", room="lob")
    assert "sesame" not in json.dumps(created)


async def test_bad_search_parameters_and_a_damaged_file(audited: tuple[TestClient, Path]) -> None:
    client, directory = audited
    await create_room(client, "d")
    for query in (
        {"after": "²"},
        {"limit": "0"},
        {"limit": "1e3"},
        {"since": "yesterday"},
        {"room": "\x00"},
        {"x": "1"},
    ):
        resp = await client.get("/api/v1/audit", params=query, headers=admin_headers())
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_field", query
    await _one(client, "room.create", room="d")
    segment = sorted(directory.glob("audit-*.jsonl"))[-1]
    lines = segment.read_bytes().splitlines()
    lines[1] = b'{"not": "an entry"'
    segment.write_bytes(b"\n".join(lines) + b"\n")
    resp = await client.get("/api/v1/audit/export", headers=admin_headers())
    assert resp.status == 200
    exported = (await resp.read()).splitlines()
    assert exported[1] == b'{"not": "an entry"'  # as stored: verify names it
    report = verify(exported[:-1], {SIGNER.key_id: SIGNER.public})
    assert not report.ok and report.line == 2
