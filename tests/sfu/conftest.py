"""An SfuController on loopback for each test, closed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from confserver.config import SfuConfig
from sfu.controller import SfuController

LOOPBACK_SFU = SfuConfig(bind_addresses=("127.0.0.1",), max_audio_streams=3)


@pytest.fixture
def sfu_config() -> SfuConfig:
    return LOOPBACK_SFU


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def sfu(sfu_config: SfuConfig, registry: CollectorRegistry) -> AsyncIterator[SfuController]:
    controller = SfuController(sfu_config, registry)
    try:
        yield controller
    finally:
        await controller.close()


def config(**overrides: object) -> SfuConfig:
    return replace(LOOPBACK_SFU, **overrides)  # type: ignore[arg-type]
