"""``AuditLog``: takes entries from the request path without waiting, writes them to the chain in
the background, signs the chain's head once a minute and applies the retention.

``record`` only builds a small dict and queues it (a join pays microseconds, not a disk or Redis
round trip); one writer task seals batches in order and appends them to the sink. The queue is
bounded: when the sink is down long enough to fill it, newer entries are dropped, counted, and an
``audit.gap`` entry saying how many goes into the chain once it can be written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..metrics import Metrics
from . import chain, record
from .record import SERVER, Actor, Outcome
from .sinks import AuditSink

log = logging.getLogger("confserver.audit")

BATCH = 500
"""Entries sealed and appended at once."""
RETRY_DELAY = 1.0
RETENTION_INTERVAL = 3600.0
CONFLICT_RETRIES = 20
STRANGER_RATE = 20.0
STRANGER_BURST = 200.0
"""Entries per second (and at once) for callers whose credentials did not verify: a flood of
forged tokens must not fill the disk. What is held back is counted in the next such entry
(``conf.suppressed``)."""


class _Checkpoint:
    def __init__(self) -> None:
        self.done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()


def load_signer(path: str | Path) -> chain.Signer:
    """The audit key at ``path`` (PEM, PKCS#8, Ed25519); made (mode 0600) when the file is missing.
    Two nodes starting at once on one host make one key: the file is linked into place only if
    no other process put one there first, and then that one is used."""
    path = Path(path).expanduser()
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            log.warning(
                "audit key created; keep its public key to verify the log",
                extra={"key": chain.Signer(key).key_id},
            )
        except FileExistsError:
            pass  # another process made it first: use that one
        finally:
            tmp.unlink()
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path}: the audit key must be an Ed25519 private key")
    return chain.Signer(loaded)


class AuditLog:
    """``sink=None`` makes a log that records nothing (an app built without one, in tests)."""

    def __init__(
        self,
        sink: AuditSink | None,
        signer: chain.Signer | None,
        metrics: Metrics,
        *,
        node: str,
        sign_interval: float = 60.0,
        retention_days: int = 365,
        queue_size: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self._sink = sink
        self._signer = signer
        if sink is not None and signer is None:
            raise ValueError("an audit log that writes needs a key to sign its head")
        self._metrics = metrics
        self._sign_interval = sign_interval
        self._retention = retention_days * 86400.0
        self._queue_size = queue_size
        self._clock = clock
        self._pending: deque[dict[str, Any] | _Checkpoint] = deque()
        self._gap = 0
        self._head: tuple[int, str] = (0, chain.GENESIS)
        self._unsigned = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_error = 0.0
        self._strangers = STRANGER_BURST
        self._strangers_at = time.monotonic()
        self._suppressed = 0

    @property
    def enabled(self) -> bool:
        return self._sink is not None

    @property
    def public_keys(self) -> dict[str, str]:
        """The key id and PEM of this node's audit key, for ``audit verify``."""
        if self._signer is None:
            return {}
        return {self._signer.key_id: chain.public_pem(self._signer.public)}

    # --- the request path -------------------------------------------------------------------

    def record(
        self,
        action: str,
        *,
        actor: Actor,
        outcome: Outcome = "success",
        reason: str = "",
        room: str = "",
        target: str = "",
        target_name: str = "",
        client_ip: str = "",
        conf: dict[str, Any] | None = None,
    ) -> None:
        """Queue one entry; never waits."""
        if self._sink is None:
            return
        if actor.kind == "unknown":
            if not self._stranger_allowed():
                self._suppressed += 1
                return
            if self._suppressed:
                conf = {**(conf or {}), "suppressed": self._suppressed}
                self._suppressed = 0
        if len(self._pending) >= self._queue_size:
            self._gap += 1
            self._metrics.audit_dropped.inc()
            return
        self._pending.append(
            record.entry(
                action,
                now=self._clock(),
                node=self.node,
                actor=actor,
                outcome=outcome,
                reason=reason,
                room=room,
                target=target,
                target_name=target_name,
                client_ip=client_ip,
                conf=conf,
            )
        )
        self._changed()

    def _stranger_allowed(self) -> bool:
        now = time.monotonic()
        self._strangers = min(STRANGER_BURST, self._strangers + (now - self._strangers_at) * STRANGER_RATE)
        self._strangers_at = now
        if self._strangers < 1.0:
            return False
        self._strangers -= 1.0
        return True

    def _changed(self) -> None:
        self._metrics.audit_queue.set(len(self._pending))
        self._idle.clear()
        self._wake.set()

    # --- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        sink = self._sink
        if sink is None:
            return
        self._head = await sink.open()
        recovered = getattr(sink, "recovered_bytes", 0)
        self.record(
            "audit.start",
            actor=SERVER,
            conf={"continues_at": self._head[0] + 1, **({"recovered_bytes": recovered} if recovered else {})},
        )
        self._tasks = [
            asyncio.create_task(self._write_loop(sink), name="audit-writer"),
            asyncio.create_task(self._timer_loop(sink), name="audit-timer"),
        ]

    async def close(self) -> None:
        """Sign what was written, write what is queued (for a few seconds at most), sync."""
        if self._sink is None or not self._tasks:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.checkpoint(), 5.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(OSError):
            await self._sink.close()

    async def checkpoint(self) -> dict[str, Any]:
        """Sign the chain's head now (when it has moved) and return the signed head."""
        if self._sink is None or self._signer is None:
            raise RuntimeError("the audit log is off")
        if self._unsigned == 0 and not self._pending:
            head = await self._sink.signed_head()
            if head is not None:
                return head
        mark = _Checkpoint()
        self._pending.append(mark)
        self._changed()
        return await mark.done

    async def flush(self) -> None:
        await self._idle.wait()

    # --- the writer -------------------------------------------------------------------------

    async def _write_loop(self, sink: AuditSink) -> None:
        while True:
            if not self._pending and not self._gap:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            batch = [self._pending[i] for i in range(min(BATCH, len(self._pending)))]
            if self._gap:
                batch.insert(0, self._gap_entry(self._gap))
            try:
                await self._write(sink, batch)
            except Exception as e:  # a full disk, Redis down: the batch stays queued and is retried
                self._metrics.audit_write_errors.inc()
                now = time.monotonic()
                if now - self._last_error > 10.0:
                    self._last_error = now
                    log.error("audit log: write failed; retrying", extra={"error": repr(e)})
                await asyncio.sleep(RETRY_DELAY)
                continue
            first = batch[0] if batch else None
            if isinstance(first, dict) and first["event"]["action"] == "audit.gap":
                self._gap -= first["conf"]["dropped"]
                batch.pop(0)
            for _ in batch:
                self._pending.popleft()
            self._metrics.audit_queue.set(len(self._pending))

    def _server_entry(
        self, action: str, reason: str = "", conf: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """An entry the server writes about the log itself; a ``reason`` marks a failure."""
        outcome: Outcome = "failure" if reason else "success"
        return record.entry(
            action, now=self._clock(), node=self.node, actor=SERVER, outcome=outcome, reason=reason, conf=conf
        )

    def _gap_entry(self, dropped: int) -> dict[str, Any]:
        return self._server_entry("audit.gap", "queue_full", {"dropped": dropped})

    async def _write(self, sink: AuditSink, batch: list[dict[str, Any] | _Checkpoint]) -> None:
        head = self._head
        for _ in range(CONFLICT_RETRIES):
            seq, prev = head
            sealed: list[dict[str, Any]] = []
            marks: list[tuple[_Checkpoint, dict[str, Any]]] = []
            for item in batch:
                seq += 1
                if isinstance(item, _Checkpoint):
                    if self._signer is None:  # checkpoint() queues none without a key
                        raise RuntimeError("the audit log has no key to sign with")
                    entry = self._signer.checkpoint(self._server_entry(chain.CHECKPOINT), seq, prev)
                    marks.append((item, entry))
                else:
                    entry = chain.seal(item, seq, prev)
                prev = entry["event"]["hash"]
                sealed.append(entry)
            found = await sink.append([chain.canonical(e) for e in sealed], head, (seq, prev))
            if found is None:
                break
            if found[0] < head[0]:  # the chain went back: its store lost data (Redis restarted empty)
                batch = [self._reset_entry(head), *batch]
            head = found  # another node appended first: seal again after its entries
        else:
            raise RuntimeError("the audit chain's head kept moving; giving up this round")
        self._head = (seq, prev)
        outcomes = [e["event"]["outcome"] for e in sealed if e["event"]["action"] != chain.CHECKPOINT]
        for outcome in set(outcomes):
            self._metrics.audit_entries.labels(outcome).inc(outcomes.count(outcome))
        self._unsigned += len(sealed) - len(marks)
        if marks:
            await sink.sync()
            await sink.set_signed_head(marks[-1][1])
            self._unsigned = 0
            self._metrics.audit_signed_at.set(self._clock())
            for mark, entry in marks:
                if not mark.done.done():
                    mark.done.set_result(entry)

    def _reset_entry(self, lost: tuple[int, str]) -> dict[str, Any]:
        log.error(
            "audit log: the chain in the store is shorter than what this node wrote; the store lost "
            "data. A new chain starts and records where the old one ended",
            extra={"sequence": lost[0]},
        )
        self._metrics.audit_write_errors.inc()
        conf = {"previous_sequence": lost[0], "previous_hash": lost[1]}
        return self._server_entry("audit.gap", "store_lost_entries", conf)

    async def _timer_loop(self, sink: AuditSink) -> None:
        next_retention = 0.0
        while True:
            now = time.monotonic()
            if now >= next_retention:
                next_retention = now + RETENTION_INTERVAL
                try:
                    await self._apply_retention(sink)
                except Exception as e:
                    log.error("audit log: retention failed", extra={"error": repr(e)})
            await asyncio.sleep(self._sign_interval)
            if self._unsigned or self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.checkpoint(), self._sign_interval)

    async def _apply_retention(self, sink: AuditSink) -> None:
        kept_from = None
        cutoff = self._clock() - self._retention
        while (first := await sink.remove_before(cutoff)) is not None:
            kept_from = first
        if kept_from is not None:
            entry = self._server_entry("audit.retention")
            entry["audit"] = {"kept_from": kept_from}
            self._pending.append(entry)
            self._changed()
            log.info("audit log: old entries removed", extra={"kept_from": kept_from})

    # --- reading ----------------------------------------------------------------------------

    def lines(self) -> AsyncIterator[bytes]:
        if self._sink is None:
            raise RuntimeError("the audit log is off")
        return self._sink.lines()

    async def signed_head(self) -> dict[str, Any] | None:
        return None if self._sink is None else await self._sink.signed_head()
