"""The timer loop: acknowledge-by deadlines and follow-up dates kept in a Redis sorted set.

Each due timer is leased (its score pushed out) before it is handled and removed after,
so a crash while handling it makes it fire again, and two replicas never both handle it.
"""

from __future__ import annotations

import asyncio
import logging

from . import store
from .config import Settings
from .engine import Dispatcher

log = logging.getLogger(__name__)


async def run_timers(engine: Dispatcher, settings: Settings, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            due, leased_until = await store.lease_due(engine.redis, lease_s=settings.timer_lease_s)
            for member in due:
                try:
                    await engine.fire_timer(member)
                except Exception:
                    log.exception("timer %s failed; it fires again after its lease", member)
                else:
                    await store.finish_timer(engine.redis, member, leased_until)
        except Exception as exc:  # Redis unavailable: keep trying, the timers are safe there
            log.warning("timer scan failed: %s", type(exc).__name__)
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.timer_interval_s)
        except TimeoutError:
            pass
