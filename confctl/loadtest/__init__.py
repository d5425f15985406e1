"""``confctl load-test``: synthetic participants that join a room through the real signaling and
WebRTC path, publish pre-encoded media and count what the server forwards to them.

Modules, one concept each: ``plan`` (what each participant does), ``clips`` (media encoded
once), ``rawmedia`` (crafted RTP: the default sender, and simulcast), ``tracks`` (aiortc tracks
that hand pre-encoded packets to aiortc's sender), ``publishing`` (what a publisher sends, on
either sender), ``sdpinfo`` (what is read from and changed in
session descriptions), ``rtpstats`` (packets and loss per SSRC, no decoding), ``signaling`` (the
WebSocket client), ``participant`` (one synthetic participant), ``swarm`` (the participants of
one process), ``workers`` (swarms in worker processes), ``scrape`` (the server's Prometheus
metrics), ``runner`` (orchestration and progress), ``report`` (figures, text and JSON) and
``cli`` (the subcommand); ``glue`` holds every reach into aiortc's and aioice's internals (its
own, not the server's ``sfu.glue``).
"""
