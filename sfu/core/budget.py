"""How much session-description work one participant may ask of the server.

Every offer or answer a client sends is parsed twice on the event loop (by ``sfu.sdp`` and by
aiortc) and may renegotiate a connection: a few milliseconds for a large one. Signaling's
message rate limit alone would let a client keep a core busy with 60 KB descriptions, so each
participant also has an ``SdpBudget``: two token buckets, one counting descriptions and one
counting their characters, each refilled evenly over ``window`` seconds. A description that
either bucket cannot pay for is refused (the caller answers ``rate_limited``) and costs
nothing. Sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    descriptions: int = 20
    """Descriptions in a burst; the same number again per ``window``."""
    chars: int = 512 * 1024
    """Characters of SDP in a burst; the same again per ``window``."""
    window: float = 20.0
    """Seconds over which a spent budget comes back in full (1 description, 25.6 KiB a second)."""


class SdpBudget:
    __slots__ = ("_cfg", "_chars", "_descriptions", "_last")

    def __init__(self, cfg: BudgetConfig, now: float) -> None:
        self._cfg = cfg
        self._descriptions = float(cfg.descriptions)
        self._chars = float(cfg.chars)
        self._last = now

    def charge(self, chars: int, now: float) -> bool:
        """Pay for one description of ``chars`` characters; False (nothing paid) when over budget."""
        cfg = self._cfg
        elapsed = max(0.0, now - self._last)
        self._last = now
        share = elapsed / cfg.window if cfg.window > 0 else 1.0
        self._descriptions = min(float(cfg.descriptions), self._descriptions + share * cfg.descriptions)
        self._chars = min(float(cfg.chars), self._chars + share * cfg.chars)
        if self._descriptions < 1 or self._chars < chars:
            return False
        self._descriptions -= 1
        self._chars -= chars
        return True
