"""Prometheus metrics: one registry per app, served on its own listener."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

GC_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GcPauses:
    """How long each pass of Python's garbage collector stopped the server (media waits in the
    sockets meanwhile): the histogram ``conf_gc_pause_seconds{generation}``, generation 2 being a
    full collection. Observes only between ``install`` and ``remove`` (``gc.callbacks``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        histogram = Histogram(
            "conf_gc_pause_seconds",
            "Pauses of Python's garbage collector, by generation (2: a full collection).",
            ["generation"],
            buckets=GC_PAUSE_BUCKETS,
            registry=registry,
        )
        self._by_generation = tuple(histogram.labels(str(g)) for g in range(3))
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    rooms: Gauge
    participants: Gauge
    joins: Counter
    join_duration: Histogram
    ws_connections: Gauge
    token_rejections: Counter
    sign_ins: Counter
    http_requests: Counter
    ws_messages: Counter
    ws_errors: Counter
    ws_disconnects: Counter
    gc_pauses: GcPauses
    webhook_deliveries: Counter
    webhook_queue: Gauge
    audit_entries: Counter
    audit_queue: Gauge
    audit_dropped: Counter
    audit_write_errors: Counter
    audit_signed_at: Gauge
    cluster_nodes: Gauge
    cluster_rooms: Gauge
    cluster_relayed: Gauge
    cluster_draining: Gauge
    cluster_placements: Counter
    cluster_relay_failures: Counter
    cluster_auth_failures: Counter
    cluster_heartbeat_failures: Counter

    @classmethod
    def create(cls, *, process: bool = True) -> Metrics:
        reg = CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
            GCCollector(registry=reg)
        return cls(
            registry=reg,
            rooms=Gauge(
                "conf_rooms", "Rooms with at least one participant connected to this node.", registry=reg
            ),
            participants=Gauge("conf_participants", "Participants connected to this node.", registry=reg),
            joins=Counter("conf_joins", "Join attempts by result.", ["result"], registry=reg),
            join_duration=Histogram(
                "conf_join_duration_seconds",
                "Time from the join message to the joined answer.",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                registry=reg,
            ),
            ws_connections=Gauge(
                "conf_ws_connections", "Open signaling WebSocket connections.", registry=reg
            ),
            token_rejections=Counter(
                "conf_token_rejections", "Tokens refused, by reason.", ["reason"], registry=reg
            ),
            sign_ins=Counter(
                "conf_sign_ins",
                "Single sign-on results: admitted, or the refusal code.",
                ["result"],
                registry=reg,
            ),
            http_requests=Counter(
                "conf_http_requests",
                "HTTP requests by method, route and status.",
                ["method", "route", "status"],
                registry=reg,
            ),
            ws_messages=Counter(
                "conf_ws_messages", "Signaling messages received, by type.", ["type"], registry=reg
            ),
            ws_errors=Counter(
                "conf_ws_errors", "Signaling errors sent to clients, by code.", ["code"], registry=reg
            ),
            ws_disconnects=Counter(
                "conf_ws_disconnects", "Signaling connections closed, by reason.", ["reason"], registry=reg
            ),
            gc_pauses=GcPauses(reg),
            webhook_deliveries=Counter(
                "conf_webhook_deliveries",
                "Webhook events by outcome: delivered, retried (an attempt failed), dead_letter "
                "(given up after retry_for), dropped (the endpoint's queue was full).",
                ["result"],
                registry=reg,
            ),
            webhook_queue=Gauge(
                "conf_webhook_queue",
                "Webhook events waiting to be sent, all endpoints together.",
                registry=reg,
            ),
            audit_entries=Counter(
                "conf_audit_entries",
                "Audit entries written to the chain by this node, by event.outcome.",
                ["outcome"],
                registry=reg,
            ),
            audit_queue=Gauge(
                "conf_audit_queue", "Audit entries recorded but not yet written to the chain.", registry=reg
            ),
            audit_dropped=Counter(
                "conf_audit_dropped",
                "Audit entries lost because the queue was full (the chain records the gap).",
                registry=reg,
            ),
            audit_write_errors=Counter(
                "conf_audit_write_errors",
                "Failed writes of the audit chain (disk or Redis); the batch is retried.",
                registry=reg,
            ),
            audit_signed_at=Gauge(
                "conf_audit_signed_timestamp_seconds",
                "When this node last wrote a signed checkpoint of the audit chain (Unix time).",
                registry=reg,
            ),
            cluster_nodes=Gauge(
                "conf_cluster_nodes",
                "Nodes in the registry as this node saw them at its last heartbeat, by state "
                "(active, draining, dead: heartbeat lapsed within the last hour).",
                ["state"],
                registry=reg,
            ),
            cluster_rooms=Gauge("conf_cluster_rooms", "Rooms this node serves (owns).", registry=reg),
            cluster_relayed=Gauge(
                "conf_cluster_relayed_sessions",
                "Sessions this node relays to the node serving their room.",
                registry=reg,
            ),
            cluster_draining=Gauge(
                "conf_cluster_draining", "1 while this node drains (takes no new rooms).", registry=reg
            ),
            cluster_placements=Counter(
                "conf_cluster_placements",
                "Room placements by this node: claimed (a new room), taken_over (from a dead node), "
                "sent_elsewhere (draining: placed on another node), lost (another node serves it now).",
                ["result"],
                registry=reg,
            ),
            cluster_relay_failures=Counter(
                "conf_cluster_relay_failures",
                "Relays that failed: connect (the owner did not answer), lost (it went away mid-session).",
                ["reason"],
                registry=reg,
            ),
            cluster_auth_failures=Counter(
                "conf_cluster_auth_failures",
                "Node-to-node requests refused, by reason (missing, malformed, stale, bad_signature).",
                ["reason"],
                registry=reg,
            ),
            cluster_heartbeat_failures=Counter(
                "conf_cluster_heartbeat_failures",
                "Heartbeats this node could not write (Redis unreachable).",
                registry=reg,
            ),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_app(metrics: Metrics) -> web.Application:
    """The small app behind the metrics listener (loopback by default)."""

    async def handle(request: web.Request) -> web.Response:
        resp = web.Response(body=metrics.render())
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        resp.charset = "utf-8"
        return resp

    app = web.Application()
    app.router.add_get("/metrics", handle)
    return app
