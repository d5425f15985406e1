"""Configuration: defaults <- TOML <- CONF_* env, unknown keys and bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from confserver.config import ConfigError, load_config
from confserver.sfuconfig import media_ports


def test_defaults_serve_dev_https_on_loopback_with_memory_store() -> None:
    cfg = load_config(env={})
    assert cfg.public_url == "https://127.0.0.1:8443"
    assert (cfg.mode, cfg.tls.mode, cfg.store.kind) == ("dev", "dev", "memory")
    assert cfg.auto_create_rooms is True
    assert (cfg.metrics.host, cfg.metrics.port) == ("127.0.0.1", 9464)


def test_file_then_environment_override(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[server]\nport = 9000\n[signaling]\nallowed_origins = ["https://a.example"]\n[rooms]\nauto_create = false\n'
    )
    cfg = load_config(f, env={"CONF_SERVER_PORT": "9443", "CONF_URL": "ignored: a confctl variable"})
    assert cfg.server.port == 9443
    assert cfg.signaling.allowed_origins == ("https://a.example",)
    assert cfg.auto_create_rooms is False


def test_lists_and_booleans_from_the_environment() -> None:
    cfg = load_config(
        env={"CONF_SIGNALING_ALLOWED_ORIGINS": "https://a, https://b", "CONF_METRICS_ENABLED": "no"}
    )
    assert cfg.signaling.allowed_origins == ("https://a", "https://b")
    assert cfg.metrics.enabled is False


def test_asymmetric_keys_from_toml(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[[auth.keys]]\nkid = "issuer-1"\nalg = "EdDSA"\npublic_key_file = "/k.pub"\n')
    cfg = load_config(f, env={})
    assert cfg.auth.keys[0].kid == "issuer-1" and cfg.auth.keys[0].alg == "EdDSA"


@pytest.mark.parametrize(
    ("toml", "env", "named"),
    [
        ("[server]\nprot = 1\n", {}, "server.prot"),
        ("[nope]\n", {}, "nope"),
        ('[server]\nport = "x"\n', {}, "server.port"),
        ("[server]\nport = 70000\n", {}, "server.port"),
        ("[server]\ngc_threshold = 0\n", {}, "server.gc_threshold"),
        ("", {"CONF_SERVER_GC_THRESHOLD": "5000000"}, "server.gc_threshold"),
        ('[store]\nkind = "postgres"\n', {}, "store.kind"),
        ("[rooms]\ndefault_max_participants = 101\n", {}, "rooms.default_max_participants"),
        ('[[auth.keys]]\nkid = "k"\nalg = "RS256"\npublic_key_file = "f"\n', {}, "auth.keys[0].alg"),
        ('[[auth.keys]]\nkid = "k"\n', {}, "auth.keys[0]"),
        ("", {"CONF_SERVER_PORT": "eighty"}, "CONF_SERVER_PORT"),
        ("", {"CONF_SERVER_PROT": "1"}, "CONF_SERVER_PROT"),
        ("", {"CONF_WHATEVER": "1"}, "CONF_WHATEVER"),
        ("", {"CONF_MODE": "production"}, "tls.mode"),
        ('[auth]\napi_key = "k"\n', {}, "auth.api_secret"),
        ('[tls]\nmode = "off"\n[server]\nhost = "0.0.0.0"\n', {}, "tls.mode"),
        ("[sfu]\nport_min = 40000\n", {}, "sfu.port"),
        ('[[sfu.ice_servers]]\nurls = ["http://x"]\n', {}, "sfu.ice_servers[0].urls"),
        ("[signaling]\nheartbeat_timeout = 1.0\n", {}, "signaling.heartbeat_timeout"),
        ("[server]\nheader_timeout = 0\n", {}, "server.header_timeout"),
        (
            "[server]\nmax_connections = 10\nmax_connections_per_address = 11\n",
            {},
            "server.max_connections_per_address",
        ),
        ("[signaling]\nmax_unjoined = 0\n", {}, "signaling.max_unjoined"),
        ("[sfu]\nworkers = 0\n", {}, "sfu.workers"),
        ('[sfu]\nworkers = "all"\n', {}, "sfu.workers"),
        ("", {"CONF_SFU_WORKERS": "many"}, "CONF_SFU_WORKERS"),
        ("[sfu]\nworkers = 2\nport_min = 40000\nport_max = 40999\n", {}, "sfu.workers"),
        ("[sfu]\nworkers = 4\nudp_port = 65534\n", {}, "sfu.udp_port"),
        (
            "[signaling]\nmax_unjoined = 5\nmax_unjoined_per_address = 6\n",
            {},
            "signaling.max_unjoined_per_address",
        ),
    ],
)
def test_bad_configuration_is_refused_naming_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], named: str
) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_config(f, env=env)
    assert named in str(e.value)


def test_a_removed_key_says_it_was_removed_and_what_to_do(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[signaling]\nheartbeat_timeout = 30.0\n")
    with pytest.raises(ConfigError, match=r"signaling.heartbeat_timeout was removed.*heartbeat_interval"):
        load_config(f, env={})
    with pytest.raises(ConfigError, match=r"CONF_SIGNALING_HEARTBEAT_TIMEOUT\) was removed"):
        load_config(env={"CONF_SIGNALING_HEARTBEAT_TIMEOUT": "30"})


def test_connection_limits_default_to_a_short_deadline_and_generous_caps() -> None:
    cfg = load_config(env={})
    assert cfg.server.header_timeout == 10.0
    assert (cfg.server.max_connections, cfg.server.max_connections_per_address) == (10_000, 1_000)
    assert (cfg.signaling.max_unjoined, cfg.signaling.max_unjoined_per_address) == (1000, 200)


def test_missing_or_invalid_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, env={})


def test_config_is_frozen() -> None:
    cfg = load_config(env={})
    with pytest.raises(AttributeError):
        cfg.server.port = 1  # type: ignore[misc]


def test_every_config_key_is_documented() -> None:
    import dataclasses

    from confserver.config import Config

    doc = (Path(__file__).parent.parent / "docs" / "CONFIG.md").read_text()
    missing = []
    for section in dataclasses.fields(Config):
        if not dataclasses.is_dataclass(section.type) and not str(section.type).endswith("Config"):
            if f"`{section.name}`" not in doc:
                missing.append(section.name)
            continue
        sub = getattr(Config(), section.name)
        for f in dataclasses.fields(sub):
            if f"{section.name}.{f.name}" not in doc:
                missing.append(f"{section.name}.{f.name}")
    assert missing == []


def test_the_banner_names_the_media_ports_to_open() -> None:
    assert media_ports(load_config(None, {}).sfu) == (
        "one UDP port, picked at the first join (set sfu.udp_port to choose it)"
    )
    assert media_ports(load_config(None, {"CONF_SFU_UDP_PORT": "7882"}).sfu) == (
        "UDP port 7882, shared by every connection"
    )
    ranged = load_config(None, {"CONF_SFU_PORT_MIN": "40000", "CONF_SFU_PORT_MAX": "40999"})
    assert media_ports(ranged.sfu) == "UDP ports 40000-40999, one per connection"


def test_media_workers_are_a_count_or_auto_from_file_or_environment(tmp_path: Path) -> None:
    assert load_config(env={}).sfu.worker_count == 1
    f = tmp_path / "c.toml"
    f.write_text("[sfu]\nworkers = 3\n")
    assert load_config(f, env={}).sfu.worker_count == 3
    assert load_config(env={"CONF_SFU_WORKERS": "2"}).sfu.workers == 2
    auto = load_config(env={"CONF_SFU_WORKERS": "auto"}).sfu
    assert auto.workers == "auto" and auto.worker_count >= 1
    f.write_text('[sfu]\nworkers = "auto"\n')
    assert load_config(f, env={}).sfu.workers == "auto"


def test_the_banner_names_every_media_workers_port() -> None:
    cfg = load_config(None, {"CONF_SFU_WORKERS": "3", "CONF_SFU_UDP_PORT": "7882"})
    assert media_ports(cfg.sfu) == "UDP ports 7882-7884, one per media worker (3 workers)"
    picked = load_config(None, {"CONF_SFU_WORKERS": "2"})
    assert media_ports(picked.sfu) == "2 media workers, each on one UDP port picked at its first join (set sfu.udp_port)"
