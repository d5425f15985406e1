from __future__ import annotations

import itertools

import pytest

from sfu.core.actions import SpeakerLevel, SpeakersChanged
from sfu.core.audio import ActiveSpeakers, AudioConfig, build_audio_level, parse_audio_level

SILENT = 127
PACKET = 0.02


def talk(
    room: ActiveSpeakers, levels: dict[str, int], start: float, seconds: float
) -> tuple[float, set[str]]:
    """Every source sends a packet each 20 ms at its level; returns (end time, sources forwarded
    in the last round)."""
    t = start
    forwarded: set[str] = set()
    for _ in range(round(seconds / PACKET)):
        t += PACKET
        forwarded = {source for source, level in levels.items() if room.on_packet(source, level, t)}
    return t, forwarded


def room_of(n: int, talking: dict[str, int]) -> dict[str, int]:
    levels = {f"p{i}": SILENT for i in range(n)}
    levels.update(talking)
    return levels


def test_audio_level_extension_value_round_trips() -> None:
    assert parse_audio_level(build_audio_level(True, 42)) == (True, 42)
    assert parse_audio_level(b"\x7f") == (False, 127)
    assert parse_audio_level(b"") is None
    assert build_audio_level(False, 300) == b"\x7f"


def test_three_talkers_among_ten_are_forwarded_and_silence_is_dropped() -> None:
    room = ActiveSpeakers()
    talking = {"p1": 30, "p4": 35, "p7": 40}
    _, forwarded = talk(room, room_of(10, talking), 0.0, 1.0)
    assert forwarded == set(talking)
    assert room.forwarded == set(talking)


def test_no_more_than_n_sources_are_forwarded() -> None:
    room = ActiveSpeakers(AudioConfig(max_forwarded=5))
    talking = {f"p{i}": 20 + i for i in range(7)}  # p0 loudest ... p6 quietest
    _, forwarded = talk(room, room_of(10, talking), 0.0, 1.0)
    assert len(forwarded) == 5


def test_a_clearly_louder_newcomer_replaces_the_quietest_forwarded_source() -> None:
    room = ActiveSpeakers(AudioConfig(max_forwarded=2))
    t, _ = talk(room, {"a": 40, "b": 50}, 0.0, 1.0)
    t, forwarded = talk(room, {"a": 40, "b": 50, "c": 20}, t, 0.5)
    assert forwarded == {"a", "c"}


def test_a_newcomer_as_loud_as_the_forwarded_ones_does_not_displace_them() -> None:
    room = ActiveSpeakers(AudioConfig(max_forwarded=2))
    t, _ = talk(room, {"a": 40, "b": 42}, 0.0, 1.0)
    t, forwarded = talk(room, {"a": 40, "b": 42, "c": 40}, t, 1.0)
    assert forwarded == {"a", "b"}


def test_speaker_keeps_being_forwarded_through_short_pauses_then_is_released() -> None:
    room = ActiveSpeakers()
    t, _ = talk(room, {"a": 30}, 0.0, 1.0)
    t, forwarded = talk(room, {"a": SILENT}, t, 0.5)  # a breath
    assert forwarded == {"a"}
    t, forwarded = talk(room, {"a": SILENT}, t, 1.0)
    assert forwarded == set()
    assert not room.is_active("a")


def test_a_short_noise_does_not_make_an_active_speaker() -> None:
    room = ActiveSpeakers(AudioConfig(activate_after=0.2))
    t, _ = talk(room, {"a": SILENT}, 0.0, 0.2)
    t, _ = talk(room, {"a": 20}, t, 0.1)
    assert not room.is_active("a")
    assert room.poll(t) is None
    t, _ = talk(room, {"a": 20}, t, 0.3)
    assert room.is_active("a")


def test_level_between_the_thresholds_changes_nothing() -> None:
    room = ActiveSpeakers(AudioConfig(speaking_level=50, silence_level=70))
    t, _ = talk(room, {"a": 30}, 0.0, 1.0)
    t, forwarded = talk(room, {"a": 60}, t, 3.0)
    assert forwarded == {"a"} and room.is_active("a")
    t, _ = talk(room, {"b": 60}, t, 1.0)
    assert "b" not in room.forwarded


def test_smoothed_level_is_reported_in_dbov() -> None:
    room = ActiveSpeakers()
    talk(room, {"a": 30, "b": SILENT}, 0.0, 1.0)
    assert room.level("a") == 30
    assert room.level("b") == SILENT
    assert room.level("nobody") is None


def test_speakers_event_lists_active_speakers_loudest_first_with_levels() -> None:
    room = ActiveSpeakers()
    t, _ = talk(room, room_of(6, {"p2": 40, "p5": 25}), 0.0, 1.0)
    event = room.poll(t)
    assert event == SpeakersChanged((SpeakerLevel("p5", 25), SpeakerLevel("p2", 40)))
    assert event is not None and event.sources == ("p5", "p2")


def test_no_event_when_the_speakers_did_not_change() -> None:
    room = ActiveSpeakers()
    t, _ = talk(room, {"a": 30}, 0.0, 1.0)
    assert room.poll(t) is not None
    t, _ = talk(room, {"a": 31}, t, 1.0)
    assert room.poll(t) is None


def test_speakers_events_are_rate_limited_to_three_per_second() -> None:
    room = ActiveSpeakers(
        AudioConfig(max_forwarded=10, activate_after=0.0, release_after=0.05, smoothing=0.01)
    )
    events = []
    t = 0.0
    for i in range(100):  # the loudest speaker changes every 20 ms for 2 s
        t += PACKET
        for n in range(3):
            room.on_packet(f"s{n}", 20 if n == i % 3 else 45, t)
        event = room.poll(t)
        if event is not None:
            events.append(t)
    assert 2 <= len(events) <= 7
    assert all(b - a >= 1 / 3 - 1e-9 for a, b in itertools.pairwise(events))


def test_change_inside_the_interval_is_reported_when_it_ends() -> None:
    room = ActiveSpeakers(AudioConfig(activate_after=0.0))
    room.on_packet("a", 20, 0.0)
    assert room.poll(0.0) is not None
    room.on_packet("b", 10, 0.1)
    assert room.poll(0.1) is None
    event = room.poll(0.34)
    assert event is not None and event.sources == ("b", "a")


def test_source_that_stops_sending_is_released_by_poll() -> None:
    room = ActiveSpeakers()
    t, _ = talk(room, {"a": 30, "b": 35}, 0.0, 1.0)
    t, _ = talk(room, {"b": 35}, t, 1.5)  # a muted: no more packets at all
    event = room.poll(t)
    assert room.forwarded == {"b"}
    assert event is not None and event.sources == ("b",)


def test_removed_source_is_forgotten() -> None:
    room = ActiveSpeakers()
    talk(room, {"a": 30}, 0.0, 1.0)
    room.remove("a")
    assert room.forwarded == set()
    assert room.level("a") is None


def test_out_of_range_levels_are_clamped() -> None:
    room = ActiveSpeakers()
    assert room.on_packet("a", -5, 0.0)
    assert room.level("a") == 0
    assert not room.on_packet("b", 500, 0.0)


def test_thresholds_must_leave_a_hysteresis_band() -> None:
    with pytest.raises(ValueError):
        ActiveSpeakers(AudioConfig(speaking_level=80, silence_level=60))
