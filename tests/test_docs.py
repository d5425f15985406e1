"""The docs name only metrics the server exposes, under the names Prometheus sees
(counters with ``_total``, histograms as the family or its ``_bucket``/``_sum``/``_count``), and
docs/OPERATIONS.md lists every one of them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from confserver.app import create_app
from confserver.main import instruments
from confserver.metrics import metrics_app
from confserver.store import MemoryStore

from .conftest import CREDS, base_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
METRIC_RE = re.compile(r"(?<![A-Za-z0-9_])conf_[a-z_]+\*?")
TYPE_RE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)
SUFFIXES = {"histogram": ("", "_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


def exposed_names(exposition: str) -> set[str]:
    """Every series name a scrape of ``exposition`` (Prometheus text format) can show, including
    those of families that have no sample yet."""
    names = set()
    for family, kind in TYPE_RE.findall(exposition):
        names.update(family + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


def unknown_metrics(text: str, exposed: set[str]) -> list[str]:
    """The ``conf_*`` names in ``text`` that the server does not expose; ``conf_sfu_*`` stands
    for every name with that prefix (and must match one)."""
    unknown = []
    for name in METRIC_RE.findall(text):
        if name.endswith("*"):
            known = any(e.startswith(name[:-1]) for e in exposed)
        else:
            known = name in exposed
        if not known:
            unknown.append(name)
    return unknown


@pytest.fixture
async def exposition(aiohttp_client: Any) -> AsyncIterator[str]:
    """What ``/metrics`` answers on a server built as ``confserver`` builds it (with media)."""
    cfg = base_config()
    metrics, _listener_metrics, media = instruments(cfg)
    assert media is not None, "the docs describe a server with media"
    app = create_app(cfg, store=MemoryStore(), credentials=CREDS, metrics=metrics, media=media)
    await aiohttp_client(app)  # started: its startup registers what it registers
    scraper = await aiohttp_client(metrics_app(metrics))
    resp = await scraper.get("/metrics")
    assert resp.status == 200
    yield await resp.text()


def test_the_checker_refuses_names_the_server_does_not_expose() -> None:
    exposed = exposed_names(
        "# TYPE conf_joins_total counter\n# TYPE conf_join_duration_seconds histogram\n"
    )
    text = (
        "`conf_joins_total`, `conf_join_duration_seconds_bucket`, `conf_join_*`: fine; "
        "`conf_joins` (no `_total`), `conf_nothing_total` and `conf_nope_*` are not exposed"
    )
    assert unknown_metrics(text, exposed) == ["conf_joins", "conf_nothing_total", "conf_nope_*"]


async def test_every_metric_named_in_the_docs_is_exposed(exposition: str) -> None:
    exposed = exposed_names(exposition)
    assert "conf_sfu_packets_total" in exposed and "conf_connections_open" in exposed
    wrong = {
        doc.relative_to(ROOT).as_posix(): sorted(set(unknown_metrics(doc.read_text(), exposed)))
        for doc in DOCS
    }
    assert {doc: names for doc, names in wrong.items() if names} == {}


async def test_operations_lists_every_metric_the_server_exposes(exposition: str) -> None:
    listed = set(METRIC_RE.findall((ROOT / "docs" / "OPERATIONS.md").read_text()))
    families = {
        family
        for family, _kind in TYPE_RE.findall(exposition)
        if family.startswith("conf_") and not family.endswith("_created")
    }
    assert sorted(families - listed) == []
