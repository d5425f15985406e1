"""Webhooks: signed event POSTs to a real HTTP receiver on loopback. Events arrive for joins,
leaves, kicks and deletions, signed as docs/WEBHOOKS.md says; a failing receiver gets retries, one
that stays down gets a dead letter; a receiver that is down or stalled never slows a join; the
queue stays within its bound under a join storm, the oldest events dropped and counted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import statistics
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from http.server import HTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from confserver.config import ConfigError, WebhookConfig, load_config
from confserver.metrics import Metrics
from confserver.rooms import JoinRequest, RoomService
from confserver.store import MemoryStore
from confserver.webhooks import EVENT_TYPES, Event, EventParticipant, Webhooks, sign, verify

from .conftest import AppMaker, admin_headers, base_config, connect, create_room, free_port, join, join_token

SECRET = "Hk2vQ9wZr4Lx7Tn1Bc8Md3Fs6Gp0Yj5Ue"


def verify_as_documented(secret: str, header: str, body: bytes, now: float) -> bool:
    """The receiver recipe of docs/WEBHOOKS.md, written out independently of the server's code."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    t = int(parts["t"])
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(now - t) <= 300 and hmac.compare_digest(mac, parts["v1"])


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records what it gets and answers as told."""

    fail_first: int = 0
    stall: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    started: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.started += 1
        if self.stall:
            await self.release.wait()
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        self.arrived.set()
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500)
        return web.Response(status=204)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _h, body in self.requests]

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.requests)} of {count} requests: {self.events()}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                pass


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    rec.url = str(server.make_url("/hook"))
    try:
        yield rec
    finally:
        rec.release.set()
        await server.close()


def hook(url: str, **kw: Any) -> WebhookConfig:
    return WebhookConfig(url=url, secret=SECRET, **kw)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# --- the signature ----------------------------------------------------------------------------


def test_a_signature_verifies_with_the_documented_recipe_and_not_once_tampered_or_stale() -> None:
    body = Event(id="evt_1", type="room_started", time=1000.0, node="n1", room="r1").to_wire()
    header = sign(SECRET, 1000, body)
    assert header.startswith("t=1000,v1=")
    assert verify_as_documented(SECRET, header, body, now=1100)
    assert verify(SECRET, header, body, now=1100)
    assert not verify(SECRET, header, body.replace(b"r1", b"r2"), now=1100)
    assert not verify("another-secret-of-at-least-32-chars!", header, body, now=1100)
    assert not verify(SECRET, header, body, now=1000 + 301), "a replay after 5 minutes is refused"
    assert not verify(SECRET, "t=x,v1=00", body, now=1000)


# --- events to a real receiver ------------------------------------------------------------------


async def test_joins_leaves_kicks_and_deletions_arrive_signed(
    make_client: AppMaker, receiver: Receiver
) -> None:
    client = await make_client(base_config(webhooks=(hook(receiver.url),)))
    alice, _ = await join(client, "r1", "alice", name="Alice A.")
    bob, _ = await join(client, "r1", "bob")
    resp = await client.delete("/api/v1/rooms/r1/participants/bob", headers=admin_headers())
    assert resp.status == 204
    await receiver.wait_for(5)  # started, joined x2, removed, left
    await alice.close()
    await receiver.wait_for(6)
    carol, _ = await join(client, "r1", "carol")
    resp = await client.delete("/api/v1/rooms/r1", headers=admin_headers())
    assert resp.status == 204
    await receiver.wait_for(9)

    events = receiver.events()
    summary = [(e["type"], e.get("participant", {}).get("identity"), e.get("reason")) for e in events]
    assert summary == [
        ("room_started", None, None),
        ("participant_joined", "alice", None),
        ("participant_joined", "bob", None),
        ("participant_removed", "bob", None),
        ("participant_left", "bob", "removed"),
        ("participant_left", "alice", "disconnected"),
        ("participant_joined", "carol", None),
        ("participant_left", "carol", "room_closed"),
        ("room_finished", None, "deleted"),
    ]
    assert events[1]["participant"]["name"] == "Alice A." and events[1]["participant"]["sid"]
    assert events[3]["by"]
    assert len({e["id"] for e in events}) == len(events)
    assert all(e["room"] == {"name": "r1"} and isinstance(e["time"], float) for e in events)
    now = time.time()
    for headers, body in receiver.requests:
        assert headers["Content-Type"] == "application/json"
        assert verify_as_documented(SECRET, headers["Webhook-Signature"], body, now)
        assert headers["Webhook-Id"] == json.loads(body)["id"]
        assert b"token" not in body and SECRET.encode() not in body
    await bob.close()
    await carol.close()


async def test_admissions_and_denials_from_the_lobby_arrive(
    make_client: AppMaker, receiver: Receiver
) -> None:
    client = await make_client(
        base_config(webhooks=(hook(receiver.url, events=("participant_admitted", "participant_denied")),))
    )
    await create_room(client, "lob", lobby=True)
    chair, _ = await join(client, "lob", "chair", role="moderator")
    waiting = []
    for identity in ("ana", "eve"):
        ws = await connect(client)
        await ws.send({"type": "join", "token": join_token("lob", identity), "room": "lob"})
        await ws.expect("lobby")
        waiting.append(ws)
    await chair.send({"type": "admit", "identity": "ana"})
    await waiting[0].expect("joined")
    assert (await client.post("/api/v1/rooms/lob/lobby/eve/deny", headers=admin_headers())).status == 204
    await receiver.wait_for(2)
    summary = [(e["type"], e["participant"]["identity"], e.get("by")) for e in receiver.events()]
    assert summary == [("participant_admitted", "ana", "chair"), ("participant_denied", "eve", "admin")]
    await chair.close()


async def test_an_endpoint_gets_only_the_events_it_asked_for(
    make_client: AppMaker, receiver: Receiver
) -> None:
    client = await make_client(base_config(webhooks=(hook(receiver.url, events=("participant_left",)),)))
    ws, _ = await join(client, "r1", "alice")
    await ws.close()
    await receiver.wait_for(1)
    await asyncio.sleep(0.1)
    assert [e["type"] for e in receiver.events()] == ["participant_left"]


async def test_a_receiver_answering_500_gets_retries_until_it_accepts(
    make_client: AppMaker, receiver: Receiver
) -> None:
    receiver.fail_first = 1
    metrics = Metrics.create(process=False)
    client = await make_client(
        base_config(webhooks=(hook(receiver.url, events=("room_started",)),)), metrics=metrics
    )
    ws, _ = await join(client, "r1", "alice")
    await receiver.wait_for(2)  # the first after 500, then again 1 s later
    first, second = receiver.events()
    assert first == second, "the same event, with the same id, is sent again"
    for headers, body in receiver.requests:
        assert verify_as_documented(SECRET, headers["Webhook-Signature"], body, time.time())
    await asyncio.sleep(0.05)
    assert sample(metrics, "conf_webhook_deliveries_total", result="retried") == 1
    assert sample(metrics, "conf_webhook_deliveries_total", result="delivered") == 1
    await ws.close()


async def test_an_event_still_failing_after_retry_for_is_a_dead_letter(receiver: Receiver) -> None:
    """Time is an input: the backoff sleeps advance a fake clock, the test does not wait."""
    receiver.fail_first = 1000
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    metrics = Metrics.create(process=False)
    hooks = Webhooks(
        [hook(receiver.url, retry_for=10)], metrics, node="n1", monotonic=lambda: now[0], sleep=sleep
    )
    await hooks.start()
    try:
        hooks.emit("room_started", "r1")
        await receiver.wait_for(4)  # at 0, 1, 3 and 7 s; the next (15 s) is past retry_for
        await asyncio.sleep(0.1)
        assert len(receiver.requests) == 4
        assert sample(metrics, "conf_webhook_deliveries_total", result="retried") == 3
        assert sample(metrics, "conf_webhook_deliveries_total", result="dead_letter") == 1
        assert sample(metrics, "conf_webhook_queue") == 0
    finally:
        await hooks.close()


# --- the meeting is never slowed ------------------------------------------------------------------


async def join_times(make_client: AppMaker, webhooks: tuple[WebhookConfig, ...], n: int) -> list[float]:
    client = await make_client(base_config(webhooks=webhooks))
    times, sockets = [], []
    for i in range(n):
        started = time.perf_counter()
        ws, _ = await join(client, f"room-{i % 3}", f"user-{i}")
        times.append(time.perf_counter() - started)
        sockets.append(ws)
    for ws in sockets:
        await ws.close()
    return times


@pytest.mark.parametrize("receiver_state", ["down", "stalled"])
async def test_a_receiver_that_is_down_or_stalled_does_not_slow_joins(
    make_client: AppMaker, receiver: Receiver, receiver_state: str
) -> None:
    receiver.stall = True
    url = f"http://127.0.0.1:{free_port()}/hook" if receiver_state == "down" else receiver.url
    baseline = await join_times(make_client, (), 20)
    with_hooks = await join_times(make_client, (hook(url, timeout=30),), 20)
    assert max(with_hooks) < 1.0
    assert statistics.median(with_hooks) < 2 * statistics.median(baseline) + 0.02, (baseline, with_hooks)


async def test_the_queue_bound_holds_under_a_join_storm(make_client: AppMaker, receiver: Receiver) -> None:
    receiver.stall = True
    metrics = Metrics.create(process=False)
    client = await make_client(
        base_config(webhooks=(hook(receiver.url, queue_size=5, timeout=30),)), metrics=metrics
    )
    sockets, deepest = [], 0.0
    for i in range(30):
        ws, _ = await join(client, "storm", f"user-{i}")
        sockets.append(ws)
        deepest = max(deepest, sample(metrics, "conf_webhook_queue"))
    emitted = 31  # room_started and 30 joins
    in_flight = receiver.started
    assert in_flight == 1
    assert deepest == 5 and sample(metrics, "conf_webhook_queue") == 5
    dropped = sample(metrics, "conf_webhook_deliveries_total", result="dropped")
    assert dropped == emitted - 5 - in_flight
    receiver.release.set()
    await receiver.wait_for(6)
    kept = [e.get("participant", {}).get("identity") for e in receiver.events()]
    assert kept == [None, "user-25", "user-26", "user-27", "user-28", "user-29"], "the newest are kept"
    for ws in sockets:
        await ws.close()


# --- configuration -------------------------------------------------------------------------------


def write(tmp_path: Path, toml: str) -> Path:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    return f


def test_webhooks_are_read_from_toml(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            f'[[webhooks]]\nurl = "https://hooks.example.gov/conf"\nsecret = "{SECRET}"\n'
            'events = ["room_started", "room_finished"]\nretry_for = 3600\n',
        ),
        env={},
    )
    assert cfg.webhooks == (
        WebhookConfig(
            url="https://hooks.example.gov/conf",
            secret=SECRET,
            events=("room_started", "room_finished"),
            retry_for=3600.0,
        ),
    )
    assert SECRET not in repr(cfg), "--check-config prints the config: the secret stays out of it"


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"url": "ftp://hooks.example.gov/x"}, "webhooks[0].url"),
        ({"url": "hooks.example.gov"}, "webhooks[0].url"),
        ({"secret": "too-short"}, "webhooks[0].secret"),
        ({"events": ["room_started", "track_published"]}, "webhooks[0].events"),
        ({"queue_size": 0}, "webhooks[0].queue_size"),
        ({"timeout": 0}, "webhooks[0].timeout"),
    ],
)
def test_a_bad_webhook_entry_is_refused_naming_its_key(
    tmp_path: Path, entry: dict[str, Any], key: str
) -> None:
    fields = {"url": "https://hooks.example.gov/conf", "secret": SECRET, **entry}
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, "[[webhooks]]\n" + lines), env={})


PRODUCTION = """
mode = "production"
[tls]
mode = "files"
cert_file = "/etc/confserver/tls/fullchain.pem"
key_file = "/etc/confserver/tls/key.pem"
[auth]
api_key = "APIministry01"
api_secret = "Vq3xN8pL2mZ7rT1yK9wB4cH6dF0gJ5sA"
"""


def test_production_needs_https_unless_the_receiver_is_on_this_machine(tmp_path: Path) -> None:
    def entry(url: str, secret: str = SECRET) -> str:
        return PRODUCTION + f'[[webhooks]]\nurl = "{url}"\nsecret = "{secret}"\n'

    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.url: production needs https://"):
        load_config(write(tmp_path, entry("http://hooks.example.gov/conf")), env={})
    assert load_config(write(tmp_path, entry("http://127.0.0.1:9000/conf")), env={}).webhooks
    assert load_config(write(tmp_path, entry("https://hooks.example.gov/conf")), env={}).webhooks
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.secret: repeats"):
        load_config(write(tmp_path, entry("https://hooks.example.gov/conf", "abcdefgh" * 5)), env={})


def test_webhooks_cannot_come_from_the_environment() -> None:
    with pytest.raises(ConfigError, match="webhooks"):
        load_config(env={"CONF_WEBHOOKS": "https://hooks.example.gov"})


def test_only_events_the_server_emits_can_be_asked_for() -> None:
    assert set(EVENT_TYPES) == {
        "room_started",
        "room_finished",
        "participant_joined",
        "participant_left",
        "participant_removed",
        "participant_admitted",
        "participant_denied",
    }
    participant = EventParticipant(sid="PA_1", identity="alice", name="Alice")
    wire = json.loads(Event("evt_1", "participant_left", 5.0, "n1", "r1", participant, reason="x").to_wire())
    assert wire == {
        "id": "evt_1",
        "type": "participant_left",
        "time": 5.0,
        "node": "n1",
        "room": {"name": "r1"},
        "participant": {"sid": "PA_1", "identity": "alice", "name": "Alice"},
        "reason": "x",
    }


# --- the documented receiver ---------------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "WEBHOOKS.md"


def documented_receiver() -> str:
    """The Python receiver of docs/WEBHOOKS.md, without its last line (which serves on port 9000)."""
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert code is not None
    lines = code.group(1).rstrip().splitlines()
    assert lines[-1].startswith("HTTPServer(") and len(lines) <= 16
    return "\n".join(lines[:-1])


@pytest.mark.parametrize(
    ("secret", "accepted"), [(SECRET, True), ("Zz9" + SECRET[3:], False)], ids=["same_secret", "other_secret"]
)
async def test_the_documented_receiver_accepts_our_signature_and_refuses_another(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], secret: str, accepted: bool
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    namespace: dict[str, Any] = {}
    exec(documented_receiver(), namespace)
    server = HTTPServer(("127.0.0.1", 0), namespace["Receiver"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    metrics = Metrics.create(process=False)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    hooks = Webhooks([WebhookConfig(url=url, secret=secret, retry_for=0)], metrics, node="n1")
    await hooks.start()
    try:
        hooks.emit("participant_joined", "r1", EventParticipant("PA_1", "alice", "Alice"))
        deadline = time.monotonic() + 5
        while (
            sum(
                sample(metrics, "conf_webhook_deliveries_total", result=r)
                for r in ("delivered", "dead_letter")
            )
            == 0
        ):
            assert time.monotonic() < deadline, "no answer from the documented receiver"
            await asyncio.sleep(0.02)
    finally:
        await hooks.close()
        server.shutdown()
        server.server_close()
    assert sample(metrics, "conf_webhook_deliveries_total", result="delivered") == (1 if accepted else 0)
    assert ("participant_joined" in capsys.readouterr().out) == accepted


async def test_a_room_closed_after_its_empty_timeout_sends_room_finished(receiver: Receiver) -> None:
    now = [1000.0]
    metrics = Metrics.create(process=False)
    hooks = Webhooks([hook(receiver.url)], metrics, node="n1")
    rooms = RoomService(
        MemoryStore(),
        metrics,
        node="n1",
        auto_create=False,
        default_max_participants=10,
        auto_created_empty_timeout=300,
        seat_lease=30.0,
        clock=lambda: now[0],
        webhooks=hooks,
    )
    await hooks.start()
    try:
        await rooms.admin.create_room("r1", max_participants=None, empty_timeout=60, metadata={})
        req = JoinRequest("r1", "PA_1", "ana", "Ana", "participant", frozenset(), {})
        await rooms.join(req, Peer())
        await rooms.leave("r1", "PA_1", "left")
        now[0] += 61
        assert await rooms.close_expired_rooms() == ["r1"]
        await receiver.wait_for(4)
    finally:
        await hooks.close()
    summary = [(e["type"], e.get("reason")) for e in receiver.events()]
    assert summary == [
        ("room_started", None),
        ("participant_joined", None),
        ("participant_left", "left"),
        ("room_finished", "empty_timeout"),
    ]


class Peer:
    sid = "PA_1"

    def send_text(self, text: str) -> None:
        pass

    def close_with(self, msg: Mapping[str, Any], close_code: int) -> None:
        pass
