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
import contextlib
import json
import random
import secrets
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import server as srv
from bench.hostile import ROOM, Hostile, Hostility, real_offer
from confctl.client import DEFAULT_CREDENTIALS_FILE, AdminClient, ApiError, resolve_settings
from confctl.loadtest import clips as clip_factory
from confctl.loadtest import plan
from confctl.loadtest.runner import mint_tokens
from confctl.loadtest.signaling import tls_context, ws_url
from confctl.loadtest.swarm import Member, Snapshot, SwarmPlan
from confctl.loadtest.workers import ProcessSwarm, SwarmHandle
from confserver.tokens import SigningKey, mint_join_token

RSS_GROWTH_LIMIT = 5.0  # percent
CHAT_GRACE = 5.0  # seconds a chat may take to arrive before it counts as missed
CHAT_PREFIX = "soak"
JOIN_SPACING = 0.25  # seconds between two joins of the meeting


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
