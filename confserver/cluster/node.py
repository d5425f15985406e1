"""``Cluster``: this node's place among the others.

It keeps this node's record alive in the registry, places rooms (a room's first join claims it for
the node that takes it, unless that node drains), checks at each heartbeat that the rooms it serves
are still its own, gives up rooms that emptied, and talks to the other nodes: it opens relayed
sessions, forwards admin calls to a room's owner and passes token revocations on. With the memory
store the registry holds this node alone and nothing is ever relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import aiohttp

from ..errors import ServiceError
from ..store import StoreUnavailableError
from . import auth
from .registry import Claim, Listed, NodeInfo, Outcome, Registry

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..rooms import RoomService

log = logging.getLogger("confserver.cluster")

CALL_TIMEOUT = 5.0
"""Seconds a call to another node may take (connect, forward, revoke)."""


def try_again(message: str) -> ServiceError:
    """A join that cannot be served right now; the client reconnects (close 1013)."""
    return ServiceError("try_again", message, 503)


class Cluster:
    def __init__(
        self,
        registry: Registry,
        rooms: RoomService,
        metrics: Metrics,
        *,
        node: str,
        url: str,
        key: bytes,
        ttl: float,
        fingerprint: str = "",
        media: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.node = node
        self.url = url
        self.draining = False
        self._rooms = rooms
        self._metrics = metrics
        self._key = key
        self._ttl = ttl
        self._fingerprint = fingerprint
        self._media = media
        self._clock = clock
        self._owned: dict[str, int] = {}
        """Rooms this node serves -> the fencing token of its claim."""
        self._empty: set[str] = set()
        """Owned rooms found empty at the last heartbeat: given up if still empty at the next."""
        self._cpu = (time.process_time(), time.monotonic())
        self._load = 0.0
        self._healthy_since: float | None = None
        """Since when every heartbeat was written; ``None`` after a failed one."""
        self._http: aiohttp.ClientSession | None = None
        self.relayed = 0
        """Sessions this node relays to other nodes now."""

    # --- lifetime -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=CALL_TIMEOUT))
        with contextlib.suppress(StoreUnavailableError):
            await self.registry.clear_drain(self.node)  # a restarted node serves again
            await self.heartbeat()

    async def close(self) -> None:
        for room, token in list(self._owned.items()):
            with contextlib.suppress(StoreUnavailableError):
                await self.registry.release(room, self.node, token)
        self._owned.clear()
        if self._http is not None:
            await self._http.close()
        await self.registry.close()

    @property
    def interval(self) -> float:
        return self._ttl / 3

    def info(self) -> NodeInfo:
        hub = self._rooms.hub
        return NodeInfo(
            id=self.node,
            url=self.url,
            fingerprint=self._fingerprint,
            media=self._media,
            rooms=len(self._owned),
            participants=sum(len(hub.seats(r)) for r in hub.rooms()),
            load=round(self._load, 3),
            draining=self.draining,
        )

    async def heartbeat(self) -> None:
        """Renew this node's record, learn whether to drain, and check the rooms served here."""
        cpu, wall = time.process_time(), time.monotonic()
        if wall > self._cpu[1]:
            self._load = (cpu - self._cpu[0]) / (wall - self._cpu[1])
        self._cpu = (cpu, wall)
        try:
            self.draining = await self.registry.heartbeat(self.info(), self._ttl)
        except StoreUnavailableError:
            self._healthy_since = None
            self._metrics.cluster_heartbeat_failures.inc()
            raise
        if self._healthy_since is None:
            self._healthy_since = self._clock()
        self._metrics.cluster_draining.set(1 if self.draining else 0)
        for room in list(self._owned):
            await self._check(room)
        self._metrics.cluster_rooms.set(len(self._owned))
        self._metrics.cluster_relayed.set(self.relayed)
        states = {"active": 0, "draining": 0, "dead": 0}
        for listed in await self.registry.nodes():
            states[listed.state] += 1
        for state, count in states.items():
            self._metrics.cluster_nodes.labels(state).set(count)

    async def _check(self, room: str) -> None:
        here = self._rooms.present(room)
        if not here:
            if room in self._empty:
                self._empty.discard(room)
                await self.registry.release(room, self.node, self._owned.pop(room))
                return
            self._empty.add(room)
        else:
            self._empty.discard(room)
        claim = await self._claim(room, may_claim=True)
        if claim.outcome is Outcome.OWNER_SILENT:
            return  # asked again at the next heartbeat, once takeovers are safe
        if claim.outcome is Outcome.ELSEWHERE:
            # This node was taken for dead (its heartbeat lapsed) and another one serves the room
            # now: the people here reconnect and land there. Never serve one meeting in two places.
            log.warning("room lost to another node", extra={"room": room, "owner": claim.node})
            self._owned.pop(room, None)
            self._metrics.cluster_placements.labels("lost").inc()
            self._rooms.moved_away(room)
            return
        await self._adopt(room, claim)

    @property
    def may_take_over(self) -> bool:
        """Whether a room whose owner's record lapsed may be taken: only once this node has seen
        the registry healthy for a whole TTL. After a Redis outage every node's record lapses, and
        live owners confirm their rooms at their first heartbeat; until then a lapsed record says
        nothing about whether its node is alive."""
        since = self._healthy_since
        return since is not None and self._clock() - since >= self._ttl

    async def _claim(self, room: str, *, may_claim: bool) -> Claim:
        return await self.registry.claim(
            room, self.node, may_claim=may_claim, may_take_over=self.may_take_over
        )

    async def _adopt(self, room: str, claim: Claim) -> None:
        self._owned[room] = claim.token
        self._empty.discard(room)
        if claim.outcome is Outcome.TAKEN_OVER:
            log.warning("room taken over from a dead node", extra={"room": room, "dead": claim.node})
            self._metrics.cluster_placements.labels("taken_over").inc()
            await self._rooms.adopt(room)
        elif claim.outcome is Outcome.CLAIMED:
            self._metrics.cluster_placements.labels("claimed").inc()

    # --- placement ------------------------------------------------------------------------------

    async def hold(self, room: str) -> None:
        """Make sure this node serves ``room`` before someone joins it here; raises
        ``ServiceError`` (``try_again``) when another live node does."""
        claim = await self._claim(room, may_claim=not self.draining)
        if claim.outcome is Outcome.OWNER_SILENT:
            raise try_again("the server holding this meeting is not answering; retrying")
        if claim.outcome is Outcome.ELSEWHERE:
            log.info("join refused: another node serves the room", extra={"room": room, "owner": claim.node})
            raise try_again("this meeting is served by another node; reconnecting")
        if claim.outcome is Outcome.UNOWNED:
            raise try_again("this server is draining and no other one can take the meeting")
        await self._adopt(room, claim)

    async def confirm(self, room: str) -> None:
        """After a seat was taken here: this node still serves ``room`` (it may have been taken for
        dead meanwhile). Raises ``ServiceError`` (``try_again``): the caller gives the seat back."""
        claim = await self.registry.claim(room, self.node, may_claim=True, may_take_over=False)
        if claim.outcome not in (Outcome.MINE, Outcome.CLAIMED):
            self._owned.pop(room, None)
            raise try_again("this meeting moved to another server; reconnecting")
        self._owned[room] = claim.token

    async def route(self, room: str) -> NodeInfo | None:
        """Where a join for ``room`` arriving here goes: ``None`` to be served here, or the node
        to relay it to. A draining node places a new room on the least-loaded active node."""
        claim = await self._claim(room, may_claim=not self.draining)
        if claim.outcome is Outcome.OWNER_SILENT:
            raise try_again("the server holding this meeting is not answering; retrying")
        if claim.outcome is Outcome.ELSEWHERE:
            target = await self.registry.node(claim.node)
            if target is None:
                raise try_again("the server holding this meeting just stopped; reconnecting")
            return target
        if claim.outcome is Outcome.UNOWNED:
            target = await self.least_loaded()
            if target is None:
                raise try_again("every server is draining; try again later")
            self._metrics.cluster_placements.labels("sent_elsewhere").inc()
            return target
        await self._adopt(room, claim)
        return None

    async def least_loaded(self) -> NodeInfo | None:
        live = [
            n.info
            for n in await self.registry.nodes()
            if n.state == "active" and n.info.id != self.node and n.info.url
        ]
        return min(live, key=lambda n: (n.participants, n.load, n.id), default=None)

    async def owner_elsewhere(self, room: str) -> NodeInfo | None:
        """The live node that serves ``room`` when it is not this one (admin calls go there)."""
        if room in self._owned:
            return None
        claim = await self.registry.claim(room, self.node, may_claim=False)
        if claim.outcome is not Outcome.ELSEWHERE:
            return None
        return await self.registry.node(claim.node)

    async def nodes(self) -> list[Listed]:
        return await self.registry.nodes()

    # --- talking to other nodes -----------------------------------------------------------------

    def metrics_relay_failure(self, reason: str) -> None:
        self._metrics.cluster_relay_failures.labels(reason).inc()

    def signed(self, method: str, path: str, client: str = "") -> dict[str, str]:
        headers = {auth.HEADER: auth.sign(self._key, self.node, method, path, self._clock())}
        if client:
            headers[auth.CLIENT_ADDRESS] = client
        return headers

    def verify(self, header: str | None, method: str, path: str) -> str:
        """The signing node's id; raises ``auth.ClusterAuthError`` (counted and logged here)."""
        try:
            return auth.verify(self._key, header, method, path, self._clock())
        except auth.ClusterAuthError as e:
            self._metrics.cluster_auth_failures.labels(e.reason).inc()
            log.warning("node-to-node request refused", extra={"reason": e.reason, "path": path})
            raise

    def ssl_for(self, target: NodeInfo) -> aiohttp.Fingerprint | bool:
        """Plain HTTP, the node's pinned certificate, or (no fingerprint known) the usual checks."""
        if not target.url.startswith("https://"):
            return False
        try:
            return aiohttp.Fingerprint(bytes.fromhex(target.fingerprint))
        except ValueError:  # none, or not a SHA-256 in hex
            return True

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("the cluster was not started")
        return self._http

    async def call(
        self, target: NodeInfo, method: str, path: str, *, body: bytes = b"", headers: Mapping[str, str]
    ) -> tuple[int, bytes, str]:
        """One HTTP call to another node: (status, body, content type). Raises ``ClientError``
        or ``TimeoutError``."""
        async with self.http.request(
            method,
            target.url + path,
            data=body or None,
            headers={**headers, **self.signed(method, path.split("?", 1)[0])},
            ssl=self.ssl_for(target),
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT),
            allow_redirects=False,
        ) as resp:
            return resp.status, await resp.read(), resp.content_type

    async def disconnect_token(self, jti: str) -> int:
        """Close the sessions of a revoked token on the other live nodes; how many closed."""
        others = [n.info for n in await self.registry.nodes() if n.alive and n.info.id != self.node]

        async def one(target: NodeInfo) -> int:
            try:
                status, body, _ = await self.call(
                    target,
                    "POST",
                    "/cluster/v1/disconnect",
                    body=jti.encode(),
                    headers={"Content-Type": "text/plain"},
                )
            except (aiohttp.ClientError, TimeoutError) as e:
                log.warning("could not pass a revocation on", extra={"node": target.id, "error": str(e)})
                return 0
            return int(body) if status == 200 and body.isdigit() else 0

        return sum(await asyncio.gather(*(one(t) for t in others)))
