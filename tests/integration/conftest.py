"""Fixtures every integration test may use (the Redis servers themselves: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from faststream.redis import RedisBroker


@pytest.fixture
async def publisher(clean_redis: str) -> AsyncIterator[RedisBroker]:
    """A FastStream broker on the test's Redis, publishing as the other services would."""
    broker = RedisBroker(clean_redis)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.stop()
