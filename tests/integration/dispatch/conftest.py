"""Fixtures shared by dispatch's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from faststream.redis import RedisBroker


@pytest.fixture
async def publisher(clean_redis: str) -> AsyncIterator[RedisBroker]:
    """A broker that publishes to the test's Redis, as the other services would."""
    broker = RedisBroker(clean_redis)
    await broker.connect()
    yield broker
    await broker.stop()
