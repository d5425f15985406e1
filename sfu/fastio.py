"""Per-packet I/O primitives under the SFU's sockets, outside aiortc.

- ``SrtpSession``: libsrtp on one of aiortc's pylibsrtp sessions (``Session._srtp``, pylibsrtp's
  cffi binding), without pylibsrtp's per-call allocations: one buffer and length cell per
  session, reused; a packet can be written straight into the buffer (``rtp_buffer``), protected
  in place and sent from it.
- ``drain`` / ``Drainer``: read what an asyncio datagram socket (``transport._sock``) already
  holds in the callback of the first datagram, backing off while it holds no second one.

aiortc's and aioice's own internals stay in ``sfu.glue``, which uses these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pylibsrtp import Session
from pylibsrtp._binding import ffi, lib


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


DRAIN = 32
"""Datagrams read in one socket callback at most: asyncio reads one per readiness event and event
loop iteration; under load a socket holds several, and reading them at once saves a loop
iteration each (a meeting of 100 near saturation lost far less with it)."""
DRAIN_BACKOFF = 8
"""Callbacks that do not look for more after one that found nothing: a failing ``recvfrom`` costs
~2.7 µs here, and a lightly loaded socket rarely holds a second datagram."""


def drain(protocol: Any, handle: Callable[[bytes, Any], None]) -> int:
    """Hand up to ``DRAIN`` more datagrams already waiting on ``protocol``'s socket to ``handle``;
    returns how many. Socket errors go to ``protocol.error_received`` as asyncio sends them."""
    sock = getattr(protocol.transport, "_sock", None)  # asyncio's selector transport
    if sock is None:
        return 0
    recvfrom = sock.recvfrom
    for count in range(DRAIN):
        try:
            data, addr = recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            return count
        except OSError as exc:
            protocol.error_received(exc)
            return count
        handle(data, addr)
    return DRAIN


class Drainer:
    """``drain`` after each datagram, backing off while the socket holds no second one."""

    __slots__ = ("_handle", "_protocol", "_skip")

    def __init__(self, protocol: Any, handle: Callable[[bytes, Any], None]) -> None:
        self._protocol = protocol
        self._handle = handle
        self._skip = 0

    def __call__(self) -> None:
        if self._skip:
            self._skip -= 1
        elif not drain(self._protocol, self._handle):
            self._skip = DRAIN_BACKOFF
