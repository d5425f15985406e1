"""Sans-I/O core of the selective forwarding unit.

Everything here is pure computation over bytes, integers and a ``now`` supplied by the caller.
``now`` is always a float in seconds on a monotonic clock of the adapter's choosing (the event
loop's clock); nothing in this package reads a clock, does network I/O, depends on the event
loop or the WebRTC stack, or draws random numbers. Classes return small immutable actions and
decisions; adapters carry them out.

Modules, one concept each:

- ``rtp``: RTP header view, header-extension parsing/building, header rewrite.
- ``rtcp``: RTCP packets the forwarder needs (SR, RR, PLI, FIR, NACK, REMB), compound splitting.
- ``seqnum``: 16/32-bit unwrapping into extended counters and modular helpers.
- ``history``: per-down-track packet history for NACK retransmission with a resend throttle.
- ``keyframe``: keyframe detection from RTP payloads (VP8, VP9, H.264, AV1, Opus).
- ``munger``: per-down-track sequence number/timestamp rewriting across source switches.
- ``simulcast``: per-subscriber simulcast layer selection.
- ``keyrequest``: keyframe (PLI) request throttling per source.
- ``audio``: RFC 6464 audio levels, active speakers and the room-wide loudest-N selection.
- ``downtrack``: composition of munger, history and header rewrite for one subscriber track.
- ``actions``: immutable actions and decisions shared by the modules.
"""
