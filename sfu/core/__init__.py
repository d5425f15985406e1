"""Sans-I/O core of the selective forwarding unit.

Everything here is pure computation over bytes, integers and a ``now`` supplied by the caller.
``now`` is always a float in seconds on a monotonic clock of the adapter's choosing (the event
loop's clock); nothing in this package reads a clock, does network I/O, depends on the event
loop or the WebRTC stack, or draws random numbers. Classes return small immutable actions and
decisions; adapters carry them out.

Modules, one concept each:

- ``rtp``: RTP header view, header-extension parsing and remapping, fixed-header packing, RTX unwrap.
- ``rtcp``: RTCP packets the forwarder needs (SR, RR, PLI, FIR, NACK, REMB), compound splitting.
- ``seqnum``: 16-bit sequence numbers unwrapped into an extended counter.
- ``history``: per received stream, the packets kept to answer NACKs, with a resend throttle.
- ``keyframe``: keyframe detection from RTP payloads (VP8, VP9, H.264, AV1, Opus).
- ``keyrequest``: keyframe (PLI) request throttling per source.
- ``munger``: the one home of numbering: ``extend`` (the in-order step), ``RtpMunger`` (a
  subscriber's numbers across source switches) and ``StepChain`` (a steady layer's step taken
  once for all its subscribers).
- ``downtrack``: one subscriber's copy of a track: holds its munger; header rewrite, NACK answers.
- ``simulcast``: per-subscriber simulcast layer selection and the track's layer liveness.
- ``dynacast``: which layers a publisher should send, from what the subscribers want.
- ``loadshed``: how many layers every subscriber's video is held below the top under load.
- ``audio``: RFC 6464 audio levels, active speakers and the room-wide loudest-N selection.
- ``routing``: which published track and layer an incoming packet belongs to.
- ``nackgen``: loss detection on an incoming stream and the NACKs sent to its publisher.
- ``receivestats``: reception statistics of an incoming stream, for receiver reports.
- ``candidate``: ICE candidates from clients, checked before the ICE agent sees them.
- ``budget``: how much session-description work one participant may ask of the server.
- ``actions``: immutable actions and decisions shared by the modules.
"""
