"""A node's pulse: its registry record renewed from a thread of its own.

The record says the node is alive. Renewed only from the event loop, it lapsed whenever the loop
ran late by more than the TTL (a storm of a thousand TLS joins on two cores did it), and another
node then took over the rooms of a node that was merely busy. This thread renews the record every
third of the TTL on a connection of its own, as long as the event loop has shown life within
``LOOP_GRACE`` TTLs: a loop stuck for good still lets its node die.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
import redis.exceptions

LOOP_GRACE = 3
"""TTLs the event loop may go without a heartbeat before the thread stops renewing the record."""


class Pulse:
    def __init__(
        self, url: str, key: str, ttl: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=ttl / 3, socket_connect_timeout=ttl / 3)
        self._key = key
        self._ttl = ttl
        self._clock = clock
        self._record: str | None = None
        self._tick = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-pulse", daemon=True)
        self._started = False
        self.failures = 0

    def beat(self, record: str) -> None:
        """From the event loop, at each heartbeat: the record to write, and a sign of life."""
        self._record = record
        self._tick = self._clock()
        if not self._started:
            self._started = True
            self._thread.start()

    def renew(self) -> bool:
        """One renewal (what the thread does each third of the TTL); ``False`` if skipped or failed."""
        record = self._record
        if record is None or self._clock() - self._tick > LOOP_GRACE * self._ttl:
            return False
        try:
            self._client.set(self._key, record, px=int(self._ttl * 1000))
        except (redis.exceptions.RedisError, OSError):
            self.failures += 1
            return False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            self.renew()

    def stop(self) -> None:
        self._stop.set()
        if self._started:
            self._thread.join(timeout=self._ttl)
        self._client.close()
