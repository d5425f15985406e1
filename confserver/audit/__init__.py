"""The audit log: a hash chain of signed entries (``chain``), what an entry says (``record``),
where the chain is kept (``sinks``, ``redissink``), the writer (``log``) and searches (``query``).
docs/AUDIT.md describes it for operators. This package's top level is pure (no aiohttp, no
Redis): ``confctl audit verify`` uses it; the writer is imported from ``.log``."""

from __future__ import annotations

from .chain import Report, Signer, load_public_key, verify
from .query import Query, search
from .record import SERVER, UNKNOWN, Actor

__all__ = [
    "SERVER",
    "UNKNOWN",
    "Actor",
    "Query",
    "Report",
    "Signer",
    "load_public_key",
    "search",
    "verify",
]
