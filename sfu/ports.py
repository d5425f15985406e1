"""Where media sockets bind: the addresses (``GatherPolicy``) and the UDP ports (a configured
range, tried round-robin).

Each peer connection binds one socket per local address. With a range configured
(``sfu.port_min``-``sfu.port_max``) the binder asks ``PortRange.candidates()`` for the order in
which to try ports: it starts after the last port handed out, so a port that was just released
(and may still receive a late packet of the old connection) is reused last.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aioice.ice import get_host_addresses


class PortRangeExhausted(OSError):
    """No port of the range could be bound."""


class PortRange:
    """Ports ``low``..``high`` inclusive; ``low == high == 0`` means any port the OS picks."""

    __slots__ = ("_high", "_low", "_next")

    def __init__(self, low: int = 0, high: int = 0) -> None:
        if (low, high) != (0, 0) and not 1 <= low <= high <= 65535:
            raise ValueError(f"invalid UDP port range {low}-{high}")
        self._low = low
        self._high = high
        self._next = low

    @property
    def any_port(self) -> bool:
        return self._low == 0

    @property
    def low(self) -> int:
        return self._low

    @property
    def high(self) -> int:
        return self._high

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and (self.any_port or self._low <= port <= self._high)

    def candidates(self) -> Iterator[int]:
        """Ports to try, in order; ``0`` alone for an unrestricted range. Each port yielded moves
        the round-robin start past it."""
        if self.any_port:
            yield 0
            return
        size = self._high - self._low + 1
        start = self._next
        for i in range(size):
            port = self._low + (start - self._low + i) % size
            self._next = self._low + (port - self._low + 1) % size
            yield port


@dataclass(frozen=True)
class GatherPolicy:
    """Where host candidates are bound: ``addresses`` (empty: every interface except loopback),
    ports from ``ports``, and ``public_ip`` written into every host candidate when set."""

    addresses: tuple[str, ...] = ()
    public_ip: str = ""


def local_addresses(policy: GatherPolicy) -> list[str]:
    if policy.addresses:
        return list(policy.addresses)
    return get_host_addresses(use_ipv4=True, use_ipv6=True)
