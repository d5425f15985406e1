"""The send path (``RtpWriter``: SRTP protect and send synchronously on the nominated ICE pair's
socket): re-exported from ``sfu.glue.aiortcseam``, the one module that reaches aiortc's private
internals."""

from __future__ import annotations

from sfu.glue.aiortcseam import RtpWriter, invalidate_writers

__all__ = ["RtpWriter", "invalidate_writers"]
