"""The soak benchmark, briefly: a meeting of four with chat observers and the hostile client, for
20 seconds against a real confserver. Every check of the soak but memory growth must hold (a
20-second run is all warm-up for the allocator)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_soak_misses_no_chat_leaks_no_seat_and_survives_the_hostile_client() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--minutes", "0.34", "--participants", "4", "--chatters", "3",
         "--chat-interval", "2", "--warmup", "2", "--report-every", "10", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-3000:]
    doc = json.loads(done.stdout)
    checks = dict(doc["checks"])
    checks.pop(next(k for k in checks if k.startswith("server RSS")))
    assert all(checks.values()), (
        checks,
        doc["hostile_failures"],
        doc["meeting"],
        doc["observer_disconnect_reasons"],
    )
    assert doc["chats_expected"] >= 3 * 2 * 5  # three observers, two others each, ~10 chats each
    assert doc["seats_after_leaving"] == 0
    assert doc["rss_mib"] > 0 and doc["rss_start_mib"] > 0
    assert len(doc["hostile_attacks"]) >= 15  # it went through the whole cycle at least once
    assert sum(doc["hostile_errors"].values()) > 0
