"""The load-shedding policy: one more layer down while media goes stale (not sooner than a
switch can show its effect), one back after a long quiet spell."""

from __future__ import annotations

from sfu.core.loadshed import LoadShedding, SheddingConfig

CONFIG = SheddingConfig(max_level=2, raise_after=4.0, lower_after=30.0)


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


def test_stale_media_sheds_a_layer_at_once_and_another_only_after_the_first_had_time_to_act() -> None:
    shedding = LoadShedding(CONFIG)
    assert feed(shedding, 10.0, 13.0, overloaded=True) == [10.0]
    assert shedding.level == 1
    assert feed(shedding, 13.0, 20.0, overloaded=True) == [14.0]
    assert shedding.level == 2
    assert feed(shedding, 20.0, 40.0, overloaded=True) == []  # at most max_level
    assert shedding.level == 2


def test_layers_come_back_one_at_a_time_after_quiet_spells() -> None:
    shedding = LoadShedding(CONFIG)
    feed(shedding, 0.0, 5.0, overloaded=True)  # level 2 at 4.0, last stale at 4.95
    assert shedding.level == 2
    first, second = feed(shedding, 5.0, 100.0, overloaded=False)
    assert 34.9 <= first <= 35.05 and 64.9 <= second <= 65.05  # 30 s after the last stale, then the change
    assert shedding.level == 0


def test_stale_media_during_recovery_restarts_the_wait_and_sheds_again() -> None:
    shedding = LoadShedding(CONFIG)
    feed(shedding, 0.0, 0.1, overloaded=True)  # level 1 at 0.0
    assert feed(shedding, 0.1, 20.0, overloaded=False) == []
    assert feed(shedding, 20.0, 20.1, overloaded=True) == [20.0]  # long after the last change: at once
    assert shedding.level == 2
    assert feed(shedding, 20.1, 49.0, overloaded=False) == []  # 30 s from the last stale media
    (back,) = feed(shedding, 49.0, 51.0, overloaded=False)
    assert 50.0 <= back <= 50.15
    assert shedding.level == 1
