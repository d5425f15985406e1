"""The checks of the ``[sfu]`` section that types alone do not catch (``SfuConfig`` itself is in
``confserver.config``, which calls ``check_sfu`` once the tree is built)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .configerror import ConfigError

if TYPE_CHECKING:
    from .config import SfuConfig

MAX_WORKERS = 64
"""Media worker processes at most (``sfu.workers``)."""


def check_sfu(f: SfuConfig) -> None:
    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {msg}")

    need(0 <= f.port_min <= f.port_max < 65536, "sfu.port_min", "port_min <= port_max, both 0-65535")
    need((f.port_min == 0) == (f.port_max == 0), "sfu.port_max", "set both port_min and port_max, or neither")
    need(0 <= f.udp_port < 65536, "sfu.udp_port", "must be 0-65535")
    need(
        f.udp_port == 0 or f.port_min == 0,
        "sfu.udp_port",
        "set either udp_port (one shared port) or port_min/port_max (a port per connection), not both",
    )
    need(1 <= f.max_audio_streams <= 32, "sfu.max_audio_streams", "must be 1-32")
    need(1 <= f.max_video_subscriptions <= 100, "sfu.max_video_subscriptions", "must be 1-100")
    need(f.pli_interval >= 0.05, "sfu.pli_interval", "must be >= 0.05 s")
    need(0 <= f.dynacast_pause_delay <= 600, "sfu.dynacast_pause_delay", "must be 0 to 600 s")
    need(
        f.max_receive_delay == 0 or 0.05 <= f.max_receive_delay <= 60,
        "sfu.max_receive_delay",
        "must be 0 (never drop) or 0.05 to 60 s",
    )
    need(64 <= f.nack_history_packets <= 8192, "sfu.nack_history_packets", "must be 64-8192")
    need(60 <= f.turn_credential_ttl <= 7 * 86400, "sfu.turn_credential_ttl", "must be 60 s to 7 days")
    for i, srv in enumerate(f.ice_servers):
        need(bool(srv.urls), f"sfu.ice_servers[{i}].urls", "must list at least one URL")
        for u in srv.urls:
            need(
                u.startswith(("stun:", "stuns:", "turn:", "turns:")),
                f"sfu.ice_servers[{i}].urls",
                f"bad URL {u!r}",
            )
    _check_workers(f, need)


def _check_workers(f: SfuConfig, need: Callable[[bool, str, str], None]) -> None:
    need(
        f.workers == "auto" or 1 <= f.workers <= MAX_WORKERS,
        "sfu.workers",
        f'must be 1-{MAX_WORKERS} or "auto"',
    )
    if f.workers == 1:
        return
    need(
        f.port_min == 0,
        "sfu.workers",
        "media workers each use one shared UDP port (sfu.udp_port + worker index); "
        "a port range per connection (sfu.port_min/port_max) is not supported with workers",
    )
    count = f.worker_count
    need(
        f.udp_port == 0 or f.udp_port + count - 1 < 65536,
        "sfu.udp_port",
        f"with {count} media workers the ports udp_port to udp_port+{count - 1} must be <= 65535",
    )


def media_ports(f: SfuConfig) -> str:
    """Which UDP ports the firewall must let through for media."""
    workers = f.worker_count
    if workers > 1 and f.udp_port:
        return f"UDP ports {f.udp_port}-{f.udp_port + workers - 1}, one per media worker ({workers} workers)"
    if workers > 1:
        return f"{workers} media workers, each on one UDP port picked at its first join (set sfu.udp_port)"
    if f.port_min:
        return f"UDP ports {f.port_min}-{f.port_max}, one per connection"
    if f.udp_port:
        return f"UDP port {f.udp_port}, shared by every connection"
    return "one UDP port, picked at the first join (set sfu.udp_port to choose it)"
