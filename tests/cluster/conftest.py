"""Fixtures of the scenario suite: the three set-ups, started once per session, and three fresh
nodes for the scenarios that kill or drain one."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import KINDS, Cluster, start_cluster


def _kinds(kinds: tuple[str, ...]) -> list[Any]:
    """The set-ups as parameters; those with a redis-server carry the ``redis`` mark."""
    return [pytest.param(k, marks=pytest.mark.redis) if k.startswith("nodes") else k for k in kinds]


@pytest.fixture(scope="session", params=_kinds(KINDS))
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """``single``: one process, memory store; ``workers``: one process with two media workers;
    ``nodes``: three processes sharing one redis-server; ``nodes-tls``: the same with dev TLS, a
    certificate of each node's own (relays pin the owner's certificate). Shared by the tests that leave the
    service as they found it (each uses rooms of its own)."""
    made = start_cluster(request.param, tmp_path_factory.mktemp(f"cluster-{request.param}"))
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def fresh_nodes(tmp_path: Path) -> Iterator[Cluster]:
    """Three nodes of this test's own (the test kills, drains or restarts something)."""
    made = start_cluster("nodes", tmp_path)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture(params=_kinds(("nodes", "nodes-tls")))
def fresh_nodes_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """``fresh_nodes``, without and with TLS between the nodes."""
    made = start_cluster(request.param, tmp_path)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def room() -> str:
    return "sc-" + secrets.token_hex(4)


@pytest.fixture
async def people() -> AsyncIterator[list[Any]]:
    """Clients a test made (``Member``/``MediaMember``), closed after it, whatever happened."""
    made: list[Any] = []
    yield made
    for who in made:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(who.close(), 10)
