"""Dynacast: publishers are told which video layers some subscriber wants (``publish_layers``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sfu.controller import SfuController
from tests.sfu.conftest import config
from tests.sfu.peers import Peer, wait_until
from tests.sfu.rawpublisher import RawPublisher
from tests.sfu.test_simulcast import layers_seen

DELAY = 0.5


def asked(peer: Peer) -> list[list[str]]:
    return [m["layers"] for m in peer.of_type("publish_layers")]


@pytest.mark.parametrize("sfu_config", [config(dynacast_pause_delay=DELAY)])
async def test_unwanted_layers_are_switched_off_and_a_wanted_one_comes_back(
    sfu: SfuController, registry: CollectorRegistry
) -> None:
    def paused() -> float | None:
        return registry.get_sample_value("conf_sfu_paused_layers")

    alice = Peer(sfu, "dyn", "alice")
    viewer = Peer(sfu, "dyn", "viewer", decode=False)
    publisher = RawPublisher(alice, dynacast=True)
    try:
        for p in (alice, viewer):
            await p.join()
        await publisher.publish(1280, 720)
        track = (await viewer.expect("track_published"))["track"]
        await viewer.subscribe(track["id"], max_width=320, max_height=180)
        message: dict[str, Any] = await alice.expect("publish_layers", timeout=5)
        assert message["track"] == track["id"] and message["mid"] == publisher.mid
        await wait_until(lambda: asked(alice) and asked(alice)[-1] == ["q"], 5, what="only q wanted")
        assert paused() == 2
        mark = len(viewer.raw)
        await wait_until(lambda: len(layers_seen(viewer, mark)) >= 20, 5, what="q keeps flowing")
        assert set(layers_seen(viewer, mark)) == {"q"}

        # the viewer enlarges the tile: f is switched on at once, and reaches the viewer
        await viewer.subscribe(track["id"], max_width=1280, max_height=720)
        await wait_until(lambda: "f" in asked(alice)[-1], 2, what="f switched on")
        mark = len(viewer.raw)
        await wait_until(lambda: "f" in layers_seen(viewer, mark), 6, what="f forwarded")
        # q, now unwanted, goes off after the delay; f stays
        await wait_until(lambda: asked(alice)[-1] == ["f"], 3, what="q switched off")

        # nobody watches: everything goes off
        await viewer.request("update_subscription", tracks=[{"id": track["id"], "subscribe": False}])
        await wait_until(lambda: asked(alice)[-1] == [], 3, what="all switched off")
        assert paused() == 3
        assert not viewer.errors and not alice.errors
        await alice.leave()
        assert paused() == 0  # the publisher left
    finally:
        await publisher.close()
        for p in (alice, viewer):
            await p.close()


@pytest.mark.parametrize("sfu_config", [config(dynacast_pause_delay=DELAY)])
async def test_a_track_without_simulcast_is_paused_and_resumed_whole(sfu: SfuController) -> None:
    alice = Peer(sfu, "dyn1", "alice")
    bob = Peer(sfu, "dyn1", "bob", decode=False)
    try:
        for p in (alice, bob):
            await p.join()
        await alice.publish(audio=False)
        track = (await bob.expect("track_published"))["track"]
        await wait_until(lambda: asked(alice) == [[]], 4, what="the unwatched camera paused")
        await bob.subscribe(track["id"])
        await wait_until(lambda: asked(alice)[-1] == [""], 3, what="the camera resumed")
    finally:
        for p in (alice, bob):
            await p.close()


@pytest.mark.parametrize("sfu_config", [config(dynacast=False, dynacast_pause_delay=0.0)])
async def test_without_dynacast_nothing_is_switched_off(sfu: SfuController) -> None:
    alice = Peer(sfu, "dyn2", "alice")
    publisher = RawPublisher(alice, dynacast=True)
    try:
        await alice.join()
        await publisher.publish(1280, 720)
        await asyncio.sleep(1.0)  # 20 timer ticks with nobody watching
        assert asked(alice) == []
    finally:
        await publisher.close()
        await alice.close()
