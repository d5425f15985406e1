"""Prometheus metrics of the forwarding unit.

The packet path only increments plain integers on a ``Counters`` object; ``SfuMetrics.flush``
moves the deltas into Prometheus from the periodic timer and before each scrape (a collector
registered ahead of the counters), so forwarding a packet never calls into prometheus_client and
a scrape is never a flush interval behind.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sfu.core.actions import DropReason
from sfu.ports import UdpQueues, udp_queues

KINDS = ("audio", "video")


class Counters:
    """Per-packet counters, plain ints (reset by each flush)."""

    __slots__ = (
        "bytes_in_audio",
        "bytes_in_video",
        "bytes_out_audio",
        "bytes_out_video",
        "dropped",
        "nacks",
        "packets_in_audio",
        "packets_in_video",
        "packets_out_audio",
        "packets_out_video",
        "plis",
    )

    def __init__(self) -> None:
        self.packets_in_audio = 0
        self.packets_in_video = 0
        self.bytes_in_audio = 0
        self.bytes_in_video = 0
        self.packets_out_audio = 0
        self.packets_out_video = 0
        self.bytes_out_audio = 0
        self.bytes_out_video = 0
        self.nacks = 0
        self.plis = 0
        self.dropped: dict[DropReason, int] = {}

    def drop(self, reason: DropReason, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def count_out(self, video: bool, packets: int, payload_size: int) -> None:
        """``packets`` copies of one packet with ``payload_size`` bytes of payload were sent."""
        if video:
            self.packets_out_video += packets
            self.bytes_out_video += packets * payload_size
        else:
            self.packets_out_audio += packets
            self.bytes_out_audio += packets * payload_size


RECEIVE_WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of ``conf_sfu_receive_wait_seconds``."""


class ReceiveWaits:
    """How long RTP waited in the shared media socket before the server read it, from the
    kernel's arrival stamps: plain-int bucket counts since the start (never reset), exposed as a
    histogram at each scrape."""

    __slots__ = ("counts", "total_seconds")

    def __init__(self) -> None:
        self.counts = [0] * (len(RECEIVE_WAIT_BUCKETS) + 1)  # the last: above every bound
        self.total_seconds = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(RECEIVE_WAIT_BUCKETS, seconds)] += 1
        self.total_seconds += seconds


class _ReceiveWaitCollector(Collector):
    def __init__(self, waits: ReceiveWaits) -> None:
        self._waits = waits

    def collect(self) -> Iterable[Metric]:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, RECEIVE_WAIT_BUCKETS), "+Inf"), self._waits.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "conf_sfu_receive_wait_seconds",
            "How long RTP waited in the shared media socket before it was read (sampled when the server "
            "found datagrams queued: the oldest, once per wake-up).",
            buckets=buckets,
            sum_value=self._waits.total_seconds,
        )

    def describe(self) -> Iterable[Metric]:
        return ()


class _FlushFirst(Collector):
    """Collected before the SFU's counters (a registry collects in registration order): the
    counts since the last flush are moved into them first. Scrapes run on the event loop, as
    the packet path does."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush

    def collect(self) -> Iterable[Metric]:
        self._flush()
        return ()

    def describe(self) -> Iterable[Metric]:
        return ()


class UdpSocketCollector(Collector):
    """The kernel's view of the SFU's media sockets, read at each scrape (Linux): bytes waiting
    to be read (a server that falls behind shows it here before it loses anything) and
    datagrams dropped because a receive buffer was full (loss that no packet counter of the SFU
    can see). Drops are summed over the sockets' lifetimes from one scrape to the next; those of
    a socket closed since the last scrape, after it was last read, are not counted."""

    def __init__(self, read: Callable[[], UdpQueues | None] = udp_queues) -> None:
        self._read = read
        self._last: dict[int, int] = {}  # socket inode -> drops seen at the last scrape
        self._total = 0

    def collect(self) -> Iterable[Metric]:
        seen = self._read()
        if seen is None:
            return ()
        last = self._last
        self._total += sum(max(0, n - last.get(inode, 0)) for inode, n in seen.drops.items())
        self._last = dict(seen.drops)
        queued = GaugeMetricFamily(
            "conf_sfu_udp_receive_queue_bytes",
            "Buffer memory held by datagrams waiting in the media sockets (the kernel's count).",
            value=seen.queued_bytes,
        )
        dropped = CounterMetricFamily(
            "conf_sfu_udp_receive_drops",
            "Datagrams the kernel dropped because a media socket's receive buffer was full.",
            value=self._total,
        )
        return (queued, dropped)

    def describe(self) -> Iterable[Metric]:
        return ()


class SfuMetrics:
    """The ``conf_sfu_*`` metrics on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry = reg
        self.counters = Counters()
        self.receive_waits = ReceiveWaits()
        reg.register(_FlushFirst(self.flush))
        reg.register(UdpSocketCollector())
        reg.register(_ReceiveWaitCollector(self.receive_waits))
        self._packets = Counter(
            "conf_sfu_packets",
            "RTP packets received from publishers (in) and sent to subscribers (out).",
            ["direction", "kind"],
            registry=reg,
        )
        self._bytes = Counter(
            "conf_sfu_bytes",
            "RTP payload bytes received (in) and sent (out).",
            ["direction", "kind"],
            registry=reg,
        )
        self._nacks = Counter(
            "conf_sfu_nacks", "Packets retransmitted to subscribers after a NACK.", registry=reg
        )
        self._plis = Counter("conf_sfu_plis", "Keyframe requests (PLI) sent to publishers.", registry=reg)
        self._dropped = Counter(
            "conf_sfu_dropped_packets",
            "Packets not forwarded to a subscriber, by reason.",
            ["reason"],
            registry=reg,
        )
        self.keyframe_wait = Histogram(
            "conf_sfu_keyframe_wait_seconds",
            "Time a subscriber waited for the first keyframe of a track or layer.",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
            registry=reg,
        )
        self.tracks = Gauge("conf_sfu_tracks", "Published tracks.", ["kind"], registry=reg)
        self.peer_connections = Gauge("conf_sfu_peer_connections", "Open peer connections.", registry=reg)
        self.paused_layers = Gauge(
            "conf_sfu_paused_layers",
            "Video layers publishers were told to stop sending because no subscriber wants them (dynacast).",
            registry=reg,
        )
        self.shed_layers = Gauge(
            "conf_sfu_shed_layers",
            "Simulcast layers below the top every subscriber's video is held to because media went "
            "stale in the server (load shedding; 0: none).",
            registry=reg,
        )
        self.shed_layer_seconds = Counter(
            "conf_sfu_shed_layer_seconds",
            "Seconds of load shedding times the layers shed: its rate is the mean level.",
            registry=reg,
        )
        for kind in KINDS:
            for direction in ("in", "out"):
                self._packets.labels(direction, kind)
                self._bytes.labels(direction, kind)
            self.tracks.labels(kind)

    def flush(self) -> None:
        """Move the counted deltas into Prometheus and reset them."""
        c = self.counters
        pairs = (
            ("in", "audio", c.packets_in_audio, c.bytes_in_audio),
            ("in", "video", c.packets_in_video, c.bytes_in_video),
            ("out", "audio", c.packets_out_audio, c.bytes_out_audio),
            ("out", "video", c.packets_out_video, c.bytes_out_video),
        )
        for direction, kind, packets, octets in pairs:
            if packets:
                self._packets.labels(direction, kind).inc(packets)
            if octets:
                self._bytes.labels(direction, kind).inc(octets)
        if c.nacks:
            self._nacks.inc(c.nacks)
        if c.plis:
            self._plis.inc(c.plis)
        for reason, count in c.dropped.items():
            if count:
                self._dropped.labels(reason.value).inc(count)
        c.packets_in_audio = c.packets_in_video = c.bytes_in_audio = c.bytes_in_video = 0
        c.packets_out_audio = c.packets_out_video = c.bytes_out_audio = c.bytes_out_video = 0
        c.nacks = c.plis = 0
        c.dropped.clear()
