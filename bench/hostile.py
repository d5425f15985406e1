"""The soak's hostile client: it cycles through the inputs that once broke a server.

Used by bench/soak.py (see its docstring for the whole run) and, for ``tracks_of`` and
``real_offer``, by the hostile-input tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import ssl
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from confctl.client import AdminClient, ApiError
from confserver.tokens import SigningKey, mint_join_token

ROOM = "soak"
ANSWER_TIMEOUT = 10.0  # a frame the server does not answer within this is "unanswered"
HOSTILE_PAUSE = 0.4  # between two hostile frames: well under the rate limit (20/s)


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
            lost = self._ws
            if lost is not None and isinstance(exc, ConnectionError | aiohttp.ClientError):
                # the joined connection is gone (a send on a reset socket): join again for the next
                # attack rather than fail every frame attack for the rest of the run
                self._ws = None
                self.out.notes[f"joined connection lost (close code {lost.close_code}), joined again"] += 1
                with contextlib.suppress(Exception):
                    await lost.close()
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
