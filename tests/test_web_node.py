"""The client's DOM-free modules (tests/web/*.test.mjs) under Node's own test runner: seconds, no
browser, no npm packages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .conftest import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent


def test_client_modules_pass_their_node_tests() -> None:
    node = shutil.which("node")
    if node is None:
        skip_or_fail("Node.js is not installed (apt-get install nodejs)")
        return
    done = subprocess.run(
        [node, "--test", "tests/web/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# pass 0\n" not in done.stdout, "no node test ran"
