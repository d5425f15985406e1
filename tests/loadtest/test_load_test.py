"""``confctl load-test`` end to end against a real confserver, and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

from .conftest import BIN, Server, client_env


def confctl(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "confctl"), *args],
        env=client_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_tiny_load_test_forwards_media_to_every_subscriber(server: Server) -> None:
    done = server.confctl(
        "load-test",
        "--room",
        "tiny",
        "--video-publishers",
        "1",
        "--audio-publishers",
        "1",
        "--subscribers",
        "2",
        "--duration",
        "5s",
        "--warmup",
        "1s",
        "--metrics-url",
        server.metrics_url,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    people = doc["participants"]
    assert people["joined"] == people["total"] == 2 and people["failed"] == 0
    assert people["without_media"] == 0
    assert doc["join_latency_ms"]["max"] < 10_000
    # the second participant watches the first one's camera (~90 packets/s) and hears it speak (50/s)
    assert doc["forwarded_video_pps"] > 30 and doc["forwarded_audio_pps"] > 20
    assert doc["loss_percent"] is not None and doc["loss_percent"] < 5
    # the camera's packets carry their send time through the server: ~90/s, one in 16 sampled
    delay = doc["delay_ms"]
    assert delay["samples"] >= 10 and 0 <= delay["p50"] <= delay["p95"] <= delay["max"] < 5_000
    assert doc["server"]["cpu_us_per_packet"] > 0
    assert doc["server"]["rss_mb"] > 0
    pauses = doc["server"]["gc_pauses_since_start"]  # the server's garbage collector, from before the joins
    assert pauses is not None and 0 <= pauses["full"] <= pauses["count"]  # exposed and read
    assert doc["server"]["shed_layers"] is not None  # exposed and read (0 unless overloaded)
    assert doc["generator"]["cpu_percent"] > 0
    assert "load-test: measuring" in done.stderr  # the progress line


def test_worker_processes_and_a_decoding_subscriber_see_real_media(server: Server) -> None:
    done = server.confctl(
        "load-test", "--room", "workers", "-P", "1", "-A", "1", "-S", "2", "--participants", "3",
        "--decoders", "1", "--simulcast", "--tiles", "1", "--processes", "2", "--duration", "3s",
        "--warmup", "2s", "--metrics-url", server.metrics_url, "--json", "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["participants"]["joined"] == 3 and doc["setup"]["processes"] == 2
    assert doc["decoded_fps"] > 10  # one decoder: ~30 video frames/s, 50 audio frames/s
    assert doc["forwarded_video_pps"] > 20 and doc["forwarded_audio_pps"] > 20
    assert doc["generator"]["cpu_percent"] > 0
    assert doc["delay_ms"]["samples"] >= 1  # taken in a worker process, merged in the parent


def test_room_created_for_the_test_is_deleted_afterwards(server: Server) -> None:
    listed = server.confctl("--json", "room", "list")
    assert listed.returncode == 0, listed.stderr
    assert "tiny" not in [r["name"] for r in json.loads(listed.stdout)["rooms"]]


def test_unreachable_metrics_listener_exits_3_in_one_line(server: Server) -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    done = server.confctl("load-test", "--room", "m", "-S", "1", "--duration", "1s", "--metrics-url", url)
    assert done.returncode == 3
    assert done.stderr.strip().count("\n") == 0 and url in done.stderr


def test_unreachable_server_exits_3_in_one_line(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    done = confctl(
        "--url",
        url,
        "--api-key",
        "k",
        "--api-secret",
        "s" * 40,
        "load-test",
        "--room",
        "r",
        "-S",
        "1",
        "--duration",
        "1s",
        home=tmp_path,
    )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"confctl: cannot reach {url}")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-S", "1"], "--room"),
        (["--room", "r"], "nothing to do"),
        (["--room", "r", "-S", "101"], "at most 100"),
        (["--room", "r", "-S", "2", "--decoders", "3"], "--decoders"),
        (["--room", "r", "-A", "2", "--speakers", "3"], "--speakers"),
        (["--room", "r", "-S", "2", "--duration", "soon"], "invalid duration"),
        (["--room", "r", "-S", "2", "--tile-size", "big"], "invalid size"),
        (["--room", "bad room", "-S", "2"], "invalid room name"),
        (["--room", "r", "-S", "-1"], "must not be negative"),
        (["--room", "r", "-S", "2", "--metrics-url", "ftp://x"], "invalid metrics URL"),
    ],
)
def test_bad_arguments_exit_2_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = confctl(
        "--url",
        "https://127.0.0.1:9",
        "--api-key",
        "k",
        "--api-secret",
        "s" * 40,
        "load-test",
        *args,
        home=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_load_test_is_listed_in_confctl_help(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "confctl.main", "--help"], capture_output=True, text=True, timeout=30
    )
    assert "load-test" in done.stdout
