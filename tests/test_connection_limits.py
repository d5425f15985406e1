"""Connections that never authenticate cannot hold the server: a real `confserver` process with small
caps and a short header deadline, driven by raw sockets (idle TCP, a stalled TLS client, a slowloris
client), while `/healthz` keeps answering. Also the TLS suites the server accepts, the open-files
limit it raises, and the throttled log of accept errors."""

from __future__ import annotations

import asyncio
import re
import resource
import select
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from .conftest import free_port
from .test_e2e_server import Server, start_server

HEADER_TIMEOUT = 1.0


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(
        tmp_path,
        free_port(),
        free_port(),
        extra_env={
            "CONF_SFU_ENABLED": "false",
            "CONF_SERVER_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "CONF_SERVER_MAX_CONNECTIONS": "8",
            "CONF_SERVER_MAX_CONNECTIONS_PER_ADDRESS": "4",
        },
        preexec_fn=_low_soft_fd_limit,
    )
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()


def _low_soft_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))


def _connect(port: int, source: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closed the connection (EOF or reset) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            continue
        try:
            if sock.recv(4096) == b"":
                return True
        except (ssl.SSLWantReadError, BlockingIOError):  # a TLS record not yet whole
            continue
        except OSError:  # a reset, or a TLS alert
            return True
    return False


def _healthz(srv: Server) -> int:
    async def get() -> int:
        ctx = ssl.create_default_context(cafile=str(srv.cacert))
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{srv.url}/healthz", ssl=ctx, timeout=aiohttp.ClientTimeout(total=3)) as r,
        ):
            return r.status

    return asyncio.run(get())


def _metric(srv: Server, name: str) -> float:
    async def get() -> str:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{srv.metrics_port}/metrics") as r:
            return await r.text()

    text = asyncio.run(get())
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_silent_and_slowloris_connections_are_closed_within_the_header_deadline(capped: Server) -> None:
    silent = [_connect(capped.port, "127.0.0.2") for _ in range(3)]  # never start TLS
    ctx = ssl.create_default_context(cafile=str(capped.cacert))
    slow = ctx.wrap_socket(_connect(capped.port, "127.0.0.3"), server_hostname="localhost")
    started = time.monotonic()
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100
    sent = 0
    slow.setblocking(False)
    while time.monotonic() - started < 2 * HEADER_TIMEOUT + 1 and sent < len(request):
        try:
            slow.send(request[sent : sent + 1])  # one byte every 0.2 s, headers never finished
            sent += 1
        except (ssl.SSLError, OSError):
            break
        assert _healthz(capped) == 200  # the server answers others meanwhile
        time.sleep(0.2)
    assert _closed_within(slow, 0.5), "slowloris connection still open after the header deadline"
    for s in silent:
        assert _closed_within(s, 0.5), "silent connection still open after the handshake deadline"
    assert time.monotonic() - started < 2 * HEADER_TIMEOUT + 2
    assert _metric(capped, 'conf_tls_handshake_failures_total{listener="public",reason="timeout"}') >= 3
    for s in (*silent, slow):
        s.close()


def test_connections_beyond_the_caps_are_closed_at_once_and_counted(capped: Server) -> None:
    held = [_connect(capped.port, "127.0.0.2") for _ in range(4)]
    extra = _connect(capped.port, "127.0.0.2")
    assert _closed_within(extra, 0.5), "a 5th connection from one address was kept"
    assert not any(_closed_within(s, 0.05) for s in held)
    held += [_connect(capped.port, "127.0.0.3") for _ in range(3)]
    assert _healthz(capped) == 200  # the 8th connection: from another address, under the total
    assert (
        _metric(
            capped, 'conf_connections_refused_total{listener="public",reason="max_connections_per_address"}'
        )
        == 1
    )
    for s in held:
        s.close()


def test_the_open_files_limit_is_raised_to_the_hard_limit(capped: Server) -> None:
    limits = Path(f"/proc/{capped.proc.pid}/limits").read_text()
    soft, hard = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits).groups()  # type: ignore[union-attr]
    assert soft == hard


def _tls12_client(ciphers: str, port: int) -> bool:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
            return tls.version() == "TLSv1.2"
    except ssl.SSLError:
        return False


def test_tls12_accepts_aead_suites_only(capped: Server) -> None:
    assert _tls12_client("ECDHE+AESGCM", capped.port)
    assert _tls12_client("ECDHE+CHACHA20", capped.port)
    assert not _tls12_client("ECDHE+AES+SHA:ECDHE+AES+SHA256:ECDHE+AES+SHA384:@SECLEVEL=0", capped.port)


ACCEPT_FLOOD = textwrap.dedent(
    """
    import asyncio, logging, resource, socket, sys
    from confserver.logsetup import ThrottledLoopErrors

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if sys.argv[1] == "throttled":
            loop.set_exception_handler(ThrottledLoopErrors(interval=10.0))
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        held = []
        try:
            while True:
                held.append(socket.socket())
        except OSError:
            held.pop().close()  # one descriptor for the client socket; none left for accept
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        await asyncio.sleep(3.5)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(("mode", "most"), [("throttled", 1)])
def test_accept_errors_out_of_descriptors_are_logged_once_per_interval(mode: str, most: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ACCEPT_FLOOD, mode], capture_output=True, text=True, timeout=30
    )
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "out of system resource" in ln]
    assert 1 <= len(lines) <= most, done.stdout + done.stderr
