"""Full garbage collections at quiet moments, not in the middle of a burst of incidents.

CPython runs a full (generation 2) collection by itself whenever enough objects have
survived the younger collections, at whatever moment that happens, and it stops the whole
process for as long as it walks every tracked object that is not frozen. In notify with the
benchmark's 400 device sockets open (~106,000 objects, created after the startup's
`gc.freeze`) one took 69-97 ms of wall time in the middle of the 200 incidents/s run on the
two-core bench machine: no order was pushed meanwhile, and those ms were the run's p99.

`collect_when_quiet` turns the automatic full collections off (generation 2's threshold out
of reach) and makes them itself: once the last one is `quiet_after_s` old and the process
used less than `quiet_share` of a core over the last `tick_s`, or once it is `max_age_s`
old whatever the load, so that cyclic garbage that reached the oldest generation is freed
within minutes. Young collections (generations 0 and 1) still run by themselves: they walk
only recent objects. A command room's district sees tens of incidents a day, so the quiet
moment comes within seconds; only a sustained overload waits for `max_age_s`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

# generation 2 is collected automatically after this many generation-1 collections: never
_OUT_OF_REACH = 2**30


class FullCollections:
    """When to collect: fed the clock and the process's CPU time once a tick."""

    def __init__(self, *, now: float, used: float, quiet_after_s: float = 30.0,
                 max_age_s: float = 300.0, quiet_share: float = 0.1) -> None:
        self.quiet_after_s = quiet_after_s
        self.max_age_s = max_age_s
        self.quiet_share = quiet_share  # of one core
        self._last_full = now
        self._wall, self._used = now, used

    def due(self, *, now: float, used: float) -> bool:
        """Whether to collect now; `used` is the process's CPU seconds so far."""
        share = (used - self._used) / max(now - self._wall, 1e-6)
        self._wall, self._used = now, used
        age = now - self._last_full
        return age >= self.max_age_s or (age >= self.quiet_after_s and share < self.quiet_share)

    def collected(self, *, now: float, used: float) -> None:
        self._last_full = now
        self._wall, self._used = now, used


async def collect_when_quiet(*, tick_s: float = 0.25, **policy: float) -> None:
    """Until cancelled; the automatic full collections come back when it ends.

    The tick is short because it judges the recent past: averaged over a whole second, the
    first half second of a burst could still look quiet and meet a collection."""
    young, middle, oldest = gc.get_threshold()
    gc.set_threshold(young, middle, _OUT_OF_REACH)
    try:
        when = FullCollections(now=time.monotonic(), used=time.process_time(), **policy)
        while True:
            await asyncio.sleep(tick_s)
            started = time.monotonic()
            if when.due(now=started, used=time.process_time()):
                found = gc.collect()
                when.collected(now=time.monotonic(), used=time.process_time())
                log.debug("full collection: %.1f ms, %d unreachable",
                          (time.monotonic() - started) * 1000, found)
    finally:
        gc.set_threshold(young, middle, oldest)
