"""Where the audit chain is kept: files beside a memory store, a Redis list beside a Redis store.

Both take a batch of sealed lines only if the chain's head is still the one the batch was sealed
on (one writer at a time on a file; an atomic compare-and-append on Redis, so several nodes write
one chain). Both keep the newest checkpoint apart from the entries: the signed head.
"""

from __future__ import annotations

import asyncio
import datetime
import fcntl
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from .chain import GENESIS

log = logging.getLogger("confserver.audit")

Head = tuple[int, str]
"""The newest entry's sequence number and hash; ``(0, GENESIS)`` for an empty log."""
READ_CHUNK = 1 << 20


class AuditSink(Protocol):
    async def open(self) -> Head:
        """Prepare to write; the head to continue from."""

    async def append(self, lines: Sequence[bytes], expect: Head, new_head: Head) -> Head | None:
        """Append ``lines`` if the head is still ``expect``; ``None`` when done, else the head found
        (someone else appended: seal the batch again on it)."""

    async def sync(self) -> None:
        """Make what was appended durable."""

    async def set_signed_head(self, checkpoint: dict[str, Any]) -> None: ...

    async def signed_head(self) -> dict[str, Any] | None: ...

    def lines(self) -> AsyncIterator[bytes]:
        """Every line, oldest first."""

    async def remove_before(self, cutoff: float) -> int | None:
        """Drop entries older than ``cutoff`` (whole files or list items); the sequence number
        the log now starts at, or ``None`` when nothing was dropped."""

    async def close(self) -> None: ...


# --- files -------------------------------------------------------------------------------------


def _day(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, tz=datetime.UTC).strftime("%Y-%m-%d")


class FileSink:
    """One file a day, ``audit-YYYY-MM-DD.jsonl`` (UTC), in ``directory`` (mode 0700, files 0600),
    and ``head.json``. Lines are written with ``O_APPEND`` as soon as they are sealed (a crash of
    the process loses nothing written); ``fsync`` runs at every checkpoint, or after every batch
    with ``fsync_always``. A line cut short by a power loss is removed at the next start, and the
    start entry says how many bytes were."""

    def __init__(self, directory: str | Path, *, fsync_always: bool = False) -> None:
        self.directory = Path(directory).expanduser()
        self._fsync_always = fsync_always
        self._fd: int | None = None
        self._fd_day = ""
        self._lock: int | None = None
        self.recovered_bytes = 0

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("audit-????-??-??.jsonl"))

    async def open(self) -> Head:
        return await asyncio.to_thread(self._open)

    def _open(self) -> Head:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)
        self._take_lock()
        for segment in reversed(self._segments()):
            last = self._last_line(segment)
            if last is not None:
                entry = json.loads(last)
                event = entry.get("event") if isinstance(entry, dict) else None
                if not isinstance(event, dict) or not isinstance(event.get("sequence"), int):
                    raise RuntimeError(
                        f"audit.dir: the last line of {segment.name} is not an audit entry; the log was "
                        "edited. Check it with confctl audit verify DIR, set the damaged file aside, restart"
                    )
                return event["sequence"], str(event.get("hash"))
        return 0, GENESIS

    def _take_lock(self) -> None:
        """One writer per directory: a second process appending to the same files would fork
        the chain. Held until the process ends."""
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(
                f"audit.dir {self.directory} is in use by another confserver process; give each "
                "process its own audit.dir, or use the Redis store for several nodes"
            ) from None
        self._lock = fd

    def _last_line(self, segment: Path) -> bytes | None:
        """The file's last complete line; a partial one after it is cut off."""
        with open(segment, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            tail_start = max(0, size - 65536)
            f.seek(tail_start)
            tail = f.read()
            end = tail.rfind(b"\n")
            if end + 1 < len(tail):  # bytes after the last newline: a write cut short
                self.recovered_bytes += len(tail) - end - 1
                f.truncate(tail_start + end + 1)
                os.fsync(f.fileno())
                log.warning("audit log: removed a line cut short", extra={"file": segment.name})
            lines = tail[: end + 1].splitlines()
            for line in reversed(lines):
                try:
                    json.loads(line)
                except ValueError:
                    continue  # the first, partial line of the tail window
                return line
        return None

    def _writable(self, now: float) -> int:
        day = _day(now)
        if self._fd is None or day != self._fd_day:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
            path = self.directory / f"audit-{day}.jsonl"
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._fd_day = day
        return self._fd

    async def append(self, lines: Sequence[bytes], expect: Head, new_head: Head) -> Head | None:
        fd = self._writable(time.time())
        data = b"".join(line + b"\n" for line in lines)
        written = os.write(fd, data)
        if written != len(data):  # a full disk: the partial line is removed at the next start
            raise OSError(f"audit log: wrote {written} of {len(data)} bytes")
        if self._fsync_always:
            await asyncio.to_thread(os.fsync, fd)
        return None

    async def sync(self) -> None:
        if self._fd is not None:
            await asyncio.to_thread(os.fsync, self._fd)

    async def set_signed_head(self, checkpoint: dict[str, Any]) -> None:
        await asyncio.to_thread(self._write_head, checkpoint)

    def _write_head(self, checkpoint: dict[str, Any]) -> None:
        tmp = self.directory / "head.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(checkpoint, sort_keys=True).encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / "head.json")

    async def signed_head(self) -> dict[str, Any] | None:
        try:
            raw = await asyncio.to_thread((self.directory / "head.json").read_bytes)
        except FileNotFoundError:
            return None
        head: dict[str, Any] = json.loads(raw)
        return head

    async def lines(self) -> AsyncIterator[bytes]:
        for segment in self._segments():
            rest = b""
            offset = 0
            while True:
                chunk = await asyncio.to_thread(_read_at, segment, offset)
                if not chunk:
                    break
                offset += len(chunk)
                parts = (rest + chunk).split(b"\n")
                rest = parts.pop()
                for line in parts:
                    if line:
                        yield line
            if rest:
                yield rest

    async def remove_before(self, cutoff: float) -> int | None:
        keep_from = _day(cutoff)
        segments = self._segments()
        old = [s for s in segments[:-1] if s.name[6:16] < keep_from]  # the newest file always stays
        if not old:
            return None
        first = segments[len(old)]
        for segment in old:
            await asyncio.to_thread(segment.unlink)
        line = (await asyncio.to_thread(_read_at, first, 0)).split(b"\n", 1)[0]
        if not line:
            return None
        seq: int = json.loads(line)["event"]["sequence"]
        return seq

    async def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await asyncio.to_thread(os.fsync, fd)
            os.close(fd)
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None


def _read_at(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(READ_CHUNK)
