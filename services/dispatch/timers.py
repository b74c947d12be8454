"""The timer loop: acknowledge-by deadlines and follow-up dates kept in a Redis sorted set.

Each due timer is leased (its score pushed out by TIMER_LEASE_S) before it is handled and
removed after, so a crash while handling it makes it fire again, and two replicas never
both handle it. The lease is short and renewed every third of it while the firing runs:
a firing that waits (for an incident's lock held by a stalled step, up to the lock's wait)
keeps its timer, and a replica that dies (SIGKILL) lets go of its timers within one lease,
about when its incidents' locks free (a P1 whose deadline it was firing waits seconds for
its next team, not another deadline). A firing still running after HANDLER_TIMEOUT_S is
taken as hung and cancelled: renewed for ever, it would keep its timer from ever firing
again. Each fires in a task of its own: one that waits never holds back the deadlines due
after it, and one that fails fires again once its lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from shared.failures import RepeatedFailures

from . import store
from .config import Settings
from .engine import Dispatcher

log = logging.getLogger(__name__)

MAX_FIRING = 64  # timers under way at once in one process; the rest wait in Redis


class Leases:
    """The leases of the timers firing in this process, each with the time it runs out."""

    def __init__(self, redis: Redis, *, lease_s: float) -> None:
        self.redis = redis
        self.lease_s = lease_s
        self.until: dict[str, float] = {}
        # A renewal never crosses a firing's end: the end would be judged against the lease
        # the renewal was replacing, and the handled timer left to fire again.
        self._moving = asyncio.Lock()

    async def keep(self, done: asyncio.Event) -> None:
        """Renews every lease held here every third of a lease, until `done`."""
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=self.lease_s / 3)
            if self.until and not done.is_set():
                await self._move(time.time() + self.lease_s)

    async def hand_back(self) -> None:
        """The timers whose firing here was cut off (the process stops) due at once: the
        next replica fires them without waiting for their lease."""
        if self.until:
            await self._move(time.time())

    async def _move(self, to: float) -> None:
        async with self._moving:
            held = dict(self.until)
            try:
                moved = await store.move_leases(self.redis, held, to)
            except Exception as exc:  # Redis away: nobody takes a timer from it meanwhile
                log.warning("timer leases not renewed: %s", type(exc).__name__)
                return
            for member in moved:
                if self.until.get(member) == held[member]:  # not dropped meanwhile
                    self.until[member] = to

    def drop(self, member: str) -> None:
        """No longer renewed: the timer fires again once its lease runs out."""
        self.until.pop(member, None)

    @contextlib.asynccontextmanager
    async def ending(self, member: str) -> AsyncIterator[float]:
        """The lease a firing's end is judged against; no longer renewed from then."""
        async with self._moving:
            try:
                yield self.until[member]
            finally:
                self.drop(member)


async def run_timers(engine: Dispatcher, settings: Settings, stop: asyncio.Event) -> None:
    leases = Leases(engine.redis, lease_s=settings.timer_lease_s)
    # Ended, not cancelled: a renewal cut off after Redis made it would leave this process
    # the leases it replaced, and hand_back would hand none back.
    leased = asyncio.Event()
    renewing = asyncio.create_task(leases.keep(leased), name="timer-leases")
    firing: dict[str, asyncio.Task[None]] = {}
    # a scan every timer_interval_s: not a log line at each, for as long as Redis is away
    failing = RepeatedFailures(log, "timer scan")
    try:
        while not stop.is_set():
            try:
                room = MAX_FIRING - len(firing)
                due, leased_until = (await store.lease_due(
                    engine.redis, lease_s=settings.timer_lease_s, limit=room,
                    under_way=list(firing)) if room > 0 else ([], 0.0))
                for member in due:
                    leases.until[member] = leased_until
                    task = asyncio.create_task(
                        _fire(engine, member, leases, timeout_s=settings.handler_timeout_s),
                        name=f"timer-{member}")
                    firing[member] = task
                    task.add_done_callback(lambda _, m=member: firing.pop(m, None))
            except Exception as exc:  # Redis unavailable: keep trying, the timers are safe there
                failing.failed(exc, meanwhile="; the timers wait in Redis, scanning on")
            else:
                failing.ended(now_what="; due timers fire now")
            try:
                await asyncio.wait_for(stop.wait(), timeout=settings.timer_interval_s)
            except TimeoutError:
                pass
    finally:
        for task in list(firing.values()):
            task.cancel()
        await asyncio.gather(*firing.values(), return_exceptions=True)
        leased.set()
        await renewing
        await leases.hand_back()


async def _fire(engine: Dispatcher, member: str, leases: Leases, *, timeout_s: float) -> None:
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            again = await engine.fire_timer(member)
    except Exception as exc:
        leases.drop(member)
        if isinstance(exc, TimeoutError) and deadline.expired():
            log.error("timer %s still firing after %g s: cancelled as hung; it fires again "
                      "after its lease", member, timeout_s)
        else:
            log.exception("timer %s failed; it fires again after its lease", member)
        return
    try:
        async with leases.ending(member) as leased_until:
            if again is not None:  # not to be handled yet (a deadline waiting for answers)
                await store.postpone_timer(engine.redis, member, again, leased_until)
            else:
                await store.finish_timer(engine.redis, member, leased_until)
    except Exception as exc:  # handled: firing again after the lease finds nothing to do
        log.warning("timer %s not removed: %s", member, type(exc).__name__)
