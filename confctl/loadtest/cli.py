"""The ``confctl load-test`` subcommand: its arguments and its handler.

Importing this module is cheap; aiortc and PyAV are imported only when a test runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from confctl.client import AdminClient, ConfctlError, UsageError, resolve_settings
from confctl.loadtest.plan import Options, PlanError, parse_seconds, parse_size

DEFAULT_METRICS_URL = "http://127.0.0.1:9464/metrics"

DESCRIPTION = (
    "Join synthetic participants to a room through the real signaling and WebRTC path, publish "
    "pre-encoded VP8/Opus, count what the server forwards, and report join latency, forwarded "
    "packets per second, loss and the server's CPU cost per forwarded packet."
)
EPILOG = (
    "Participant n publishes video if n < P, audio if n < A, and subscribes if n >= N - S, where N is "
    "--participants (default: the largest count). Exit codes: 0 ok, 1 some participants failed or an "
    "API error, 2 usage error, 3 server or metrics unreachable."
)


def _count(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        return parse_seconds(text)
    except PlanError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except PlanError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(groups: Any) -> None:
    """Add ``load-test`` to confctl's subcommands (its parser is of their class, so it reports
    usage errors the same way as every other command)."""
    p: argparse.ArgumentParser = groups.add_parser(
        "load-test",
        help="load-test a running server with synthetic participants",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.set_defaults(handler=command)
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,  # must not reset a --json given before the command
        help="print the report as one JSON object instead of text",
    )
    p.add_argument("--room", required=True, help="room to join (created if missing, then deleted)")
    p.add_argument(
        "--video-publishers",
        "-P",
        metavar="P",
        type=_count,
        default=0,
        help="participants sending VP8 640x360 30 fps (~90 packets/s)",
    )
    p.add_argument(
        "--audio-publishers",
        "-A",
        metavar="A",
        type=_count,
        default=0,
        help="participants sending Opus 20 ms (50 packets/s)",
    )
    p.add_argument(
        "--subscribers",
        "-S",
        metavar="S",
        type=_count,
        default=0,
        help="participants receiving (counting packets, not decoding)",
    )
    p.add_argument(
        "--participants",
        "-N",
        metavar="N",
        type=_count,
        help="room size (default: the largest of P, A, S; at most 100)",
    )
    p.add_argument(
        "--speakers",
        metavar="K",
        type=_count,
        help="audio publishers whose audio carries speech (default: min(A, 3))",
    )
    p.add_argument(
        "--simulcast",
        action="store_true",
        help="video publishers send three layers (160x90, 320x180, 640x360) as a browser does",
    )
    p.add_argument(
        "--sender",
        choices=("crafted", "aiortc"),
        default="crafted",
        help="crafted (default): RTP built from the clips and sent by one pacer per process, with the "
        "audio level; aiortc: aiortc's RTCRtpSender packetizes the clips (speakers' PCM is encoded "
        "by it, since it writes the audio level only for audio it encodes)",
    )
    p.add_argument(
        "--tiles",
        metavar="N",
        type=_positive,
        help="subscribers watch N video tracks at --tile-size (default: every video track, up to 25)",
    )
    p.add_argument(
        "--tile-size", metavar="WxH", type=_size, default=(320, 180), help="size of a tile (default 320x180)"
    )
    p.add_argument(
        "--speaker-view", action="store_true", help="subscribers also watch the active speaker at 1280x720"
    )
    p.add_argument(
        "--decoders",
        metavar="K",
        type=_count,
        default=0,
        help="the last K subscribers decode what they receive (proves the media is real)",
    )
    p.add_argument(
        "--e2ee",
        action="store_true",
        help="an end-to-end encrypted room (created with e2ee if missing; an existing room must have it): "
        "participants exchange keys as browsers do, publishers encrypt every frame (SFrame), decoders "
        "decrypt before decoding",
    )
    p.add_argument(
        "--duration", metavar="TIME", type=_seconds, default=60.0, help="measurement window (default 60s)"
    )
    p.add_argument(
        "--warmup",
        metavar="TIME",
        type=_seconds,
        default=5.0,
        help="wait after everyone is connected (default 5s)",
    )
    p.add_argument(
        "--ramp",
        metavar="TIME",
        type=_seconds,
        default=0.0,
        help="spread the joins over this time (default 0: everyone at once)",
    )
    p.add_argument(
        "--join-timeout",
        metavar="TIME",
        type=_seconds,
        default=60.0,
        help="longest wait for everyone to connect (default 60s)",
    )
    p.add_argument(
        "--processes",
        metavar="N",
        type=_positive,
        default=1,
        help="spread the participants over N worker processes (default 1)",
    )
    p.add_argument(
        "--metrics-url",
        metavar="URL",
        default=DEFAULT_METRICS_URL,
        help=f"the server's Prometheus metrics (default {DEFAULT_METRICS_URL})",
    )
    p.add_argument("--no-metrics", action="store_true", help="do not read the server's metrics")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line on stderr")


def options_from(args: argparse.Namespace) -> Options:
    metrics: str | None = None if args.no_metrics else args.metrics_url
    if metrics is not None:
        from confctl.loadtest.scrape import check_url

        metrics = check_url(metrics)
    try:
        return Options(
            room=args.room,
            video_publishers=args.video_publishers,
            audio_publishers=args.audio_publishers,
            subscribers=args.subscribers,
            participants=args.participants,
            speakers=args.speakers,
            simulcast=args.simulcast,
            sender=args.sender,
            tiles=args.tiles,
            tile_size=args.tile_size,
            speaker_view=args.speaker_view,
            decoders=args.decoders,
            duration=args.duration,
            warmup=args.warmup,
            ramp=args.ramp,
            join_timeout=args.join_timeout,
            processes=args.processes,
            e2ee=args.e2ee,
            metrics_url=metrics,
        ).check()
    except PlanError as exc:
        raise UsageError(str(exc)) from None


def command(args: argparse.Namespace) -> int:
    options = options_from(args)
    flags = {"url": args.url, "api_key": args.api_key, "api_secret": args.api_secret, "cacert": args.cacert}
    client = AdminClient(resolve_settings(flags, os.environ))
    from confctl.loadtest import report, runner
    from confctl.loadtest.swarm import collect_rarely

    collect_rarely()  # this process runs participants when --processes is 1
    progress = runner.Progress(sys.stderr, enabled=not args.quiet)
    try:
        doc = asyncio.run(runner.run(options, client, progress))
    except ConfctlError:
        progress.done()
        raise
    except Exception as exc:  # a bug or an unexpected failure: one line, never a traceback
        progress.done()
        raise ConfctlError(f"load test failed: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    print(report.to_json(doc) if args.json else report.render(doc))
    return 1 if doc["participants"]["failed"] else 0
