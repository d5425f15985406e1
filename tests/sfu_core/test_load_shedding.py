"""The load-shedding policy: a layer down once media has gone stale for a while without a break,
another only after the first had time to act, one back after each long quiet spell, or after a
short one in which the process had headroom."""

from __future__ import annotations

from sfu.core.loadshed import LoadShedding, SheddingConfig

CONFIG = SheddingConfig(max_level=2, sustain=2.0, raise_after=4.0, lower_after=30.0)


def feed(
    shedding: LoadShedding,
    start: float,
    end: float,
    overloaded: bool,
    step: float = 0.05,
    cpu: Cpu | None = None,
) -> list[float]:
    """Ticks from ``start`` to ``end``: the times the level changed."""
    changes = []
    t = start
    while t < end:
        if shedding.update(t, overloaded, None if cpu is None else cpu.at(t)):
            changes.append(round(t, 2))
        t = round(t + step, 4)
    return changes


class Cpu:
    """The process's CPU seconds, used at ``share`` of a core (changeable) from time 0."""

    def __init__(self, share: float) -> None:
        self.share = share
        self._last = (0.0, 0.0)

    def at(self, t: float) -> float:
        then, used = self._last
        used += (t - then) * self.share
        self._last = (t, used)
        return used


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


def test_a_server_with_headroom_gets_its_layers_back_after_a_short_quiet_spell() -> None:
    shedding = LoadShedding(CONFIG)
    cpu = Cpu(share=1.0)
    feed(shedding, 0.0, 7.0, overloaded=True, cpu=cpu)  # level 2 at 6.0, last stale at 6.95
    cpu.share = 0.5
    # the CPU measured over the quiet spell includes the busy second before it: a little later
    first, second = feed(shedding, 7.0, 40.0, overloaded=False, cpu=cpu)
    assert 16.9 <= first <= 18.1 and 26.9 <= second <= 28.1
    assert shedding.level == 0


def test_a_busy_server_waits_for_the_long_quiet_spell() -> None:
    shedding = LoadShedding(CONFIG)
    cpu = Cpu(share=1.0)
    feed(shedding, 0.0, 7.0, overloaded=True, cpu=cpu)
    cpu.share = 0.9  # no stale media, but under 30 % of a core to spare
    (first,) = feed(shedding, 7.0, 40.0, overloaded=False, cpu=cpu)
    assert 36.9 <= first <= 37.05 and shedding.level == 1


def test_an_early_recovery_that_does_not_hold_makes_the_next_one_wait_longer() -> None:
    shedding = LoadShedding(CONFIG)
    cpu = Cpu(share=0.5)
    feed(shedding, 0.0, 3.0, overloaded=True, cpu=cpu)  # level 1 at 2.0, last stale at 2.95
    (back,) = feed(shedding, 3.0, 14.0, overloaded=False, cpu=cpu)
    assert 12.9 <= back <= 13.05 and shedding.level == 0
    (again,) = feed(shedding, 14.0, 18.0, overloaded=True, cpu=cpu)  # sheds again at once
    assert 16.9 <= again <= 17.05 and shedding.level == 1  # raise_after from the recovery
    assert feed(shedding, 18.0, 37.5, overloaded=False, cpu=cpu) == []  # not after 10 s: 20
    (later,) = feed(shedding, 37.5, 40.0, overloaded=False, cpu=cpu)
    assert 37.9 <= later <= 38.05 and shedding.level == 0


def test_an_early_recovery_that_holds_keeps_the_short_wait() -> None:
    shedding = LoadShedding(CONFIG)
    cpu = Cpu(share=0.5)
    feed(shedding, 0.0, 3.0, overloaded=True, cpu=cpu)
    (back,) = feed(shedding, 3.0, 50.0, overloaded=False, cpu=cpu)  # back at ~13, held 30 s
    assert 12.9 <= back <= 13.05
    (again,) = feed(shedding, 50.0, 52.5, overloaded=True, cpu=cpu)
    assert 51.9 <= again <= 52.05
    (quick,) = feed(shedding, 52.5, 70.0, overloaded=False, cpu=cpu)
    assert 62.4 <= quick <= 62.55  # 10 s again


def test_no_early_recovery_without_the_cpu_measured_over_the_whole_spell() -> None:
    shedding = LoadShedding(CONFIG)
    feed(shedding, 0.0, 3.0, overloaded=True)  # level 1 at 2.0; no CPU figures yet
    assert feed(shedding, 3.0, 9.0, overloaded=False) == []
    cpu = Cpu(share=0.0)  # the process's CPU is known from 9 s on
    (back,) = feed(shedding, 9.0, 40.0, overloaded=False, cpu=cpu)
    assert 18.9 <= back <= 19.1  # 10 s after the first figure, not 10 s after the stale media
