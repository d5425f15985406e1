"""ICE restart: a fresh ICE agent (new credentials, new sockets or a new endpoint on the shared
port) under an established DTLS/SRTP session, which aiortc cannot do.

Reaches ``RTCIceGatherer._connection``, ``RTCIceTransport._connection``/``_recv``/``_send``/
``_monitor`` and ``_RTCIceTransport__monitor_task``, and aioice's ``Connection._queue`` and
``_remote_candidates_end``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aioice.candidate import Candidate
from aioice.ice import Connection
from aiortc import RTCDtlsTransport, RTCIceTransport, RTCPeerConnection

from sfu.glue.gathering import install_gatherer
from sfu.glue.receive import carry_fast_receive, transports
from sfu.glue.send import invalidate_writers
from sfu.ports import GatherPolicy
from sfu.udpmux import MediaPorts

log = logging.getLogger("sfu.glue")

_WAKE = b"\x00"  # a datagram the DTLS receive loop ignores (neither DTLS nor SRTP)


class IceRestart:
    """A new ICE agent (new local credentials and sockets) for ``pc``'s bundled transport, keeping
    its DTLS/SRTP session. ``begin`` installs it so the next local description carries the new
    credentials and remote candidates added from now on go to it; ``start`` runs the checks and,
    once a pair is nominated, moves the transport's traffic over and closes the old agent."""

    def __init__(self, dtls: RTCDtlsTransport, old: Connection, new: Connection) -> None:
        self._dtls = dtls
        self._ice: RTCIceTransport = dtls.transport
        self._old: Connection | None = old
        self._new = new
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def begin(cls, pc: RTCPeerConnection, policy: GatherPolicy, ports: MediaPorts) -> IceRestart:
        found = transports(pc)
        if not found:
            raise RuntimeError("nothing to restart: the connection has no transport")
        ice = found[0].transport
        old = ice._connection
        new = Connection(ice_controlling=old.ice_controlling)
        install_gatherer(new, policy, ports)
        await new.gather_candidates()
        ice.iceGatherer._connection = new
        carry_fast_receive(old, new)
        ice._connection = new
        ice.iceGatherer._remote_candidates_end = False
        invalidate_writers(found[0])
        return cls(found[0], old, new)

    def start(
        self, remote_ufrag: str, remote_pwd: str, candidates: Iterable[str] = (), end: bool = False
    ) -> None:
        """Run the checks against the peer's new credentials (and candidates, SDP form)."""
        new = self._new
        new.remote_username = remote_ufrag
        new.remote_password = remote_pwd
        self._task = asyncio.create_task(self._run(list(candidates), end), name="sfu-ice-restart")

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_old()

    async def _run(self, candidates: list[str], end: bool) -> None:
        new = self._new
        for text in candidates:
            with contextlib.suppress(ValueError):
                await new.add_remote_candidate(Candidate.from_sdp(text))
        if end and not new._remote_candidates_end:
            await new.add_remote_candidate(None)
        try:
            await new.connect()
        except ConnectionError:
            log.info("ICE restart failed; the previous path stays in use")
            return
        ice = self._ice
        old = self._old
        ice._recv = new.recv
        ice._send = new.send
        invalidate_writers(self._dtls)
        monitor = ice._RTCIceTransport__monitor_task  # type: ignore[attr-defined]
        if monitor is not None:
            monitor.cancel()
        ice._RTCIceTransport__monitor_task = asyncio.ensure_future(ice._monitor())  # type: ignore[attr-defined]
        if old is not None:
            old._queue.put_nowait((_WAKE, 1))  # the DTLS loop wakes up and reads from the new agent
        await self._close_old()

    async def _close_old(self) -> None:
        old = self._old
        if old is None:
            return
        self._old = None
        if self._ice._connection is old:
            return
        old._queue = asyncio.Queue()  # its close() must not end the DTLS receive loop
        await old.close()
