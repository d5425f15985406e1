"""Placing rooms on media workers: least CPU first, then fewest participants; a room stays on its
worker; a dead worker releases its rooms and takes none."""

from __future__ import annotations

import pytest

from sfu.worker.placement import NoWorkerError, Placement


def started(n: int) -> Placement:
    p = Placement(n)
    for i in range(n):
        p.up(i)
    return p


def test_a_new_room_goes_to_the_worker_with_the_least_cpu() -> None:
    p = started(3)
    p.report(0, 0.9)
    p.report(1, 0.2)
    p.report(2, 0.5)
    assert p.place("a") == 1


def test_with_cpu_alike_the_worker_with_fewer_participants_wins() -> None:
    p = started(2)
    assert p.place("a") == 0
    p.joined("a")
    p.joined("a")
    p.report(0, 0.31)
    p.report(1, 0.29)  # the same 10 % step: noise does not decide
    assert p.place("b") == 1
    p.joined("b")
    assert p.place("c") == 1  # one participant on 1, two on 0


def test_a_room_stays_on_its_worker_until_it_is_empty() -> None:
    p = started(2)
    assert p.place("a") == 0
    p.joined("a")
    p.report(0, 0.95)
    assert p.place("a") == 0
    p.left("a", empty=True)
    assert p.worker_of("a") is None
    assert p.place("a") == 1
    assert p.placements == [1, 1]


def test_a_dead_worker_releases_its_rooms_and_takes_no_new_one() -> None:
    p = started(2)
    p.place("a")
    p.joined("a")
    p.place("b")
    assert p.down(0) == ["a"]
    assert p.worker_of("a") is None
    assert p.place("a") == 1
    assert p.place("c") == 1
    p.down(1)
    with pytest.raises(NoWorkerError):
        p.place("d")
    p.up(0)
    assert p.place("d") == 0
