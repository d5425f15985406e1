"""The audit writer on its sinks: the chain continues across restarts, a line cut short by a crash
is removed, a full queue leaves a recorded gap, a failing sink is retried, retention leaves a
record, and two nodes append to one Redis chain at once."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from confserver.audit import Actor, Signer, load_public_key, verify
from confserver.audit.log import AuditLog, load_signer
from confserver.audit.redissink import RedisSink
from confserver.audit.sinks import FileSink
from confserver.metrics import Metrics

SIGNER = Signer(Ed25519PrivateKey.generate())
KEYS = {SIGNER.key_id: SIGNER.public}
ANA = Actor("participant", "ana", "Ana")


def _log(sink: Any, **kw: Any) -> AuditLog:
    return AuditLog(sink, SIGNER, Metrics.create(process=False), node=kw.pop("node", "n1"), **kw)


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("audit-*.jsonl"))


def _append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _file_lines(directory: Path) -> list[bytes]:
    return b"".join(p.read_bytes() for p in sorted(directory.glob("audit-*.jsonl"))).splitlines()


async def _write(log: AuditLog, n: int, room: str = "r") -> None:
    for _ in range(n):
        log.record("participant.join", actor=ANA, room=room)
    await log.flush()


async def test_the_chain_continues_across_restarts(tmp_path: Path) -> None:
    log = _log(FileSink(tmp_path))
    await log.start()
    await _write(log, 5)
    await log.close()
    again = _log(FileSink(tmp_path))
    await again.start()
    await _write(again, 3)
    await again.close()
    lines = _file_lines(tmp_path)
    head = json.loads((tmp_path / "head.json").read_bytes())
    report = verify(lines, KEYS, head=head)
    assert report.ok, report.error
    actions = [json.loads(line)["event"]["action"] for line in lines]
    assert actions.count("participant.join") == 8 and actions.count("audit.start") == 2
    assert actions[-1] == "audit.checkpoint"  # closing signs what it wrote
    assert report.unsigned_tail == 0


async def test_a_line_cut_short_by_a_crash_is_removed_at_the_next_start(tmp_path: Path) -> None:
    log = _log(FileSink(tmp_path))
    await log.start()
    await _write(log, 3)
    await log.close()
    _append_bytes(_segments(tmp_path)[-1], b'{"@timestamp":"2026-')  # a power loss mid-write
    again = _log(FileSink(tmp_path))
    await again.start()
    await _write(again, 1)
    await again.close()
    lines = _file_lines(tmp_path)
    assert verify(lines, KEYS).ok
    start = [json.loads(x) for x in lines if b'"audit.start"' in x][-1]
    assert start["conf"]["recovered_bytes"] == len(b'{"@timestamp":"2026-')


async def test_a_full_queue_drops_entries_and_the_chain_says_how_many(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    log = _log(sink, queue_size=1000)
    failing = True
    real_append = sink.append

    async def append(*args: Any) -> Any:
        if failing:
            raise OSError("disk full")
        return await real_append(*args)

    sink.append = append  # type: ignore[method-assign]
    await log.start()
    for _ in range(1500):
        log.record("participant.join", actor=ANA)
    await asyncio.sleep(0.05)
    failing = False
    await asyncio.wait_for(log.flush(), 10)
    await log.close()
    lines = _file_lines(tmp_path)
    assert verify(lines, KEYS).ok
    entries = [json.loads(x) for x in lines]
    gaps = [e for e in entries if e["event"]["action"] == "audit.gap"]
    joins = [e for e in entries if e["event"]["action"] == "participant.join"]
    # the start entry took one place in the queue
    assert len(joins) == 999 and [g["conf"]["dropped"] for g in gaps] == [501]


async def test_retention_removes_old_days_and_records_where_the_chain_starts(tmp_path: Path) -> None:
    log = _log(FileSink(tmp_path))
    await log.start()
    await _write(log, 4)
    await log.close()
    (old,) = _segments(tmp_path)
    os.rename(old, tmp_path / "audit-2000-01-01.jsonl")  # as if written long ago
    later = _log(FileSink(tmp_path), retention_days=30)
    await later.start()
    await _write(later, 2)
    await later.close()
    assert not (tmp_path / "audit-2000-01-01.jsonl").exists()
    lines = _file_lines(tmp_path)
    report = verify(lines, KEYS, head=json.loads((tmp_path / "head.json").read_bytes()))
    assert report.ok, report.error
    retention = [json.loads(x) for x in lines if b'"audit.retention"' in x]
    assert [r["audit"]["kept_from"] for r in retention] == [report.first_seq]


def test_the_audit_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit-key.pem"
    made = load_signer(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert load_signer(path).key_id == made.key_id
    assert load_public_key(path.read_bytes()) is not None


async def test_two_nodes_append_to_one_redis_chain_at_once(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"t{os.getpid()}:"
    logs = [_log(RedisSink(client, prefix=prefix), node=f"node-{i}") for i in range(2)]
    for log in logs:
        await log.start()

    async def busy(log: AuditLog) -> None:
        for i in range(300):
            log.record("participant.join", actor=ANA, room=log.node)
            if i % 50 == 0:
                await asyncio.sleep(0)
        await log.flush()

    await asyncio.gather(*(busy(log) for log in logs))
    heads = [await log.checkpoint() for log in logs]
    for log in logs:
        await log.close()
    lines = await client.lrange(f"{prefix}audit:log", 0, -1)
    signed = json.loads(await client.get(f"{prefix}audit:signed"))
    report = verify(lines, KEYS, head=signed)
    assert report.ok, report.error
    entries = [json.loads(x) for x in lines]
    by_node = [sum(e.get("conf", {}).get("room") == log.node for e in entries) for log in logs]
    assert by_node == [300, 300]
    assert max(h["event"]["sequence"] for h in heads) <= signed["event"]["sequence"]
    # one byte edited in Redis is found
    lines[10] = lines[10].replace("node-", "nodf-", 1)
    assert not verify(lines, KEYS, head=signed).ok
    await client.aclose()


@pytest.mark.parametrize(
    "bad", ["", "not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_a_bad_public_key_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        load_public_key(bad.encode())


async def test_a_redis_that_lost_the_chain_gets_a_new_one_that_says_so(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"lost{os.getpid()}:"
    log = _log(RedisSink(client, prefix=prefix))
    await log.start()
    await _write(log, 5)
    await log.checkpoint()
    await client.delete(
        f"{prefix}audit:log", f"{prefix}audit:head", f"{prefix}audit:signed"
    )  # restarted empty
    await _write(log, 2)
    await log.close()
    lines = await client.lrange(f"{prefix}audit:log", 0, -1)
    assert verify(lines, KEYS).ok
    entries = [json.loads(x) for x in lines]
    assert entries[0]["event"]["sequence"] == 1
    assert entries[0]["event"]["action"] == "audit.gap"
    assert entries[0]["event"]["reason"] == "store_lost_entries"
    assert entries[0]["conf"]["previous_sequence"] == 7  # start, five joins, a checkpoint
    await client.aclose()


def _key_id_of(path: str) -> str:
    return load_signer(path).key_id


def test_processes_starting_at_once_share_one_audit_key(tmp_path: Path) -> None:
    import multiprocessing

    path = str(tmp_path / "shared" / "audit-key.pem")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.map(_key_id_of, [path] * 8)
    assert len(set(ids)) == 1 and _key_id_of(path) == ids[0]
    assert [p.name for p in (tmp_path / "shared").iterdir()] == ["audit-key.pem"]  # no temp file left


async def test_a_second_writer_on_one_directory_is_refused(tmp_path: Path) -> None:
    first = _log(FileSink(tmp_path))
    await first.start()
    with pytest.raises(RuntimeError, match="in use by another confserver process"):
        await _log(FileSink(tmp_path)).start()
    await first.close()
    again = _log(FileSink(tmp_path))  # free once the first closed
    await again.start()
    await again.close()
    assert verify(_file_lines(tmp_path), KEYS).ok


async def test_a_log_whose_last_line_was_edited_is_refused_at_start_with_a_clear_message(
    tmp_path: Path,
) -> None:
    log = _log(FileSink(tmp_path))
    await log.start()
    await _write(log, 2)
    await log.close()
    _append_bytes(_segments(tmp_path)[-1], b'{"edited": true}\n')
    with pytest.raises(RuntimeError, match="is not an audit entry"):
        await _log(FileSink(tmp_path)).start()
