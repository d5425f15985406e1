"""Configuration: one frozen dataclass tree, loaded once: defaults <- TOML file <- ``CONF_*`` env.

Unknown keys and bad values stop the start with a ``ConfigError`` naming the key. The tree is passed
into the app factory; nothing reads configuration from anywhere else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from .auditconfig import AuditConfig as AuditConfig
from .auditconfig import check_audit
from .configerror import ConfigError as ConfigError
from .oidcconfig import OidcConfig as OidcConfig
from .oidcconfig import check_oidc
from .sfuconfig import check_sfu
from .uiconfig import ACCENT_COLOR_RE as ACCENT_COLOR_RE
from .uiconfig import MAX_BRAND_NAME_CHARS as MAX_BRAND_NAME_CHARS
from .uiconfig import MAX_LOGO_BYTES as MAX_LOGO_BYTES
from .uiconfig import MAX_PRIVACY_NOTE_CHARS as MAX_PRIVACY_NOTE_CHARS
from .uiconfig import UiConfig as UiConfig
from .uiconfig import check_ui
from .uiconfig import logo_content_type as logo_content_type
from .uiconfig import read_logo as read_logo
from .weaksettings import EXAMPLE_SECRETS as EXAMPLE_SECRETS
from .weaksettings import LOOPBACK_NAMES as LOOPBACK_NAMES
from .weaksettings import MIN_SECRET_BITS as MIN_SECRET_BITS
from .weaksettings import MIN_SECRET_DISTINCT as MIN_SECRET_DISTINCT
from .weaksettings import config_warnings as config_warnings
from .weaksettings import is_loopback as is_loopback
from .weaksettings import secret_weakness as secret_weakness
from .webhookconfig import WebhookConfig as WebhookConfig
from .webhookconfig import check_webhooks

Mode = Literal["dev", "production"]
TlsMode = Literal["dev", "files", "off"]
StoreKind = Literal["memory", "redis"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
KeyAlg = Literal["EdDSA", "ES256"]

NODE_ID_PATTERN = r"[A-Za-z0-9._-]{1,64}"
"""A node id: it travels in node-to-node signatures and in URLs."""
ENV_PREFIX = "CONF_"
CLIENT_ENV = frozenset(
    {"CONF_URL", "CONF_API_KEY", "CONF_API_SECRET", "CONF_CACERT", "CONF_CREDENTIALS_FILE"}
)
"""Variables read by confctl, not by the server: ignored here rather than rejected."""

REMOVED_KEYS: Mapping[str, str] = types.MappingProxyType(
    {
        "signaling.heartbeat_timeout": "was removed: a client that has not answered a ping within half of "
        "signaling.heartbeat_interval is closed; delete the key and tune heartbeat_interval instead",
    }
)
"""Keys older versions read, with what to do instead: named in the error rather than 'unknown'."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8443
    public_url: str = ""
    """The URL users reach (in join links); derived from host and port when empty."""
    max_body_bytes: int = 65536
    trust_proxy_tls: bool = False
    """Allow ``tls.mode = "off"`` on a non-loopback host because a TLS proxy in front terminates TLS."""
    header_timeout: float = 10.0
    """Seconds a client has for the TLS handshake, and then for the headers of each request (the
    first one, and each next one on a kept-alive connection); slower connections are closed."""
    max_connections: int = 10_000
    """Connections open at once on the public listener; more are closed as soon as accepted. Lowered
    at start to fit under the process's file-descriptor limit."""
    max_connections_per_address: int = 1_000
    """Connections open at once from one client address (a whole office behind one NAT counts once;
    behind a TLS proxy every client shares the proxy's address: set it to ``max_connections``)."""
    gc_threshold: int = 10_000
    """Objects allocated (net of those freed) between two passes of Python's garbage collector over
    its youngest generation (Python's own default: 700). Higher: fewer full collections, each of
    which stops the whole server for as long as it takes to walk every object."""


@dataclass(frozen=True)
class TlsConfig:
    mode: TlsMode = "dev"
    dev_dir: str = "certs"
    hostnames: tuple[str, ...] = ("localhost",)
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class KeyConfig:
    kid: str
    alg: KeyAlg
    public_key_file: str


@dataclass(frozen=True)
class AuthConfig:
    api_key: str = ""
    api_secret: str = ""
    credentials_file: str = "~/.local/state/confserver/credentials.json"
    """Where a generated API key/secret is kept (dev), and where confctl finds them."""
    token_default_ttl: int = 7200
    token_max_ttl: int = 86400
    leeway: int = 30
    keys: tuple[KeyConfig, ...] = ()
    oidc: OidcConfig = field(default_factory=OidcConfig)


@dataclass(frozen=True)
class RoomsConfig:
    auto_create: bool | None = None
    """Create a room on the first join with a valid token; defaults to on in dev mode only."""
    default_max_participants: int = 100
    auto_created_empty_timeout: int = 300
    sweep_interval: float = 1.0
    lobby_max: int = 100
    """People waiting in one room's lobby at most (on this node); more get ``lobby_full``."""
    lobby_knocks_per_minute: int = 10
    """Times one identity may enter a room's lobby in a minute; more get ``rate_limited``."""
    e2ee_default: bool = False
    """Whether rooms created without saying (by the API or on a first join) are end-to-end encrypted."""


@dataclass(frozen=True)
class StoreConfig:
    kind: StoreKind = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "conf:"
    seat_lease: float = 30.0
    """Seconds a seat survives without a heartbeat refresh (a crashed node frees its seats)."""
    allow_plaintext_redis: bool = False
    """Silence the warning about ``redis://`` (no TLS) to a host that is not this machine."""
    node_ttl: float = 10.0
    """Seconds a node's heartbeat lives in Redis: a node silent this long is dead and its rooms move."""
    cluster_secret: str = ""
    """Authenticates node-to-node requests (relayed sessions, forwarded admin calls); derived from
    the API secret when empty."""
    node_address: str = ""
    """Host other nodes reach this node at; ``server.host`` when empty (the host name when that is a
    wildcard address)."""


@dataclass(frozen=True)
class SignalingConfig:
    allowed_origins: tuple[str, ...] = ()
    """Origins allowed to open /ws; empty means the server's own public origin only."""
    max_message_bytes: int = 65536
    outbound_queue: int = 256
    send_timeout: float = 5.0
    heartbeat_interval: float = 10.0
    """WebSocket ping interval; a client that has not answered a ping within half of it is closed."""
    join_timeout: float = 10.0
    max_unjoined: int = 1000
    """WebSockets open at once that have not joined a room yet, in total (more are refused)."""
    max_unjoined_per_address: int = 200
    """WebSockets from one client address that have not joined a room yet."""
    rate_per_second: float = 20.0
    rate_burst: int = 60
    chat_max_chars: int = 2000
    node_id: str = ""
    """This node's id in the store (``NODE_ID_PATTERN``); a random one per start when empty."""


@dataclass(frozen=True)
class IceServerConfig:
    urls: tuple[str, ...]
    """e.g. ("stun:turn.example.gov:3478", "turn:turn.example.gov:3478?transport=udp")"""
    username: str = ""
    credential: str = ""


@dataclass(frozen=True)
class SfuConfig:
    enabled: bool = True
    udp_port: int = 0
    """The one UDP port all media shares (ICE mux); 0: a free port chosen at the first join."""
    port_min: int = 0
    port_max: int = 0
    """Instead of ``udp_port``: one socket per connection, in this range (e.g. 40000-40999)."""
    bind_addresses: tuple[str, ...] = ()
    """Local addresses to gather ICE candidates on; empty means all interfaces."""
    public_ip: str = ""
    """Advertised address for NAT 1:1 (written into host candidates); empty: none."""
    ice_servers: tuple[IceServerConfig, ...] = ()
    turn_secret: str = ""
    """Shared secret of coturn's use-auth-secret: TURN URLs in ice_servers get time-limited credentials."""
    turn_credential_ttl: int = 3600
    max_audio_streams: int = 5
    """The loudest N audio sources forwarded to each subscriber."""
    max_video_subscriptions: int = 25
    """Video tracks one subscriber may receive at once (screen shares do not count)."""
    pli_interval: float = 0.3
    nack_history_packets: int = 512
    opus_dtx: bool = True
    """Ask publishers for Opus DTX (``usedtx=1``): a silent microphone sends ~5 packets/s, not 50."""
    dynacast: bool = True
    """Tell publishers to stop sending the video layers no subscriber wants (``publish_layers``)."""
    dynacast_pause_delay: float = 3.0
    """Seconds a layer must be unwanted before its publisher is told to stop it."""
    max_receive_delay: float = 0.5
    """Seconds RTP may wait in the shared media socket before it is dropped unread (an overloaded
    server loses what it cannot forward in time instead of lagging behind); 0: never dropped."""
    load_shedding: bool = True
    """When media keeps going stale in the shared socket (2 s without a break), hold every
    subscriber's video one simulcast layer lower (then two), and give the layers back one at a
    time after 30 s without."""
    workers: int | Literal["auto"] = 1
    """Media worker processes beside the signaling process: 1 (media in this process), N, or
    "auto" (one per CPU this process may run on). Worker i uses UDP port ``udp_port + i``."""

    @property
    def worker_count(self) -> int:
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        return self.workers


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class LogConfig:
    level: LogLevel = "info"
    format: LogFormat = "text"


@dataclass(frozen=True)
class Config:
    mode: Mode = "dev"
    server: ServerConfig = field(default_factory=ServerConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    rooms: RoomsConfig = field(default_factory=RoomsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    signaling: SignalingConfig = field(default_factory=SignalingConfig)
    sfu: SfuConfig = field(default_factory=SfuConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    audit: AuditConfig = field(default_factory=AuditConfig)

    @property
    def auto_create_rooms(self) -> bool:
        if self.rooms.auto_create is None:
            return self.mode == "dev"
        return self.rooms.auto_create

    @property
    def scheme(self) -> str:
        return "http" if self.tls.mode == "off" else "https"

    @property
    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host = self.server.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.server.port}"


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML file at ``path`` (if any), then ``CONF_*`` variables from ``env``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    _merge_env(data, os.environ if env is None else env)
    cfg = _build(Config, data, "")
    if not isinstance(cfg, Config):  # pragma: no cover - _build returns an instance of the class given
        raise ConfigError("config: could not be built")
    _check(cfg)
    return cfg


def _merge_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in CLIENT_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if rest in sections and not _is_section(sections[rest]):
            data[rest] = raw
            continue
        for sec_name, sec in sections.items():
            if _is_section(sec) and rest.startswith(sec_name + "_"):
                key = rest[len(sec_name) + 1 :]
                section = data.setdefault(sec_name, {})
                if not isinstance(section, dict):
                    raise ConfigError(f"{sec_name}: must be a table")
                section[key] = _EnvValue(raw, name)
                break
        else:
            raise ConfigError(f"unknown environment variable {name}")


def _is_section(f: dataclasses.Field[Any]) -> bool:
    return dataclasses.is_dataclass(f.type) or (isinstance(f.type, str) and f.type.endswith("Config"))


@dataclass(frozen=True)
class _EnvValue:
    """A value from the environment: always text, converted by the field's type."""

    raw: str
    var: str


def _build(cls: type[Any], data: Any, where: str) -> Any:
    label = where or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    for name in unknown:
        if _join(where, name) in REMOVED_KEYS:
            bad = data[name]
            shown = _join(where, name)
            if isinstance(bad, _EnvValue):
                shown += f" (from {bad.var})"
            raise ConfigError(f"{shown} {REMOVED_KEYS[_join(where, name)]}")
    if unknown:
        bad = data[unknown[0]]
        if isinstance(bad, _EnvValue):
            raise ConfigError(f"unknown environment variable {bad.var}")
        raise ConfigError(f"unknown key {_join(where, unknown[0])}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], _join(where, f.name))
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{label}: {e}") from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(tp: Any, value: Any, key: str) -> Any:
    env_var = value.var if isinstance(value, _EnvValue) else None
    shown = f"{key} (from {env_var})" if env_var else key
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if env_var:
            raise ConfigError(f"{shown}: cannot be set from the environment")
        return _build(tp, value, key)  # type: ignore[arg-type]
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if isinstance(value, _EnvValue) and value.raw == "" and len(inner) < len(args):
            return None
        if len(inner) == 1:
            return _convert(inner[0], value, key)
        for alternative in inner:  # int | Literal["auto"]: the first that fits
            with contextlib.suppress(ConfigError):
                return _convert(alternative, value, key)
        words = [
            _type_word(a) if typing.get_origin(a) is not Literal else repr(typing.get_args(a)[0])
            for a in inner
        ]
        raise ConfigError(f"{shown}: must be {' or '.join(words)}")
    if origin is Literal:
        v = value.raw if isinstance(value, _EnvValue) else value
        if v not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{shown}: {v!r} is not one of {choices}")
        return v
    if origin is tuple:
        item = args[0]
        if isinstance(value, _EnvValue):
            if dataclasses.is_dataclass(item):
                raise ConfigError(f"{shown}: cannot be set from the environment")
            parts = [p.strip() for p in value.raw.split(",") if p.strip()]
            return tuple(_convert(item, _EnvValue(p, value.var), key) for p in parts)
        if not isinstance(value, list):
            raise ConfigError(f"{shown}: must be a list")
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(value, _EnvValue):
        return _from_text(tp, value.raw, shown)
    return _checked_scalar(tp, value, shown)


def _from_text(tp: Any, raw: str, shown: str) -> Any:
    try:
        if tp is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
    except ValueError:
        raise ConfigError(f"{shown}: {raw!r} is not a valid {tp.__name__}") from None
    return raw


def _checked_scalar(tp: Any, value: Any, shown: str) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{shown}: must be an integer")
    if not isinstance(value, tp):
        raise ConfigError(f"{shown}: must be {_type_word(tp)}, not {type(value).__name__}")
    return value


def _type_word(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _check(cfg: Config) -> None:
    """Value ranges and combinations that types alone do not catch."""

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {msg}")

    need(0 < cfg.server.port < 65536, "server.port", "must be 1-65535")
    need(0 <= cfg.metrics.port < 65536, "metrics.port", "must be 0-65535")
    need(
        1024 <= cfg.server.max_body_bytes <= 16 * 1024 * 1024, "server.max_body_bytes", "must be 1 KiB-16 MiB"
    )
    need(
        cfg.server.public_url == "" or cfg.server.public_url.startswith(("https://", "http://")),
        "server.public_url",
        "must start with https:// or http://",
    )
    need(1 <= cfg.rooms.default_max_participants <= 100, "rooms.default_max_participants", "must be 1-100")
    need(cfg.rooms.auto_created_empty_timeout >= 0, "rooms.auto_created_empty_timeout", "must be >= 0")
    need(cfg.rooms.sweep_interval > 0, "rooms.sweep_interval", "must be > 0")
    need(60 <= cfg.auth.token_max_ttl <= 30 * 86400, "auth.token_max_ttl", "must be 60 s to 30 days")
    need(
        0 < cfg.auth.token_default_ttl <= cfg.auth.token_max_ttl,
        "auth.token_default_ttl",
        "must be > 0 and <= auth.token_max_ttl",
    )
    need(0 <= cfg.auth.leeway <= 300, "auth.leeway", "must be 0-300")
    need(
        bool(cfg.auth.api_key) == bool(cfg.auth.api_secret),
        "auth.api_secret",
        "set both api_key and api_secret",
    )
    need(
        cfg.auth.api_secret == "" or len(cfg.auth.api_secret) >= 32, "auth.api_secret", "must be >= 32 chars"
    )
    kids = [k.kid for k in cfg.auth.keys]
    need(len(kids) == len(set(kids)), "auth.keys", "kid values must be unique")
    need(cfg.auth.api_key not in kids, "auth.keys", "a kid must differ from auth.api_key")
    need(cfg.store.seat_lease >= 5, "store.seat_lease", "must be >= 5 s")
    need(1 <= cfg.store.node_ttl <= 300, "store.node_ttl", "must be 1-300 s")
    need(
        cfg.store.cluster_secret == "" or len(cfg.store.cluster_secret) >= 32,
        "store.cluster_secret",
        "must be >= 32 chars",
    )
    need(
        cfg.store.redis_url.startswith(("redis://", "rediss://", "unix://")),
        "store.redis_url",
        "bad URL scheme",
    )
    need(100 <= cfg.server.gc_threshold <= 1_000_000, "server.gc_threshold", "must be 100-1000000")
    need(0.1 <= cfg.server.header_timeout <= 300, "server.header_timeout", "must be 0.1 to 300 s")
    need(1 <= cfg.server.max_connections <= 1_000_000, "server.max_connections", "must be 1-1000000")
    need(
        1 <= cfg.server.max_connections_per_address <= cfg.server.max_connections,
        "server.max_connections_per_address",
        "must be 1 to server.max_connections",
    )
    public = urlsplit(cfg.server.public_url)
    need(
        public.scheme != "http" or is_loopback(public.hostname or "") or cfg.server.trust_proxy_tls,
        "server.public_url",
        "http:// is allowed only on a loopback host, or behind a TLS proxy (server.trust_proxy_tls = true); "
        "use https://",
    )
    need(1 <= cfg.rooms.lobby_max <= 10_000, "rooms.lobby_max", "must be 1-10000")
    need(1 <= cfg.rooms.lobby_knocks_per_minute <= 1000, "rooms.lobby_knocks_per_minute", "must be 1-1000")
    s = cfg.signaling
    need(1024 <= s.max_message_bytes <= 1024 * 1024, "signaling.max_message_bytes", "must be 1 KiB-1 MiB")
    need(8 <= s.outbound_queue <= 65536, "signaling.outbound_queue", "must be 8-65536")
    need(s.send_timeout > 0, "signaling.send_timeout", "must be > 0")
    need(s.heartbeat_interval > 0, "signaling.heartbeat_interval", "must be > 0")
    need(
        cfg.store.seat_lease > s.heartbeat_interval,
        "store.seat_lease",
        "must exceed signaling.heartbeat_interval",
    )
    need(
        s.node_id == "" or re.fullmatch(NODE_ID_PATTERN, s.node_id) is not None,
        "signaling.node_id",
        "1-64 characters of A-Z a-z 0-9 . _ -",
    )
    need(s.join_timeout > 0, "signaling.join_timeout", "must be > 0")
    need(1 <= s.max_unjoined <= 1_000_000, "signaling.max_unjoined", "must be 1-1000000")
    need(
        1 <= s.max_unjoined_per_address <= s.max_unjoined,
        "signaling.max_unjoined_per_address",
        "must be 1 to signaling.max_unjoined",
    )
    need(
        s.rate_per_second > 0 and s.rate_burst >= 1, "signaling.rate_per_second", "rate and burst must be > 0"
    )
    need(1 <= s.chat_max_chars <= 100_000, "signaling.chat_max_chars", "must be 1-100000")
    check_sfu(cfg.sfu)
    check_ui(cfg.ui)
    check_audit(cfg.audit)
    check_oidc(cfg.auth.oidc, production=cfg.mode == "production", token_max_ttl=cfg.auth.token_max_ttl)
    check_webhooks(cfg.webhooks, production=cfg.mode == "production")
    if cfg.tls.mode == "files":
        need(
            bool(cfg.tls.cert_file and cfg.tls.key_file),
            "tls.cert_file",
            "tls.mode = files needs cert_file and key_file",
        )
    if cfg.tls.mode == "off":
        loopback = cfg.server.host in ("127.0.0.1", "::1", "localhost")
        need(
            loopback or cfg.server.trust_proxy_tls,
            "tls.mode",
            "off is allowed only on a loopback host, or behind a TLS proxy (server.trust_proxy_tls = true)",
        )
    if cfg.mode == "production":
        need(
            cfg.tls.mode != "dev",
            "tls.mode",
            "production needs real certificates (files) or a TLS proxy (off)",
        )
        need(bool(cfg.auth.api_key), "auth.api_key", "production needs a configured api_key and api_secret")
        secrets = (("auth.api_secret", cfg.auth.api_secret), ("sfu.turn_secret", cfg.sfu.turn_secret))
        for key, secret in secrets:
            weak = secret_weakness(secret) if secret else None
            need(weak is None, key, f"{weak}; production needs a random one (openssl rand -base64 36)")
