"""Full garbage collections at quiet moments (shared.collector)."""

from __future__ import annotations

import asyncio
import gc

from shared.collector import FullCollections, collect_when_quiet


def test_a_full_collection_waits_until_the_last_is_old_enough_and_the_process_is_quiet() -> None:
    when = FullCollections(now=0.0, used=0.0, quiet_after_s=30, max_age_s=300, quiet_share=0.2)
    assert not when.due(now=10.0, used=0.1)   # quiet, but the last one is 10 s old
    assert not when.due(now=31.0, used=10.0)  # old enough, but 0.47 of a core busy
    assert not when.due(now=32.0, used=10.5)  # still busy: half a core over the last tick
    assert when.due(now=33.0, used=10.6)      # quiet: 0.1 of a core


def test_a_full_collection_comes_after_the_longest_wait_however_busy_the_process() -> None:
    when = FullCollections(now=0.0, used=0.0, quiet_after_s=30, max_age_s=300, quiet_share=0.2)
    used = 0.0
    for second in range(1, 300):
        used += 0.9
        assert not when.due(now=float(second), used=used)
    assert when.due(now=300.0, used=used + 0.9)


def test_the_wait_starts_again_after_each_collection() -> None:
    when = FullCollections(now=0.0, used=0.0, quiet_after_s=30, max_age_s=300, quiet_share=0.2)
    assert when.due(now=40.0, used=1.0)
    when.collected(now=40.1, used=1.05)
    assert not when.due(now=41.0, used=1.06)
    assert when.due(now=70.2, used=1.1)


async def test_the_task_makes_full_collections_itself_and_gives_them_back_when_it_ends() -> None:
    before = gc.get_threshold()
    full: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    gc.callbacks.append(seen)
    task = asyncio.create_task(collect_when_quiet(tick_s=0.01, quiet_after_s=0.0,
                                                  quiet_share=1e9))
    try:
        for _ in range(500):
            await asyncio.sleep(0.01)
            if full:
                break
        # while it runs, Python never starts a full collection by itself
        assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] >= 2**30
        assert full, "the task made no full collection"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        gc.callbacks.remove(seen)
    assert gc.get_threshold() == before
