"""The sweep of the queues of incidents waiting for a team: the backstop of the events that
offer a freed team to them (Dispatcher.retry_waiting).

Every WAITING_SWEEP_S, each district with incidents waiting has them offered the teams free
in dispatch's view (Dispatcher.sweep_waiting): a team whose offer an event should have made
and did not (the event missed, or the offer failed after the step that freed the team: a
close made no second time) is not left free while an incident waits for it. A district
with no team free costs one script a round. Every replica sweeps; an incident one tried is
left to the others for AGAIN_AFTER_ROUNDS rounds, and its lock and the claim rules keep
two sweeps to one order per team.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

from shared.http import TryAgain

from . import store
from .engine import Dispatcher

log = logging.getLogger(__name__)

# An incident a sweep tried (a team seemed free for it) is tried by a sweep again only this
# many rounds later, so that those that keep failing (a team the search then does not send)
# do not take every round's tries from the incidents behind them.
AGAIN_AFTER_ROUNDS = 3


async def keep_sweeping(engine: Dispatcher, stop: asyncio.Event, *, every_s: float) -> None:
    """Sweep every `every_s` until `stop`; a round that failed is made again at the next."""
    # Where each district's next round looks on from (a queue longer than one round looks
    # through); this replica's own.
    cursors: dict[str, float] = {}
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        if stop.is_set():
            return
        try:
            for district in await store.waiting_districts(engine.redis):
                try:
                    after = await engine.sweep_waiting(
                        district, after=cursors.pop(district, None),
                        again_after_s=every_s * AGAIN_AFTER_ROUNDS)
                except TryAgain as exc:  # an incident's lock held long: the next round
                    log.warning("waiting incidents of %s: sweep stopped: %s", district,
                                type(exc).__name__)
                    continue
                except (RedisError, TimeoutError):
                    raise
                except Exception:  # one odd record: the districts after it are swept still
                    log.exception("waiting incidents of %s: sweep failed", district)
                    continue
                if after is not None:
                    cursors[district] = after
        except (RedisError, TimeoutError) as exc:  # the next round tries again
            log.warning("waiting incidents sweep failed: %s", type(exc).__name__)
        except Exception:  # one odd record must not end the sweeps for good
            log.exception("waiting incidents sweep failed")
