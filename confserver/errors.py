"""Errors with stable codes, shared by the admin API and signaling."""

from __future__ import annotations


class ServiceError(Exception):
    """A refused operation: ``code`` is stable and documented, ``message`` is for people,
    ``status`` is the HTTP status the admin API answers with."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def not_found(code: str, message: str) -> ServiceError:
    return ServiceError(code, message, 404)
