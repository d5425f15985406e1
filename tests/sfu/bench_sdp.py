"""Measure what a hostile 60 KB publish offer costs the event loop to parse.

    python -m tests.sfu.bench_sdp

The offer is a valid one-video-m-line description padded to just under the signaling limit
(64 KiB) with ``a=ssrc`` lines of distinct SSRCs, the worst case for SSRC bookkeeping, and
one padded with ``a=candidate`` lines; and the costliest one ``sfu.sdp`` accepts (as many
m-lines as fit, each with the most ``a=ssrc`` lines allowed). Reported: the median time of the SFU's own parser
(``sfu.sdp.parse_sdp``) and of aiortc's (``aiortc.sdp.SessionDescription.parse``, which an
offer only reaches once ours accepted it). Not a test: run it by hand.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from aiortc.sdp import SessionDescription

from sfu.sdp import MAX_MEDIA, MAX_SSRC_LINES, SdpError, parse_sdp

LIMIT = 64 * 1024 - 1024  # what signaling lets through, less room for the JSON around it
RUNS = 20

HEAD = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
)


def padded(line: Callable[[int], str]) -> str:
    out = [HEAD]
    size = len(HEAD)
    n = 0
    while True:
        text = line(n) + "\r\n"
        if size + len(text) > LIMIT:
            return "".join(out)
        out.append(text)
        size += len(text)
        n += 1


def hostile_ssrc_offer() -> str:
    return padded(lambda n: f"a=ssrc:{1000 + n} cname:x")


def hostile_candidate_offer() -> str:
    return padded(lambda n: f"a=candidate:{n} 1 udp 2130706431 127.0.0.1 {1024 + n} typ host")


def largest_accepted_offer() -> str:
    """As many m-lines as fit, each with as many a=ssrc lines as ``sfu.sdp`` accepts."""
    head, _, media = HEAD.partition("m=video")
    media = "m=video" + media
    out: list[str] = []
    size = len(head) + 4 * MAX_MEDIA  # room for the BUNDLE group's mids
    for index in range(MAX_MEDIA):
        section = media.replace("a=mid:0", f"a=mid:{index}") + "".join(
            f"a=ssrc:{index * 100 + n // 4} {('cname:x', 'msid:a b', 'mslabel:a', 'label:b')[n % 4]}\r\n"
            for n in range(MAX_SSRC_LINES)
        )
        if size + len(section) > LIMIT:
            break
        out.append(section)
        size += len(section)
    bundle = "a=group:BUNDLE " + " ".join(str(i) for i in range(len(out)))
    return head.replace("a=group:BUNDLE 0", bundle) + "".join(out)


def median_ms(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        try:
            fn()
        except (SdpError, ValueError):
            pass
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    offers = (
        ("ssrc", hostile_ssrc_offer()),
        ("candidate", hostile_candidate_offer()),
        ("capped", largest_accepted_offer()),
    )
    for name, sdp in offers:
        ours = median_ms(lambda sdp=sdp: parse_sdp(sdp))  # type: ignore[misc]
        theirs = median_ms(lambda sdp=sdp: SessionDescription.parse(sdp))  # type: ignore[misc]
        try:
            parse_sdp(sdp)
            verdict = "accepted"
        except SdpError as exc:
            verdict = f"refused: {exc}"
        print(
            f"{name:9} offer, {len(sdp)} chars, {sdp.count(chr(10))} lines: sfu.sdp {ours:.2f} ms ({verdict}); "
            f"aiortc {theirs:.2f} ms"
        )


if __name__ == "__main__":
    main()
