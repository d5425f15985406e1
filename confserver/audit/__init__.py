"""The audit log: a hash chain of signed entries (``chain``), what an entry says (``record``),
where the chain is kept (``sinks``, ``redissink``), the writer (``log``) and searches (``query``).
docs/AUDIT.md describes it for operators."""

from __future__ import annotations

from .chain import Report, Signer, load_public_key, verify
from .log import AuditLog, load_signer
from .query import Query, search
from .record import SERVER, UNKNOWN, Actor

__all__ = [
    "SERVER",
    "UNKNOWN",
    "Actor",
    "AuditLog",
    "Query",
    "Report",
    "Signer",
    "load_public_key",
    "load_signer",
    "search",
    "verify",
]
