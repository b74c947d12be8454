"""A roster import that ends while its lock is being renewed lets it go: the next import
takes it at once.

On Python 3.11 (the services' image) a task cancelled while redis-py writes a command can
carry on as if nothing happened: `asyncio.wait_for`, around every command's write, returns
the write's result when the write ends in the same turn of the event loop as the
cancellation (CPython gh-86296, fixed in 3.12). The import's end cancelled its lock's
renewer once and waited for it: a renewer writing just then carried on renewing, so the
import's request never ended, its lock was never let go and was renewed for as long as
volunteers ran, and every later import of any district was refused ("another roster import
is running; retry")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from services.volunteers.config import Settings
from services.volunteers.store import imports, keys
from shared.bus import create_redis

from .conftest import ADMIN_TOKEN

END_BOUND_S = 30  # an import's end takes milliseconds; past this one it never ends
# The import ends 0, 1, ... turns of the event loop after a renewal began: at one of them
# the renewal is being written as the end cancels it (which turn depends on redis-py)
TURNS = range(12)


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = create_redis(Settings(redis_url=clean_redis, admin_token=ADMIN_TOKEN))
    yield client
    await client.aclose(close_connection_pool=True)


async def test_an_import_ending_as_its_lock_is_renewed_lets_the_next_import_in(
        redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "LOCK_TTL_MS", 300)  # renewed every 100 ms
    renewal = asyncio.Event()
    real = imports.run_script

    async def noting_renewals(client: Any, script: str, keys: list[str], args: list[Any]) -> Any:
        if script == imports._RENEW:
            renewal.set()
        return await real(client, script, keys, args)

    monkeypatch.setattr(imports, "run_script", noting_renewals)
    for turns in TURNS:
        renewal.clear()

        async def an_import(turns: int = turns) -> None:
            async with imports.import_lock(redis):
                await renewal.wait()  # the import's steps run until its lock is renewed
                for _ in range(turns):
                    await asyncio.sleep(0)

        importing = asyncio.create_task(an_import())
        try:
            done, _ = await asyncio.wait({importing}, timeout=END_BOUND_S)
            assert done, f"the import never ended ({turns} turns after a renewal began)"
            importing.result()
            assert not await redis.exists(keys.import_lock()), f"its lock kept ({turns} turns)"
            async with imports.import_lock(redis, wait_s=0):  # the next import goes
                pass
        finally:
            if not importing.done():  # the renewer carried on: cancelled again, it ends
                for task in asyncio.all_tasks():
                    if task.get_name() == "roster-import-lock":
                        task.cancel()
                await importing
