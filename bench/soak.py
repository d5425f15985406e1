"""Soak: a meeting that must not notice a hostile client, for a long time.

    .venv/bin/python -m bench.soak [--minutes 30] [--participants 20] [--json]

Starts a real confserver (signaling and the SFU, bench/server.py) and puts into one room:

- a meeting of ``--participants`` synthetic participants (``confctl load-test``'s, in a worker
  process): everyone with a microphone (three speaking), a quarter with simulcast cameras, everyone
  watching nine tiles and the active speaker;
- ``--chatters`` signaling observers, each sending a numbered chat every ``--chat-interval``
  seconds; every other observer must receive every one;
- one hostile client cycling through the inputs that once broke a server: lone UTF-16 surrogates
  in chat, names and room metadata, huge and non-finite numbers, deep nesting, binary frames,
  short ICE candidates, offers without a direction, a second offer bundling one MID twice with new
  ICE credentials, a viewer's 60 KB offer, a viewer joining unmuted, forged and expired tokens,
  storms of refused joins, WebSockets that never join, half-open TCP connections and slowloris
  headers. It joins with its own tokens.

Every ``--report-every`` seconds and at the end it reports: chat messages missed (must be 0), the
server's resident memory at the start of the steady state and now (growth must stay under 5 %),
seats held against participants connected, and after everyone left the room's seats (must be 0),
the hostile client's answers by error code (``internal`` and unanswered frames are failures), and
whether any meeting participant or observer was disconnected. Exit status 0 when every check
passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import random
import re
import secrets
import ssl
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import server as srv
from confctl.client import DEFAULT_CREDENTIALS_FILE, AdminClient, ApiError, resolve_settings
from confctl.loadtest import clips as clip_factory
from confctl.loadtest import plan
from confctl.loadtest.runner import mint_tokens
from confctl.loadtest.signaling import tls_context, ws_url
from confctl.loadtest.swarm import Member, Snapshot, SwarmPlan
from confctl.loadtest.workers import ProcessSwarm, SwarmHandle
from confserver.tokens import SigningKey, mint_join_token

ROOM = "soak"
RSS_GROWTH_LIMIT = 5.0  # percent
ANSWER_TIMEOUT = 10.0  # a frame the server does not answer within this is "unanswered"
CHAT_GRACE = 5.0  # seconds a chat may take to arrive before it counts as missed
HOSTILE_PAUSE = 0.4  # between two hostile frames: well under the rate limit (20/s)
CHAT_PREFIX = "soak"
JOIN_SPACING = 0.25  # seconds between two joins of the meeting


def documented_error_codes() -> frozenset[str]:
    """The codes of the table "Error codes" in docs/PROTOCOL.md."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    codes: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            codes.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return frozenset(codes)


DOCUMENTED_CODES = documented_error_codes()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --- chat observers --------------------------------------------------------------------------------


class Chatter:
    """A signaling-only participant that chats numbered messages and records the others'."""

    def __init__(self, identity: str, token: str, url: str, tls: ssl.SSLContext | None) -> None:
        self.identity = identity
        self._token = token
        self._url = url
        self._tls = tls
        self.sent: list[float] = []  # send time of message n (its sequence number is n)
        self.received: dict[str, set[int]] = {}
        self.disconnects: list[str] = []
        self.sending = True
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def run(self, session: aiohttp.ClientSession, interval: float, joined: asyncio.Event) -> None:
        """Stay joined (rejoining after a drop, which is recorded) and chat until stopped."""
        while True:
            try:
                ws = await session.ws_connect(self._url, ssl=self._tls or False, autoping=True)
            except (aiohttp.ClientError, OSError) as exc:
                self.disconnects.append(f"connect: {exc}")
                await asyncio.sleep(1)
                continue
            self._ws = ws
            await ws.send_str(json.dumps({"type": "join", "token": self._token, "room": ROOM}))
            sender = asyncio.create_task(self._chat(ws, interval))
            try:
                async for frame in ws:
                    if frame.type == aiohttp.WSMsgType.TEXT:
                        self._on(json.loads(frame.data), joined)
            finally:
                sender.cancel()
            if not self.sending and ws.close_code == 1000:
                return
            self.disconnects.append(f"closed {ws.close_code}")
            await asyncio.sleep(1)

    def _on(self, msg: dict[str, Any], joined: asyncio.Event) -> None:
        if msg.get("type") == "joined":
            joined.set()
        elif msg.get("type") == "chat":
            parts = str(msg.get("text", "")).split(" ")
            sender = str((msg.get("from") or {}).get("identity", ""))
            if len(parts) == 3 and parts[0] == CHAT_PREFIX and parts[1] == sender and parts[2].isdigit():
                self.received.setdefault(sender, set()).add(int(parts[2]))

    async def _chat(self, ws: aiohttp.ClientWebSocketResponse, interval: float) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        while self.sending:
            text = f"{CHAT_PREFIX} {self.identity} {len(self.sent)}"
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await ws.send_str(json.dumps({"type": "chat", "text": text}))
                self.sent.append(time.monotonic())
            await asyncio.sleep(interval * random.uniform(0.75, 1.25))

    async def leave(self) -> None:
        self.sending = False
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await ws.send_str(json.dumps({"type": "leave"}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.close(), 5)


def chats_missed(chatters: list[Chatter], older_than: float) -> tuple[int, int]:
    """(messages expected, messages missed) over every pair of observers, counting only the
    messages sent before ``older_than`` (time.monotonic())."""
    expected = missed = 0
    for sender in chatters:
        due = [n for n, at in enumerate(sender.sent) if at < older_than]
        for receiver in chatters:
            if receiver is sender:
                continue
            got = receiver.received.get(sender.identity, set())
            expected += len(due)
            missed += sum(1 for n in due if n not in got)
    return expected, missed


# --- the hostile client ----------------------------------------------------------------------------


@dataclass
class Hostility:
    """What the hostile client saw."""

    attacks: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)  # close codes, by attack
    failures: Counter[str] = field(default_factory=Counter)  # what must never happen, by attack
    notes: Counter[str] = field(default_factory=Counter)  # facts about the server's defences

    def fail(self, attack: str, what: str) -> None:
        self.failures[f"{attack}: {what}"] += 1


def _jwt(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join(
        [part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature or b"x")]
    )


class Hostile:
    """One hostile client: joined as ``hostile`` (or a chat-only viewer) when a frame needs it,
    cycling through the attacks until stopped."""

    def __init__(
        self,
        url: str,
        tls: ssl.SSLContext | None,
        key: SigningKey,
        offer: str,
        out: Hostility,
        only: tuple[str, ...] = (),
    ) -> None:
        self._url = url
        self._only = only  # run only the attacks whose name contains one of these (all when empty)
        self._tls = tls
        self._key = key
        self._offer = offer
        self.out = out
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._marker = 0
        self._background: set[asyncio.Task[None]] = set()
        host = urllib.parse.urlsplit(url)
        self._host, self._port = host.hostname or "127.0.0.1", host.port or 443

    def token(self, identity: str = "hostile", *, role: str = "participant", **kw: Any) -> str:
        perms = kw.pop("permissions", None)
        if perms is None and role == "participant":
            perms = ["chat", "update_name", "publish_audio", "publish_video", "subscribe"]
        token, _ = mint_join_token(
            self._key, room=kw.pop("room", ROOM), identity=identity, role=role, permissions=perms,
            now=kw.pop("now", time.time()), **kw,
        )  # fmt: skip
        return token

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        assert self._session is not None
        return await self._session.ws_connect(self._url, ssl=self._tls or False, autoping=True)

    async def _answer(
        self, ws: aiohttp.ClientWebSocketResponse, frame: str | bytes
    ) -> tuple[list[Any], int | None]:
        """Send ``frame`` and a ping; everything until its pong (or the close code)."""
        self._marker += 1
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        await ws.send_str(json.dumps({"type": "ping", "t": self._marker}))
        got: list[Any] = []
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            msg = await ws.receive(timeout=left)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return got, ws.close_code
            doc = json.loads(msg.data)
            if doc.get("type") == "pong" and doc.get("t") == self._marker:
                return got, None
            got.append(doc)
        raise TimeoutError

    async def _joined(self, identity: str = "hostile", **kw: Any) -> aiohttp.ClientWebSocketResponse:
        if identity == "hostile" and self._ws is not None and not self._ws.closed:
            return self._ws
        ws = await self._connect()
        await ws.send_str(json.dumps({"type": "join", "token": self.token(identity, **kw), "room": ROOM}))
        msg = await ws.receive(timeout=ANSWER_TIMEOUT)
        if msg.type != aiohttp.WSMsgType.TEXT or json.loads(msg.data).get("type") != "joined":
            raise ConnectionError(f"the hostile client's own join was refused: {msg.data!r}")
        if identity == "hostile":
            self._ws = ws
        return ws

    async def frame(self, attack: str, frame: str | bytes, *, viewer: bool = False) -> list[Any]:
        """One hostile frame on a joined connection; records the codes and what must not happen."""
        ws = await (
            self._joined("hostile-viewer", role="viewer", permissions=["chat"]) if viewer else self._joined()
        )
        try:
            got, closed = await self._answer(ws, frame)
        except TimeoutError:
            self.out.fail(attack, "unanswered")
            await ws.close()
            return []
        finally:
            if viewer:
                await ws.close()
        for doc in got:
            if doc.get("type") == "error":
                code = str(doc.get("code"))
                self.out.codes[code] += 1
                if code == "internal" or code not in DOCUMENTED_CODES:
                    self.out.fail(attack, f"error code {code}")
        if closed is not None:
            self.out.closes[f"{attack} {closed}"] += 1
            self.out.fail(attack, f"connection closed ({closed})")
        return got

    # --- the attacks --------------------------------------------------------------------------------

    def frame_attacks(self) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        def raw(
            name: str, text: str | bytes, viewer: bool = False
        ) -> tuple[str, Callable[[], Awaitable[Any]]]:
            return name, lambda: self.frame(name, text, viewer=viewer)

        short_candidate = {
            "type": "ice_candidate",
            "target": "publish",
            "candidate": "candidate:1 1 udp 5",
            "sdpMid": "0",
        }
        no_direction = "\r\n".join(x for x in self._offer.splitlines() if x != "a=sendonly") + "\r\n"
        padded = (self._offer + "".join(f"a=x-pad:{i:05d}{'x' * 50}\r\n" for i in range(1000)))[: 60 * 1024]
        return [
            raw("chat lone surrogate", '{"type":"chat","text":"hi \\ud800"}'),
            raw("name lone surrogate", '{"type":"update","name":"Eve \\udfff"}'),
            raw("name bidi override", '{"type":"update","name":"Eve \\u202egnp.exe"}'),
            raw("ping 400 digits", '{"type":"ping","t":' + "9" * 400 + "}"),
            raw("ping NaN", '{"type":"ping","t":NaN}'),
            raw("ping Infinity", '{"type":"ping","t":-Infinity}'),
            raw("ping 1e400", '{"type":"ping","t":1e400}'),
            raw("huge int in state", '{"type":"update","state":{"hand_raised":' + "1" * 40 + "}}"),
            raw("deep nesting", '{"type":"chat","text":' + "[" * 5000 + "]" * 5000 + "}"),
            raw("nesting 17", '{"type":"chat","x":' + "[" * 17 + "]" * 17 + ',"text":"x"}'),
            raw("binary frame", secrets.token_bytes(64)),
            raw("short ice candidate", json.dumps(short_candidate)),
            raw(
                "offer without direction",
                json.dumps({"type": "publish_offer", "sdp": no_direction, "tracks": tracks_of(self._offer)}),
            ),
            ("second offer bundling one mid twice", self._bundle_twice),
            raw(
                "viewer 60 KB offer",
                json.dumps({"type": "publish_offer", "sdp": padded, "tracks": []}),
                viewer=True,
            ),
        ]

    async def _bundle_twice(self) -> None:
        name = "second offer bundling one mid twice"
        first = json.dumps({"type": "publish_offer", "sdp": self._offer, "tracks": tracks_of(self._offer)})
        await self.frame(name, first)
        lines = []
        for line in self._offer.splitlines():
            if line.startswith("a=group:BUNDLE"):
                line = "a=group:BUNDLE 0 0"
            elif line.startswith("a=ice-ufrag:"):
                line = "a=ice-ufrag:" + secrets.token_hex(4)
            elif line.startswith("a=ice-pwd:"):
                line = "a=ice-pwd:" + secrets.token_hex(12)
            lines.append(line)
        second = "\r\n".join(lines) + "\r\n"
        await self.frame(
            name, json.dumps({"type": "publish_offer", "sdp": second, "tracks": tracks_of(self._offer)})
        )

    async def viewer_unmuted(self) -> None:
        ws = await self._connect()
        try:
            token = self.token("hostile-viewer", role="viewer", permissions=["chat"])
            join = {
                "type": "join",
                "token": token,
                "room": ROOM,
                "state": {"audio_muted": False, "video_muted": False},
            }
            got, _closed = await self._answer(ws, json.dumps(join))
            for doc in got:
                if doc.get("type") == "joined" and not all(
                    doc["self"]["state"].get(k) for k in ("audio_muted", "video_muted")
                ):
                    self.out.fail("viewer joining unmuted", "shown unmuted")
                if doc.get("type") == "error":
                    self.out.codes[str(doc.get("code"))] += 1
        finally:
            await ws.close()

    def _bad_tokens(self) -> list[tuple[str, str]]:
        past = time.time() - 4 * 3600
        wrong_key = SigningKey.hs256(self._key.kid, "w" * 43)
        forged, _ = mint_join_token(wrong_key, room=ROOM, identity="hostile-forged", now=time.time())
        header = json.loads(base64.urlsafe_b64decode(forged.split(".")[0] + "=="))
        payload = json.loads(
            base64.urlsafe_b64decode(forged.split(".")[1] + "==="[: (4 - len(forged.split(".")[1]) % 4) % 4])
        )
        return [
            ("expired", self.token("hostile-old", now=past, ttl=600)),
            ("not yet valid", self.token("hostile-future", now=time.time() + 3600)),
            ("bad signature", forged),
            ("alg none", _jwt({**header, "alg": "none"}, payload)),
            ("unknown key", _jwt({**header, "kid": "nope"}, payload)),
            ("wrong room", self.token("hostile-elsewhere", room="elsewhere")),
            ("garbage", "not.a.token"),
            ("8 KB token", "e" * 8192),
        ]  # fmt: skip

    async def bad_token(self, name: str, token: str) -> str:
        """A join with ``token``; returns the outcome (``refused`` is the right one)."""
        try:
            ws = await self._connect()
        except aiohttp.WSServerHandshakeError as exc:
            return f"http {exc.status}"
        try:
            await ws.send_str(json.dumps({"type": "join", "token": token, "room": ROOM}))
            msg = await ws.receive(timeout=ANSWER_TIMEOUT)
            if msg.type == aiohttp.WSMsgType.TEXT:
                doc = json.loads(msg.data)
                if doc.get("type") == "joined":
                    self.out.fail(f"token {name}", "admitted")
                    return "admitted"
                self.out.codes[str(doc.get("code"))] += 1
            while (await ws.receive(timeout=ANSWER_TIMEOUT)).type == aiohttp.WSMsgType.TEXT:
                pass
            return "refused (4000)" if ws.close_code == 4000 else f"closed {ws.close_code}"
        except TimeoutError:
            self.out.fail(f"token {name}", "unanswered")
            return "unanswered"
        finally:
            await ws.close()

    async def token_attacks(self) -> None:
        for name, token in self._bad_tokens():
            self.out.notes[f"token {name}: {await self.bad_token(name, token)}"] += 1
            await asyncio.sleep(HOSTILE_PAUSE)

    async def reconnect_storm(self) -> None:
        """15 refused joins at once, three times (under the cap on unjoined connections per address)."""
        for _ in range(3):
            outcomes = await asyncio.gather(*(self.bad_token("storm", "not.a.token") for _ in range(15)))
            for outcome in outcomes:
                self.out.notes[f"storm: {outcome}"] += 1
            await asyncio.sleep(1)

    async def admin_metadata(self, client: AdminClient) -> None:
        try:
            await asyncio.to_thread(
                client.request, "PATCH", ["rooms", ROOM], {"metadata": {"note": "x\ud800"}}
            )
            self.out.fail("room metadata lone surrogate", "accepted")
        except ApiError as exc:
            self.out.codes[f"api {exc.code}"] += 1

    # background holds: one of each at a time
    def hold(self, name: str, coro: Callable[[], Awaitable[str]]) -> None:
        if any(t.get_name() == name for t in self._background):
            return

        async def run() -> None:
            self.out.notes[f"{name}: {await coro()}"] += 1

        task = asyncio.create_task(run(), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def idle_websockets(self) -> str:
        """Five WebSockets that never join: the server must close them (4010) after its join timeout."""

        async def idle() -> int | None:
            ws = await self._connect()
            try:
                with contextlib.suppress(TimeoutError):
                    while (await ws.receive(timeout=60)).type == aiohttp.WSMsgType.TEXT:
                        pass
                return ws.close_code
            finally:
                await ws.close()

        codes = await asyncio.gather(*(idle() for _ in range(5)))
        return (
            "closed by the server (4010)"
            if all(c == 4010 for c in codes)
            else f"closes {sorted(map(int, filter(None, codes)))}"
        )

    async def half_open(self) -> str:
        """Five TCP connections that start a TLS handshake and go silent."""
        streams = [await asyncio.open_connection(self._host, self._port) for _ in range(5)]
        for _, writer in streams:
            writer.write(b"\x16\x03\x01\x00")
        closed = 0
        for reader, writer in streams:
            with contextlib.suppress(TimeoutError, ConnectionError):
                if await asyncio.wait_for(reader.read(1024), 60) == b"":
                    closed += 1
            writer.close()
        return f"{closed}/5 closed by the server within 60 s"

    async def slowloris(self) -> str:
        """Request headers, one line every 5 s, for up to 90 s."""
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._tls)
        writer.write(f"GET /ws HTTP/1.1\r\nHost: {self._host}\r\n".encode())
        started = time.monotonic()
        try:
            while time.monotonic() - started < 90:
                writer.write(f"X-Slow-{int(time.monotonic())}: {'a' * 10}\r\n".encode())
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), 5) == b"":
                        return f"closed by the server after {time.monotonic() - started:.0f} s"
            return "still open after 90 s"
        except (ConnectionError, ssl.SSLError):
            return f"closed by the server after {time.monotonic() - started:.0f} s"
        finally:
            writer.close()

    async def run(self, client: AdminClient) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            attacks = [
                *self.frame_attacks(),
                ("viewer joining unmuted", self.viewer_unmuted),
                ("tokens", self.token_attacks),
                ("reconnect storm", self.reconnect_storm),
                ("room metadata lone surrogate", lambda: self.admin_metadata(client)),
            ]
            holds = [
                ("idle websockets", self.idle_websockets),
                ("half-open tcp", self.half_open),
                ("slowloris", self.slowloris),
            ]
            attacks = [(name, attack) for name, attack in attacks if self._chosen(name)]
            holds = [(name, hold) for name, hold in holds if self._chosen(name)]
            if not attacks and not holds:
                raise ValueError(f"no attack matches {self._only}")
            while True:
                for name, attack in attacks:
                    await self._attempt(name, attack)
                for name, hold in holds:
                    self.hold(name, hold)
                if not attacks:
                    await asyncio.sleep(HOSTILE_PAUSE)
        finally:
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            if self._ws is not None:
                await self._ws.close()
            await self._session.close()

    def _chosen(self, name: str) -> bool:
        return not self._only or any(part in name for part in self._only)

    async def _attempt(self, name: str, attack: Callable[[], Awaitable[Any]]) -> None:
        self.out.attacks[name] += 1
        try:
            await attack()
        except (ConnectionError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.out.notes[f"{name}: {type(exc).__name__}"] += 1
        await asyncio.sleep(HOSTILE_PAUSE)


def tracks_of(sdp: str) -> list[dict[str, Any]]:
    """The ``tracks`` entries a client would send for ``sdp``: one per m-line with a MID."""
    out: list[dict[str, Any]] = []
    kind = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
        elif line.startswith("a=mid:") and kind in ("audio", "video"):
            entry: dict[str, Any] = {"mid": line[6:], "source": "microphone" if kind == "audio" else "camera"}
            if kind == "video":
                entry.update(width=640, height=360)
            out.append(entry)
    return out


async def real_offer() -> str:
    """A publish offer from aiortc (audio and video), gathered on loopback only."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    from sfu.glue import prepare_gathering
    from sfu.ports import GatherPolicy, PortRange

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
        offer = await pc.createOffer()
        prepare_gathering(pc, GatherPolicy(addresses=("127.0.0.1",)), PortRange())
        await pc.setLocalDescription(offer)
        sdp: str = pc.localDescription.sdp
        return sdp
    finally:
        await pc.close()


# --- the run -----------------------------------------------------------------------------------------


@dataclass
class Seats:
    held: int  # seats the room's store counts
    connected: int  # participants the room lists


def seats(client: AdminClient) -> Seats | None:
    try:
        room = client.request("GET", ["rooms", ROOM])
        people = client.request("GET", ["rooms", ROOM, "participants"])
    except ApiError as exc:
        return Seats(0, 0) if exc.status == 404 else None
    held = int(room.get("num_participants", -1)) if isinstance(room, dict) else -1
    connected = len(people.get("participants", [])) if isinstance(people, dict) else -1
    return Seats(held, connected)


@dataclass
class Soak:
    ns: argparse.Namespace
    server: srv.Server
    client: AdminClient
    chatters: list[Chatter] = field(default_factory=list)
    hostility: Hostility = field(default_factory=Hostility)
    started: float = 0.0
    rss_start: float = 0.0
    last_snapshot: Snapshot = field(default_factory=Snapshot)

    def progress(self, phase: str, seats_now: Seats | None) -> dict[str, Any]:
        now = time.monotonic()
        expected, missed = chats_missed(self.chatters, now - CHAT_GRACE)
        rss = rss_mib(self.server.pid)
        snap = self.last_snapshot
        return {
            "phase": phase,
            "elapsed_s": round(now - self.started, 1),
            "chats_expected": expected,
            "chats_missed": missed,
            "rss_mib": round(rss, 1),
            "rss_growth_percent": round((rss / self.rss_start - 1) * 100, 2) if self.rss_start else None,
            "seats_held": seats_now.held if seats_now else None,
            "participants_connected": seats_now.connected if seats_now else None,
            "meeting": {"joined": snap.joined, "connected": snap.connected, "failed": snap.failed},
            "observer_disconnects": sum(len(c.disconnects) for c in self.chatters),
            "hostile_errors": dict(self.hostility.codes),
            "hostile_failures": dict(self.hostility.failures),
        }

    def show(self, doc: dict[str, Any]) -> None:
        if self.ns.json:
            print(json.dumps(doc), file=sys.stderr, flush=True)
            return
        codes = ", ".join(f"{k} {v}" for k, v in sorted(doc["hostile_errors"].items()))
        print(
            f"[{doc['elapsed_s']:>7.0f}s {doc['phase']}]"
            f" chats missed {doc['chats_missed']}/{doc['chats_expected']}"
            f" | RSS {doc['rss_mib']} MiB ({doc['rss_growth_percent']} %)"
            f" | seats {doc['seats_held']} held, {doc['participants_connected']} connected"
            f" | meeting {doc['meeting']['connected']} connected, {doc['meeting']['failed']} failed"
            f" | observer drops {doc['observer_disconnects']}"
            f" | hostile failures {sum(doc['hostile_failures'].values())} | errors: {codes}",
            file=sys.stderr,
            flush=True,
        )


class NoMeeting:
    """The swarm of ``--no-meeting``: nobody."""

    async def prepare(self) -> None:
        pass

    def start(self) -> None:
        pass

    async def snapshot(self) -> Snapshot:
        return Snapshot()

    async def stop(self) -> Snapshot:
        return Snapshot()


async def _poll(swarm: SwarmHandle, soak: Soak) -> Snapshot:
    soak.last_snapshot = await swarm.snapshot()
    return soak.last_snapshot


async def run(ns: argparse.Namespace, server: srv.Server) -> dict[str, Any]:
    home_file = DEFAULT_CREDENTIALS_FILE.replace("~", str(server.home), 1)  # the server's own HOME
    settings = resolve_settings({}, {**server.client_env, "CONF_CREDENTIALS_FILE": home_file})
    client = AdminClient(settings)
    soak = Soak(ns, server, client, started=time.monotonic())
    await asyncio.to_thread(
        client.request, "POST", ["rooms"], {"name": ROOM, "max_participants": 100, "empty_timeout": 3600}
    )
    url = ws_url(client.base_url)
    tls = tls_context(settings.cacert) if url.startswith("wss:") else None
    n = ns.participants if ns.meeting else 0
    run_id = secrets.token_hex(3)
    swarm: SwarmHandle = NoMeeting()
    if ns.meeting:
        options = plan.Options(
            room=ROOM, video_publishers=max(1, n // 4), audio_publishers=n, subscribers=n, participants=n,
            speakers=min(3, n), simulcast=True, tiles=9, speaker_view=True, metrics_url=None,
        ).check()  # fmt: skip
        clips = await asyncio.to_thread(
            clip_factory.build, video=True, simulcast=True, speech=True, quiet=n > 3
        )
        roles = plan.roles(options, run_id)
        tokens = await asyncio.to_thread(mint_tokens, client, ROOM, roles)
        # joins spread a little: every synthetic client comes from one loopback address, and the server
        # caps the connections of one address that have not joined yet (signaling.max_unjoined_per_address)
        members = tuple(
            Member(r, t, JOIN_SPACING * i) for i, (r, t) in enumerate(zip(roles, tokens, strict=True))
        )
        swarm = ProcessSwarm(SwarmPlan(url, settings.cacert, options, clips, members))
    key = SigningKey.hs256(settings.api_key, settings.api_secret)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    tasks: list[asyncio.Task[None]] = []
    try:
        await swarm.prepare()
        swarm.start()
        await asyncio.sleep(JOIN_SPACING * n)
        joined_events = []
        for i in range(ns.chatters):
            identity = f"soak-chat-{run_id}-{i}"
            token, _ = mint_join_token(
                key, room=ROOM, identity=identity, permissions=["chat"], now=time.time()
            )
            chatter = Chatter(identity, token, url, tls)
            soak.chatters.append(chatter)
            event = asyncio.Event()
            joined_events.append(event)
            tasks.append(asyncio.create_task(chatter.run(session, ns.chat_interval, event)))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            snap = await _poll(swarm, soak)
            if snap.connected + snap.failed >= n and all(e.is_set() for e in joined_events):
                break
            await asyncio.sleep(1)
        soak.show(soak.progress("joined", await asyncio.to_thread(seats, client)))
        # the hostile client starts with the warm-up: the server's memory baseline includes what
        # serving it costs, and the steady state measures growth, not its first minute
        if ns.hostile:
            hostile = Hostile(url, tls, key, await real_offer(), soak.hostility, tuple(ns.attack))
            tasks.append(asyncio.create_task(hostile.run(client)))
        await asyncio.sleep(ns.warmup)
        soak.rss_start = rss_mib(server.pid)
        steady_from = time.monotonic()
        end = steady_from + ns.minutes * 60
        next_report = steady_from + ns.report_every
        while (now := time.monotonic()) < end:
            await asyncio.sleep(min(end, next_report) - now)
            if time.monotonic() >= next_report:
                await _poll(swarm, soak)
                soak.show(soak.progress("steady", await asyncio.to_thread(seats, client)))
                next_report += ns.report_every
        # the end of the steady state: hostility stops, the last chats get their grace time
        if ns.hostile:
            tasks[-1].cancel()
        for chatter in soak.chatters:
            chatter.sending = False
        await asyncio.sleep(CHAT_GRACE + 1)
        snap = await _poll(swarm, soak)
        seats_end = await asyncio.to_thread(seats, client)
        final = soak.progress("end", seats_end)
        final["rss_start_mib"] = round(soak.rss_start, 1)
        final["steady_minutes"] = round((time.monotonic() - steady_from) / 60, 2)
        final["meeting"]["failures"] = dict(snap.failures)
        final["observer_disconnect_reasons"] = [d for c in soak.chatters for d in c.disconnects]
        final["hostile_attacks"] = dict(soak.hostility.attacks)
        final["hostile_notes"] = dict(soak.hostility.notes)
        final["hostile_closes"] = dict(soak.hostility.closes)
        # everyone leaves; no seat may stay held
        await swarm.stop()
        await asyncio.gather(*(c.leave() for c in soak.chatters), return_exceptions=True)
        left = Seats(-1, -1)
        for _ in range(30):
            now_seats = await asyncio.to_thread(seats, client)
            left = now_seats if now_seats is not None else left
            if left.held == 0 and left.connected == 0:
                break
            await asyncio.sleep(1)
        final["seats_after_leaving"] = left.held
        final["participants_after_leaving"] = left.connected
        final["checks"] = checks(final, n)
        final["passed"] = all(final["checks"].values())
        return final
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
        with contextlib.suppress(Exception):
            await swarm.stop()
        with contextlib.suppress(ApiError, OSError):
            await asyncio.to_thread(client.request, "DELETE", ["rooms", ROOM])


def checks(doc: dict[str, Any], participants: int) -> dict[str, bool]:
    growth = doc.get("rss_growth_percent")
    return {
        "no chat message missed": doc["chats_missed"] == 0 and doc["chats_expected"] > 0,
        f"server RSS grew less than {RSS_GROWTH_LIMIT:g} %": growth is not None and growth < RSS_GROWTH_LIMIT,
        "seats held match participants connected": doc["seats_held"] == doc["participants_connected"],
        "no seat held after everyone left": doc["seats_after_leaving"] == 0,
        "no meeting participant disconnected": doc["meeting"]["failed"] == 0
        and doc["meeting"]["connected"] == participants,
        "no observer disconnected": doc["observer_disconnects"] == 0,
        "hostile frames: no internal or undocumented code, none unanswered, no close": not doc[
            "hostile_failures"
        ],
    }


def render(doc: dict[str, Any]) -> str:
    lines = [
        f"soak: {doc['steady_minutes']} min steady state,"
        f" {doc['meeting']['connected']} meeting participants connected",
        f"  chat messages missed       {doc['chats_missed']} of {doc['chats_expected']}",
        f"  server RSS                 {doc['rss_start_mib']} MiB -> {doc['rss_mib']} MiB"
        f" ({doc['rss_growth_percent']} %)",
        f"  seats held / connected     {doc['seats_held']} / {doc['participants_connected']} at the end;"
        f" {doc['seats_after_leaving']} held after everyone left",
        f"  meeting failures           {doc['meeting']['failures'] or 'none'}",
        f"  observer disconnects       {doc['observer_disconnect_reasons'] or 'none'}",
        f"  hostile errors by code     {dict(sorted(doc['hostile_errors'].items()))}",
        f"  hostile attacks run        {sum(doc['hostile_attacks'].values())}"
        f" ({len(doc['hostile_attacks'])} kinds)",
        f"  hostile failures           {doc['hostile_failures'] or 'none'}",
        "  server's defences          "
        + "; ".join(f"{k} x{v}" for k, v in sorted(doc["hostile_notes"].items())),
    ]
    lines += [f"  [{'ok' if ok else 'FAILED'}] {name}" for name, ok in doc["checks"].items()]
    lines.append("PASSED" if doc["passed"] else "FAILED")
    return "\n".join(lines)


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("CONF_"):
        raise argparse.ArgumentTypeError(f"expected CONF_NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the steady state (default 30)")
    parser.add_argument(
        "--participants", type=int, default=20, help="meeting participants with media (default 20)"
    )
    parser.add_argument("--chatters", type=int, default=5, help="chat observers (default 5)")
    parser.add_argument(
        "--chat-interval", type=float, default=3.0, help="seconds between an observer's chats"
    )
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds between progress reports")
    parser.add_argument(
        "--warmup",
        type=float,
        default=120.0,
        help="seconds after joining, with the hostile client already running, before the steady state",
    )
    parser.add_argument(
        "--no-meeting", dest="meeting", action="store_false",
        help="no synthetic meeting (observers and the hostile client only): to isolate what grows",
    )  # fmt: skip
    parser.add_argument(
        "--no-hostile", dest="hostile", action="store_false",
        help="no hostile client (the meeting and observers only): to isolate what grows",
    )  # fmt: skip
    parser.add_argument(
        "--attack", action="append", default=[], metavar="NAME",
        help="run only the hostile attacks whose name contains NAME (repeatable; default all)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the final report as one JSON object")
    parser.add_argument(
        "--server-env", action="append", default=[], type=_setting, metavar="CONF_X=V",
        help="a setting for the server under test (repeatable)",
    )  # fmt: skip
    ns = parser.parse_args(argv)
    if not 2 <= ns.participants <= 90 or not 2 <= ns.chatters <= 8:
        parser.error("--participants must be 2-90 and --chatters 2-8 (one room holds at most 100)")
    server = srv.start(dict(ns.server_env))
    try:
        doc = asyncio.run(run(ns, server))
    finally:
        server.stop()
    print(json.dumps(doc, indent=2) if ns.json else render(doc), flush=True)
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
