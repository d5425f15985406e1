"""Two Chromium pages loaded from two different nodes (``https://127.0.0.1:PORT_A/r/ROOM`` and
``…PORT_B…``, dev TLS, a certificate of each node's own) see each other's video."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_media import COLLECT_PEER_CONNECTIONS, INBOUND_TOTALS, wait_for_video
from tests.conftest import skip_or_fail

from .harness import Cluster, start_cluster, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.redis]


def _two_pages(links: dict[str, str]) -> dict[str, float]:
    """Runs in a thread of its own: Playwright's sync API runs an event loop of its own, which the
    asyncio tests' loop must not meet. Returns the seconds until each page decoded the other."""
    from playwright.sync_api import sync_playwright

    from tests.browser.helpers import Crowd

    took: dict[str, float] = {}
    with sync_playwright() as pw:
        # each node has a dev CA of its own, which this Chromium does not know
        args = [*CHROMIUM_ARGS, "--ignore-certificate-errors"]
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        crowd = Crowd(browser, None, "cluster-browser")  # type: ignore[arg-type]  # links are given
        failed = True
        try:
            started = time.monotonic()
            pages = {who: crowd.open("", who, link=link, init_script=COLLECT_PEER_CONNECTIONS)
                     for who, link in links.items()}  # fmt: skip
            for who, person in pages.items():
                other = next(o for o in pages if o != who)
                wait_for_video(person, other, timeout_ms=30_000)
                person.poll(INBOUND_TOTALS, lambda t: t["framesDecoded"] > 10, 15, "frames decoded")
                took[who] = time.monotonic() - started
                assert person.page.evaluate("document.body.dataset.media") == "connected"
                assert person.tiles().count() == 2
            failed = False
        finally:
            crowd.close(failed=failed)
            browser.close()
    return took


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"{CHROMIUM} is not installed (Debian package chromium)")
    return CHROMIUM


@pytest.fixture
def tls_nodes(tmp_path: Path) -> Iterator[Cluster]:
    made = start_cluster("nodes-tls", tmp_path)
    try:
        yield made
    finally:
        made.stop()


async def test_pages_from_two_nodes_see_each_others_video(
    tls_nodes: Cluster, room: str, chromium: str
) -> None:
    cluster = tls_nodes
    assert cluster.url(0).startswith("https://")
    links = {
        "ana": f"{cluster.url(0)}/r/{room}#token={await cluster.token(0, room, 'ana')}",
        "budi": f"{cluster.url(2)}/r/{room}#token={await cluster.token(2, room, 'budi')}",
    }
    with ThreadPoolExecutor(1) as pool:
        took = await asyncio.wrap_future(pool.submit(_two_pages, links))
    print(f"pages from two nodes decode each other's video after {took}")
    assert set(took) == {"ana", "budi"}
    for i in range(3):  # the pages closed: nobody is left in the room on any node
        await wait_for(lambda i=i: _empty(cluster, i, room), 10, f"room empty on node {i}")


async def _empty(cluster: Cluster, i: int, room: str) -> bool:
    return not await cluster.participants(i, room)
