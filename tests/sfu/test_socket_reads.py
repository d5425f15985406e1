"""Reading what a media socket holds in one callback (``sfu.fastio.drain``)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from sfu import fastio, ports


class Recorder(asyncio.DatagramProtocol):
    def __init__(self, sock: Any = None) -> None:
        self.sock = sock
        self.transport: Any = None
        self.callbacks = 0
        self.datagrams: list[bytes] = []
        self.errors: list[Exception] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.callbacks += 1
        self.datagrams.append(data)
        fastio.drain(self.sock, lambda d, a: self.datagrams.append(d), self.error_received)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


async def test_datagrams_already_waiting_are_read_in_the_same_callback() -> None:
    loop = asyncio.get_running_loop()
    sock = ports.bind_udp("127.0.0.1", 0)
    transport, protocol = await loop.create_datagram_endpoint(lambda: Recorder(sock), sock=sock)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        address = transport.get_extra_info("sockname")
        count = fastio.DRAIN + 10
        for i in range(count):
            sender.sendto(b"d%d" % i, address)
        for _ in range(100):
            if len(protocol.datagrams) == count:
                break
            await asyncio.sleep(0.01)
        assert protocol.datagrams == [b"d%d" % i for i in range(count)]  # all of them, in order
        assert protocol.callbacks == 2  # DRAIN + 1 in the first callback, the rest in a second
        assert protocol.errors == []
    finally:
        sender.close()
        transport.close()


def test_a_socket_error_while_draining_goes_to_error_received() -> None:
    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gone.bind(("127.0.0.1", 0))
    address = gone.getsockname()
    gone.close()  # nobody listens there any more
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect(address)
        sock.send(b"to nobody")  # draws an ICMP port unreachable, reported on the next read
        protocol = Recorder(sock)
        handled: list[bytes] = []
        fastio.drain(sock, lambda d, a: handled.append(d), protocol.error_received)
        assert handled == []
        assert len(protocol.errors) == 1 and isinstance(protocol.errors[0], ConnectionRefusedError)
    finally:
        sock.close()


class CountingSocket:
    """A socket stand-in: ``waiting`` datagrams, then EAGAIN; counts the reads."""

    def __init__(self) -> None:
        self.waiting: list[bytes] = []
        self.reads = 0

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        self.reads += 1
        if not self.waiting:
            raise BlockingIOError
        return self.waiting.pop(0), ("127.0.0.1", 9)


def test_after_finding_nothing_the_next_callbacks_do_not_look() -> None:
    sock = CountingSocket()
    protocol = Recorder(sock)
    handled: list[bytes] = []
    drainer = fastio.Drainer(sock, lambda d, a: handled.append(d), protocol.error_received)  # type: ignore[arg-type]
    drainer()  # nothing waiting: one failed read
    assert sock.reads == 1
    for _ in range(fastio.DRAIN_BACKOFF):
        drainer()
    assert sock.reads == 1  # backed off
    sock.waiting = [b"a", b"b"]
    drainer()  # looks again and reads what waits
    assert handled == [b"a", b"b"] and sock.reads == 4
    drainer()  # it found some last time: looks again
    assert sock.reads == 5
