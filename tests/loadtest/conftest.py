"""A real ``confserver`` process on free loopback ports (dev TLS, credentials and CA in a temporary
HOME), shared by the load-test tests of one module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

BIN = Path(sys.executable).parent


@dataclass
class Server:
    proc: subprocess.Popen[str]
    home: Path
    port: int
    metrics_port: int
    env: dict[str, str]

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def confctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "confctl"), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def client_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONF_")}
    env["HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("home")
    port, metrics_port = free_port(), free_port()
    env = client_env(home)
    env.update(
        CONF_SERVER_PORT=str(port),
        CONF_METRICS_PORT=str(metrics_port),
        CONF_SFU_BIND_ADDRESSES="127.0.0.1",
        CONF_LOG_LEVEL="warning",
    )
    proc = subprocess.Popen(
        [str(BIN / "confserver")],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.strip().startswith("Try:"):
            break
    if proc.poll() is not None:
        pytest.fail("confserver did not start: " + (proc.stderr.read() if proc.stderr else ""))
    try:
        yield Server(proc, home, port, metrics_port, client_env(home))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
