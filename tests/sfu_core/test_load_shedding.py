"""The load-shedding policy: a layer down once media has gone stale for a while without a break,
another only after the first had time to act, one back after each long quiet spell."""

from __future__ import annotations

from sfu.core.loadshed import LoadShedding, SheddingConfig

CONFIG = SheddingConfig(max_level=2, sustain=2.0, raise_after=4.0, lower_after=30.0)


def feed(
    shedding: LoadShedding, start: float, end: float, overloaded: bool, step: float = 0.05
) -> list[float]:
    """Ticks from ``start`` to ``end``: the times the level changed."""
    changes = []
    t = start
    while t < end:
        if shedding.update(t, overloaded):
            changes.append(round(t, 2))
        t = round(t + step, 4)
    return changes


def test_no_stale_media_no_shedding() -> None:
    shedding = LoadShedding(CONFIG)
    assert feed(shedding, 0.0, 100.0, overloaded=False) == []
    assert shedding.level == 0


def test_a_burst_of_stale_media_shorter_than_the_sustain_sheds_nothing() -> None:
    shedding = LoadShedding(CONFIG)
    for start in (0.0, 10.0, 20.0):  # bursts with breaks between them
        assert feed(shedding, start, start + 1.9, overloaded=True) == []
        assert feed(shedding, start + 1.9, start + 2.5, overloaded=False) == []
    assert shedding.level == 0


def test_sustained_stale_media_sheds_a_layer_and_another_only_after_the_first_had_time_to_act() -> None:
    shedding = LoadShedding(CONFIG)
    (first,) = feed(shedding, 10.0, 13.0, overloaded=True)
    assert 11.95 <= first <= 12.05 and shedding.level == 1  # after the sustain
    (second,) = feed(shedding, 13.0, 20.0, overloaded=True)
    assert 15.95 <= second <= 16.1 and shedding.level == 2  # raise_after from the first
    assert feed(shedding, 20.0, 40.0, overloaded=True) == []  # at most max_level
    assert shedding.level == 2


def test_layers_come_back_one_at_a_time_after_quiet_spells() -> None:
    shedding = LoadShedding(CONFIG)
    feed(shedding, 0.0, 7.0, overloaded=True)  # level 1 at 2.0, 2 at 6.0, last stale at 6.95
    assert shedding.level == 2
    first, second = feed(shedding, 7.0, 100.0, overloaded=False)
    assert 36.9 <= first <= 37.05 and 66.9 <= second <= 67.05  # 30 s after the last stale, then the change
    assert shedding.level == 0


def test_stale_media_during_recovery_restarts_the_wait_and_sheds_again() -> None:
    shedding = LoadShedding(CONFIG)
    feed(shedding, 0.0, 2.1, overloaded=True)  # level 1 at 2.0
    assert shedding.level == 1
    assert feed(shedding, 2.1, 20.0, overloaded=False) == []
    (again,) = feed(shedding, 20.0, 22.1, overloaded=True)  # sustained again, long after the change
    assert 21.95 <= again <= 22.05 and shedding.level == 2
    assert feed(shedding, 22.1, 51.0, overloaded=False) == []  # 30 s from the last stale media
    (back,) = feed(shedding, 51.0, 53.0, overloaded=False)
    assert 52.0 <= back <= 52.15
    assert shedding.level == 1
