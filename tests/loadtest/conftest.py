"""A real ``confserver`` process on free loopback ports (dev TLS, credentials and CA in a temporary
HOME), shared by the load-test tests of one module."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import server as bench_server

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
def server() -> Iterator[Server]:
    running = bench_server.start()  # the same start the benchmarks use
    try:
        yield Server(running.proc, running.home, running.port, running.metrics_port, running.client_env)
    finally:
        running.stop()
