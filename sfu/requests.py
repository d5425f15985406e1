"""The media messages' parts the SFU's modules name, from ``confserver.contract``.

Media messages are parsed and checked once, where they enter (``confserver.contract.parse_media``);
the SFU receives frozen values. This module only re-exports the parts other SFU modules use.
"""

from __future__ import annotations

from confserver.contract import SOURCES, PublishedTrack, SubscriptionChange

__all__ = ["SOURCES", "PublishedTrack", "SubscriptionChange"]
