"""The server's Prometheus metrics, read from its metrics listener (text exposition format).

Only what the report needs: the process's CPU seconds and resident memory, and the forwarding
unit's packet counters, peer connections, drops and receive waits.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from confctl.client import UnreachableError, UsageError

TIMEOUT = 5.0
MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ServerSample:
    at: float  # time.monotonic() when the answer arrived
    cpu_seconds: float | None
    rss_bytes: float | None
    packets_in: float = 0.0
    packets_out: float = 0.0
    peer_connections: float | None = None
    dropped: dict[str, float] = field(default_factory=dict)
    udp_queued: float | None = None  # bytes waiting in the media sockets (the kernel's count)
    udp_drops: float | None = None  # datagrams the kernel dropped on them, since the server started
    receive_wait: dict[float, float] = field(default_factory=dict)  # bucket bound (s) -> cumulative count
    gc_pauses: dict[float, float] = field(default_factory=dict)  # the same, every generation together
    gc_seconds: float = 0.0  # the collector's pauses, all generations
    gc_full: float = 0.0  # full collections (generation 2)
    shed_layers: float | None = None  # load shedding: layers below the top video is held to now
    shed_layer_seconds: float = 0.0  # ... integrated over time


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key:
            out[key.strip()] = value.strip().strip('"')
    return out


def parse(text: str, at: float = 0.0) -> ServerSample:
    values: dict[str, float] = {}
    packets_in = packets_out = 0.0
    dropped: dict[str, float] = {}
    waits: dict[float, float] = {}
    gc_pauses: dict[float, float] = {}
    gc_seconds = gc_full = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value_part = line.rpartition(" ")
        try:
            value = float(value_part)
        except ValueError:
            continue
        name, brace, rest = name_part.partition("{")
        labels = _labels(rest.rstrip("}")) if brace else {}
        if name == "conf_sfu_packets_total":
            if labels.get("direction") == "in":
                packets_in += value
            elif labels.get("direction") == "out":
                packets_out += value
        elif name == "conf_sfu_dropped_packets_total":
            dropped[labels.get("reason", "")] = value
        elif name in ("conf_sfu_receive_wait_seconds_bucket", "conf_gc_pause_seconds_bucket"):
            try:
                bound = float(labels.get("le", ""))  # "+Inf" too
            except ValueError:
                continue
            if name == "conf_sfu_receive_wait_seconds_bucket":
                waits[bound] = value
            else:
                gc_pauses[bound] = gc_pauses.get(bound, 0.0) + value
        elif name == "conf_gc_pause_seconds_sum":
            gc_seconds += value
        elif name == "conf_gc_pause_seconds_count":
            gc_full += value if labels.get("generation") == "2" else 0.0
        elif not brace:
            values[name] = value
    return ServerSample(
        at=at,
        cpu_seconds=values.get("process_cpu_seconds_total"),
        rss_bytes=values.get("process_resident_memory_bytes"),
        packets_in=packets_in,
        packets_out=packets_out,
        peer_connections=values.get("conf_sfu_peer_connections"),
        dropped=dropped,
        udp_queued=values.get("conf_sfu_udp_receive_queue_bytes"),
        udp_drops=values.get("conf_sfu_udp_receive_drops_total"),
        receive_wait=waits,
        gc_pauses=gc_pauses,
        gc_seconds=gc_seconds,
        gc_full=gc_full,
        shed_layers=values.get("conf_sfu_shed_layers"),
        shed_layer_seconds=values.get("conf_sfu_shed_layer_seconds_total", 0.0),
    )


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"invalid metrics URL {url!r}: expected http://HOST:PORT/metrics")
    return url


def sample(url: str) -> ServerSample:
    """Scrape once; ``UnreachableError`` when the listener cannot be read."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT) as resp:
            raw = resp.read(MAX_BYTES)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UnreachableError(url, f"{reason}") from None
    return parse(raw.decode("utf-8", "replace"), time.monotonic())
