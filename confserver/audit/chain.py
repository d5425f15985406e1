"""The audit log's hash chain and its signatures: pure functions, no I/O.

Every entry is one JSON object written as its canonical form (keys sorted, no spaces, ASCII only)
on one line. An entry holds its place (``event.sequence``), the hash of the entry before it
(``audit.prev``; 64 zeros before the first) and its own hash (``event.hash``): SHA-256 of the
canonical form of the entry without ``event.hash``. Editing a byte, deleting or reordering entries
breaks the chain at that place.

A *checkpoint* is an entry (``event.action = "audit.checkpoint"``) whose ``audit.signature`` is an
Ed25519 signature over its own sequence number and ``audit.prev``: it vouches for every entry before
it. The newest checkpoint is also kept apart from the entries (the *signed head*), so cutting the
tail off the log, checkpoints and all, is detected too. Retention removes the oldest entries and
then appends an ``audit.retention`` entry saying where the log now starts; a log that starts later
than any such entry says was cut from the front.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS: Final = "0" * 64
"""``audit.prev`` of the first entry ever written."""
CHECKPOINT: Final = "audit.checkpoint"
RETENTION: Final = "audit.retention"
_SIGNED_LABEL: Final = b"confserver audit checkpoint v1\x00"


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The one byte form of an entry: what is hashed and what is written."""
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


def _without_hash(entry: Mapping[str, Any]) -> dict[str, Any]:
    event = {k: v for k, v in entry.get("event", {}).items() if k != "hash"}
    return {**entry, "event": event}


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(_without_hash(entry))).hexdigest()


def seal(entry: Mapping[str, Any], seq: int, prev: str) -> dict[str, Any]:
    """The entry placed after ``prev`` at ``seq``, with its hash. ``entry`` is not changed."""
    sealed = {
        **entry,
        "event": {**entry.get("event", {}), "sequence": seq},
        "audit": {**entry.get("audit", {}), "prev": prev},
    }
    sealed["event"]["hash"] = entry_hash(sealed)
    return sealed


def _signed_bytes(seq: int, prev: str) -> bytes:
    return _SIGNED_LABEL + f"{seq}:{prev}".encode("ascii")


def fingerprint(public: Ed25519PublicKey) -> str:
    """A key's short name in checkpoints: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (a private key's PEM gives its public key). Raises ``ValueError``."""
    try:
        key: object = serialization.load_pem_public_key(pem)
    except ValueError:
        key = serialization.load_pem_private_key(pem, password=None).public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the audit key must be an Ed25519 key")
    return key


@dataclass(frozen=True)
class Signer:
    """The node's audit key."""

    key: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.key.public_key()

    @property
    def key_id(self) -> str:
        return fingerprint(self.public)

    def checkpoint(self, entry: Mapping[str, Any], seq: int, prev: str) -> dict[str, Any]:
        """Seal a checkpoint entry at ``seq``, signing the chain up to ``prev``."""
        signature = base64.b64encode(self.key.sign(_signed_bytes(seq, prev))).decode("ascii")
        audit = {**entry.get("audit", {}), "signature": signature, "key": self.key_id}
        return seal({**entry, "audit": audit}, seq, prev)


# --- verification ------------------------------------------------------------------------------


@dataclass
class Report:
    """What ``verify`` found. ``error`` names the first broken place; ``None`` when intact."""

    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    signed_through: int | None = None
    """The sequence number of the newest checkpoint whose signature verified."""
    unsigned_tail: int = 0
    """Entries after the newest verified checkpoint (normal: they are signed within a minute)."""
    error: str | None = None
    line: int | None = None
    """The line (1-based) of the first broken entry, where the problem is on a line."""
    keys_seen: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.error is None

    def fail(self, message: str, line: int | None = None) -> Report:
        if self.error is None:
            self.error, self.line = message, line
        return self


def _parse(raw: str | bytes, line: int, report: Report) -> dict[str, Any] | None:
    try:
        entry = json.loads(raw)
    except ValueError:
        report.fail(f"line {line} is not a JSON object (edited or cut short)", line)
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("event"), dict):
        report.fail(f"line {line} is not an audit entry", line)
        return None
    return entry


def verify(
    lines: Iterable[str | bytes],
    keys: Mapping[str, Ed25519PublicKey],
    *,
    head: Mapping[str, Any] | None = None,
) -> Report:
    """Check a log, oldest entry first: each line canonical, each hash right, each entry linked to
    the one before, each checkpoint signed by one of ``keys`` (by fingerprint), and the log not cut
    at either end (``head``: the signed head kept apart; an ``audit.retention`` entry for the start)."""
    report = Report()
    prev_hash: str | None = None
    prev_seq = 0
    starts_after = 0  # the newest retention entry's claim: entries before it were removed
    checkpoints: dict[int, str] = {}
    for number, raw in enumerate(lines, start=1):
        text = raw.strip() if isinstance(raw, str) else raw.strip().decode("utf-8", "replace")
        if not text:
            continue
        entry = _parse(text, number, report)
        if entry is None:
            return report
        event = entry["event"]
        audit: dict[str, Any] = entry["audit"] if isinstance(entry.get("audit"), dict) else {}
        seq, stored, prev = event.get("sequence"), event.get("hash"), audit.get("prev")
        if not isinstance(seq, int) or not isinstance(stored, str) or not isinstance(prev, str):
            return report.fail(f"line {number}: sequence, hash or prev missing", number)
        if canonical(entry) != text.encode("ascii", "replace"):
            return report.fail(f"entry {seq} (line {number}) is not in canonical form: edited", number)
        if entry_hash(entry) != stored:
            return report.fail(f"entry {seq} (line {number}) does not match its hash: edited", number)
        if prev_hash is None:
            report.first_seq = seq
            if seq == 1 and prev != GENESIS:
                return report.fail(f"entry 1 (line {number}) does not start the chain", number)
        elif seq != prev_seq + 1:
            what = "missing" if seq > prev_seq + 1 else "out of order"
            found = f"line {number} holds entry {seq} after entry {prev_seq}"
            return report.fail(f"entry {prev_seq + 1} is {what}: {found}", number)
        elif prev != prev_hash:
            return report.fail(f"entry {seq} (line {number}) does not link to entry {prev_seq}", number)
        action = event.get("action")
        if action == CHECKPOINT:
            key = keys.get(str(audit.get("key")))
            if key is None:
                return report.fail(f"checkpoint {seq} (line {number}) is signed by an unknown key", number)
            try:
                key.verify(base64.b64decode(str(audit.get("signature"))), _signed_bytes(seq, prev))
            except (InvalidSignature, ValueError):
                return report.fail(f"checkpoint {seq} (line {number}) has a bad signature", number)
            report.signed_through = seq
            checkpoints[seq] = stored
            report.keys_seen.add(str(audit.get("key")))
        elif action == RETENTION:
            kept_from = audit.get("kept_from")
            if isinstance(kept_from, int):
                starts_after = max(starts_after, kept_from)
        prev_hash, prev_seq = stored, seq
        report.entries += 1
        report.last_seq = seq
    if report.first_seq is not None and report.first_seq > 1 and report.first_seq > starts_after:
        return report.fail(
            f"the log starts at entry {report.first_seq}: entries before it were removed without a "
            "retention record"
        )
    if head is not None:
        _check_head(report, head, keys, prev_seq, checkpoints)
    if report.signed_through is not None:
        report.unsigned_tail = prev_seq - report.signed_through
    elif report.entries:
        report.unsigned_tail = report.entries
    return report


def _check_head(
    report: Report,
    head: Mapping[str, Any],
    keys: Mapping[str, Ed25519PublicKey],
    last: int,
    checkpoints: Mapping[int, str],
) -> None:
    """The signed head must be in the log: a log that ends before it was cut short."""
    event = head.get("event", {})
    seq, stored = event.get("sequence"), event.get("hash")
    if not isinstance(seq, int) or entry_hash(head) != stored:
        report.fail("the signed head is damaged")
        return
    audit = head.get("audit", {})
    key = keys.get(str(audit.get("key")))
    try:
        if key is None:
            raise InvalidSignature
        key.verify(base64.b64decode(str(audit.get("signature"))), _signed_bytes(seq, str(audit.get("prev"))))
    except (InvalidSignature, ValueError):
        report.fail("the signed head's signature does not verify with the given keys")
        return
    if seq > last:
        report.fail(f"the log ends at entry {last} but the signed head is entry {seq}: the tail was cut")
    elif checkpoints.get(seq) != stored:
        report.fail(f"entry {seq} of the log is not the signed head's checkpoint")
