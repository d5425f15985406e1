"""Per-packet I/O primitives under the SFU's sockets, outside aiortc.

- ``drain`` / ``Drainer``: read what a datagram socket (the SFU binds its media sockets itself
  and hands them to asyncio) already holds in the callback of the first datagram, backing off
  while it holds no second one; on a socket with kernel receive timestamps
  (``enable_timestamps``), how long RTP waited, and RTP that waited too long dropped unread.
- ``DatagramBatch``: a fan-out protected in place (``sfu.glue.srtp.SrtpSession``) and sent in
  one ``sendmmsg``.

aiortc's, aioice's and pylibsrtp's own internals stay in ``sfu.glue``, which uses these.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cffi import FFI

if TYPE_CHECKING:
    from sfu.glue.srtp import SrtpSession

ErrorSink = Callable[[OSError], None]
"""Where a socket error met while reading goes (asyncio's ``protocol.error_received``)."""


DRAIN = 32
"""Datagrams read in one socket callback at most: asyncio reads one per readiness event and event
loop iteration; under load a socket holds several, and reading them at once saves a loop
iteration each (a meeting of 100 near saturation lost far less with it)."""
DRAIN_BACKOFF = 8
"""Callbacks that do not look for more after one that found nothing: a failing ``recvfrom`` costs
~2.7 µs here, and a lightly loaded socket rarely holds a second datagram."""


SO_TIMESTAMPNS: int | None = getattr(
    socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None
)
"""Linux's option for a ``struct timespec`` of each datagram's arrival (CLOCK_REALTIME); None
elsewhere (no stamps, no bound on the receive queue's delay)."""
_TIMESPEC = struct.Struct("@ll")  # time_t, long
_STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


def enable_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp each datagram ``sock`` receives with its arrival time; False
    where it cannot. (Linux turns arrival stamping on for the machine shortly after the first
    socket asks; a datagram that arrived before is stamped when read, and looks fresh.)"""
    if SO_TIMESTAMPNS is None or not hasattr(sock, "recvmsg"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def drain(
    sock: socket.socket,
    handle: Callable[[bytes, Any], None],
    error_received: ErrorSink,
    waited: Callable[[float, bool], bool] | None = None,
) -> int:
    """Hand up to ``DRAIN`` more datagrams already waiting on ``sock`` (non-blocking, read by an
    asyncio datagram transport) to ``handle``; returns how many were read. Socket errors go to
    ``error_received`` as asyncio sends them to its protocol.

    With ``waited`` (the socket stamps arrivals: ``enable_timestamps``), the first RTP datagram
    read is told how long it waited (seconds, and True: the head of the queue); when ``waited``
    answers True it is dropped, and the next one is asked (with False), until one is kept. The
    queue is in arrival order, so what follows arrived later and is read without looking at its
    stamp. RTCP, STUN and DTLS are never asked about."""
    recvfrom = sock.recvfrom
    check = waited is not None
    head = True
    for count in range(DRAIN):
        try:
            if check:
                data, ancillary, _, addr = sock.recvmsg(65536, _STAMP_SPACE)
            else:
                data, addr = recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            return count
        except OSError as exc:
            error_received(exc)
            return count
        if (
            check
            and len(data) > 12
            and 127 < data[0] < 192
            and not 191 < data[1] < 224
            and ancillary
            and len(ancillary[0][2]) >= _TIMESPEC.size
        ):
            seconds, nanoseconds = _TIMESPEC.unpack_from(ancillary[0][2])
            if waited(time.time() - seconds - nanoseconds * 1e-9, head):  # type: ignore[misc]
                head = False
                continue
            check = False  # everything behind it arrived later
        handle(data, addr)
    return DRAIN


class Drainer:
    """``drain`` after each datagram, backing off while the socket holds no second one."""

    __slots__ = ("_error_received", "_handle", "_skip", "_sock", "_waited")

    def __init__(
        self,
        sock: socket.socket,
        handle: Callable[[bytes, Any], None],
        error_received: ErrorSink,
        waited: Callable[[float, bool], bool] | None = None,
    ) -> None:
        self._sock = sock
        self._handle = handle
        self._error_received = error_received
        self._waited = waited
        self._skip = 0

    def __call__(self) -> None:
        if self._skip:
            self._skip -= 1
        elif not drain(self._sock, self._handle, self._error_received, self._waited):
            self._skip = DRAIN_BACKOFF


# --- one sendmmsg(2) for many datagrams on one socket ---------------------------------------------

MMSG_CDEF = """
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned int msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen; int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
"""
"""libc's ``sendmmsg`` and its structures, for cffi's ABI mode (Linux)."""
BATCH = 128
"""Datagrams one ``sendmmsg`` call sends at most: a packet's fan-out to a full meeting fits."""
_WORDS = 8  # a struct mmsghdr in 64-bit words (Linux, LP64)
_FULL = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})


class _Libc:
    """``sendmmsg`` through cffi's ABI mode (libc, no compiler), or None where libc lacks it or
    lays ``struct mmsghdr`` out otherwise than the words ``DatagramBatch`` writes."""

    __slots__ = ("ffi", "sendmmsg")

    def __init__(self) -> None:
        self.ffi = ffi = FFI()
        ffi.cdef(MMSG_CDEF)
        try:
            self.sendmmsg: Any = ffi.dlopen(None).sendmmsg
        except (OSError, AttributeError):
            self.sendmmsg = None
        layout = (
            ffi.sizeof("struct mmsghdr"),
            ffi.offsetof("struct msghdr", "msg_iov"),
            ffi.sizeof("struct iovec"),
        )
        if layout != (_WORDS * 8, 16, 16) or ffi.sizeof("void *") != 8 or sys.byteorder != "little":
            self.sendmmsg = None


class DatagramBatch:
    """Datagrams for one unconnected socket, each protected where it lies (in its SRTP session's
    buffer) and sent with one ``sendmmsg`` per ``flush``: a packet's fan-out to every subscriber
    on a shared media socket costs one system call instead of one per subscriber.

    ``emitter`` makes a ``SrtpSession.sender``-like ``emit(size)`` for one destination: it
    protects and queues; ``flush`` sends what is queued. Until then the session's buffer holds
    the queued datagram, so the owner's ``buffer`` is set to None on queueing (the owner must
    ``flush`` before writing there again) and given back by ``flush``. A datagram the kernel
    refuses is counted in ``failed``, never retried (a full buffer drops, as a direct send does).
    The queue holds addresses, not references: an ``emit`` (which keeps its destination's
    ``struct sockaddr``) must live until the ``flush`` after it queued (a writer holds its own).
    With no usable ``sendmmsg`` (``available`` False) ``emitter`` is not to be called."""

    __slots__ = (
        "_fd",
        "_iov",
        "_libc",
        "_msgs",
        "_on_failed",
        "_pending",
        "_schedule",
        "_words",
        "count",
        "failed",
        "in_callback",
    )

    def __init__(
        self,
        sock: socket.socket,
        schedule: Callable[[], None],
        on_failed: Callable[[int], None] | None = None,
        capacity: int = BATCH,
    ) -> None:
        self._libc = libc = _Libc()
        self._on_failed = on_failed
        self._fd = sock.fileno()
        self._schedule = schedule  # flush soon: for datagrams queued outside a socket callback
        ffi = libc.ffi
        self._msgs = ffi.new("struct mmsghdr[]", capacity)
        self._iov = ffi.new("struct iovec[]", capacity)
        self._words = memoryview(ffi.buffer(self._msgs)).cast("Q")
        for i in range(capacity):
            self._msgs[i].msg_hdr.msg_iov = ffi.addressof(self._iov, i)
            self._msgs[i].msg_hdr.msg_iovlen = 1
        self._pending: list[Any] = []  # owners whose buffer is queued
        self.count = 0
        self.failed = 0
        self.in_callback = False  # set by the socket's reader, which flushes after each datagram

    @property
    def available(self) -> bool:
        return self._libc.sendmmsg is not None

    def address(self, family: int, host: str, port: int) -> Any | None:
        """A ``struct sockaddr`` for (``host``, ``port``), for ``emitter``; None when ``host`` is
        not a plain numeric address of ``family``."""
        try:
            packed = socket.inet_pton(family, host)
        except (OSError, ValueError):
            return None
        if family == socket.AF_INET:
            raw = struct.pack("=H", family) + struct.pack("!H", port) + packed + bytes(8)
        else:
            raw = struct.pack("=H", family) + struct.pack("!HI", port, 0) + packed + struct.pack("=I", 0)
        return self._libc.ffi.new(f"char[{len(raw)}]", raw)

    def emitter(self, session: SrtpSession, name: Any, owner: Any) -> Callable[[int], bool]:
        """``emit(size)``: protect the ``size`` bytes in ``session.rtp_buffer`` and queue them
        for ``name`` (from ``address``); False when libsrtp refuses. ``owner.buffer`` is None
        until the next ``flush``."""
        ffi = self._libc.ffi
        protect, srtp, cdata, length = session.in_place()
        base = int(ffi.cast("uintptr_t", cdata))
        name_address, name_size = int(ffi.cast("uintptr_t", name)), len(name)
        words, iov = self._words, memoryview(ffi.buffer(self._iov)).cast("Q")
        pending, capacity, batch = self._pending, len(self._iov), self

        def emit(size: int, _name: Any = name) -> bool:  # _name: the sockaddr lives as long as emit
            length[0] = size
            if protect(srtp, cdata, length):
                return False
            i = batch.count
            if i == capacity:
                batch.flush()
                i = 0
            if i == 0 and not batch.in_callback:
                batch._schedule()
            iov[2 * i] = base
            iov[2 * i + 1] = length[0]
            w = _WORDS * i
            words[w] = name_address
            words[w + 1] = name_size
            batch.count = i + 1
            owner.buffer = None
            pending.append(owner)
            return True

        return emit

    def flush(self) -> None:
        """Send what is queued and give the owners their buffers back."""
        count, failed = self.count, self.failed
        if not count:
            return
        self.count = 0
        sendmmsg, msgs, fd = self._libc.sendmmsg, self._msgs, self._fd
        start = 0
        while start < count:
            sent = sendmmsg(fd, msgs + start, count - start, 0)
            if sent > 0:
                start += sent
                continue
            if self._libc.ffi.errno in _FULL:  # the rest would fail alike
                self.failed += count - start
                break
            self.failed += 1  # this destination refused (unreachable, not permitted): skip it
            start += 1
        for owner in self._pending:
            owner.buffer = owner.ready_buffer
        self._pending.clear()
        if self.failed != failed and self._on_failed is not None:
            self._on_failed(self.failed - failed)
