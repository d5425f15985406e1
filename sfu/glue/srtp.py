"""pylibsrtp's internals: libsrtp on one of aiortc's pylibsrtp sessions (``Session._srtp``,
pylibsrtp's cffi binding ``pylibsrtp._binding``), without pylibsrtp's per-call allocations.
pylibsrtp is pinned (``sfu.glue.check_versions``); re-check ``Session._srtp`` and the binding's
``srtp_protect``/``srtp_unprotect`` (and ``_rtcp``) signatures when upgrading it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from pylibsrtp import Session
from pylibsrtp._binding import ffi, lib


class InPlace(NamedTuple):
    """What protecting a packet where it lies takes, for a caller that binds it once and calls
    ``protect(context, buffer, length)`` per packet (0: protected, ``length[0]`` its new size)."""

    protect: Any  # libsrtp's srtp_protect
    context: Any  # the session's srtp_t
    buffer: Any  # the session's char[] (``SrtpSession.rtp_buffer`` is a view of it)
    length: Any  # an int* cell: the packet's size in, the protected size out


class SrtpSession:
    """libsrtp on one of aiortc's pylibsrtp sessions, without pylibsrtp's per-call allocations:
    one buffer and length cell per session, reused. ``protect`` returns a view into the buffer,
    valid until the next call (``sendto`` copies it at once); ``unprotect`` returns bytes. None
    when libsrtp refuses the packet (too long, authentication or replay failure).

    ``rtp_buffer`` is the start of that buffer, as long as an RTP packet may be before its auth
    tag: write a packet there and a ``sender`` protects and sends it without copying it."""

    __slots__ = ("_buffer", "_cdata", "_length", "_srtp", "_view", "rtp_buffer", "session")

    SIZE = 1500  # pylibsrtp's buffer, and its trailer reserves below
    RTP_TRAILER = 16 + 128
    RTCP_TRAILER = 4 + 16 + 128

    def __init__(self, session: Session) -> None:
        self.session = session  # keeps the libsrtp context alive
        self._srtp = session._srtp[0]
        self._cdata = ffi.new("char[]", self.SIZE)
        self._buffer = ffi.buffer(self._cdata)
        self._view = memoryview(self._buffer)
        self._length = ffi.new("int *")
        self.rtp_buffer = self._view[: self.SIZE - self.RTP_TRAILER]

    def in_place(self) -> InPlace:
        """libsrtp's protect call and this session's buffer and length cell (``DatagramBatch``)."""
        return InPlace(lib.srtp_protect, self._srtp, self._cdata, self._length)

    def sender(self, send: Callable[[memoryview], Any]) -> Callable[[int], bool]:
        """A function that protects the ``size`` bytes written into ``rtp_buffer`` where they lie
        and hands the result to ``send``: False when libsrtp refuses or ``send`` raises OSError
        (a full socket buffer included)."""
        srtp, cdata, length, view = self._srtp, self._cdata, self._length, self._view
        protect = lib.srtp_protect

        def emit(size: int) -> bool:
            length[0] = size
            if protect(srtp, cdata, length):
                return False
            try:
                send(view[: length[0]])
            except OSError:
                return False
            return True

        return emit

    def protect(self, data: bytes) -> memoryview | None:
        size = self._run(lib.srtp_protect, data, self.SIZE - self.RTP_TRAILER)
        return self._view[:size] if size >= 0 else None

    def protect_rtcp(self, data: bytes) -> memoryview | None:
        size = self._run(lib.srtp_protect_rtcp, data, self.SIZE - self.RTCP_TRAILER)
        return self._view[:size] if size >= 0 else None

    def unprotect(self, data: bytes) -> bytes | None:
        size = self._run(lib.srtp_unprotect, data, self.SIZE)
        return bytes(self._buffer[:size]) if size >= 0 else None  # already bytes: no copy

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        size = self._run(lib.srtp_unprotect_rtcp, data, self.SIZE)
        return bytes(self._buffer[:size]) if size >= 0 else None

    def _run(self, function: Any, data: bytes, limit: int) -> int:
        """``function`` (a libsrtp call) on ``data`` copied into the buffer: the resulting length,
        or -1 when ``data`` is longer than ``limit`` or libsrtp refuses it."""
        size = len(data)
        if size > limit:
            return -1
        self._view[:size] = data
        length = self._length
        length[0] = size
        if function(self._srtp, self._cdata, length):
            return -1
        return int(length[0])
