"""Load shedding with real peers: media going stale in the shared socket holds every subscriber's
video one simulcast layer lower, then another, and a quiet spell gives the layers back one at a
time. (The stale media is reported through the shared socket's own check, as the NACK hold's
test does: a real overload would also drop the packets this test watches.)"""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from sfu import context
from sfu.controller import SfuController
from sfu.core.loadshed import SheddingConfig
from sfu.udpmux import UdpMux
from tests.sfu.peers import Peer, wait_until
from tests.sfu.rawpublisher import RawPublisher
from tests.sfu.test_simulcast import layers_seen


async def test_stale_media_holds_all_video_lower_and_a_quiet_spell_gives_it_back(
    sfu: SfuController, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        context, "SHEDDING", SheddingConfig(max_level=2, sustain=1.5, raise_after=1.0, lower_after=2.0)
    )
    alice = Peer(sfu, "shed", "alice")
    viewer = Peer(sfu, "shed", "viewer", decode=False)
    late = Peer(sfu, "shed", "late", decode=False)  # subscribes while the server sheds
    publisher = RawPublisher(alice)

    def level() -> float | None:
        return registry.get_sample_value("conf_sfu_shed_layers")

    async def stale_for(seconds: float) -> None:
        """The shared socket keeps finding media that waited longer than the bound."""
        mux = sfu._ctx.ports  # type: ignore[union-attr]
        assert isinstance(mux, UdpMux)
        (shared,) = [f.result() for f in mux._sockets.values()]
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            assert shared.guard(1.0, True)
            await asyncio.sleep(0.05)

    try:
        for p in (alice, viewer):
            await p.join()
        await publisher.publish(1280, 720)
        track = (await viewer.expect("track_published"))["track"]["id"]
        await viewer.subscribe(track, max_width=1280, max_height=720)
        await wait_until(lambda: layers_seen(viewer)[-5:] == ["f"] * 5, 5, what="the top layer")
        assert level() == 0.0
        await stale_for(0.2)  # a burst, then fresh media: not a server that cannot keep up
        await asyncio.sleep(1.5)  # (the signal holds for a second after the last stale drop)
        assert level() == 0.0
        mark = len(viewer.raw)
        await stale_for(0.8)  # with the signal's second after it, longer than the sustain
        await wait_until(lambda: level() == 1.0, 2, what="one layer shed")
        await wait_until(lambda: layers_seen(viewer, mark)[-5:] == ["h"] * 5, 3, what="one layer down")
        await stale_for(1.0)  # still stale once the first step had time to act
        await wait_until(lambda: level() == 2.0, 2, what="two layers shed")
        mark = len(viewer.raw)
        await wait_until(lambda: layers_seen(viewer, mark)[-5:] == ["q"] * 5, 3, what="two layers down")
        await late.join()
        await late.subscribe(track, max_width=1280, max_height=720)
        await stale_for(0.2)  # still shedding while it subscribes
        await wait_until(lambda: len(layers_seen(late)) >= 5, 3, what="video for the late subscriber")
        assert set(layers_seen(late)) == {"q"}
        quiet = time.monotonic()
        await wait_until(lambda: level() == 1.0, 4, what="one layer back after a quiet spell")
        assert time.monotonic() - quiet >= 1.5  # not before lower_after (2 s from the last stale)
        await wait_until(lambda: layers_seen(viewer)[-5:] == ["h"] * 5, 3, what="h again")
        await wait_until(lambda: level() == 0.0, 4, what="all back")
        # a few seconds at each level, integrated (layers x seconds): what the load test reads
        shed = registry.get_sample_value("conf_sfu_shed_layer_seconds_total")
        assert shed is not None and 5.0 <= shed <= 15.0
        await wait_until(lambda: layers_seen(viewer)[-5:] == ["f"] * 5, 3, what="the top layer again")
    finally:
        await publisher.close()
        for p in (alice, viewer, late):
            await p.close()
