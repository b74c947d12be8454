"""Optimistic transactions: WATCH what a decision reads, then write it all in one MULTI/EXEC."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

T = TypeVar("T")


ATTEMPTS = 20


class Contended(Exception):
    """The keys kept changing under us: the caller may retry."""


async def contention_pause(attempt: int) -> None:
    """A short random wait before the next attempt of an optimistic write that lost a race."""
    await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))


async def atomically(
    redis: Redis, watch: Sequence[str], body: Callable[[Pipeline], Awaitable[T]],
    *, attempts: int = ATTEMPTS,
) -> T:
    """Run `body` on a pipeline watching `watch`; it reads, calls `pipe.multi()`, queues writes.

    Reads through the pipeline before `multi()` run at once on the watching connection. If
    any watched key changes before EXEC, the whole body runs again on fresh data.
    """
    for attempt in range(attempts):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                if watch:
                    await pipe.watch(*watch)
                result = await body(pipe)
                if not pipe.explicit_transaction:
                    pipe.multi()
                await pipe.execute()
                return result
            except WatchError:
                await contention_pause(attempt)
    raise Contended(f"gave up after {attempts} concurrent changes")
