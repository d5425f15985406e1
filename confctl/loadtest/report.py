"""The figures of a load test, as one JSON object or as aligned text.

Rates and costs come from two snapshots taken at the start and the end of the measurement window
(after everyone joined and the warm-up): client counters from the participants, and the server's
metrics. "Forwarded" packets are the packets the subscribers received. The server's CPU cost
per forwarded packet is its CPU time in the window divided by those packets. "Planned" packets
are what the crafted streams are meant to send at their frame rates: when the generator sends
markedly fewer, it is the bottleneck, and the report says so.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confctl.loadtest.plan import Options
from confctl.loadtest.rtpstats import delay_percentiles, quantiles
from confctl.loadtest.scrape import ServerSample
from confctl.loadtest.swarm import Snapshot


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count() or 0, "cpu": model}


def cpu_busy_seconds() -> float | None:
    """CPU seconds the whole machine spent busy since boot (all cores, from /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / ticks


def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    """p50, p95 and max in milliseconds (nearest rank), None without values."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    return {
        "p50": round(rank(0.50) * 1000, 1),
        "p95": round(rank(0.95) * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _per_packet_us(cpu: float | None, packets: float) -> float | None:
    if cpu is None or packets <= 0:
        return None
    return round(cpu / packets * 1e6, 2)


@dataclass(frozen=True)
class Window:
    """Everything measured: client snapshots and server samples at the window's ends."""

    client_start: Snapshot
    client_end: Snapshot
    server_base: ServerSample | None  # before anyone joined
    server_start: ServerSample | None
    server_end: ServerSample | None
    generator_cpu: float  # CPU seconds of the load generator (all its processes) in the window
    machine_busy: float | None = None  # CPU seconds the whole machine was busy in the window


def build(options: Options, w: Window) -> dict[str, Any]:
    c0, c1 = w.client_start, w.client_end
    seconds = c1.at - c0.at
    got = c1.received
    before = c0.received
    packets = got.packets - before.packets
    expected = got.expected - before.expected
    media = got.received - before.received
    loss = round(max(0, expected - media) / expected * 100, 3) if expected > 0 else None
    doc: dict[str, Any] = {
        "room": options.room,
        "machine": {**machine(), **_busy(w, seconds)},
        "setup": {
            "participants": options.total,
            "video_publishers": options.video_publishers,
            "audio_publishers": options.audio_publishers,
            "speakers": options.speaking,
            "subscribers": options.subscribers,
            "decoders": options.decoders,
            "simulcast": options.simulcast,
            "sender": options.sender,
            "tiles": options.tiles,
            "speaker_view": options.speaker_view,
            "processes": options.processes,
            "e2ee": options.e2ee,
        },
        "participants": {
            "total": c1.participants,
            "joined": c1.joined,
            "connected": c1.connected,
            "failed": c1.failed,
            "failures": c1.failures,
            "errors": c1.errors,
            "without_media": c1.awaiting_media,
        },
        "join_latency_ms": percentiles(c1.join_latencies),
        "connect_latency_ms": percentiles(c1.connect_latencies),
        "first_media_ms": percentiles(c1.media_latencies),
        "window_s": round(seconds, 2),
        "window_started_at": round(time.time() - (time.monotonic() - c0.at), 3),  # Unix time
        "sent_pps": _rate(c1.sent - c0.sent, seconds),
        "planned_pps": round(c1.planned, 1) if c1.planned else None,
        "asked_less": {  # at the window's end: what the server asked the publishers not to send
            "video_layers": c1.video_streams,
            "paused_layers": c1.paused_streams,
            "dtx_microphones": c1.dtx_streams,
        },
        "forwarded_pps": _rate(packets, seconds),
        "forwarded_audio_pps": _rate(got.audio - before.audio, seconds),
        "forwarded_video_pps": _rate(got.video - before.video, seconds),
        "loss_percent": loss,
        "delay_ms": delay_percentiles(got.delays_since(before)),
        "retransmissions": got.retransmissions - before.retransmissions,
        "decoded_fps": _rate(c1.frames_decoded - c0.frames_decoded, seconds) if options.decoders else None,
        "e2ee": _e2ee(c0.e2ee, c1.e2ee, seconds) if options.e2ee else None,
        "server": _server(options, w, packets, _rate(c1.sent - c0.sent, seconds)),
        "generator": {
            "cpu_percent": round(w.generator_cpu / seconds * 100, 1) if seconds > 0 else None,
            "cpu_us_per_packet": _per_packet_us(w.generator_cpu, packets + (c1.sent - c0.sent)),
        },
    }
    return doc


def _e2ee(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, Any]:
    """Key exchange since the start (keys are exchanged while joining); frames in the window."""
    names = ("encrypted", "dropped", "decrypted", "missing_key", "bad_frame")
    frames = tuple("frames_" + name for name in names)
    doc: dict[str, Any] = {k: v for k, v in sorted(after.items()) if k not in frames}
    for key in frames:
        doc[key + "_per_s"] = _rate(after.get(key, 0) - before.get(key, 0), seconds)
    return doc


def _e2ee_rows(e2ee: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not e2ee:
        return []

    def per_s(name: str) -> str:
        return _fmt(e2ee[f"frames_{name}_per_s"]) + "/s"

    frames = f"encrypted {per_s('encrypted')}, decrypted {per_s('decrypted')}"
    frames += f", no key {per_s('missing_key')}, failed {per_s('bad_frame')}"
    keys = f"{e2ee.get('key_frames_out', 0)} e2ee_keys sent ({e2ee.get('key_blobs_out', 0)} blobs), "
    keys += f"{e2ee.get('key_messages_in', 0)} e2ee_key received"
    keys += f", {e2ee.get('key_messages_refused', 0)} refused"
    return [("E2EE frames", frames), ("  key exchange", keys)]


def _busy(w: Window, seconds: float) -> dict[str, Any]:
    """How busy the machine was, and how much of that was neither the server nor the generator
    (another program competing for the cores makes every figure worse)."""
    if w.machine_busy is None or seconds <= 0:
        return {}
    server = 0.0
    if w.server_start is not None and w.server_end is not None:
        a, b = w.server_start.cpu_seconds, w.server_end.cpu_seconds
        server = (b - a) if a is not None and b is not None else 0.0
    other = max(0.0, w.machine_busy - server - w.generator_cpu)
    return {
        "busy_percent": round(w.machine_busy / seconds * 100, 1),
        "other_percent": round(other / seconds * 100, 1),
    }


def _server(options: Options, w: Window, packets: int, sent_pps: float | None) -> dict[str, Any] | None:
    s0, s1, base = w.server_start, w.server_end, w.server_base
    if s0 is None or s1 is None:
        return None
    seconds = s1.at - s0.at
    cpu = None
    if s0.cpu_seconds is not None and s1.cpu_seconds is not None:
        cpu = s1.cpu_seconds - s0.cpu_seconds
    out = s1.packets_out - s0.packets_out
    in_pps = _rate(s1.packets_in - s0.packets_in, seconds)
    rss = s1.rss_bytes
    per_participant = None
    if rss is not None and base is not None and base.rss_bytes is not None and options.total:
        per_participant = round((rss - base.rss_bytes) / options.total / 2**20, 2)
    connections = s1.peer_connections
    per_connection = None
    if cpu is not None and connections and seconds > 0:
        per_connection = round(cpu / seconds * 1000 / connections, 3)
    return {
        "cpu_percent": round(cpu / seconds * 100, 1) if cpu is not None and seconds > 0 else None,
        "cpu_us_per_packet": _per_packet_us(cpu, packets),
        "cpu_us_per_sent_packet": _per_packet_us(cpu, out),
        "in_pps": in_pps,
        "in_percent_of_sent": round(in_pps / sent_pps * 100, 1) if sent_pps else None,
        "out_pps": _rate(out, seconds),
        "rss_mb": round(rss / 2**20, 1) if rss is not None else None,
        "rss_mb_per_participant": per_participant,
        "peer_connections": int(connections) if connections is not None else None,
        "cpu_ms_per_s_per_connection": per_connection,
        "dropped": {
            k: int(v - s0.dropped.get(k, 0)) for k, v in s1.dropped.items() if v - s0.dropped.get(k, 0)
        },
        "socket_drops": int(s1.udp_drops - s0.udp_drops)
        if s1.udp_drops is not None and s0.udp_drops is not None
        else None,
        "socket_queue_kib": round(s1.udp_queued / 1024, 1) if s1.udp_queued is not None else None,
        "receive_wait_ms": wait_percentiles(s0.receive_wait, s1.receive_wait),
        "shed_layers": {
            "mean": round((s1.shed_layer_seconds - s0.shed_layer_seconds) / seconds, 2),
            "end": int(s1.shed_layers),
        }
        if s1.shed_layers is not None and seconds > 0
        else None,
        "gc_pauses": gc_pauses(s0, s1),
        "gc_pauses_since_start": gc_pauses(base, s1) if base is not None else None,
    }


def gc_pauses(before: ServerSample, after: ServerSample) -> dict[str, float] | None:
    """The server's garbage-collector pauses between two samples: how many (``full``: of the whole
    heap), their total and the longest (the upper bound of its histogram bucket) in ms; None
    when the server exposes no such histogram."""
    if not after.gc_pauses:
        return None
    bounds = sorted(after.gc_pauses)
    counts = [after.gc_pauses[b] - before.gc_pauses.get(b, 0.0) for b in bounds]  # cumulative
    total = counts[-1]
    longest = next((b for b, c in zip(bounds, counts, strict=True) if c == total), 0.0) if total else 0.0
    if longest == math.inf:  # longer than the last finite bound: say that bound
        longest = max((b for b in bounds if b != math.inf), default=0.0)
    return {
        "count": int(total),
        "full": int(after.gc_full - before.gc_full),
        "total_ms": round((after.gc_seconds - before.gc_seconds) * 1000, 1),
        "longest_ms": round(longest * 1000, 1),
    }


def wait_percentiles(before: dict[float, float], after: dict[float, float]) -> dict[str, float] | None:
    """p50/p95/p99 of the server's receive waits in the window, each the upper bound (ms) of the
    histogram bucket it falls in (the last finite bound when above it), and the samples; None
    without samples."""
    bounds = sorted(after)
    cumulative = [after[b] - before.get(b, 0.0) for b in bounds]  # as exposed
    finite = max((b for b in bounds if b != math.inf), default=0.0)
    bins = [
        ((b if b != math.inf else finite) * 1000, c - (cumulative[i - 1] if i else 0.0))
        for i, (b, c) in enumerate(zip(bounds, cumulative, strict=True))
    ]
    out = quantiles(bins)
    if out is not None:
        out = {k: round(v, 1) for k, v in out.items()}
        out["samples"] = int(out["samples"])
    return out


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return text + unit


def _lat(p: dict[str, float] | None) -> str:
    if p is None:
        return "n/a"
    return f"p50 {p['p50']:,.0f} ms, p95 {p['p95']:,.0f} ms, max {p['max']:,.0f} ms"


def _machine(m: dict[str, Any]) -> str:
    text = f"{m['cores']} cores, {m['cpu'] or 'unknown CPU'}"
    if "busy_percent" in m:
        text += f"; busy {m['busy_percent']:.0f} % of one core, {m['other_percent']:.0f} % by other programs"
    return text


BEHIND = 0.97
"""Below this share of the planned packets, the report says the generator could not keep up."""


def _sent(doc: dict[str, Any]) -> str:
    sent, planned = doc["sent_pps"], doc.get("planned_pps")
    text = _fmt(sent, " packets/s")
    if sent is None or not planned:
        return text
    text += f" of {_fmt(planned)} planned"
    if sent < planned * BEHIND:
        text += " (the load generator could not keep up: fewer packets reach the server; try --processes)"
    return text


def _asked_less(doc: dict[str, Any]) -> list[tuple[str, str]]:
    less = doc.get("asked_less") or {}
    parts = []
    if less.get("video_layers"):
        parts.append(f"{less['paused_layers']} of {less['video_layers']} video layers paused (unwatched)")
    if less.get("dtx_microphones"):
        parts.append(f"{less['dtx_microphones']} quiet microphones in Opus DTX")
    return [("  asked for less", "; ".join(parts))] if parts else []


def _delay(d: dict[str, float] | None) -> str:
    if not d:
        return "n/a (no video with abs-send-time was received)"
    return (
        f"p50 {_fmt(d['p50'], ' ms')}, p95 {_fmt(d['p95'], ' ms')}, p99 {_fmt(d['p99'], ' ms')}, "
        f"max {_fmt(d['max'], ' ms')} (video, sent to counted; {int(d['samples']):,} samples)"
    )


def render(doc: dict[str, Any]) -> str:
    p = doc["participants"]
    s = doc["server"] or {}
    g = doc["generator"]
    rows = [
        ("Room", doc["room"]),
        ("Machine", _machine(doc["machine"])),
        (
            "Participants",
            f"{p['joined']}/{p['total']} joined, {p['connected']} connected, {p['failed']} failed",
        ),
    ]
    for reason, count in sorted(p["failures"].items()):
        rows.append(("  failure", f"{count} x {reason}"))
    if p["errors"]:
        rows.append(("  errors", ", ".join(f"{k} {v}" for k, v in sorted(p["errors"].items()))))
    if p["without_media"]:
        rows.append(("  no media", f"{p['without_media']} subscribers received nothing"))
    rows += [
        ("Join latency", _lat(doc["join_latency_ms"])),
        ("Connected", _lat(doc["connect_latency_ms"])),
        ("First media", _lat(doc["first_media_ms"])),
        ("Window", _fmt(doc["window_s"], " s")),
        ("Sent", _sent(doc)),
        *_asked_less(doc),
        (
            "Forwarded",
            f"{_fmt(doc['forwarded_pps'])} packets/s "
            f"(audio {_fmt(doc['forwarded_audio_pps'])}, video {_fmt(doc['forwarded_video_pps'])})",
        ),
        ("Loss", _fmt(doc["loss_percent"], " %")),
        ("Delay", _delay(doc["delay_ms"])),
    ]
    if doc["decoded_fps"] is not None:
        rows.append(("Decoded", _fmt(doc["decoded_fps"], " frames/s")))
    rows += _e2ee_rows(doc.get("e2ee"))
    if s:
        rows += [
            ("Server CPU", f"{_fmt(s['cpu_percent'], ' %')} of one core"),
            ("  per forwarded packet", _fmt(s["cpu_us_per_packet"], " us")),
            ("  per connection", _fmt(s["cpu_ms_per_s_per_connection"], " ms/s")),
            (
                "Server RSS",
                f"{_fmt(s['rss_mb'], ' MiB')} ({_fmt(s['rss_mb_per_participant'], ' MiB')} per participant)",
            ),
            ("Server sent", _fmt(s["out_pps"], " packets/s")),
        ]
        if s.get("socket_drops") is not None:
            rows.append(
                (
                    "  socket buffers",
                    f"{s['socket_drops']:,} datagrams dropped by the kernel in the window, "
                    f"{_fmt(s['socket_queue_kib'], ' KiB')} waiting at its end",
                )
            )
        received = s.get("in_percent_of_sent")
        if received is not None and received < BEHIND * 100:
            rows.append(
                (
                    "  behind",
                    f"the server read only {received:.1f} % of the packets sent in the window: the rest "
                    "wait in its socket buffers (delay grows) or are dropped there; it is overloaded",
                )
            )
        wait = s.get("receive_wait_ms")
        if wait:
            rows.append(
                (
                    "  receive wait",
                    f"p50 <= {_fmt(wait['p50'], ' ms')}, p95 <= {_fmt(wait['p95'], ' ms')}, "
                    f"p99 <= {_fmt(wait['p99'], ' ms')} in its media socket ({wait['samples']:,} samples)",
                )
            )
        shed = s.get("shed_layers")
        if shed and (shed["mean"] or shed["end"]):
            rows.append(
                (
                    "  load shedding",
                    f"video held {shed['mean']:.2f} simulcast layers below the top on average in the "
                    f"window, {shed['end']} at its end: the server could not keep up",
                )
            )
        for key, when in (("gc_pauses", "in the window"), ("gc_pauses_since_start", "since the joins began")):
            gc = s.get(key)
            if gc:
                rows.append(
                    (
                        "  GC pauses",
                        f"{gc['count']:,} ({gc['full']:,} full), {_fmt(gc['total_ms'], ' ms')} in all, "
                        f"the longest <= {_fmt(gc['longest_ms'], ' ms')} {when}",
                    )
                )
        if s["dropped"]:
            rows.append(("  not forwarded", ", ".join(f"{k} {v:,}" for k, v in sorted(s["dropped"].items()))))
    else:
        rows.append(("Server", "no metrics (--no-metrics)"))
    rows.append(
        (
            "Generator CPU",
            f"{_fmt(g['cpu_percent'], ' %')} of one core, {_fmt(g['cpu_us_per_packet'], ' us')} per packet",
        )
    )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in rows)
