"""Receive take-over (decrypted RTP/RTCP to the SFU's callbacks, nothing decodes): re-exported from
``sfu.glue.aiortcseam``, the one module that reaches aiortc's private internals."""

from __future__ import annotations

from sfu.glue.aiortcseam import (
    CONNECTED,
    MediaProtocol,
    PacketFilter,
    PacketSink,
    Waited,
    _SrtpReceiver,
    add_sending_transceiver,
    carry_fast_receive,
    decoding_disabled,
    take_over_media,
    transports,
)

__all__ = [
    "CONNECTED",
    "MediaProtocol",
    "PacketFilter",
    "PacketSink",
    "Waited",
    "_SrtpReceiver",
    "add_sending_transceiver",
    "carry_fast_receive",
    "decoding_disabled",
    "take_over_media",
    "transports",
]
