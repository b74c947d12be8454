"""The log of a loop's failures while Redis is away or refusing writes (a full disk: hours).

A loop that runs every fraction of a second and logs each failure floods the log for as long
as the state lasts. This logs the first failure, then a reminder at most every `remind_s`
while they go on, and the run that works again.
"""

from __future__ import annotations

import logging
import time

from shared.http import STORE_AWAY, describe_away


class RepeatedFailures:
    def __init__(self, log: logging.Logger, what: str, *, remind_s: float = 30.0) -> None:
        self.log = log
        self.what = what  # "timer scan", "fallback tick"
        self.remind_s = remind_s
        self.since: float | None = None
        self.count = 0
        self._reminded = 0.0

    def failed(self, exc: Exception, *, meanwhile: str = "") -> None:
        now = time.monotonic()
        self.count += 1
        why = (f"Redis {describe_away(exc)} ({type(exc).__name__})"
               if isinstance(exc, STORE_AWAY) else type(exc).__name__)
        if self.since is None:
            self.since = self._reminded = now
            self.log.warning("%s failed: %s%s (logged again every %g s while it lasts)",
                             self.what, why, meanwhile, self.remind_s)
        elif now - self._reminded >= self.remind_s:
            self._reminded = now
            self.log.warning("%s still failing after %.0f s (%d tries): %s", self.what,
                             now - self.since, self.count, why)

    def ended(self, *, now_what: str = "") -> None:
        if self.since is None:
            return
        self.log.warning("%s works again after %.0f s (%d tries failed)%s", self.what,
                         time.monotonic() - self.since, self.count, now_what)
        self.since, self.count = None, 0
