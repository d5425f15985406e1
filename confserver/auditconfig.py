"""The ``[audit]`` section: where the audit chain and its key live, how often the head is signed,
how long entries are kept. Re-exported by ``confserver.config``; docs/AUDIT.md explains it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .configerror import ConfigError

FsyncPolicy = Literal["checkpoint", "always"]


@dataclass(frozen=True)
class AuditConfig:
    enabled: bool = True
    dir: str = "~/.local/state/confserver/audit"
    """The chain's files with the memory store (one a day, and ``head.json``); with the Redis store
    the chain lives in Redis and this is not used."""
    key_file: str = "~/.local/state/confserver/audit-key.pem"
    """The Ed25519 key that signs the chain's head (PEM, PKCS#8); made at first start when missing.
    Give every node of a cluster the same key, or list each node's public key when verifying."""
    sign_interval: float = 60.0
    """Seconds between signed checkpoints while entries come in (at most 60)."""
    retention_days: int = 365
    """Entries older than this are removed (whole days with files); the chain records where it
    now starts."""
    fsync: FsyncPolicy = "checkpoint"
    """Files only: ``checkpoint`` syncs to disk at every checkpoint (a power loss may lose the
    entries of the last minute; a crash of the process loses none), ``always`` after every batch."""
    queue_size: int = 100_000
    """Entries waiting to be written at most (while the disk or Redis is unavailable); beyond it
    they are counted as lost and the chain records the gap."""


def check_audit(audit: AuditConfig) -> None:
    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"audit.{key}: {msg}")

    need(1.0 <= audit.sign_interval <= 60.0, "sign_interval", "must be 1-60 seconds")
    need(1 <= audit.retention_days <= 36500, "retention_days", "must be 1-36500 days")
    need(1000 <= audit.queue_size <= 10_000_000, "queue_size", "must be 1000-10000000")
    need(not audit.enabled or bool(audit.dir.strip()), "dir", "must not be empty")
    need(not audit.enabled or bool(audit.key_file.strip()), "key_file", "must not be empty")
