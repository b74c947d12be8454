"""Fixtures every integration test may use (the Redis servers themselves: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from faststream.redis import RedisBroker

from tests.integration.notify.conftest import roster_of
from tests.integration.stream_probes import UNREACHABLE


@pytest.fixture
async def publisher(clean_redis: str) -> AsyncIterator[RedisBroker]:
    """A FastStream broker on the test's Redis, publishing as the other services would."""
    broker = RedisBroker(clean_redis)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.stop()


@asynccontextmanager
async def volunteers_for(request: pytest.FixtureRequest, *default: str) -> AsyncIterator[str]:
    """VOLUNTEERS_URL for intake or dispatch under test: volunteers stood in (`roster_of`)
    with the rosters of the districts the test's marker names (`@pytest.mark.roster("d1")`:
    keys and desk tokens are made for those only), else of `default`; with neither, nobody
    (UNREACHABLE: every call to volunteers fails at once)."""
    marker = request.node.get_closest_marker("roster")
    if marker is None and not default:
        yield UNREACHABLE
        return
    async with roster_of(*(default if marker is None else marker.args)) as standin:
        yield standin.url
