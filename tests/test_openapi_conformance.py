"""The served OpenAPI document and the server agree: what the schema allows is accepted, what it
refuses is refused, and answers match the documented schemas."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import jwt
import pytest
from aiohttp.test_utils import TestClient

from .conftest import API_SECRET, admin_headers, create_room

H = admin_headers


async def _json(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    return body


async def _document(client: TestClient) -> dict[str, Any]:
    return await _json(await client.get("/api/v1/openapi.json"))


def _check(doc: dict[str, Any], schema_name: str, instance: Any) -> None:
    schema = {"components": doc["components"], "$ref": f"#/components/schemas/{schema_name}"}
    jsonschema.Draft202012Validator(schema).validate(instance)


# --- null is not a value ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["locked", "max_participants", "empty_timeout", "metadata"])
async def test_patch_with_a_null_field_is_refused_and_changes_nothing(client: TestClient, field: str) -> None:
    before = await create_room(client, "r1", max_participants=7)
    resp = await client.patch("/api/v1/rooms/r1", json={field: None}, headers=H())
    assert (resp.status, (await _json(resp))["error"]) == (400, "invalid_field")
    after = await _json(await client.get("/api/v1/rooms/r1", headers=H()))
    assert after["locked"] is before["locked"] is False and after["max_participants"] == 7


@pytest.mark.parametrize("field", ["name", "permissions", "role", "ttl"])
async def test_token_create_with_a_null_field_is_refused(client: TestClient, field: str) -> None:
    resp = await client.post(
        "/api/v1/tokens", json={"room": "r1", "identity": "ana", field: None}, headers=H()
    )
    assert (resp.status, (await _json(resp))["error"]) == (400, "invalid_field")


@pytest.mark.parametrize("role", [{}, [], ["viewer"], 1])
async def test_a_role_of_the_wrong_type_is_invalid_field_not_a_server_error(
    client: TestClient, role: Any
) -> None:
    resp = await client.post(
        "/api/v1/tokens", json={"room": "r1", "identity": "ana", "role": role}, headers=H()
    )
    assert (resp.status, (await _json(resp))["error"]) == (400, "invalid_field")


# --- integers ----------------------------------------------------------------------------------------


async def test_integral_floats_are_integers_as_json_schema_says(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/rooms",
        data=b'{"name": "r1", "max_participants": 20.0, "empty_timeout": 6e1}',
        headers={**H(), "Content-Type": "application/json"},
    )
    assert resp.status == 201
    raw = await resp.text()
    room = json.loads(raw)
    assert room["max_participants"] == 20 and '"max_participants": 20,' in raw
    assert room["empty_timeout"] == 60 and '"empty_timeout": 60,' in raw

    resp = await client.patch("/api/v1/rooms/r1", json={"max_participants": 5.0}, headers=H())
    assert resp.status == 200 and (await _json(resp))["max_participants"] == 5

    resp = await client.post(
        "/api/v1/tokens", json={"room": "r1", "identity": "ana", "ttl": 600.0}, headers=H()
    )
    claims = jwt.decode((await _json(resp))["token"], API_SECRET, algorithms=["HS256"], audience="confserver")
    assert resp.status == 201 and claims["exp"] - claims["iat"] == 600


@pytest.mark.parametrize(
    "body", [{"max_participants": 20.5}, {"empty_timeout": 0.1}, {"max_participants": "20"}]
)
async def test_fractional_numbers_are_not_integers(client: TestClient, body: dict[str, Any]) -> None:
    await create_room(client, "r1")
    resp = await client.patch("/api/v1/rooms/r1", json=body, headers=H())
    assert (resp.status, (await _json(resp))["error"]) == (400, "invalid_field")


def _integer_bounds(doc: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    bounds = []
    for schema_name in ("RoomCreate", "RoomUpdate", "TokenCreate"):
        for field, prop in doc["components"]["schemas"][schema_name]["properties"].items():
            if prop.get("type") == "integer":
                assert "minimum" in prop and "maximum" in prop, f"{schema_name}.{field} has no bounds"
                bounds.append((schema_name, field, prop["minimum"], prop["maximum"]))
    return bounds


async def _try(client: TestClient, schema_name: str, field: str, value: int, n: int) -> int:
    if schema_name == "RoomCreate":
        resp = await client.post("/api/v1/rooms", json={"name": f"c{n}", field: value}, headers=H())
    elif schema_name == "RoomUpdate":
        resp = await client.patch("/api/v1/rooms/base", json={field: value}, headers=H())
    else:
        resp = await client.post(
            "/api/v1/tokens", json={"room": "r", "identity": "a", field: value}, headers=H()
        )
    return resp.status


async def test_every_documented_integer_bound_is_the_servers_bound(client: TestClient) -> None:
    doc = await _document(client)
    await create_room(client, "base")
    bounds = _integer_bounds(doc)
    assert ("RoomUpdate", "empty_timeout", 0, 7 * 86400) in bounds
    n = 0
    for schema_name, field, low, high in bounds:
        for value, accepted in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
            n += 1
            status = await _try(client, schema_name, field, value, n)
            assert (status < 300) is accepted, (schema_name, field, value, status)


# --- answers match their schemas ----------------------------------------------------------------------


async def test_answers_match_the_documented_schemas(client: TestClient) -> None:
    doc = await _document(client)
    room = await create_room(client, "r1", metadata={"topic": "budget"})
    _check(doc, "Room", room)
    _check(doc, "Room", await _json(await client.get("/api/v1/rooms/r1", headers=H())))
    token = await _json(
        await client.post("/api/v1/tokens", json={"room": "r1", "identity": "ana"}, headers=H())
    )
    _check(doc, "Token", token)
    _check(
        doc, "Revoked", await _json(await client.post(f"/api/v1/tokens/{token['jti']}/revoke", headers=H()))
    )
    resp = await client.get("/api/v1/rooms/nope", headers=H())
    _check(doc, "Error", await _json(resp))


async def test_api_key_answers_match_the_documented_schemas(client: TestClient) -> None:
    doc = await _document(client)
    body = {"name": "deploy bot", "scopes": ["rooms:read", "tokens:create"]}
    made = await _json(await client.post("/api/v1/keys", json=body, headers=H()))
    _check(doc, "AdminKeyCreated", made)
    listed = await _json(await client.get("/api/v1/keys", headers=H()))
    for key in listed["keys"]:
        _check(doc, "AdminKey", key)
    revoked = await _json(await client.delete(f"/api/v1/keys/{made['id']}", headers=H()))
    _check(doc, "AdminKey", revoked)
    assert "revoked_at" in revoked


@pytest.mark.parametrize(
    ("name", "accepted"), [("a", True), ("x" * 64, True), ("x" * 65, False), ("", False), (" ", False)]
)
async def test_the_documented_key_name_bounds_are_the_servers(
    client: TestClient, name: str, accepted: bool
) -> None:
    doc = await _document(client)
    schema = doc["components"]["schemas"]["AdminKeyCreate"]["properties"]["name"]
    valid = jsonschema.Draft202012Validator(schema).is_valid(name)
    resp = await client.post("/api/v1/keys", json={"name": name, "scopes": ["rooms:read"]}, headers=H())
    assert valid is accepted and (resp.status == 201) is accepted


# --- 405 ------------------------------------------------------------------------------------------------


async def test_a_method_not_served_answers_405_with_the_allow_header(client: TestClient) -> None:
    doc = await _document(client)
    await create_room(client, "r1")
    for path, operations in doc["paths"].items():
        documented = {m.upper() for m in operations if m != "parameters"}
        expected = documented | ({"HEAD"} if "GET" in documented else set())
        url = "/api/v1" + path.replace("{name}", "r1").replace("{identity}", "ana").replace("{jti}", "j1")
        url = url.replace("{key_id}", "AKsomekey").replace("{node_id}", "node-a")
        for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
            if method in documented:
                continue
            resp = await client.request(method, url, headers=H())
            assert resp.status == 405, (method, path)
            assert (await _json(resp))["error"] == "method_not_allowed"
            assert set(resp.headers["Allow"].split(", ")) == expected, (method, path)


async def test_405_answers_need_no_less_authentication_than_other_answers(client: TestClient) -> None:
    resp = await client.put("/api/v1/rooms", headers={})
    assert resp.status == 401
