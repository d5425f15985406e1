"""A fan-out's down-tracks that follow the stream's ``StepChain`` write exactly what down-tracks
that munge every packet themselves write, whatever happens to the stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.core.actions import Drop
from sfu.core.downtrack import DownTrack, DownTrackParams
from sfu.core.munger import StepChain
from sfu.core.rtcp import SenderReport
from sfu.core.rtp import ExtensionRemapper, RtpView

from .packets import one_byte_extensions, rtp

SSRC = 0x1000


def params(i: int) -> DownTrackParams:
    return DownTrackParams(
        ssrc=0xD000 + i,
        payload_type=100,
        clock_rate=90_000,
        first_sequence=(7919 * i) & 0xFFFF,
        first_timestamp=(104729 * i) & 0xFFFFFFFF,
    )


def packet(seq: int, ts: int, ssrc: int = SSRC, size: int = 20) -> RtpView:
    return RtpView(
        rtp(
            seq=seq & 0xFFFF,
            ts=ts & 0xFFFFFFFF,
            ssrc=ssrc,
            pt=96,
            payload=bytes(size),
            extension=one_byte_extensions({3: b"\x01"}),
        )
    )


class Counting(DownTrack):
    """A down-track that counts the packets it munged itself (not by following)."""

    __slots__ = ("own",)

    def __init__(self, p: DownTrackParams, extensions: ExtensionRemapper) -> None:
        super().__init__(p, extensions)
        self.own = 0

    def write(self, view: RtpView, now: float, buffer: memoryview, *, switched: bool = False) -> int | Drop:
        self.own += 1
        return super().write(view, now, buffer, switched=switched)


@dataclass
class Pair:
    """The same subscriber twice: ``alone`` munges every packet, ``follower`` follows the chain."""

    alone: DownTrack
    follower: Counting
    buffers: tuple[memoryview, memoryview] = field(
        default_factory=lambda: (memoryview(bytearray(1500)), memoryview(bytearray(1500)))
    )


class Fanout:
    def __init__(self) -> None:
        self.extensions = ExtensionRemapper({3: 5})
        self.chain = StepChain()
        self.pairs: list[Pair] = []
        self.source = SSRC
        self.seq = 0
        self.ts = 0
        self.now = 0.0
        self.sent: list[tuple[int, int]] = []  # (ssrc, seq) of packets sent, for late copies
        self.stamps: dict[tuple[int, int], int] = {}

    def join(self) -> None:
        i = len(self.pairs)
        self.pairs.append(Pair(DownTrack(params(i), self.extensions), Counting(params(i), self.extensions)))

    def send(
        self, view: RtpView, missing: frozenset[int] = frozenset(), switched: frozenset[int] = frozenset()
    ) -> None:
        """``view`` to every pair but ``missing`` (their slot was not ready), as ``forward_to``
        does with a chain; the pairs in ``switched`` get it as a newly selected stream instead
        (``Slot.forward``, no chain)."""
        self.now += 0.01
        prev, step = self.chain.advance(
            view.ssrc, view.sequence, view.timestamp, self.now, view.payload_end - view.header_length
        )
        for i, pair in enumerate(self.pairs):
            if i in missing:
                continue
            a, b = pair.buffers
            if i in switched:
                got_alone = pair.alone.write(view, self.now, a, switched=True)
                got_follower = pair.follower.write(view, self.now, b, switched=True)
            else:
                got_alone = pair.alone.write(view, self.now, a)
                got_follower = pair.follower.write_next(view, prev, step, b)
            assert got_alone == got_follower
            if isinstance(got_alone, int) and isinstance(got_follower, int):
                assert bytes(a[:got_alone]) == bytes(b[:got_follower])

    def next(self, gap: int, ts_step: int, **kwargs: frozenset[int]) -> None:
        self.seq += gap
        self.ts += ts_step
        self.stamps[self.source, self.seq & 0xFFFF] = self.ts
        self.sent.append((self.source, self.seq & 0xFFFF))
        self.send(packet(self.seq, self.ts, self.source), **kwargs)

    def same(self) -> None:
        """Everything a down-track tells is the same for both of a pair."""
        report = SenderReport(
            ssrc=self.source,
            ntp_timestamp=1 << 40,
            rtp_timestamp=(self.ts + 123) & 0xFFFFFFFF,
            packet_count=0,
            octet_count=0,
        )
        for pair in self.pairs:
            a, b = pair.alone, pair.follower
            assert (a.packets_sent, a.octets_sent) == (b.packets_sent, b.octets_sent)
            assert a.translate_sender_report(report) == b.translate_sender_report(report)
            assert (a.highest_sequence, a.highest_timestamp) == (b.highest_sequence, b.highest_timestamp)
            top = a.highest_sequence
            if top is not None:  # what each answers to NACKs (resends, or NACKs upstream)
                lost = [(top - back) & 0xFFFF for back in (0, 1, 2, 5, 40)]
                lookup = _lookup(self)
                assert a.on_nack(lost, self.now, None, lookup) == b.on_nack(lost, self.now, None, lookup)


EVENTS = st.one_of(
    st.tuples(st.just("next"), st.integers(1, 3), st.sampled_from([0, 3000, 3000, 6000, -3000])),
    st.tuples(st.just("late"), st.integers(0, 6)),
    st.tuples(st.just("skip")),
    st.tuples(st.just("miss"), st.integers(0, 3)),
    st.tuples(st.just("switched"), st.integers(0, 3)),
    st.tuples(st.just("source"), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("join")),
    st.tuples(st.just("same")),
    st.tuples(st.just("nack"), st.integers(0, 3), st.integers(0, 8)),
)


@settings(max_examples=300, deadline=None)
@given(
    start_seq=st.sampled_from([0, 1000, 0xFFF0, 0xFFFF]),
    start_ts=st.sampled_from([0, 0xFFFFF000, 0x7FFFFFFF]),
    events=st.lists(EVENTS, max_size=60),
)
def test_followers_write_what_down_tracks_alone_write(
    start_seq: int, start_ts: int, events: list[tuple[Any, ...]]
) -> None:
    fan = Fanout()
    fan.seq, fan.ts = start_seq, start_ts
    for _ in range(3):
        fan.join()
    for event in events:
        kind = event[0]
        if kind == "next":
            fan.next(event[1], event[2])
        elif kind == "late" and fan.sent:
            source, seq = fan.sent[max(0, len(fan.sent) - 1 - event[1])]
            fan.send(packet(seq, fan.stamps[source, seq], source))
        elif kind == "skip":
            fan.seq += 1
            fan.ts += 3000
            view = packet(fan.seq, fan.ts, fan.source, size=0)
            for pair in fan.pairs:  # padding: every steady slot skips it, the chain is not told
                pair.alone.skip(view)
                pair.follower.skip(view)
        elif kind == "miss":
            fan.next(1, 3000, missing=frozenset({event[1]}))
        elif kind == "switched":
            fan.next(1, 3000, switched=frozenset({event[1]}))
        elif kind == "source":
            fan.source += 1
            fan.seq, fan.ts = event[1], event[2]
            fan.next(0, 0)
        elif kind == "join":
            fan.join()
        elif kind == "nack" and event[1] < len(fan.pairs):
            pair = fan.pairs[event[1]]
            top = pair.alone.highest_sequence
            if top is not None:
                lost = [(top - event[2]) & 0xFFFF]
                lookup = _lookup(fan)
                assert pair.alone.on_nack(lost, fan.now, None, lookup) == pair.follower.on_nack(
                    lost, fan.now, None, lookup
                )
        else:
            fan.same()
    fan.same()


def _lookup(fan: Fanout):  # type: ignore[no-untyped-def]
    def lookup(ssrc: int, seq: int, now: float) -> RtpView | None:
        ts = fan.stamps.get((ssrc, seq))
        return None if ts is None else packet(seq, ts, ssrc)

    return lookup


def test_a_steady_fan_out_follows_the_chain_without_munging() -> None:
    fan = Fanout()
    fan.seq, fan.ts = 0xFFF0, 0xFFFFF000  # both wrap during the run
    for _ in range(3):
        fan.join()
    for _ in range(40):
        fan.next(1, 3000)
    # each down-track munged its first packet itself (a switch to the stream), then followed
    assert [p.follower.own for p in fan.pairs] == [1, 1, 1]
    assert all(p.follower.following for p in fan.pairs)
    fan.same()


def test_a_subscriber_who_joins_after_the_numbers_wrapped_follows_too() -> None:
    """The chain's numbers are extended from its first packet, the newcomer's from its own:
    they differ by whole wraps, which the output does not show."""
    fan = Fanout()
    fan.seq = 0xFF00
    fan.join()
    for _ in range(600):
        fan.next(1, 3000)
    fan.join()
    for _ in range(5):
        fan.next(1, 3000)
    late = fan.pairs[1].follower
    assert late.own == 1 and late.following
    fan.same()


def test_a_late_packet_is_munged_by_each_and_the_chain_is_followed_again() -> None:
    fan = Fanout()
    for _ in range(2):
        fan.join()
    for _ in range(5):
        fan.next(1, 3000)
    fan.next(2, 3000)  # one missing upstream ...
    fan.send(packet(fan.seq - 1, fan.ts - 1500))  # ... arrives late
    assert [p.follower.own for p in fan.pairs] == [2, 2]
    fan.next(1, 3000)
    fan.next(1, 3000)
    assert [p.follower.own for p in fan.pairs] == [3, 3]  # back on the chain after one packet
    assert all(p.follower.following for p in fan.pairs)
    fan.same()


def test_a_slot_that_misses_a_packet_leaves_a_gap_and_rejoins() -> None:
    fan = Fanout()
    for _ in range(2):
        fan.join()
    for _ in range(3):
        fan.next(1, 3000)
    fan.next(1, 3000, missing=frozenset({0}))
    fan.next(1, 3000)
    fan.next(1, 3000)
    missed, steady = fan.pairs[0].follower, fan.pairs[1].follower
    assert (missed.own, steady.own) == (2, 1)
    assert missed.packets_sent == steady.packets_sent - 1
    assert missed.following
    fan.same()
