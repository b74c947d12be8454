"""The service runtime: what a started process does to its heap."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shared.runtime import _heap_frozen_after_startup


async def test_the_heap_is_frozen_once_the_app_has_started() -> None:
    seen: list[int] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        seen.append(gc.get_freeze_count())  # during startup: not yet
        yield

    app = _heap_frozen_after_startup(FastAPI(lifespan=lifespan))
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            # what the startup built is out of the collector's view from here on, and full
            # collections wait for quiet moments (shared.collector)
            assert seen == [0] and gc.get_freeze_count() > 0
            await asyncio.sleep(0)  # the task's first step
            assert gc.get_threshold()[2] >= 2**30
            assert any(t.get_name() == "full-collections" for t in asyncio.all_tasks())
        assert gc.get_threshold()[2] < 2**30
        assert not any(t.get_name() == "full-collections" for t in asyncio.all_tasks())
    finally:
        gc.unfreeze()
