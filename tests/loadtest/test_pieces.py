"""The load generator's pieces without a server: roles, loss counting, crafted RTP, SDP, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import struct
import time

from prometheus_client import CollectorRegistry, generate_latest

from confctl.loadtest import report, rtpstats, sdpinfo
from confctl.loadtest.clips import Clip, dtx
from confctl.loadtest.plan import Options, roles
from confctl.loadtest.publishing import keyframe_requests
from confctl.loadtest.rawmedia import Pacer, RawStream, planned_rate, stamped_extensions, vp8_payloads
from confctl.loadtest.rtpstats import ReceiveCounter
from confctl.loadtest.scrape import ServerSample, parse
from confctl.loadtest.swarm import Snapshot
from confserver.metrics import GcPauses
from sfu.core.keyframe import vp8_is_keyframe
from sfu.core.rtcp import Pli, ReceiverReport
from sfu.core.rtp import RtpView

VP8 = 97
VIDEO, AUDIO, VIDEO_RTX = 1, 2, 3


def rtp(seq: int, ssrc: int = VIDEO, pt: int = VP8) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, 0, ssrc) + b"x"


def counter() -> ReceiveCounter:
    c = ReceiveCounter(clock=lambda: 1.0)
    c.set_streams({VIDEO: "video", AUDIO: "audio", VIDEO_RTX: "rtx"})
    return c


def test_four_publishers_in_a_room_of_100_also_watch_each_other() -> None:
    people = roles(
        Options(room="r", video_publishers=4, audio_publishers=4, subscribers=100, decoders=2), "x"
    )
    assert len(people) == 100
    assert [p.index for p in people if p.video] == [0, 1, 2, 3]
    assert all(p.subscribe for p in people)
    assert [p.index for p in people if p.decode] == [98, 99]
    assert [p.index for p in people if p.speaker] == [0, 1, 2]  # min(A, 3) by default


def test_with_a_larger_room_publishers_and_subscribers_are_distinct() -> None:
    people = roles(Options(room="r", video_publishers=2, subscribers=3, participants=5), "x")
    assert [(p.video, p.subscribe) for p in people] == [(True, False)] * 2 + [(False, True)] * 3
    assert people[0].permissions == ["publish_video"] and people[4].permissions == ["subscribe"]


def test_loss_is_counted_from_sequence_gaps_across_the_wrap() -> None:
    c = counter()
    for seq in (65533, 65534, 65535, 1, 2, 5):  # 0, 3, 4 missing
        c.on_rtp(rtp(seq))
    totals = c.totals()
    assert totals.video == 6 and totals.expected == 9 and totals.received == 6


def test_late_and_duplicate_packets_do_not_count_as_loss() -> None:
    c = counter()
    for seq in (10, 12, 11, 12, 13):
        c.on_rtp(rtp(seq))
    totals = c.totals()
    assert totals.expected == 4 and totals.received - totals.expected == 1  # one duplicate


def test_retransmissions_and_unannounced_streams_are_kept_apart() -> None:
    c = counter()
    c.on_rtp(rtp(1, ssrc=AUDIO, pt=VP8))  # the SSRC decides, not the payload type
    c.on_rtp(rtp(7, ssrc=VIDEO_RTX))
    c.on_rtp(rtp(8, ssrc=9))
    c.on_rtp(b"short")
    totals = c.totals()
    assert (totals.audio, totals.video, totals.retransmissions, totals.other) == (1, 0, 1, 2)
    assert c.first_at == 1.0


def test_vp8_frames_are_cut_into_packets_that_the_server_recognises() -> None:
    keyframe = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(3000)
    payloads = vp8_payloads(keyframe, picture_id=300)
    assert len(payloads) == 3 and all(len(p) <= 1200 for p in payloads)
    assert vp8_is_keyframe(payloads[0]) and not vp8_is_keyframe(payloads[1])
    assert b"".join(p[4:] for p in payloads) == keyframe


def test_a_stream_numbers_its_packets_and_marks_the_end_of_each_frame() -> None:
    sent: list[bytes] = []
    clip = Clip("video", (bytes(2500), bytes(100)), (0,), 90000, 3000)
    stream = RawStream(clip, VP8, b"", lambda data: sent.append(data) or True)
    stream.send_frame()
    stream.send_frame()
    views = [RtpView(p) for p in sent]
    assert [v.marker for v in views] == [False, False, True, True]
    assert [(v.sequence - views[0].sequence) & 0xFFFF for v in views] == [0, 1, 2, 3]
    assert views[3].timestamp - views[0].timestamp == 3000
    assert stream.sent == 4


def test_a_clips_planned_rate_counts_the_packets_of_one_loop() -> None:
    video = Clip("video", (bytes(2500), bytes(100)), (0,), 90000, 3000)  # 3 + 1 packets, 30 fps
    audio = Clip("audio", (b"o",) * 5, (), 48000, 960)  # 20 ms frames
    assert planned_rate(video) == 60.0
    assert planned_rate(audio) == 50.0


def keep_busy(seconds: float) -> None:
    """Work without yielding to the event loop, as a loaded load generator does."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def test_the_pacer_sends_every_frame_that_fell_due_while_the_loop_was_busy() -> None:
    sent: list[bytes] = []
    stream = RawStream(Clip("audio", (b"o",), (), 48000, 960), 111, b"", lambda d: sent.append(d) or True)
    pacer = Pacer()
    pacer.add(stream)
    assert pacer.planned == 50.0
    try:
        await asyncio.sleep(0.03)
        before = len(sent)
        keep_busy(0.15)  # the event loop is busy: 7 frames of 20 ms fall due
        await asyncio.sleep(0.002)  # the pacer's wake-up is due: it runs once
        assert len(sent) - before >= 7  # all of them at once, not one per wake-up
        keep_busy(Pacer.CATCH_UP + 0.3)  # further behind than it catches up: it skips ahead
        before = len(sent)
        await asyncio.sleep(0.002)
        assert 1 <= len(sent) - before <= 3
    finally:
        await pacer.close()
    numbers = [RtpView(p).sequence for p in sent]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # skipping is not loss


def test_the_report_says_when_the_generator_sent_fewer_packets_than_planned() -> None:
    assert "could not keep up" in report._sent({"sent_pps": 900.0, "planned_pps": 1000.0})
    assert "could not keep up" not in report._sent({"sent_pps": 990.0, "planned_pps": 1000.0})
    assert report._sent({"sent_pps": 990.0, "planned_pps": None}) == "990 packets/s"


def window(sent: int, planned: float, packets_in: float) -> report.Window:
    """10 s in which a generator sent ``sent`` packets and the server read ``packets_in``."""
    start = Snapshot(at=100.0, participants=2, joined=2, connected=2)
    end = Snapshot(at=110.0, participants=2, joined=2, connected=2, sent=sent, planned=planned)
    s0 = ServerSample(at=100.0, cpu_seconds=1.0, rss_bytes=2**26, udp_drops=10)
    s1 = ServerSample(
        at=110.0, cpu_seconds=6.0, rss_bytes=2**26, packets_in=packets_in, udp_queued=2048, udp_drops=25
    )
    return report.Window(start, end, s0, s0, s1, generator_cpu=1.0)


def test_the_report_compares_what_was_planned_sent_and_read_by_the_server() -> None:
    options = Options(room="r", video_publishers=1, subscribers=2)
    doc = report.build(options, window(sent=9_000, planned=1_000.0, packets_in=8_000))
    assert doc["planned_pps"] == 1_000.0 and doc["sent_pps"] == 900.0
    assert doc["server"]["in_percent_of_sent"] == 88.9
    text = report.render(doc)
    assert "could not keep up" in text
    assert "the server read only 88.9 % of the packets sent" in text
    assert "15 datagrams dropped by the kernel in the window, 2.00 KiB waiting at its end" in text
    fine = report.render(report.build(options, window(sent=10_000, planned=1_000.0, packets_in=9_950)))
    assert "could not keep up" not in fine and "read only" not in fine
    assert "asked for less" not in fine  # nothing was paused or in DTX


def test_the_report_says_what_the_server_asked_the_publishers_not_to_send() -> None:
    w = window(sent=10_000, planned=1_000.0, packets_in=10_000)
    end = dataclasses.replace(w.client_end, video_streams=75, paused_streams=45, dtx_streams=97)
    doc = report.build(
        Options(room="r", video_publishers=25, subscribers=2), dataclasses.replace(w, client_end=end)
    )
    assert doc["asked_less"] == {"video_layers": 75, "paused_layers": 45, "dtx_microphones": 97}
    assert "45 of 75 video layers paused (unwatched); 97 quiet microphones in Opus DTX" in report.render(doc)


def test_simulcast_offer_names_three_layers_on_the_video_line_only() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "m=video 9 UDP/TLS/RTP/SAVPF 97",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=mid:0",
            "a=msid:a b",
            "a=ssrc:1 cname:x",
            "a=rtpmap:97 VP8/90000",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:1",
            "a=ssrc:2 cname:x",
            "a=rtpmap:111 opus/48000/2",
        ]
    )
    video = sdpinfo.sections(sdp)[0]
    ext = sdpinfo.free_extension_id(video)
    out = sdpinfo.simulcast_offer(sdp, "0", ("q", "h", "f"), ext)
    assert "a=ssrc:1" not in out and "a=ssrc:2 cname:x" in out
    assert "a=simulcast:send q;h;f" in out and f"a=extmap:{ext} {sdpinfo.URI_RID}" in out


def test_streams_are_told_apart_by_ssrc_even_when_payload_types_collide() -> None:
    sdp = "\r\n".join(
        [
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=ssrc-group:FID 10 11",
            "a=ssrc:10 cname:x",
            "a=ssrc:11 cname:x",
            "a=rtpmap:96 VP9/90000",
            "m=audio 9 UDP/TLS/RTP/SAVPF 96",
            "a=ssrc:20 cname:x",
            "a=rtpmap:96 opus/48000/2",
        ]
    )
    assert sdpinfo.ssrc_kinds(sdp) == {10: "video", 11: "rtx", 20: "audio"}


def test_server_metrics_are_read_from_the_exposition_format() -> None:
    sample = parse(
        "# HELP x\nprocess_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1.5e+08\n"
        'conf_sfu_packets_total{direction="out",kind="video"} 100.0\n'
        'conf_sfu_packets_total{direction="out",kind="audio"} 50.0\n'
        'conf_sfu_packets_total{direction="in",kind="audio"} 7.0\n'
        'conf_sfu_dropped_packets_total{reason="silent"} 3.0\nconf_sfu_peer_connections 4.0\n'
        "conf_sfu_udp_receive_queue_bytes 4096.0\nconf_sfu_udp_receive_drops_total 9.0\n"
    )
    assert (sample.cpu_seconds, sample.rss_bytes, sample.packets_out, sample.packets_in) == (
        12.5,
        1.5e8,
        150,
        7,
    )
    assert sample.dropped == {"silent": 3.0} and sample.peer_connections == 4
    assert (sample.udp_queued, sample.udp_drops) == (4096, 9)


def test_latency_percentiles_use_the_nearest_rank() -> None:
    p = report.percentiles([i / 1000 for i in range(1, 101)])
    assert p == {"p50": 50.0, "p95": 95.0, "max": 100.0}
    assert report.percentiles([]) is None


def test_a_keyframe_request_in_a_compound_rtcp_packet_names_the_stream() -> None:
    compound = bytes(ReceiverReport(1, ())) + bytes(Pli(1, 0xCAFE)) + bytes(Pli(1, 0xBEEF))
    assert keyframe_requests(compound) == [0xCAFE, 0xBEEF]
    assert keyframe_requests(b"\x81\xc9") == []  # truncated: nothing


async def test_a_layer_the_server_switches_off_sends_nothing_and_resumes_on_a_keyframe() -> None:
    sent: list[bytes] = []
    key = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(94)
    frames = (key, b"\x11" + bytes(99), b"\x11" + bytes(99))  # a keyframe, then deltas
    clip = Clip("video", frames, (0,), 90000, 3000)
    stream = RawStream(clip, VP8, b"", lambda d: sent.append(d) or True)
    pacer = Pacer()
    pacer.add(stream)
    try:
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        stream.pause(loop.time())
        assert pacer.planned == 0.0  # a paused stream is not planned
        assert pacer.asked_less == (1, 1, 0)
        paused = len(sent)
        await asyncio.sleep(0.2)
        assert len(sent) == paused
        stream.resume(loop.time())
        assert pacer.planned == 30.0
        await asyncio.sleep(0.05)
    finally:
        await pacer.close()
    last, first_after = RtpView(sent[paused - 1]), RtpView(sent[paused])
    assert (first_after.sequence - last.sequence) & 0xFFFF == 1  # numbering continues
    assert (first_after.timestamp - last.timestamp) & 0xFFFFFFFF >= 0.2 * 90000  # time went on
    assert vp8_is_keyframe(first_after.payload)  # a resumed layer starts with a keyframe


def test_a_quiet_microphone_asked_for_dtx_sends_a_tenth_of_its_packets() -> None:
    quiet = Clip("audio", (b"\x78abc",) * 5, (), 48000, 960, level=90)
    silent = dtx(quiet)
    assert planned_rate(quiet) == 50.0 and planned_rate(silent) == 5.0
    assert silent.frames == (b"\x78",) and silent.level == 90 and silent.dtx and not quiet.dtx
    answer = "m=audio 9 X 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10; usedtx=1\r\n"
    assert sdpinfo.asks_for_dtx(answer, "0")
    assert not sdpinfo.asks_for_dtx(answer, "1")
    assert not sdpinfo.asks_for_dtx(answer.replace("usedtx=1", "usedtx=0"), "0")


# --- delay: abs-send-time stamped by publishers, read by counting subscribers --------------------

AST = 3  # the abs-send-time extension id in these tests


def stamped_video(seq: int, sent_at: float, ext_id: int = AST) -> bytes:
    ext, at = stamped_extensions({1: b"0", 10: b"q"}, ext_id)
    ext = ext[:at] + rtpstats.abs_send_time(sent_at) + ext[at + 3 :]
    return struct.pack("!BBHII", 0x90, VP8, seq, 0, VIDEO) + ext + b"payload"


def test_an_extension_is_found_among_others_and_padding_and_not_where_there_is_none() -> None:
    packet = stamped_video(1, 12.5)
    assert rtpstats.extension(packet, 1) == b"0" and rtpstats.extension(packet, 10) == b"q"
    assert rtpstats.extension(packet, AST) == rtpstats.abs_send_time(12.5)
    assert rtpstats.extension(packet, 7) is None
    assert rtpstats.extension(rtp(1), AST) is None  # no extension block
    assert rtpstats.extension(packet[:17], AST) is None  # cut inside the block


def test_every_sixteenth_video_packet_is_a_delay_sample_taken_against_the_counters_clock() -> None:
    now = [1000.0]
    c = ReceiveCounter(clock=lambda: now[0])
    c.set_streams({VIDEO: "video", AUDIO: "audio"}, {VIDEO: AST})
    for seq in range(1, 33):
        c.on_rtp(stamped_video(seq, now[0] - (0.004 if seq == 16 else 0.250)))
    c.on_rtp(rtp(1, ssrc=AUDIO))
    assert c.totals().delays == {rtpstats.delay_bin(4.0): 1, rtpstats.delay_bin(250.0): 1}
    # the 24-bit value wraps every 64 s: a delay across the wrap is still a delay
    now[0] = 64.001
    for seq in range(33, 49):
        c.on_rtp(stamped_video(seq, 63.999))
    assert c.totals().delays[rtpstats.delay_bin(2.0)] == 1
    # a stamp from the future (not this machine's clock), or a stream without the extension,
    # gives no sample
    for seq in range(49, 65):
        c.on_rtp(stamped_video(seq, now[0] + 1.0))
    c.set_streams({VIDEO: "video"}, {})
    for seq in range(65, 81):
        c.on_rtp(stamped_video(seq, now[0] - 0.001))
    assert sum(c.totals().delays.values()) == 3 and c.totals().video == 80


def test_delay_bins_are_within_ten_percent_and_percentiles_are_read_from_them() -> None:
    for ms in (0.05, 3.33, 9.99, 10.0, 57.9, 99.9, 100.0, 512.3, 1500.0, 31_000.0):
        edge = rtpstats.delay_bin(ms) / 10
        assert edge <= ms < edge * 1.1 + 0.1
    bins = {rtpstats.delay_bin(ms): 1 for ms in range(1, 101)}  # 1..100 ms, one each
    p = rtpstats.delay_percentiles(bins)
    assert p == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0, "samples": 100}
    assert rtpstats.delay_percentiles({}) is None
    before = rtpstats.ReceiveTotals(delays={10: 2})
    after = before + rtpstats.ReceiveTotals(delays={10: 1, 20: 4})
    assert after.delays == {10: 3, 20: 4} and after.delays_since(before) == {10: 1, 20: 4}


def test_a_video_stream_stamps_each_frame_with_its_send_time() -> None:
    sent: list[bytes] = []
    clip = Clip("video", (bytes(2500),), (0,), 90000, 3000)
    ext, at = stamped_extensions({1: b"0"}, AST)
    stream = RawStream(clip, VP8, ext, lambda data: sent.append(data) or True, stamp_at=at)
    before = time.monotonic()
    stream.send_frame()
    after = time.monotonic()
    stamps = {rtpstats.extension(p, AST) for p in sent}
    assert len(sent) == 3 and len(stamps) == 1  # one stamp for the frame
    (stamp,) = stamps
    assert stamp is not None
    units = int.from_bytes(stamp, "big")
    low, high = (int(t * rtpstats.ABS_SEND_TIME_UNITS) % (1 << 24) for t in (before, after))
    assert low <= units <= high or high < low  # (unless the 64 s wrap fell in between)
    assert all(rtpstats.extension(p, 1) == b"0" for p in sent)


def test_the_abs_send_time_id_of_each_announced_ssrc_is_read_from_its_m_line() -> None:
    sdp = "\r\n".join(
        [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=ssrc:20 cname:x",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            f"a=extmap:4/sendonly {sdpinfo.URI_ABS_SEND_TIME}",
            "a=ssrc:10 cname:x",
            "a=ssrc:11 cname:x",
        ]
    )
    assert sdpinfo.ssrc_extension_ids(sdp, sdpinfo.URI_ABS_SEND_TIME) == {10: 4, 11: 4}


def test_the_report_gives_the_delay_of_the_window_only() -> None:
    w = window(sent=10_000, planned=1_000.0, packets_in=10_000)
    bins_before = {rtpstats.delay_bin(900.0): 50}  # the joins' slow start, before the window
    bins_after = {**bins_before, rtpstats.delay_bin(2.0): 90, rtpstats.delay_bin(30.0): 10}
    start = dataclasses.replace(w.client_start, received=rtpstats.ReceiveTotals(delays=bins_before))
    end = dataclasses.replace(w.client_end, received=rtpstats.ReceiveTotals(delays=bins_after))
    doc = report.build(
        Options(room="r", subscribers=2), dataclasses.replace(w, client_start=start, client_end=end)
    )
    assert doc["delay_ms"] == {"p50": 2.0, "p95": 30.0, "p99": 30.0, "max": 30.0, "samples": 100}
    assert "p50 2.00 ms, p95 30.00 ms, p99 30.00 ms, max 30.00 ms (video, sent to counted; 100 samples)" in (
        report.render(doc)
    )
    assert "Delay" in report.render(report.build(Options(room="r", subscribers=2), w))  # n/a, not missing


def test_the_servers_receive_waits_in_the_window_are_read_from_its_histogram() -> None:
    def exposition(counts: tuple[int, int, int, int]) -> str:
        lines = [
            f'conf_sfu_receive_wait_seconds_bucket{{le="{le}"}} {count}.0'
            for le, count in zip(("0.001", "0.01", "0.5", "+Inf"), counts, strict=True)
        ]
        return "\n".join([*lines, "conf_sfu_receive_wait_seconds_count 1.0", "process_cpu_seconds_total 1.0"])

    before = parse(exposition((5, 5, 5, 5)))  # joining: five quick ones
    after = parse(exposition((5, 85, 104, 105)))  # the window: 80 <= 10 ms, 19 <= 0.5 s, 1 above
    assert after.receive_wait == {0.001: 5, 0.01: 85, 0.5: 104, math.inf: 105}
    wait = report.wait_percentiles(before.receive_wait, after.receive_wait)
    assert wait == {"p50": 10.0, "p95": 500.0, "p99": 500.0, "samples": 100}
    assert report.wait_percentiles(after.receive_wait, after.receive_wait) is None  # none in the window
    assert report.wait_percentiles({}, {}) is None
    late = parse(exposition((0, 0, 0, 10)))  # every one above the last bound
    assert report.wait_percentiles({}, late.receive_wait) == {
        "p50": 500.0,
        "p95": 500.0,
        "p99": 500.0,
        "samples": 10,
    }


def test_the_servers_gc_pauses_are_read_from_its_histogram() -> None:
    registry = CollectorRegistry()
    observe = GcPauses(registry)  # the server's own histogram, fed as gc.callbacks would

    def sample() -> ServerSample:
        return parse(generate_latest(registry).decode())

    before = sample()
    for _ in range(3):
        observe("start", {"generation": 0})
        observe("stop", {"generation": 0})
    observe("start", {"generation": 2})
    time.sleep(0.03)
    observe("stop", {"generation": 2})
    after = sample()
    pauses = report.gc_pauses(before, after)
    assert pauses is not None
    assert pauses["count"] == 4 and pauses["full"] == 1
    assert 30.0 <= pauses["total_ms"] < 1000.0
    assert pauses["longest_ms"] == 50.0  # the bucket (25, 50] ms
    assert report.gc_pauses(after, after) == {"count": 0, "full": 0, "total_ms": 0.0, "longest_ms": 0.0}
    assert report.gc_pauses(before, parse("process_cpu_seconds_total 1.0")) is None  # not exposed


def test_the_servers_load_shedding_is_read_from_its_metrics() -> None:
    sample = parse("conf_sfu_shed_layers 2.0\nconf_sfu_shed_layer_seconds_total 7.5\n")
    assert sample.shed_layers == 2.0 and sample.shed_layer_seconds == 7.5
    assert parse("process_cpu_seconds_total 1.0").shed_layers is None  # port-range mode, or older
