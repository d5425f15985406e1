"""Weak settings are refused at start (production) or warned about loudly, naming the key: the
documentation's example secrets, secrets with little variety, an http:// public URL, plaintext Redis
to another machine, metrics on a public address. Driven through the real `confserver` command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from confserver.config import secret_weakness

from .conftest import free_port
from .test_e2e_server import start_server

BIN = Path(sys.executable).parent
DOCS = Path(__file__).parent.parent / "docs"
RANDOM_SECRET = "Vq3xN8pL2mZ7rT1yK9wB4cH6dF0gJ5sA"

PRODUCTION = f"""
mode = "production"
[tls]
mode = "files"
cert_file = "/etc/confserver/tls/fullchain.pem"
key_file = "/etc/confserver/tls/key.pem"
[auth]
api_key = "APIministry01"
api_secret = "{RANDOM_SECRET}"
"""


def check_config(tmp_path: Path, toml: str) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    env = {"HOME": str(tmp_path), "PATH": str(BIN)}
    return subprocess.run(
        [str(BIN / "confserver"), "--config", str(f), "--check-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_strong_production_configuration_starts_without_warnings(tmp_path: Path) -> None:
    done = check_config(tmp_path, PRODUCTION)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr


@pytest.mark.parametrize(
    "secret",
    [
        "x" * 32,
        "abcdefgh" * 4,
        "read-it-from-a-secret-store-at-least-32-characters",
    ],
)
def test_production_refuses_a_weak_api_secret_naming_the_key(tmp_path: Path, secret: str) -> None:
    done = check_config(tmp_path, PRODUCTION.replace(RANDOM_SECRET, secret))
    assert done.returncode == 2
    assert "auth.api_secret" in done.stderr


def test_production_refuses_the_documented_turn_secret(tmp_path: Path) -> None:
    done = check_config(tmp_path, PRODUCTION + '[sfu]\nturn_secret = "coturn-static-auth-secret"\n')
    assert done.returncode == 2
    assert "sfu.turn_secret" in done.stderr


def test_every_secret_shown_in_the_docs_is_refused() -> None:
    pattern = re.compile(r"""(?:api_secret|turn_secret|credential)"?\s*[=:]\s*"([^"]{8,})\"""")
    found = {m for doc in DOCS.glob("*.md") for m in pattern.findall(doc.read_text())}
    assert found, "the docs show example secrets; the pattern must find them"
    assert [s for s in sorted(found) if secret_weakness(s) is None] == []
    # an example an earlier version of the docs showed, which configurations may have copied
    assert secret_weakness("read-it-from-a-secret-store-at-least-32-characters") is not None


def test_an_http_public_url_outside_loopback_is_refused_unless_behind_a_tls_proxy(tmp_path: Path) -> None:
    done = check_config(tmp_path, '[server]\npublic_url = "http://meet.example.gov"\n')
    assert done.returncode == 2
    assert "server.public_url" in done.stderr
    proxied = '[server]\npublic_url = "http://meet.example.gov"\ntrust_proxy_tls = true\n'
    assert check_config(tmp_path, proxied).returncode == 0
    assert check_config(tmp_path, '[server]\npublic_url = "http://127.0.0.1:8080"\n').returncode == 0


def test_plaintext_redis_to_another_host_warns_naming_the_key(tmp_path: Path) -> None:
    remote = '[store]\nkind = "redis"\nredis_url = "redis://redis.internal:6379/0"\n'
    done = check_config(tmp_path, remote)
    assert done.returncode == 0
    assert "warning: store.redis_url" in done.stderr and "rediss://" in done.stderr
    allowed = check_config(tmp_path, remote + "allow_plaintext_redis = true\n")
    assert "warning" not in allowed.stderr
    local = check_config(tmp_path, '[store]\nkind = "redis"\nredis_url = "redis://127.0.0.1:6379/0"\n')
    assert "warning" not in local.stderr


def test_metrics_on_a_public_address_are_warned_about_in_the_server_log(tmp_path: Path) -> None:
    srv = start_server(
        tmp_path,
        free_port(),
        free_port(),
        extra_env={"CONF_SFU_ENABLED": "false", "CONF_METRICS_HOST": "0.0.0.0"},
    )
    try:
        err = srv.stop()
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    assert '"key": "metrics.host"' in err and '"level": "warning"' in err


def test_check_config_prints_no_secret(tmp_path: Path) -> None:
    api_secret = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    turn_secret = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    toml = (
        f'[auth]\napi_key = "APIkey01"\napi_secret = "{api_secret}"\n'
        f'[sfu]\nturn_secret = "{turn_secret}"\n'
        '[store]\nkind = "redis"\nredis_url = "rediss://ops:redis-pass-1234@[::1]:6380/0"\n'
    )
    done = check_config(tmp_path, toml)
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    for secret in (api_secret, turn_secret, "redis-pass-1234"):
        assert secret not in printed
    assert "rediss://ops:***@[::1]:6380/0" in printed
    assert "APIkey01" in printed  # the rest is printed as configured
