"""The audit chain on its own: an intact log verifies; editing a byte, deleting, reordering or
cutting entries at either end each fail and name the place."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from confserver.audit import Signer, verify
from confserver.audit.chain import GENESIS, canonical, seal
from confserver.audit.record import Actor, entry

SIGNER = Signer(Ed25519PrivateKey.generate())
KEYS = {SIGNER.key_id: SIGNER.public}
ANA = Actor("participant", "ana", "Ana")


def _build(n: int, *, checkpoint_every: int = 4, start: int = 1, prev: str = GENESIS) -> list[dict[str, Any]]:
    """``n`` entries with a checkpoint after every ``checkpoint_every`` (and one at the end)."""
    out: list[dict[str, Any]] = []
    seq = start - 1
    for i in range(n):
        seq += 1
        e = seal(entry("participant.join", now=1_700_000_000 + i, node="n1", actor=ANA, room="r"), seq, prev)
        out.append(e)
        prev = e["event"]["hash"]
        if (i + 1) % checkpoint_every == 0 or i == n - 1:
            seq += 1
            base = entry("audit.checkpoint", now=1_700_000_000 + i, node="n1", actor=Actor("server"))
            c = SIGNER.checkpoint(base, seq, prev)
            out.append(c)
            prev = c["event"]["hash"]
    return out


def _lines(entries: list[dict[str, Any]]) -> list[bytes]:
    return [canonical(e) for e in entries]


def _head(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return [e for e in entries if e["event"]["action"] == "audit.checkpoint"][-1]


def test_an_intact_log_verifies_with_its_head() -> None:
    log = _build(10)
    report = verify(_lines(log), KEYS, head=_head(log))
    assert report.ok, report.error
    assert report.entries == len(log)
    assert report.signed_through == log[-1]["event"]["sequence"]
    assert report.unsigned_tail == 0


def test_editing_one_byte_is_found_on_its_line() -> None:
    lines = _lines(_build(10))
    lines[5] = lines[5].replace(b'"ana"', b'"anb"', 1)
    report = verify(lines, KEYS)
    assert not report.ok and report.line == 6
    assert "does not match its hash" in str(report.error)


def test_editing_the_hash_too_breaks_the_next_link() -> None:
    log = _build(10)
    forged = dict(log[3])
    forged["user"] = {**forged["user"], "id": "mallory"}
    log[3] = seal(forged, forged["event"]["sequence"], forged["audit"]["prev"])
    report = verify(_lines(log), KEYS)
    assert not report.ok and report.line == 5
    assert "does not link" in str(report.error)


def test_deleting_an_entry_is_found() -> None:
    lines = _lines(_build(10))
    del lines[4]
    report = verify(lines, KEYS)
    assert not report.ok and report.line == 5
    assert "entry 5 is missing" in str(report.error)


def test_reordering_two_entries_is_found() -> None:
    lines = _lines(_build(10))
    lines[2], lines[3] = lines[3], lines[2]
    report = verify(lines, KEYS)
    assert not report.ok and report.line == 3
    assert "missing" in str(report.error) or "out of order" in str(report.error)


def test_cutting_the_tail_checkpoints_and_all_is_found_with_the_head() -> None:
    log = _build(12)
    head = _head(log)
    cut = _lines(log)[:7]  # ends before the last two checkpoints
    assert verify(cut, KEYS).ok  # on its own, a shorter log looks whole...
    report = verify(cut, KEYS, head=head)  # ...but not beside the signed head
    assert not report.ok
    assert "the tail was cut" in str(report.error)


def test_entries_after_the_last_checkpoint_are_reported_as_unsigned() -> None:
    log = _build(8, checkpoint_every=100)[:-1]  # drop the final checkpoint
    report = verify(_lines(log), KEYS)
    assert report.ok and report.signed_through is None and report.unsigned_tail == 8


def test_a_forged_signature_or_an_unknown_key_fails() -> None:
    log = _build(4)
    other = Signer(Ed25519PrivateKey.generate())
    assert not verify(_lines(log), {other.key_id: other.public}).ok
    stranger = other.checkpoint(
        entry("audit.checkpoint", now=1, node="n", actor=Actor("server")), 6, log[-1]["event"]["hash"]
    )
    report = verify([*_lines(log), canonical(stranger)], KEYS)
    assert not report.ok and "unknown key" in str(report.error)
    bad = json.loads(canonical(log[-1]))
    bad["audit"]["signature"] = bad["audit"]["signature"][:-4] + "AAA="
    bad = seal(bad, bad["event"]["sequence"], bad["audit"]["prev"])
    report = verify([*_lines(log[:-1]), canonical(bad)], KEYS)
    assert not report.ok and "bad signature" in str(report.error)


def test_a_log_cut_from_the_front_needs_a_retention_record() -> None:
    log = _build(12)
    report = verify(_lines(log[5:]), KEYS)
    assert not report.ok and "without a retention record" in str(report.error)
    kept_from = log[5]["event"]["sequence"]
    tail = log[-1]
    retention = entry("audit.retention", now=2_000_000_000, node="n1", actor=Actor("server"))
    retention["audit"] = {"kept_from": kept_from}
    sealed = seal(retention, tail["event"]["sequence"] + 1, tail["event"]["hash"])
    assert verify([*_lines(log[5:]), canonical(sealed)], KEYS).ok
    assert not verify([*_lines(log[6:]), canonical(sealed)], KEYS).ok  # one more than it says


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_one_byte_changed_anywhere_is_found(data: st.DataObject) -> None:
    log = _build(6, checkpoint_every=3)
    blob = bytearray(b"\n".join(_lines(log)) + b"\n")
    at = data.draw(st.integers(0, len(blob) - 2))  # not the final newline
    new = data.draw(st.integers(0, 255).filter(lambda b: b != blob[at]))
    blob[at] = new
    report = verify(bytes(blob).split(b"\n"), KEYS, head=_head(log))
    assert not report.ok


@pytest.mark.parametrize("line", [b"not json", b"[]", b'{"event": 1}', b'{"event": {}}', b"\xff\xfe"])
def test_garbage_lines_fail_without_crashing(line: bytes) -> None:
    report = verify([*_lines(_build(2)), line], KEYS)  # two entries and a checkpoint, then this
    assert not report.ok and report.line == 4
