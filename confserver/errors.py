"""Errors with stable codes, shared by the admin API and signaling. ``ServiceError`` is defined in
``confserver.contract`` (the media side raises it too) and re-exported here."""

from __future__ import annotations

from .contract import ServiceError

__all__ = ["ServiceError", "not_found"]


def not_found(code: str, message: str) -> ServiceError:
    return ServiceError(code, message, 404)
