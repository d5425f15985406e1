"""Fixtures: a ``store`` of each implementation; Redis runs as a real server on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from confserver.store import MemoryStore, RedisStore, Store

NOW = 1_700_000_000.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1",
             "--dir", str(workdir)],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if client.ping():
                        return proc, port
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        proc.kill()
        proc.wait()
    pytest.fail("redis-server did not start on a free loopback port")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    proc, port = _start_redis(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url: str = request.getfixturevalue("redis_url")
    impl = RedisStore.from_url(url, prefix=f"test:{uuid.uuid4().hex}:")
    try:
        yield impl
    finally:
        flusher = redis.Redis.from_url(url)
        try:
            flusher.flushdb()
        finally:
            flusher.close()
        await impl.close()
