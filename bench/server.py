"""A confserver process for one benchmark run: free loopback ports, a temporary HOME (so the dev CA
and the credentials file land there), media sockets on 127.0.0.1 only, metrics on their own port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONF_")}
    env["HOME"] = str(home)
    return env


@dataclass
class Server:
    proc: subprocess.Popen[str]
    home: Path
    port: int
    metrics_port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def client_env(self) -> dict[str, str]:
        """confctl finds URL, key, secret and CA in the credentials file under this HOME."""
        return clean_env(self.home)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(extra_env: dict[str, str] | None = None) -> Server:
    home = Path(tempfile.mkdtemp(prefix="confbench-"))
    port, metrics_port = free_port(), free_port()
    env = clean_env(home)
    env.update(
        CONF_SERVER_PORT=str(port),
        CONF_METRICS_PORT=str(metrics_port),
        CONF_SFU_BIND_ADDRESSES="127.0.0.1",
        CONF_LOG_LEVEL="warning",
    )
    env.update(extra_env or {})
    module = os.environ.get("BENCH_SERVER_MODULE")  # e.g. bench.memprobe (debug aid)
    command = [sys.executable, "-m", module] if module else [str(BIN / "confserver")]
    proc = subprocess.Popen(  # noqa: S603 - our own confserver
        command,
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    if proc.stdout is None:
        raise RuntimeError("no stdout")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.strip().startswith("Try:"):
            break
    if proc.poll() is not None:
        raise RuntimeError(f"confserver exited with {proc.returncode}")
    return Server(proc, home, port, metrics_port)


def start_redis(prefix: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    """A redis-server on a free loopback port, without persistence, in a new temporary
    directory: (process, port, directory)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed (apt-get install redis-server)")
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - the local redis-server
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return proc, port, workdir
