"""The shipped deployment files, each checked by the tool that will run it: Debian's
docker-compose reads the compose file, promtool the Prometheus config and alert rules, a real
Prometheus runs every dashboard query against a real confserver under a little load, a real
coturn relays media with the shipped configuration over TLS, systemd verifies the unit."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint
from aiortc import RTCIceServer

from bench import server as bench_server
from confserver.config import IceServerConfig, load_config, secret_weakness
from confserver.devcerts import DevCerts, ensure_dev_certs
from confserver.tokens import SigningKey, mint_join_token
from sfu.controller import SfuController
from sfu.turn import turn_credentials
from sfu.udpmux import RECEIVE_BUFFER_SIZE

from .conftest import free_port, skip_or_fail
from .sfu.conftest import LOOPBACK_SFU
from .sfu.peers import Peer, wait_until
from .sfu.test_forwarding import close_all, video_track_of
from .sfu.test_turn_coturn import _udp_port_free

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "confserver.json"
BIN = Path(sys.executable).parent

METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])(?:conf|process|python)_[a-z0-9_]+")
RUNBOOK = re.compile(r"^docs/OPERATIONS\.md#([a-z0-9-]+)$")

# Values an operator would put into .env (the example leaves the secrets empty on purpose).
FILLED = {
    "API_SECRET": "Vb3kQ9xZ2mW7pL4tR8yN1cF6hJ0sD5gA",
    "TURN_SECRET": "nG5hT1qW8eR3yU6iO0pA2sD9fK4jL7zX",
    "GRAFANA_ADMIN_PASSWORD": "qA7wS2eD9rF4tG1y",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} is not installed")
        raise AssertionError("unreachable")
    return path


def run(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def env_file(tmp_path: Path, **values: str) -> Path:
    """``.env.example`` with ``values`` filled in, written as ``.env`` in ``tmp_path``."""
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values[key]}" if key in values and not line.startswith("#") else line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def example_env() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = value
    return out


# --- docker-compose.yml, .env.example, confserver.example.toml -------------------------------------


def compose_config(env: Path) -> subprocess.CompletedProcess[str]:
    return run(
        tool("docker-compose"), "--env-file", str(env), "-f", str(ROOT / "docker-compose.yml"), "config"
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    done = compose_config(env_file(tmp_path_factory.mktemp("compose"), **FILLED))
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = yaml.safe_load(done.stdout)
    return doc


def test_compose_file_is_valid_and_holds_the_whole_stack(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert set(services) == {"confserver", "redis", "coturn", "prometheus", "grafana"}
    assert "dockerfile_inline" not in (ROOT / "docker-compose.yml").read_text()  # Compose v2 and Debian's
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"
    ports = {(p["published"], p["target"], p["protocol"]) for p in services["coturn"]["ports"]}
    assert {(3478, 3478, "udp"), (3478, 3478, "tcp"), (5349, 5349, "tcp")} <= ports
    relays = {p["published"] for p in services["coturn"]["ports"] if p["protocol"] == "udp"} - {3478}
    assert len(relays) >= 20  # the relay port range
    media = {(p["published"], p["target"], p["protocol"]) for p in services["confserver"]["ports"]}
    assert (7882, 7882, "udp") in media
    # Prometheus and Grafana only on loopback
    for name in ("prometheus", "grafana"):
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"]), name


def test_compose_shares_the_turn_secret_and_the_public_address_from_one_variable_each(
    rendered: dict[str, Any],
) -> None:
    services = rendered["services"]
    env = services["confserver"]["environment"]
    coturn = services["coturn"]["command"]
    public_ip = example_env()["PUBLIC_IP"]
    assert env["CONF_SFU_TURN_SECRET"] == FILLED["TURN_SECRET"]
    assert f"--static-auth-secret={FILLED['TURN_SECRET']}" in coturn
    assert env["CONF_SFU_PUBLIC_IP"] == public_ip
    assert f"--external-ip={public_ip}" in coturn


def test_compose_mounts_fail_rather_than_create_a_missing_config(rendered: dict[str, Any]) -> None:
    for name, service in rendered["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):  # short syntax: named volumes only
                assert not volume.startswith((".", "/", "~")), (name, volume)
            elif volume["type"] == "bind":  # long syntax: a missing source is an error, not a new directory
                assert not volume.get("bind", {}).get("create_host_path"), (name, volume)
                assert volume.get("read_only"), (name, volume)
    sources = {v["source"] for v in rendered["services"]["confserver"]["volumes"]}
    assert str(ROOT / "confserver.toml") in sources


def test_compose_names_the_variable_an_unfilled_env_lacks(tmp_path: Path) -> None:
    done = compose_config(env_file(tmp_path))  # the example as it ships: secrets empty
    assert done.returncode != 0
    assert "API_SECRET" in done.stderr and "openssl rand" in done.stderr


def test_confserver_in_compose_starts_with_the_example_config(rendered: dict[str, Any]) -> None:
    env = {k: str(v) for k, v in rendered["services"]["confserver"]["environment"].items()}
    cfg = load_config(ROOT / "confserver.example.toml", env=env)  # production checks included
    assert cfg.mode == "production" and cfg.tls.mode == "files"
    assert cfg.server.port == 8443 and cfg.store.kind == "redis" and cfg.sfu.udp_port == 7882
    assert cfg.sfu.public_ip == example_env()["PUBLIC_IP"]
    urls = [u for s in cfg.sfu.ice_servers for u in s.urls]
    assert any(u.startswith("turns:") and ":5349" in u for u in urls)
    assert cfg.public_url == "https://" + example_env()["PUBLIC_HOST"]
    assert secret_weakness(FILLED["API_SECRET"]) is None and secret_weakness(FILLED["TURN_SECRET"]) is None
    home = "/var/lib/confserver"  # the image's HOME: the audit key must outlive the container
    mounts = rendered["services"]["confserver"]["volumes"]
    assert any(m["target"] == home and m["type"] == "volume" for m in mounts), mounts


# --- Dockerfile and .dockerignore ----------------------------------------------------------------


def dockerfile_copies() -> list[str]:
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            sources += parts[1:-1]
    return sources


def build_context(root: Path) -> set[str]:
    """The files Docker sends as the build context of ``root``, by docker-py's .dockerignore rules
    (the library Debian's docker-compose builds with)."""
    tool("docker-compose")
    code = (
        "import sys, docker.utils.build as b; "
        "root = sys.argv[1]; patterns = open(root + '/.dockerignore').read().splitlines(); "
        "print('\\n'.join(sorted(b.exclude_paths(root, [p for p in patterns if p and not p.startswith('#')]))))"
    )
    done = run("/usr/bin/python3", "-c", code, str(root))
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_build_context_leaves_out_keys_environments_history_and_caches(tmp_path: Path) -> None:
    tree = [
        "pyproject.toml", "README.md", "confserver/app.py", "confserver/store/redis.py", "confctl/main.py",
        "sfu/controller.py", "web/index.html", "web/i18n/en.json",
        ".venv/bin/python", ".git/config", "certs/ca.pem", "certs/ca-key.pem", "certs/server-key.pem",
        "tls/key.pem", "tls/fullchain.pem", ".env", "confserver.toml", "confserver/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed", ".mypy_cache/3.11/x.json", ".ruff_cache/x", ".hypothesis/examples/x",
        "tests/test_api.py", "test-artifacts/shot.png", "docs/API.md", "confserver/stray-key.pem",
    ]  # fmt: skip
    for name in tree:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    shutil.copy(ROOT / ".dockerignore", tmp_path / ".dockerignore")
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    sent = build_context(tmp_path)
    assert sent >= {"pyproject.toml", "README.md", "confserver/app.py", "confserver/store/redis.py",
                    "confctl/main.py", "sfu/controller.py", "web/index.html", "web/i18n/en.json"}  # fmt: skip
    leaked = {
        s for s in sent
        if s.startswith((".venv", ".git/", "certs", "tls", "tests", "test-artifacts", "."))
        or s.endswith((".pem", ".pyc")) or "cache" in s or s in {".env", "confserver.toml"}
    }  # fmt: skip
    assert leaked <= {".dockerignore"}, leaked


def test_build_context_holds_everything_the_dockerfile_copies() -> None:
    sent = build_context(ROOT)
    for source in dockerfile_copies():
        assert source in sent or any(s.startswith(source.rstrip("/") + "/") for s in sent), source
    # and every package the project installs
    packages = ("confserver", "confctl", "sfu", "web")
    assert {s.split("/")[0] for s in sent if "/" in s} <= set(packages)


def test_image_runs_as_an_unprivileged_user_and_checks_readiness() -> None:
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "/readyz" in healthcheck_command()[-1]
    assert re.search(r"^EXPOSE .*7882/udp", text, re.MULTILINE)


def healthcheck_command() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.MULTILINE)
    assert match, "no HEALTHCHECK CMD [...] in Dockerfile"
    command: list[str] = json.loads(match.group(1))
    return command


# --- a real confserver, scraped by a real Prometheus ---------------------------------------------


@dataclass
class Stack:
    server: bench_server.Server
    prometheus: str  # base URL


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = tool("prometheus")
    media_port = free_udp_port()
    server = bench_server.start({"CONF_SFU_UDP_PORT": str(media_port)})
    work = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "confserver", "static_configs": [{"targets": [f"127.0.0.1:{server.metrics_port}"]}]}
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [
            binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _ready(url):
            assert proc.poll() is None, f"prometheus exited with {proc.returncode}"
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)
        _load(server)
        _stray_rtp(media_port)
        wait_for(
            lambda: _query(url, 'conf_sfu_packets_total{direction="out"}') != [],
            20,
            "a scrape after the load",
        )
        time.sleep(2)  # two more scrapes: rates over the load's end
        yield Stack(server, url)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        server.stop()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    """The result of an instant query; an invalid expression fails the test with Prometheus's error."""
    q = urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{expr}: {e.read().decode()}") from None
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def _load(server: bench_server.Server) -> None:
    """A couple of joins with media, a refused token and a failed TLS handshake."""
    asyncio.run(_refusals(server))
    done = run(
        str(BIN / "confctl"), "load-test", "--room", "deploy", "--video-publishers", "1",
        "--audio-publishers", "1", "--subscribers", "2", "--duration", "4s", "--warmup", "1s",
        "--metrics-url", server.metrics_url, "--json", "--quiet",
        timeout=120, env=server.client_env, cwd=server.home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stray_rtp(media_port: int) -> None:
    """An RTP packet from an address no connection holds: dropped (``unknown_address``), so the
    drop panel has data whether or not the load itself lost a packet."""
    rtp = bytes([0x80, 96, 0, 1]) + (1).to_bytes(4, "big") + (1234).to_bytes(4, "big") + b"\x00" * 40
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(3):
            sock.sendto(rtp, ("127.0.0.1", media_port))


async def _refusals(server: bench_server.Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:  # not TLS: refused
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            while sock.recv(1024):
                pass
        except OSError:
            pass
    token, _ = mint_join_token(
        SigningKey.hs256("not-the-key", "not-the-secret-but-32-characters!"), room="deploy",
        identity="mallory", now=time.time(),
    )  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(server.home / "certs" / "ca.pem"))
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"wss://127.0.0.1:{server.port}/ws", ssl=ctx) as ws:
            await ws.send_json({"type": "join", "token": token})
            msg = await ws.receive_json(timeout=10)
            assert msg["type"] == "error"


def dashboard_targets() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def as_instant(expr: str) -> str:
    """A panel's query as Grafana would send it, every node selected."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")


def exposed(server: bench_server.Server) -> set[str]:
    """Every series name the server's scrape can show, those of families without a sample yet
    included (from the ``# TYPE`` lines)."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        suffixes = ("", "_bucket", "_sum", "_count") if kind == "histogram" else ("",)
        names.update(family + suffix for suffix in suffixes)
    return names


def test_every_dashboard_query_names_only_exposed_metrics_and_every_panel_shows_data(stack: Stack) -> None:
    names = exposed(stack.server)
    with_data: dict[str, bool] = {}
    for title, expr in dashboard_targets():
        used = set(METRIC_NAME.findall(expr))
        assert used, f"{title}: {expr} names no metric"
        assert used <= names, f"{title}: not exposed by the server: {sorted(used - names)}"
        result = _query(stack.prometheus, as_instant(expr))
        with_data[title] = with_data.get(title, False) or bool(result)
    empty = sorted(title for title, ok in with_data.items() if not ok)
    assert not empty, f"panels with no data after joins, media and refusals: {empty}"


def test_dashboard_is_provisioned_against_the_provisioned_data_source() -> None:
    doc = json.loads(DASHBOARD.read_text())
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uids = {d["uid"] for d in source["datasources"]}
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "confserver.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    for panel in doc["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]
            assert all(t["datasource"]["uid"] in uids for t in panel["targets"]), panel["title"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    wanted = ("rooms", "participants", "joins", "join latency", "packets", "bitrate", "stale", "receive wait",
              "cpu", "rss", "gc pauses", "shedding", "connections open", "refused")  # fmt: skip
    text = " ".join(p["title"].lower() for p in doc["panels"])
    assert all(w in text for w in wanted), [w for w in wanted if w not in text]


def test_alert_rules_evaluate_cleanly_on_the_real_server(stack: Stack) -> None:
    names = exposed(stack.server)
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            used = set(METRIC_NAME.findall(rule["expr"]))
            assert used <= names, f"{rule['alert']}: not exposed: {sorted(used - names)}"
    with urllib.request.urlopen(stack.prometheus + "/api/v1/rules", timeout=10) as resp:
        loaded = json.load(resp)["data"]["groups"]
    wait_for(
        lambda: all(r.get("health") == "ok" for g in _rules(stack) for r in g["rules"]), 10, "rules evaluated"
    )
    assert sum(len(g["rules"]) for g in loaded) == sum(len(g["rules"]) for g in rules["groups"])
    firing = [r["name"] for g in _rules(stack) for r in g["rules"] if r["state"] == "firing"]
    assert "ConfserverNodeDown" not in firing


def _rules(stack: Stack) -> list[dict[str, Any]]:
    with urllib.request.urlopen(stack.prometheus + "/api/v1/rules", timeout=10) as resp:
        groups: list[dict[str, Any]] = json.load(resp)["data"]["groups"]
        return groups


def test_the_image_healthcheck_passes_on_a_ready_server_and_fails_without_one(stack: Stack) -> None:
    command = [sys.executable, *healthcheck_command()[1:]]
    ok = run(*command, env={**os.environ, "HEALTHCHECK_URL": f"https://127.0.0.1:{stack.server.port}/readyz"})
    assert ok.returncode == 0, ok.stderr
    down = run(*command, env={**os.environ, "HEALTHCHECK_URL": f"https://127.0.0.1:{free_port()}/readyz"})
    assert down.returncode != 0


# --- promtool ------------------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config_and_the_alert_rules() -> None:
    promtool = tool("promtool")
    done = run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    done = run(promtool, "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_fires_on_the_bad_series_and_stays_quiet_on_the_good() -> None:
    promtool = tool("promtool")
    tests = Path(__file__).parent / "deploy" / "alerts_test.yml"
    done = run(promtool, "test", "rules", str(tests))
    assert done.returncode == 0, done.stdout + done.stderr
    tested = {t["alertname"] for case in yaml.safe_load(tests.read_text())["tests"] for t in case["alert_rule_test"]
              if t.get("exp_alerts")}  # fmt: skip
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert tested == alerts


def test_every_alert_explains_itself_and_links_to_the_operations_guide() -> None:
    operations = ROOT / "docs" / "OPERATIONS.md"
    anchors = _anchors(operations.read_text()) if operations.exists() else None
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            notes = rule["annotations"]
            assert notes["summary"] and notes["description"], rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            match = RUNBOOK.match(notes["runbook_url"])
            assert match, rule["alert"]
            if anchors is not None:
                assert match.group(1) in anchors, (
                    f"{rule['alert']}: no #{match.group(1)} in docs/OPERATIONS.md"
                )


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors, and explicit ``id``/``name`` anchors."""
    out = set(re.findall(r"""<a\s+(?:id|name)=["']([^"']+)["']""", markdown))
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug)
    return out


# --- coturn with the shipped configuration --------------------------------------------------------


SECRET = "pX4mQ8vK2nR6tW1yB5cH9jL3sF7gD0zA"


@dataclass
class Turn:
    port: int
    tls_port: int
    ca: Path
    proc: subprocess.Popen[bytes]


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Turn]:
    binary = tool("turnserver")
    certs: DevCerts = ensure_dev_certs(tmp_path / "certs")
    port, tls_port = _turn_port(), _turn_port()
    relay_min = 52000 + (port % 200) * 10
    proc = subprocess.Popen(
        [
            binary, "-c", str(DEPLOY / "coturn" / "turnserver.conf"),
            # what differs on a loopback test host: addresses, ports, certificate paths, the secret
            "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--allow-loopback-peers",
            f"--listening-port={port}", f"--tls-listening-port={tls_port}",
            f"--min-port={relay_min}", f"--max-port={relay_min + 9}",
            f"--cert={certs.server_cert}", f"--pkey={certs.server_key}",
            f"--static-auth-secret={SECRET}", f"--pidfile={tmp_path / 'turn.pid'}",
            f"--userdb={tmp_path / 'turndb'}",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        turn = Turn(port, tls_port, certs.ca_cert, proc)
        deadline = time.monotonic() + 10
        while not _listening(tls_port):
            assert proc.poll() is None, f"turnserver exited with {proc.returncode}"
            assert time.monotonic() < deadline, "turnserver did not open its TLS listener"
            time.sleep(0.1)
        yield turn
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _turn_port() -> int:
    """A loopback port free for TCP and UDP alike (coturn listens on both)."""
    while True:
        port = free_port()
        if _udp_port_free(port):
            return port


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def _allocate_tls(turn: Turn, username: str, password: str) -> tuple[str, int]:
    ctx = ssl.create_default_context(cafile=str(turn.ca))  # verifies the dev certificate for 127.0.0.1
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", turn.tls_port), username, password, ssl=ctx, transport="tcp"
    )
    relayed: tuple[str, int] = transport.get_extra_info("sockname")
    transport.close()
    return relayed


async def _allocate_udp(turn: Turn, username: str, password: str) -> tuple[str, int]:
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", turn.port), username, password
    )
    relayed: tuple[str, int] = transport.get_extra_info("sockname")
    transport.close()
    return relayed


async def test_shipped_coturn_config_relays_over_tls_and_udp_with_the_servers_credentials(
    coturn: Turn,
) -> None:
    good = turn_credentials(SECRET, "ana@example.gov", now=time.time(), ttl=3600)
    host, port = await _allocate_tls(coturn, *good)
    assert host == "127.0.0.1" and port > 0
    host, port = await _allocate_udp(coturn, *good)
    assert host == "127.0.0.1" and port > 0


async def test_shipped_coturn_config_refuses_forged_and_expired_credentials_over_tls(coturn: Turn) -> None:
    forged = turn_credentials("not-the-secret-at-all-0123456789", "mallory", now=time.time(), ttl=3600)
    with pytest.raises(TransactionFailed):
        await _allocate_tls(coturn, *forged)
    expired = turn_credentials(SECRET, "ana@example.gov", now=time.time() - 7200, ttl=3600)
    with pytest.raises(TransactionFailed):
        await _allocate_tls(coturn, *expired)


async def test_relay_only_clients_get_media_through_turns_with_the_shipped_config(
    coturn: Turn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(coturn.ca))  # aioice verifies turns: with the default context
    url = f"turns:127.0.0.1:{coturn.tls_port}?transport=tcp"
    sfu = SfuController(
        replace(LOOPBACK_SFU, ice_servers=(IceServerConfig(urls=(url,)),), turn_secret=SECRET)
    )

    def relay_peer(name: str) -> Peer:
        [entry] = sfu.ice_servers(f"id-{name}")
        ice = [RTCIceServer(urls=entry["urls"], username=entry["username"], credential=entry["credential"])]
        return Peer(sfu, "turns", name, ice_servers=ice, relay_only=True)

    alice, bob = relay_peer("alice"), relay_peer("bob")
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=(320, 240), audio=False)
        await bob.expect("track_published")
        video_id = video_track_of(bob, "alice")
        await bob.subscribe(video_id, max_width=320, max_height=240)
        await wait_until(
            lambda: (r := bob.video_for(video_id)) is not None and r.frames >= 5,
            20,
            what="video via TURN/TLS",
        )
        pc = bob.subscribe_pc
        assert pc is not None
        connection = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection
        assert [c.type for c in connection.local_candidates] == ["relay"]
        assert connection.turn_ssl is True
    finally:
        await close_all(alice, bob)
        await sfu.close()


# --- systemd unit and sysctl ---------------------------------------------------------------------


def test_systemd_unit_passes_systemd_analyze_verify_and_is_hardened() -> None:
    analyze = tool("systemd-analyze")
    unit = DEPLOY / "systemd" / "confserver.service"
    text = unit.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # a root holding the system's units, this one, and its ExecStart binary
        shutil.copytree(_system_units(), root / "usr/lib/systemd/system", symlinks=True)
        (root / "etc/systemd/system").mkdir(parents=True)
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
        exec_start = re.search(r"^ExecStart=(\S+)", text, re.MULTILINE)
        assert exec_start
        binary = root / exec_start.group(1).lstrip("/")
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
        done = run(analyze, "verify", f"--root={root}", unit.name)
        assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), (
            done.stdout + done.stderr
        )
        security = run(analyze, "security", "--offline=yes", f"--root={root}", "--no-pager", unit.name)
        level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout + security.stderr)
        assert level, security.stdout + security.stderr
        assert float(level.group(1)) <= 2.5, security.stdout
    for line in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=confserver",
        "User=confserver",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.MULTILINE), line


def _system_units() -> Path:
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    skip_or_fail("no systemd unit directory with sysinit.target")
    raise AssertionError("unreachable")


def test_sysctl_file_lets_the_media_socket_have_its_receive_buffer() -> None:
    settings = {}
    for line in (DEPLOY / "sysctl" / "90-confserver.conf").read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";")):
            key, value = (s.strip() for s in line.split("=", 1))
            settings[key] = int(value)
    assert settings == {"net.core.rmem_max": 16777216}
    assert settings["net.core.rmem_max"] >= RECEIVE_BUFFER_SIZE


def test_the_installed_package_holds_every_python_package_of_the_tree() -> None:
    """The image (and ``pip install .``) installs the packages pyproject.toml lists: a package
    missing there is missing at run time."""
    project = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"([a-z_][a-z0-9_.]*)"', project.split("packages = [", 1)[1].split("]", 1)[0]))
    tree = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("confserver", "confctl", "sfu")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert tree <= listed, f"not installed: {sorted(tree - listed)}"
