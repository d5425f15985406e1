"""ICE restart (``IceRestart``: a fresh ICE agent under an established DTLS/SRTP session):
re-exported from ``sfu.glue.aiortcseam``, the one module that reaches aiortc's private internals."""

from __future__ import annotations

from sfu.glue.aiortcseam import IceRestart

__all__ = ["IceRestart"]
