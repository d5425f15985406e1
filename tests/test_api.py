"""The admin REST API through a real aiohttp server on loopback."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from confserver.openapi import openapi_document
from confserver.tokens import mint_admin_token

from .conftest import API_KEY, API_SECRET, admin_headers, app_of, base_config, create_room, join, join_token

H = admin_headers


async def _json(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    return body


async def test_room_lifecycle_create_list_get_update_delete(client: TestClient) -> None:
    created = await create_room(
        client, "board-meeting", max_participants=12, empty_timeout=60, metadata={"k": "v"}
    )
    assert created["name"] == "board-meeting"
    assert created["max_participants"] == 12
    assert created["empty_timeout"] == 60
    assert created["metadata"] == {"k": "v"}
    assert created["num_participants"] == 0
    assert created["locked"] is False

    rooms = await _json(await client.get("/api/v1/rooms", headers=H()))
    assert [r["name"] for r in rooms["rooms"]] == ["board-meeting"]

    resp = await client.patch(
        "/api/v1/rooms/board-meeting", json={"locked": True, "max_participants": 5}, headers=H()
    )
    updated = await _json(resp)
    assert resp.status == 200
    assert (
        updated["locked"] is True and updated["max_participants"] == 5 and updated["metadata"] == {"k": "v"}
    )

    resp = await client.delete("/api/v1/rooms/board-meeting", headers=H())
    assert resp.status == 204
    resp = await client.get("/api/v1/rooms/board-meeting", headers=H())
    assert resp.status == 404
    assert (await _json(resp))["error"] == "room_not_found"


async def test_room_defaults_to_100_seats(client: TestClient) -> None:
    assert (await create_room(client, "plenary"))["max_participants"] == 100


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "bad name"}, "invalid_room_name"),
        ({"name": ""}, "invalid_room_name"),
        ({"name": "x" * 65}, "invalid_room_name"),
        ({"name": 7}, "invalid_room_name"),
        ({}, "invalid_room_name"),
        ({"name": "ok", "max_participants": 101}, "invalid_field"),
        ({"name": "ok", "max_participants": 0}, "invalid_field"),
        ({"name": "ok", "max_participants": "10"}, "invalid_field"),
        ({"name": "ok", "max_participants": True}, "invalid_field"),
        ({"name": "ok", "empty_timeout": -1}, "invalid_field"),
        ({"name": "ok", "metadata": [1]}, "invalid_field"),
        ({"name": "ok", "metadata": {"x": "y" * 5000}}, "invalid_field"),
        ({"name": "ok", "colour": "red"}, "invalid_field"),
    ],
)
async def test_invalid_room_input_is_refused_with_a_code_and_nothing_stored(
    client: TestClient, body: dict[str, Any], code: str
) -> None:
    resp = await client.post("/api/v1/rooms", json=body, headers=H())
    assert resp.status == 400
    err = await _json(resp)
    assert err["error"] == code and err["message"]
    assert (await _json(await client.get("/api/v1/rooms", headers=H())))["rooms"] == []


async def test_creating_an_existing_room_conflicts_and_keeps_the_original(client: TestClient) -> None:
    await create_room(client, "r1", max_participants=3)
    resp = await client.post("/api/v1/rooms", json={"name": "r1", "max_participants": 50}, headers=H())
    assert resp.status == 409
    assert (await _json(resp))["error"] == "room_exists"
    assert (await _json(await client.get("/api/v1/rooms/r1", headers=H())))["max_participants"] == 3


async def test_malformed_bodies_get_clear_errors(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/rooms", data=b"{not json", headers={**H(), "Content-Type": "application/json"}
    )
    assert (resp.status, (await _json(resp))["error"]) == (400, "invalid_json")
    resp = await client.post(
        "/api/v1/rooms", data=b"[1,2]", headers={**H(), "Content-Type": "application/json"}
    )
    assert (resp.status, (await _json(resp))["error"]) == (400, "invalid_json")
    resp = await client.post("/api/v1/rooms", data=b"name=x", headers={**H(), "Content-Type": "text/plain"})
    assert (resp.status, (await _json(resp))["error"]) == (415, "unsupported_media_type")
    big = b'{"name": "' + b"a" * 70000 + b'"}'
    resp = await client.post("/api/v1/rooms", data=big, headers={**H(), "Content-Type": "application/json"})
    assert resp.status == 413
    assert (await _json(resp))["error"] == "body_too_large"


@pytest.mark.parametrize(
    ("path", "raw", "code"),
    [
        ("/api/v1/tokens", rb'{"room": "r1", "identity": "eve", "name": "Eve\ud800"}', "invalid_field"),
        ("/api/v1/tokens", rb'{"room": "r1", "identity": "eve", "name": "\udfff"}', "invalid_field"),
        ("/api/v1/rooms", rb'{"name": "r1", "metadata": {"note": "x\udc00"}}', "invalid_field"),
        ("/api/v1/rooms", rb'{"name": "r1", "metadata": {"\ud800": 1}}', "invalid_field"),
        ("/api/v1/rooms", b'{"name": "r1", "metadata": {"x": NaN}}', "invalid_field"),
        ("/api/v1/rooms", b'{"name": "r1", "metadata": {"x": -Infinity}}', "invalid_field"),
        ("/api/v1/rooms", b'{"name": "r1", "metadata": {"x": 1e400}}', "invalid_field"),
        ("/api/v1/rooms", b'{"name": "r1", "metadata": {"x": 9007199254740993}}', "invalid_field"),
        ("/api/v1/rooms", b'{"name": "r1", "metadata": ' + b'{"a": ' * 20 + b"1" + b"}" * 21, "invalid_json"),
    ],
)
async def test_bodies_with_values_no_receiver_can_handle_are_refused(
    client: TestClient, path: str, raw: bytes, code: str
) -> None:
    resp = await client.post(path, data=raw, headers={**H(), "Content-Type": "application/json"})
    assert (resp.status, (await _json(resp))["error"]) == (400, code)
    assert (await _json(await client.get("/api/v1/rooms", headers=H())))["rooms"] == []


async def test_bidi_and_c1_names_are_refused_for_tokens(client: TestClient) -> None:
    for name in ("\u202eevE", "Eve\u2066", "C1\x9bcsi"):
        resp = await client.post(
            "/api/v1/tokens", json={"room": "r1", "identity": "eve", "name": name}, headers=H()
        )
        assert (resp.status, (await _json(resp))["error"]) == (400, "invalid_field")


async def test_unknown_api_path_and_method_answer_json(client: TestClient) -> None:
    resp = await client.get("/api/v1/nothing", headers=H())
    assert (resp.status, (await _json(resp))["error"]) == (404, "not_found")
    resp = await client.put("/api/v1/rooms", headers=H())
    assert (resp.status, (await _json(resp))["error"]) == (405, "method_not_allowed")


@pytest.mark.parametrize(
    ("header", "status", "message_part"),
    [
        (None, 401, "required"),
        ("Basic abc", 401, "required"),
        ("Bearer not.a.jwt", 401, "malformed"),
        ("Bearer " + mint_admin_token(API_KEY, "t" * 43, now=time.time()), 401, "bad_signature"),
        ("Bearer " + mint_admin_token(API_KEY, API_SECRET, now=time.time() - 3600), 401, "expired"),
        ("Bearer " + mint_admin_token("AKotherkey000001", API_SECRET, now=time.time()), 401, "unknown_key"),
    ],
)
async def test_missing_or_invalid_bearer_is_unauthorized(
    client: TestClient, header: str | None, status: int, message_part: str
) -> None:
    headers = {"Authorization": header} if header else {}
    resp = await client.get("/api/v1/rooms", headers=headers)
    err = await _json(resp)
    assert resp.status == status
    assert err["error"] == "unauthorized" and message_part in err["message"]


async def test_join_token_is_not_an_admin_token(client: TestClient) -> None:
    resp = await client.get("/api/v1/rooms", headers={"Authorization": "Bearer " + join_token("r", "ana")})
    assert resp.status in (401, 403)
    assert (await _json(resp))["error"] in ("unauthorized", "forbidden")


async def test_admin_token_without_admin_grant_is_forbidden(client: TestClient) -> None:
    now = int(time.time())
    payload = {
        "iss": API_KEY,
        "sub": "x",
        "aud": "confserver-admin",
        "admin": False,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "j1",
    }
    token = jwt.encode(payload, API_SECRET, algorithm="HS256", headers={"kid": API_KEY})
    resp = await client.get("/api/v1/rooms", headers={"Authorization": f"Bearer {token}"})
    assert (resp.status, (await _json(resp))["error"]) == (403, "forbidden")


async def test_token_create_returns_a_join_link_with_token_in_fragment(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/tokens",
        json={"room": "r1", "identity": "ana", "name": "Ana", "role": "moderator", "ttl": 600},
        headers=H(),
    )
    body = await _json(resp)
    assert resp.status == 201
    assert body["join_url"].endswith(f"/r/r1#token={body['token']}")
    assert "?" not in body["join_url"]
    claims = jwt.decode(body["token"], API_SECRET, algorithms=["HS256"], audience="confserver")
    assert claims["sub"] == "ana" and claims["room"] == "r1" and claims["role"] == "moderator"
    assert claims["exp"] - claims["iat"] == 600 and claims["jti"] == body["jti"]
    assert "moderate" in claims["perms"]


@pytest.mark.parametrize(
    "body",
    [
        {"room": "bad room", "identity": "a"},
        {"room": "r", "identity": ""},
        {"room": "r"},
        {"room": "r", "identity": "a", "role": "king"},
        {"room": "r", "identity": "a", "ttl": 0},
        {"room": "r", "identity": "a", "ttl": 10**9},
        {"room": "r", "identity": "a", "permissions": ["fly"]},
        {"room": "r", "identity": "a", "permissions": "chat"},
        {"room": "r", "identity": "a", "name": "\x00"},
    ],
)
async def test_token_create_refuses_bad_input(client: TestClient, body: dict[str, Any]) -> None:
    resp = await client.post("/api/v1/tokens", json=body, headers=H())
    assert resp.status == 400
    assert (await _json(resp))["error"] in ("invalid_field", "invalid_room_name")


async def test_participants_list_kick_and_mute(client: TestClient) -> None:
    await create_room(client, "r1")
    ana, _ = await join(client, "r1", "ana")
    bob, _ = await join(client, "r1", "bob")
    people = (await _json(await client.get("/api/v1/rooms/r1/participants", headers=H())))["participants"]
    assert [p["identity"] for p in people] == ["ana", "bob"]

    resp = await client.post("/api/v1/rooms/r1/participants/bob/mute", json={"kind": "audio"}, headers=H())
    assert resp.status == 200
    assert (await _json(resp))["state"]["audio_muted"] is True
    assert (await bob.expect("muted"))["kind"] == "audio"
    update = await ana.expect("participant_updated")
    assert (
        update["participant"]["identity"] == "bob" and update["participant"]["state"]["audio_muted"] is True
    )

    resp = await client.delete("/api/v1/rooms/r1/participants/bob", headers=H())
    assert resp.status == 204
    assert (await bob.expect("kicked"))["reason"] == "removed"
    assert await bob.closed() == 4001
    left = await ana.expect("participant_left")
    assert left["identity"] == "bob"
    room = await _json(await client.get("/api/v1/rooms/r1", headers=H()))
    assert room["num_participants"] == 1

    resp = await client.get("/api/v1/rooms/r1/participants/bob", headers=H())
    assert (resp.status, (await _json(resp))["error"]) == (404, "participant_not_found")
    await ana.close()


async def test_deleting_a_room_closes_it_for_everyone_inside(client: TestClient) -> None:
    await create_room(client, "r1")
    ana, _ = await join(client, "r1", "ana")
    await client.delete("/api/v1/rooms/r1", headers=H())
    assert (await ana.expect("room_closed"))["reason"] == "deleted"
    assert await ana.closed() == 4002


async def test_revoked_token_cannot_join_and_its_session_is_closed(client: TestClient) -> None:
    await create_room(client, "r1")
    body = await _json(
        await client.post("/api/v1/tokens", json={"room": "r1", "identity": "eve"}, headers=H())
    )
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": body["token"], "room": "r1"})
    assert (await ws.receive_json())["type"] == "joined"

    resp = await client.post(f"/api/v1/tokens/{body['jti']}/revoke", headers=H())
    revoked = await _json(resp)
    assert resp.status == 200 and revoked["sessions_closed"] == 1
    assert (await ws.receive_json())["reason"] == "token_revoked"

    again = await client.ws_connect("/ws")
    await again.send_json({"type": "join", "token": body["token"], "room": "r1"})
    err = await again.receive_json()
    assert err["code"] == "token_rejected" and err["reason"] == "revoked"


async def test_openapi_document_describes_exactly_the_routes_served(client: TestClient) -> None:
    doc = await _json(await client.get("/api/v1/openapi.json"))
    assert doc == openapi_document(token_max_ttl=base_config().auth.token_max_ttl)
    documented = {
        (method.upper(), "/api/v1" + path)
        for path, ops in doc["paths"].items()
        for method in ops
        if method != "parameters"
    }
    served = {
        (r.method, r.resource.canonical)
        for r in app_of(client).router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/v1/")
        and r.method not in ("HEAD", "*")
        and not r.resource.canonical.endswith("openapi.json")
    }
    assert documented == served


def test_openapi_document_is_valid_openapi() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(openapi_document())


async def test_health_and_readiness(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await _json(ready))["store"] == "ok"


async def test_pages_carry_security_headers_and_room_page_validates_name(client: TestClient) -> None:
    resp = await client.get("/r/board-meeting")
    assert resp.status == 200
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert (await client.get("/r/bad%20name")).status == 404
    assert (await client.get("/static/protocol.js")).status == 200
    assert (await client.get("/static/../confserver/app.py")).status in (403, 404)
