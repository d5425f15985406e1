"""``UpTrack.skip_silence``: which SRTP audio packets the SFU drops before decrypting them, read
from their clear header alone (the integration test in test_audio.py shows it on a real
connection)."""

from __future__ import annotations

import struct

from sfu.core.rtp import RtpView
from sfu.metrics import Counters
from sfu.sdp import Codec
from sfu.uptrack import QUIET_LEVEL, VERIFY_EVERY, UpTrack
from tests.sfu_core.packets import one_byte_extensions, rtp

LEVEL_ID = 1
SSRC = 0x5151


class Upstream:
    def __init__(self) -> None:
        self.nacks: list[list[int]] = []

    def request_keyframe(self, ssrc: int, now: float) -> None:
        pass

    def send_nack(self, ssrc: int, lost: list[int]) -> None:
        self.nacks.append(lost)

    def keyframe_arrived(self, ssrc: int) -> None:
        pass


class Policy:
    def __init__(self, forward: bool = False) -> None:
        self.forward = forward
        self.levels: list[int] = []

    def __call__(self, track: UpTrack, level: int, now: float) -> bool:
        self.levels.append(level)
        return self.forward


def srtp(seq: int, level: int) -> bytes:
    """An SRTP-looking audio packet: clear header with the level, 'encrypted' payload, a tag."""
    return rtp(seq=seq, ts=seq * 960, ssrc=SSRC, pt=111, payload=b"\x99" * 60 + b"T" * 16,
               extension=one_byte_extensions({LEVEL_ID: bytes([level])}))


def audio_track(policy: Policy) -> tuple[UpTrack, Upstream]:
    upstream = Upstream()
    track = UpTrack(track_id="TR_a", owner="PA_a", identity="a", mid="0", kind="audio", source="microphone",
                    upstream=upstream, counters=Counters(), audio_policy=policy)
    track.configure((Codec(111, "opus", 48000, 2),), {}, LEVEL_ID)
    # the stream is known once its first packet was decrypted and handled as usual
    track.on_rtp(RtpView(srtp(1, 127)[:-16]), "", False, 0.0)
    return track, upstream


def test_silence_is_skipped_counted_and_not_nacked_but_one_in_n_is_decrypted() -> None:
    policy = Policy()
    track, upstream = audio_track(policy)
    skipped = [seq for seq in range(2, 2 + 3 * VERIFY_EVERY) if track.skip_silence(SSRC, srtp(seq, 127), lambda: 1.0)]
    verified = [seq for seq in range(2, 2 + 3 * VERIFY_EVERY) if seq % VERIFY_EVERY == 0]
    assert len(verified) == 3 and sorted(skipped + verified) == list(range(2, 2 + 3 * VERIFY_EVERY))
    stats = track.layers[""].stats
    assert stats is not None and stats.received == 1 + len(skipped)
    # only the packets left for decryption (never delivered in this test) are missing, not the skipped
    assert sorted(seq for lost in upstream.nacks for seq in lost) == verified
    assert track.counters.dropped == {"silent": len(skipped) + 1}  # the first one went the usual way
    assert track.counters.packets_in_audio == 1 + len(skipped)


def test_loud_forwarded_foreign_or_muted_packets_are_decrypted() -> None:
    policy = Policy()
    track, _ = audio_track(policy)
    now = lambda: 1.0  # noqa: E731
    assert not track.skip_silence(SSRC, srtp(2, QUIET_LEVEL), now)  # not quiet enough to believe unauthenticated
    assert not track.skip_silence(SSRC, srtp(3, 10), now)
    assert policy.levels == [127]  # only the first packet, decrypted; loud clear levels never reach it
    assert not track.skip_silence(SSRC + 1, srtp(4, 127), now)  # another stream
    track.muted = True
    assert not track.skip_silence(SSRC, srtp(5, 127), now)
    track.muted = False
    track.audio_forwarded = True
    assert not track.skip_silence(SSRC, srtp(6, 127), now)
    track.audio_forwarded = False
    policy.forward = True  # this quiet packet makes the policy forward the source: decrypt it
    assert not track.skip_silence(SSRC, srtp(7, 127), now)
    assert track.skip_silence(SSRC, b"\x80" + bytes(7), now) is False  # not even a header


def test_the_unauthenticated_length_field_cannot_overrun() -> None:
    track, _ = audio_track(Policy())
    bad = bytearray(srtp(2, 127))
    struct.pack_into("!H", bad, 14, 200)  # extension block longer than the packet
    assert not track.skip_silence(SSRC, bytes(bad), lambda: 1.0)
