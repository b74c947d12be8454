"""The timer loop: acknowledge-by deadlines and follow-up dates kept in a Redis sorted set.

Each due timer is leased (its score pushed out) before it is handled and removed after,
so a crash while handling it makes it fire again, and two replicas never both handle it.
Each fires in a task of its own: one that waits (for an incident's lock held by a stalled
step, up to the lock's wait) never holds back the deadlines due after it.
"""

from __future__ import annotations

import asyncio
import logging

from . import store
from .config import Settings
from .engine import Dispatcher

log = logging.getLogger(__name__)

MAX_FIRING = 64  # timers under way at once in one process; the rest wait in Redis


async def run_timers(engine: Dispatcher, settings: Settings, stop: asyncio.Event) -> None:
    firing: dict[str, asyncio.Task[None]] = {}
    try:
        while not stop.is_set():
            try:
                room = MAX_FIRING - len(firing)
                due, leased_until = (await store.lease_due(
                    engine.redis, lease_s=settings.timer_lease_s, limit=room)
                    if room > 0 else ([], 0.0))
                for member in due:
                    if member in firing:  # still under way here (past its lease): let it end
                        continue
                    task = asyncio.create_task(_fire(engine, member, leased_until),
                                               name=f"timer-{member}")
                    firing[member] = task
                    task.add_done_callback(lambda _, m=member: firing.pop(m, None))
            except Exception as exc:  # Redis unavailable: keep trying, the timers are safe there
                log.warning("timer scan failed: %s", type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), timeout=settings.timer_interval_s)
            except TimeoutError:
                pass
    finally:
        for task in list(firing.values()):
            task.cancel()
        await asyncio.gather(*firing.values(), return_exceptions=True)


async def _fire(engine: Dispatcher, member: str, leased_until: float) -> None:
    try:
        again = await engine.fire_timer(member)
    except Exception:
        log.exception("timer %s failed; it fires again after its lease", member)
        return
    try:
        if again is not None:  # not to be handled yet (a deadline waiting for answers)
            await store.postpone_timer(engine.redis, member, again, leased_until)
        else:
            await store.finish_timer(engine.redis, member, leased_until)
    except Exception as exc:  # handled: firing again after the lease finds nothing to do
        log.warning("timer %s not removed: %s", member, type(exc).__name__)
