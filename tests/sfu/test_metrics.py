"""The SFU's metrics: counters reach Prometheus on every scrape, without waiting for the periodic
flush; the kernel's figures for the media sockets (waiting bytes, drops) are read at each scrape."""

from __future__ import annotations

import os
import socket

from prometheus_client import generate_latest

from sfu.core.actions import DropReason
from sfu.metrics import SfuMetrics, UdpSocketCollector
from sfu.ports import UdpQueues, parse_proc_net_udp, udp_queues


def sample(metrics: SfuMetrics, line_start: str) -> float:
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start}")


def test_a_scrape_includes_what_was_counted_since_the_last_flush_once() -> None:
    metrics = SfuMetrics()
    metrics.counters.packets_in_video += 3
    metrics.counters.count_out(True, 100, 1000)
    metrics.counters.drop(DropReason.SILENT)
    assert sample(metrics, 'conf_sfu_packets_total{direction="in",kind="video"}') == 3
    assert sample(metrics, 'conf_sfu_packets_total{direction="out",kind="video"}') == 100
    assert sample(metrics, 'conf_sfu_dropped_packets_total{reason="silent"}') == 1
    metrics.counters.packets_in_video += 1
    metrics.flush()  # the periodic flush and later scrapes count nothing twice
    assert sample(metrics, 'conf_sfu_packets_total{direction="in",kind="video"}') == 4
    assert sample(metrics, 'conf_sfu_packets_total{direction="out",kind="video"}') == 100


PROC_NET_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
10238: 0100007F:8A01 0100007F:CA93 01 00000000:00000000 00:00000000 00000000     0        0 1098796 2 000000001917386c 0
10384: 0100007F:CA93 00000000:0000 07 00000000:00000340 00:00000000 00000000     0        0 1098795 2 0000000062d20919 17
  garbage
"""


def test_the_kernels_udp_table_gives_each_sockets_waiting_bytes_and_drops() -> None:
    assert parse_proc_net_udp(PROC_NET_UDP) == {1098796: (0, 0), 1098795: (0x340, 17)}


def test_drops_are_summed_over_sockets_that_come_and_go() -> None:
    readings = iter([UdpQueues(100, {1: 5, 2: 0}), UdpQueues(0, {1: 7, 3: 2}), UdpQueues(50, {3: 2})])
    collector = UdpSocketCollector(lambda: next(readings))
    totals = []
    for _ in range(3):
        queued, dropped = collector.collect()
        totals.append((queued.samples[0].value, dropped.samples[0].value))
    assert totals == [(100, 5), (0, 9), (50, 9)]  # socket 2 closed, socket 3 opened with 2 drops


def test_without_proc_there_are_no_socket_figures() -> None:
    assert list(UdpSocketCollector(lambda: None).collect()) == []


def test_a_flooded_socket_shows_its_backlog_and_drops_in_the_scrape() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # Linux grants its minimum
        rx.bind(("127.0.0.1", 0))
        tx.connect(rx.getsockname())
        for _ in range(200):
            tx.send(bytes(1000))
        seen = udp_queues()
        assert seen is not None
        inode = os.fstat(rx.fileno()).st_ino
        assert seen.drops[inode] > 0 and seen.queued_bytes > 0
        metrics = SfuMetrics()
        assert sample(metrics, "conf_sfu_udp_receive_drops_total") >= seen.drops[inode]
        assert sample(metrics, "conf_sfu_udp_receive_queue_bytes") > 0
