"""What every part of the forwarding unit shares: configuration, network policy, metrics, clock."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection

from confserver.config import SfuConfig
from sfu.core.loadshed import LoadShedding, SheddingConfig
from sfu.deadline import Deadlines
from sfu.glue.receive import PacketFilter
from sfu.metrics import Counters, SfuMetrics
from sfu.ports import GatherPolicy, PortRange, StaleGuard
from sfu.udpmux import MediaPorts, UdpMux


@dataclass(frozen=True)
class PacketFilters:
    """Test hooks for loss injection: return True to drop a packet. None in production."""

    incoming: PacketFilter | None = None  # RTP from publishers, before routing
    outgoing: PacketFilter | None = None  # RTP to subscribers (first transmissions and retransmissions)


SHEDDING = SheddingConfig()


class MediaContext:
    __slots__ = ("cfg", "clock", "deadlines", "filters", "gather", "load_shedding", "metrics", "ports")

    def __init__(
        self, cfg: SfuConfig, metrics: SfuMetrics, filters: PacketFilters, deadlines: Deadlines | None = None
    ) -> None:
        self.cfg = cfg
        self.deadlines = deadlines or Deadlines()
        self.metrics = metrics
        self.filters = filters
        self.gather = GatherPolicy(addresses=tuple(cfg.bind_addresses), public_ip=cfg.public_ip)
        guard = StaleGuard(metrics.counters, cfg.max_receive_delay, metrics.receive_waits)
        self.ports: MediaPorts = (
            PortRange(cfg.port_min, cfg.port_max, guard)
            if cfg.port_min
            else UdpMux(cfg.udp_port, metrics.counters, guard)
        )
        self.clock: Callable[[], float] = asyncio.get_running_loop().time
        self.load_shedding = LoadShedding(SHEDDING) if cfg.load_shedding else None

    @property
    def shed_layers(self) -> int:
        """Layers below the top every subscriber's video is held to now (load shedding)."""
        return self.load_shedding.level if self.load_shedding is not None else 0

    def shedding(self) -> bool:
        """A media socket dropped stale RTP within the last second (``StaleGuard.shedding``):
        the server is behind, and asks publishers for no retransmissions."""
        return self.ports.shedding()

    @property
    def counters(self) -> Counters:
        return self.metrics.counters

    def new_peer_connection(self) -> RTCPeerConnection:
        """A server-side connection: every m-line on one transport (one socket), no STUN/TURN of
        its own (and so never aiortc's default public STUN server)."""
        self.metrics.peer_connections.inc()
        return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))

    def closed_peer_connection(self) -> None:
        self.metrics.peer_connections.dec()

    def close(self) -> None:
        """Close the shared media sockets (after every connection)."""
        if isinstance(self.ports, UdpMux):
            self.ports.close()


def new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(9)


def random_ssrc() -> int:
    return secrets.randbits(32) or 1
