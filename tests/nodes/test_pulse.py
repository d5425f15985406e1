"""The pulse thread keeps a busy node alive in the registry, but not a node whose loop is stuck."""

from __future__ import annotations

import secrets

import redis

from confserver.cluster.pulse import LOOP_GRACE, Pulse


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_record_is_renewed_while_the_loop_lives_and_not_after(redis_url: str) -> None:
    key = f"pulse:{secrets.token_hex(4)}"
    clock = Clock()
    pulse = Pulse(redis_url, key, 60.0, clock=clock)
    client = redis.Redis.from_url(redis_url)
    try:
        assert not pulse.renew()  # nothing to write before the first heartbeat
        pulse.beat('{"id": "a"}')
        client.delete(key)
        clock.now += 2 * 60.0  # the loop is late by two TTLs: still renewed
        assert pulse.renew()
        assert client.get(key) == b'{"id": "a"}'
        assert 0 < client.pttl(key) <= 60_000
        client.delete(key)
        clock.now += LOOP_GRACE * 60.0  # no heartbeat for longer: the node may die
        assert not pulse.renew()
        assert client.get(key) is None
        pulse.beat('{"id": "a", "rooms": 1}')  # the loop is back
        assert pulse.renew()
        assert client.get(key) == b'{"id": "a", "rooms": 1}'
    finally:
        pulse.stop()
        client.close()


def test_an_unreachable_redis_counts_a_failure_and_never_raises() -> None:
    pulse = Pulse("redis://127.0.0.1:1/0", "pulse:x", 3.0)
    pulse.beat("{}")
    assert not pulse.renew()
    assert pulse.failures == 1
    pulse.stop()
