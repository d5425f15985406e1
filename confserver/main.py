"""``confserver``: start the service. With no configuration: https://127.0.0.1:8443 with a dev
certificate, an in-memory store and an API key/secret created once and kept."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import logging
import shlex
import signal
import ssl
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from . import __version__
from .app import create_app
from .audit import Signer
from .audit.log import load_signer
from .audit.redissink import RedisSink
from .audit.sinks import AuditSink, FileSink
from .cluster.address import certificate_fingerprint
from .cluster.registry import RedisRegistry
from .config import AuthConfig, Config, ConfigError, config_warnings, load_config
from .credentials import ApiCredentials, ensure_credentials
from .devcerts import SERVER_CERT_FILE, ensure_dev_certs, ssl_context
from .listener import ConnectionCaps, GuardedSite, ListenerMetrics, fit_caps, raise_fd_limit
from .logsetup import ThrottledLoopErrors, setup_logging
from .media import MediaController
from .metrics import Metrics, metrics_app
from .sfuconfig import media_ports
from .store import open_store

log = logging.getLogger("confserver")

AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 suites offered: forward-secret key exchange with an AEAD cipher only (no CBC, no RSA key
exchange). TLS 1.3 suites are all AEAD and are not affected by this string."""

METRICS_MAX_CONNECTIONS = 64
"""Connections the metrics listener holds at once (Prometheus needs one or two)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="confserver",
        description="Self-hostable video-conferencing server: pages, signaling, admin API, metrics.",
        epilog="Every config key can also be set as CONF_<SECTION>_<KEY> (e.g. CONF_SERVER_PORT=9443); "
        "see docs/CONFIG.md.",
    )
    p.add_argument("--config", metavar="FILE.toml", help="configuration file (TOML)")
    p.add_argument("--check-config", action="store_true", help="load the configuration, print it, and exit")
    p.add_argument("--version", action="version", version=f"confserver {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"confserver: configuration error: {e}", file=sys.stderr)
        return 2
    if args.check_config:
        print(redacted(cfg))
        for warning in config_warnings(cfg):
            print(f"confserver: warning: {warning}", file=sys.stderr)
        return 0
    try:
        return asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, OSError, ValueError) as e:
        print(f"confserver: cannot start: {e}", file=sys.stderr)
        return 1


def redacted(cfg: Config) -> Config:
    """The configuration as ``--check-config`` prints it: secrets (the API secret, the TURN secret,
    a password in the Redis URL, webhook secrets, the OpenID client secret) replaced by ``***``, so
    the output can be pasted anywhere."""
    url = urlsplit(cfg.store.redis_url)
    redis_url = cfg.store.redis_url
    if url.password is not None:
        host = url.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{url.port}" if url.port else ""
        user = url.username or ""
        redis_url = urlunsplit(url._replace(netloc=f"{user}:***@{host}{port}"))
    return replace(
        cfg,
        auth=replace(
            cfg.auth,
            api_secret="***" if cfg.auth.api_secret else "",
            oidc=replace(cfg.auth.oidc, client_secret="***" if cfg.auth.oidc.client_secret else ""),
        ),
        sfu=replace(cfg.sfu, turn_secret="***" if cfg.sfu.turn_secret else ""),
        store=replace(cfg.store, redis_url=redis_url),
        webhooks=tuple(replace(hook, secret="***") for hook in cfg.webhooks),  # noqa: S106 - a mask
    )


def _tls(cfg: Config) -> tuple[ssl.SSLContext | None, Path | None]:
    ctx, cacert = _tls_context(cfg)
    if ctx is not None:
        ctx.set_ciphers(AEAD_CIPHERS)
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx, cacert


def _tls_context(cfg: Config) -> tuple[ssl.SSLContext | None, Path | None]:
    if cfg.tls.mode == "off":
        return None, None
    if cfg.tls.mode == "dev":
        hosts = [*cfg.tls.hostnames]
        ips = ["127.0.0.1", "::1"]
        host = cfg.server.host
        if host not in ("0.0.0.0", "::", "localhost", *ips):
            (ips if _is_ip(host) else hosts).append(host)
        dev = ensure_dev_certs(Path(cfg.tls.dev_dir), hostnames=hosts, ips=ips)
        return ssl_context(dev), dev.ca_cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.tls.cert_file, cfg.tls.key_file)
    return ctx, None


def _fingerprint(cfg: Config) -> str:
    """The fingerprint of the certificate this node serves, which the other nodes pin."""
    if cfg.tls.mode == "off":
        return ""
    if cfg.tls.mode == "dev":
        return certificate_fingerprint(Path(cfg.tls.dev_dir) / SERVER_CERT_FILE)
    return certificate_fingerprint(Path(cfg.tls.cert_file))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _media_controller(cfg: Config, metrics: Metrics) -> MediaController | None:
    """The one place the media implementation is chosen: the packet-forwarding SFU in this
    process, media worker processes driven from this one (``sfu.workers`` > 1), or none
    (signaling only)."""
    if not cfg.sfu.enabled:
        return None
    from sfu.worker.metrics import WorkerMetrics  # no aiortc: the workers import it, not this process

    worker_metrics = WorkerMetrics(metrics.registry)
    if cfg.sfu.worker_count > 1:
        from sfu.worker.remote import RemoteMediaController

        return RemoteMediaController(cfg, worker_metrics)
    from sfu.controller import SfuController  # the SFU brings aiortc; imported only when used

    return SfuController(cfg.sfu, metrics.registry)


async def start_media(media: MediaController | None) -> None:
    """Start what the media controller runs beside this process (its worker processes)."""
    from sfu.worker.remote import RemoteMediaController

    if isinstance(media, RemoteMediaController):
        await media.start()


def instruments(cfg: Config) -> tuple[Metrics, ListenerMetrics, MediaController | None]:
    """The metrics registry with everything the server exposes on it (signaling, listeners, and
    the media controller's), and the media controller."""
    metrics = Metrics.create()
    listener_metrics = ListenerMetrics.create(metrics.registry)
    return metrics, listener_metrics, _media_controller(cfg, metrics)


def banner(cfg: Config, creds: ApiCredentials, cacert: Path | None) -> str:
    lines = [
        f"confserver {__version__} is running ({cfg.mode} mode, {cfg.store.kind} store, "
        f"media {'on' if cfg.sfu.enabled else 'off'})",
        f"  URL:          {cfg.public_url}/",
        f"  API key:      {creds.api_key}",
        f"  API secret:   kept in {creds.source}"
        if creds.source != "config"
        else "  API secret:   from config",
    ]
    if cacert is not None:
        lines.append(f"  CA cert:      {cacert.resolve()}  (trust it in your browser for dev)")
    if cfg.metrics.enabled:
        lines.append(f"  Metrics:      http://{cfg.metrics.host}:{cfg.metrics.port}/metrics")
    if cfg.sfu.enabled:
        lines.append("  Media:        " + media_ports(cfg.sfu))
    lines.append("  Try:          " + confctl_hint(cfg, creds, cacert))
    return "\n".join(lines)


def confctl_hint(cfg: Config, creds: ApiCredentials, cacert: Path | None) -> str:
    """A first confctl command for this server. With generated credentials confctl on this
    machine needs no flags: it reads the file confserver wrote (at the path confctl looks at by
    default, or one named by ``CONF_CREDENTIALS_FILE``)."""
    if creds.source != "config":
        default = Path(AuthConfig().credentials_file).expanduser()
        if Path(creds.source) == default:
            return "confctl room list"
        return f"CONF_CREDENTIALS_FILE={shlex.quote(creds.source)} confctl room list"
    cmd = ["confctl", "--url", cfg.public_url, "--api-key", creds.api_key]
    if cacert is not None:
        cmd += ["--cacert", str(cacert.resolve())]
    return shlex.join([*cmd, "room", "list"]) + "  (with the configured API secret in CONF_API_SECRET)"


def _connection_caps(cfg: Config, fd_limit: int) -> ConnectionCaps:
    """The public listener's caps, lowered if need be to stay under the open-files limit, with room
    left for media sockets and the metrics listener."""
    f = cfg.sfu
    media_fds = (f.port_max - f.port_min + 1) if f.enabled and f.port_min else 0
    metrics_fds = METRICS_MAX_CONNECTIONS if cfg.metrics.enabled else 0
    s = cfg.server
    total, per_address = fit_caps(
        s.max_connections, s.max_connections_per_address, fd_limit, media_fds + metrics_fds
    )
    if total < s.max_connections:
        log.warning(
            "server.max_connections lowered to fit the open-files limit; raise the limit "
            "(systemd LimitNOFILE=, ulimit -n) to allow more",
            extra={
                "key": "server.max_connections",
                "configured": s.max_connections,
                "used": total,
                "open_files_limit": fd_limit,
            },
        )
    return ConnectionCaps(total, per_address)


def audit_parts(cfg: Config) -> tuple[AuditSink | None, Signer | None]:
    """Where the audit chain is kept (beside the store) and the key that signs it."""
    if not cfg.audit.enabled:
        return None, None
    signer = load_signer(cfg.audit.key_file)
    sink: AuditSink
    if cfg.store.kind == "redis":
        sink = RedisSink.from_url(cfg.store.redis_url, prefix=cfg.store.prefix)
    else:
        sink = FileSink(cfg.audit.dir, fsync_always=cfg.audit.fsync == "always")
    return sink, signer


async def serve(cfg: Config) -> int:
    ssl_ctx, cacert = _tls(cfg)
    creds = ensure_credentials(cfg, cacert=cacert)
    setup_logging(
        cfg.log.level,
        cfg.log.format,
        secrets=[creds.api_secret, cfg.auth.oidc.client_secret, cfg.store.cluster_secret],
    )
    for warning in config_warnings(cfg):
        log.warning(warning, extra={"key": warning.split(":", 1)[0]})
    asyncio.get_running_loop().set_exception_handler(ThrottledLoopErrors())
    caps = _connection_caps(cfg, raise_fd_limit())
    store = await open_store(cfg.store.kind, redis_url=cfg.store.redis_url, prefix=cfg.store.prefix)
    metrics, listener_metrics, media = instruments(cfg)
    gc.set_threshold(cfg.server.gc_threshold, *gc.get_threshold()[1:])
    metrics.gc_pauses.install()
    sink, signer = audit_parts(cfg)
    registry = (
        RedisRegistry.from_url(cfg.store.redis_url, prefix=cfg.store.prefix)
        if cfg.store.kind == "redis"
        else None
    )
    app = create_app(
        cfg,
        store=store,
        credentials=creds,
        metrics=metrics,
        media=media,
        audit_sink=sink,
        audit_signer=signer,
        registry=registry,
        fingerprint=_fingerprint(cfg),
    )
    # aiohttp's keep-alive timer closes a connection that has no complete request this long after
    # accept or after its last response: the header deadline (see listener.py).
    header_timeout = cfg.server.header_timeout
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=header_timeout)
    await runner.setup()
    site = GuardedSite(
        runner,
        cfg.server.host,
        cfg.server.port,
        caps=caps,
        metrics=listener_metrics,
        header_timeout=cfg.server.header_timeout,
        ssl_context=ssl_ctx,
    )
    metrics_runner = None
    try:
        await start_media(media)
        await site.start()
        if cfg.metrics.enabled:
            metrics_runner = web.AppRunner(
                metrics_app(metrics), access_log=None, handle_signals=False, keepalive_timeout=header_timeout
            )
            await metrics_runner.setup()
            await GuardedSite(
                metrics_runner,
                cfg.metrics.host,
                cfg.metrics.port,
                caps=ConnectionCaps(METRICS_MAX_CONNECTIONS, METRICS_MAX_CONNECTIONS),
                metrics=listener_metrics,
                header_timeout=cfg.server.header_timeout,
                label="metrics",
            ).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        print(banner(cfg, creds, cacert), flush=True)  # after the handlers: a stop right away is clean
        await stop.wait()
        log.info("shutting down")
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        await store.close()
        metrics.gc_pauses.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
