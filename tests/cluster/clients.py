"""Test clients that behave as the browser does: one signaling WebSocket at a chosen node's
``/ws``, a reconnect loop with a short backoff (any close other than 4000/4001/4002, and a join
refused with ``try_again``, means: connect again with the same token), and optionally real aiortc
media through ``tests.sfu.peers.Peer``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from confserver.contract import MediaMessage, PublishOffer
from confserver.errors import ServiceError
from tests.sfu.peers import Peer, wait_until

from .harness import client_session

FINAL_CLOSES = (4000, 4001, 4002)  # join refused, removed, room closed: the browser stops there
MEDIA_TYPES = {
    "publish_answer", "publish_layers", "subscribe_offer", "ice_candidate", "track_published",
    "track_unpublished", "track_muted", "track_map", "speakers", "media_reset",
}  # fmt: skip
RETRY_LATER = ("try_again", "store_unavailable", "internal")  # join refusals worth another try
BACKOFF = (0.1, 0.2, 0.4, 0.5)


class Member:
    """A participant's signaling side. ``urls`` are tried in turn when reconnecting (the browser
    reconnects to the page's own node; a test gives one URL per participant, or several when the
    node behind it may die)."""

    def __init__(
        self,
        urls: list[str] | str,
        room: str,
        token: str,
        identity: str,
        *,
        on_media: Callable[[dict[str, Any]], None] | None = None,
        on_rejoin: Callable[[], Any] | None = None,
        reconnect: bool = True,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.room = room
        self.token = token
        self.identity = identity
        self.on_media = on_media
        self.on_rejoin = on_rejoin
        self.reconnect = reconnect
        self.seen: list[dict[str, Any]] = []  # every non-media message, across connections
        self.joins: list[dict[str, Any]] = []  # every ``joined`` answer
        self.closes: list[int | None] = []  # close codes of the connections that ended
        self.refusals: list[dict[str, Any]] = []  # join errors
        self.sid: str | None = None
        self.others: dict[str, dict[str, Any]] = {}  # identity -> participant, as this client knows them
        self.final: int | None = None  # the close code that ended the session for good
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._closing = False
        self.connected_to: str | None = None

    # --- life ---------------------------------------------------------------------------------

    async def start(self, timeout: float = 15, *, until: str = "joined") -> dict[str, Any]:
        """Connect and join (retrying as the browser does); returns the ``joined`` message, or with
        ``until="lobby"`` the ``lobby`` message (the client waits there to be admitted)."""
        self._session = client_session()
        self._task = asyncio.create_task(self._run())
        if until == "lobby":
            await self.wait(lambda: self.of_type("lobby") or self.final is not None, timeout, "in the lobby")
            if not self.of_type("lobby"):
                raise AssertionError(
                    f"{self.identity}: not in the lobby: {self.seen[-3:]} close {self.final}"
                )
            return self.of_type("lobby")[-1]
        await self.wait(lambda: self.joins or self.final is not None, timeout, "joined")
        if not self.joins:
            raise AssertionError(f"{self.identity}: not joined: {self.refusals[-1:]} close {self.final}")
        return self.joins[-1]

    async def _run(self) -> None:
        """Connect, join, read; after a close, connect again (to the same node first, as the
        browser does; to the next URL when a connection cannot be made)."""
        assert self._session is not None
        at = 0  # which URL
        failures = 0  # in a row, for the backoff
        while not self._closing:
            code: int | None = None
            joins = len(self.joins)
            try:
                code = await self._connection(self.urls[at % len(self.urls)])
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.closes.append(None)
                self._note({"type": "_connect_failed", "error": repr(exc)})
                at += 1
            else:
                self.closes.append(code)
            if self._closing:
                break
            if code in FINAL_CLOSES or not self.reconnect:
                self.final = code if code is not None else -1
                self._changed.set()
                break
            failures = 0 if len(self.joins) > joins else failures + 1
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])

    async def _connection(self, url: str) -> int | None:
        assert self._session is not None
        ws = await self._session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=2), heartbeat=None)
        self._ws = ws
        self.connected_to = url
        joined_here = False
        try:
            await ws.send_json({"type": "join", "token": self.token, "room": self.room})
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                msg = json.loads(frame.data)
                mtype = msg.get("type")
                if mtype in MEDIA_TYPES:
                    if self.on_media is not None:
                        self.on_media(msg)
                    if mtype == "publish_answer":
                        self._answers.put_nowait(msg)
                    continue
                if mtype == "error" and msg.get("ref") == "publish_offer":
                    self._answers.put_nowait(msg)
                self._note(msg)
                if mtype == "joined":
                    joined_here = True
                    rejoin = bool(self.joins)
                    while not self._answers.empty():  # answers of an earlier session
                        self._answers.get_nowait()
                    self.joins.append(msg)
                    self.sid = msg["sid"]
                    self.others = {p["identity"]: p for p in msg["participants"]}
                    if rejoin and self.on_rejoin is not None:
                        self.on_rejoin()
                elif mtype == "participant_joined":
                    self.others[msg["participant"]["identity"]] = msg["participant"]
                elif mtype == "participant_updated":
                    self.others[msg["participant"]["identity"]] = msg["participant"]
                elif mtype == "participant_left":
                    known = self.others.get(msg["identity"])
                    if known is not None and known["sid"] == msg["sid"]:
                        del self.others[msg["identity"]]
                elif mtype == "error" and not joined_here:
                    self.refusals.append(msg)
                    if msg.get("code") in RETRY_LATER:  # the server may keep the socket: start anew
                        await ws.close()
        finally:
            self._ws = None
            self.sid = None if self._closing else self.sid
        return ws.close_code

    def _note(self, msg: dict[str, Any]) -> None:
        msg["_at"] = time.monotonic()
        self.seen.append(msg)
        self._changed.set()

    async def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{self.identity}: {what} not within {timeout} s; saw "
                    f"{[(m.get('type'), m.get('code') or m.get('reason')) for m in self.seen[-12:]]} "
                    f"closes {self.closes[-6:]}"
                )
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.25))

    # --- what the client saw ----------------------------------------------------------------------

    def of_type(self, mtype: str, **match: Any) -> list[dict[str, Any]]:
        return [
            m for m in self.seen if m.get("type") == mtype and all(m.get(k) == v for k, v in match.items())
        ]

    async def expect(self, mtype: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        found = await self.wait(lambda: self.of_type(mtype, **match), timeout, f"{mtype} {match}")
        return found[0]  # type: ignore[no-any-return]

    async def sees(self, identities: set[str], timeout: float = 10) -> None:
        await self.wait(lambda: identities <= set(self.others), timeout, f"sees {sorted(identities)}")

    async def ended(self, timeout: float = 5) -> int | None:
        """Wait until the session ended for good (no reconnect); returns its close code."""
        await self.wait(lambda: self.final is not None, timeout, "the session's end")
        return self.final

    async def forgets(self, identity: str, timeout: float = 5) -> None:
        await self.wait(lambda: identity not in self.others, timeout, f"{identity} gone")

    async def joined_times(self, times: int, timeout: float) -> None:
        await self.wait(lambda: len(self.joins) >= times, timeout, f"joined {times} times")

    async def sees_session(self, identity: str, sid: str | None, timeout: float = 10) -> None:
        """This client knows ``identity`` by session ``sid`` (a session that replaced another)."""
        await self.wait(
            lambda: self.others.get(identity, {}).get("sid") == sid, timeout, f"{identity} as {sid}"
        )

    def state_of(self, identity: str, key: str) -> Any:
        return self.others.get(identity, {}).get("state", {}).get(key)

    @property
    def joined(self) -> bool:
        return self._ws is not None and not self._ws.closed and self.sid is not None

    # --- sending -------------------------------------------------------------------------------

    async def send(self, msg: dict[str, Any]) -> None:
        await self.wait(lambda: self.joined, 10, f"connected to send {msg.get('type')}")
        assert self._ws is not None
        await self._ws.send_json(msg)

    async def chat(self, text: str, to: str | None = None) -> None:
        await self.send({"type": "chat", "text": text, **({"to": to} if to else {})})

    async def leave(self) -> None:
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await self._ws.send_json({"type": "leave"})
                await asyncio.wait_for(self._ws.receive(), 2)
        await self.close()

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def drop(self) -> None:
        """Close the current connection without leaving (the reconnect loop goes on)."""
        if self._ws is not None:
            await self._ws.close(code=4999)

    # --- what ``Peer`` drives ---------------------------------------------------------------------

    async def media_request(self, message: MediaMessage) -> None:
        await self.send(message.to_json())
        if isinstance(message, PublishOffer):  # the peer reads the answer right after this call
            answer = await asyncio.wait_for(self._answers.get(), 15)
            if answer["type"] == "error":
                raise ServiceError(answer["code"], answer["message"])


class _Link:
    """The MediaController interface ``Peer`` calls, carried by a ``Member``."""

    def __init__(self, member: Member) -> None:
        self.member = member

    async def participant_joined(
        self, room: str, sid: str, permissions: Any, send: Any, identity: str = ""
    ) -> None:
        self.member.on_media = send
        await self.member.start()

    async def handle(self, room: str, sid: str, message: MediaMessage) -> None:
        await self.member.media_request(message)

    async def participant_left(self, room: str, sid: str) -> None:
        await self.member.leave()


class MediaMember:
    """A participant with real aiortc media. After a reconnect (a new session, maybe on another
    node) the peer's media is reset as on ``media_reset``; ``publish_again`` publishes anew."""

    def __init__(self, urls: list[str] | str, room: str, token: str, identity: str) -> None:
        self.member = Member(urls, room, token, identity, on_rejoin=self._rejoined)
        self.peer = Peer(_Link(self.member), room, identity)  # type: ignore[arg-type]
        self.peer.identity = identity
        self.identity = identity
        self.publishing = False

    def _rejoined(self) -> None:
        # a new session: the media side is new; what the peer had is gone (as after media_reset)
        self.peer.send({"type": "media_reset"})

    async def join(self) -> None:
        await self.peer.join()

    async def publish(self) -> None:
        self.publishing = True
        await self.peer.publish(video=(320, 240), audio=False)

    async def close(self) -> None:
        await self.peer.close()
        await self.member.close()


def announced(peer: Peer, owner: str) -> list[str]:
    """The ids of ``owner``'s video tracks announced to ``peer`` since its last ``media_reset``."""
    resets = [i for i, m in enumerate(peer.messages) if m["type"] == "media_reset"]
    since = peer.messages[resets[-1] + 1 if resets else 0 :]
    gone = {m["id"] for m in since if m["type"] == "track_unpublished"}
    return [m["track"]["id"] for m in since if m["type"] == "track_published"
            and m["track"]["kind"] == "video" and m["track"]["identity"] == owner
            and m["track"]["id"] not in gone]  # fmt: skip


async def decodes(viewer: Peer, owner: str, frames: int, timeout: float) -> None:
    """``viewer`` subscribes to ``owner``'s camera and decodes ``frames`` frames of it (counted
    from the subscription)."""
    await wait_until(lambda: announced(viewer, owner), timeout, what=f"{viewer.identity}: {owner} announced")
    track = announced(viewer, owner)[-1]
    await viewer.subscribe(track)
    await wait_until(
        lambda: (r := viewer.video_for(track)) is not None and r.frames >= frames,
        timeout,
        what=f"{viewer.identity} decodes {owner}",
    )


def candidate_ports(sdp: str) -> set[int]:
    """The ports of the host candidates in an SDP (the server's media socket)."""
    return {int(m.group(1)) for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ [\d.]+ (\d+) typ host", sdp)}


async def raw_join(
    url: str, token: str, room: str, session: aiohttp.ClientSession, timeout: float = 30
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """One join without the reconnect loop; returns the socket and the server's first answer."""
    ws = await session.ws_connect(url, heartbeat=None)
    await ws.send_json({"type": "join", "token": token, "room": room})
    msg = await ws.receive(timeout=timeout)
    if msg.type != aiohttp.WSMsgType.TEXT:
        return ws, {"type": "_closed", "code": ws.close_code}
    return ws, json.loads(msg.data)
