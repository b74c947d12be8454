"""The sweep that ends the check-ins nobody ended (a dead phone, a forgotten check-out).

A check-in older than the longest shift plus a grace (`domain.status.CheckInLimit`) ends as
if its member had checked out at the cap: through the team's ordinary transition
(`store.teams.transition`), so the state, the patrol points (to the cap) and the
`unit.status` that tells dispatch commit together, once. Every transition ends such
check-ins first anyway; the sweep is for the teams nothing else touches, such as a team
whose members all went home without checking out, which dispatch would otherwise keep
offering incidents nobody answers.

The teams to look at are found in `keys.check_ins()` (team -> earliest check-in, written
with each change of who is on a shift), so a round reads only the teams due. The index is in
Redis: a restart loses nothing; each process also indexes, when it starts, the states
stored before the index was kept. Two replicas sweeping at once are safe: a transition
writes only if the state is still the one it read, and the same state ends the same
check-ins at the same times (the ledger's ids then admit each award once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.events import utcnow
from shared.scripts import run_script

from ..domain.status import CheckInLimit
from . import keys
from .teams import Decision, TeamView, first_check_in_ms, team_states, transition
from .tx import Contended

log = logging.getLogger(__name__)

ROUND_TEAMS = 200  # teams read at once; a round goes on while they keep coming
ROUNDS_MAX = 50  # batches per round at most (a team that stays contended waits for the next)
INDEX_PAGE = 500

# A team no longer on the roster leaves the index (only if it is still gone: an import may
# have brought the id back meanwhile, with a check-in of its own).
_FORGET = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.call('ZREM', KEYS[2], ARGV[1]) end
return 0
"""


def _unchanged(view: TeamView) -> Decision:
    return Decision(view.state)


async def end_run_out(redis: Redis, *, now: datetime, limit: CheckInLimit,
                      ledger_ttl_s: int | None) -> int:
    """End the check-ins that ran out by `now`; returns how many teams changed."""
    due_ms = int(limit.due_before(now).timestamp() * 1000)
    changed = 0
    for _ in range(ROUNDS_MAX):
        due = await redis.zrangebyscore(keys.check_ins(), "-inf", due_ms, start=0,
                                        num=ROUND_TEAMS)
        for team_id in due:
            try:
                applied = await transition(redis, team_id=team_id, decide=_unchanged, now=now,
                                           ledger_ttl_s=ledger_ttl_s, check_ins=limit,
                                           reindex=True)
            except Contended:
                log.warning("team %s kept changing; its check-ins are looked at next round",
                            team_id)
                continue
            if applied is None:
                await run_script(redis, _FORGET, [keys.team(team_id), keys.check_ins()],
                                 [team_id])
            elif applied.decision.state != applied.before.state:
                changed += 1
        if len(due) < ROUND_TEAMS:
            break
    return changed


async def index_stored(redis: Redis) -> int:
    """Index the check-ins of states stored before `keys.check_ins()` was kept (an upgrade);
    an entry already there keeps the earlier time (ZADD LT). Returns the teams indexed."""
    indexed, start = 0, 0
    while True:
        team_ids = await redis.zrange(keys.index("teams", None), start, start + INDEX_PAGE - 1)
        if not team_ids:
            return indexed
        firsts = {t: first for t, state in zip(team_ids, await team_states(redis, team_ids),
                                               strict=True)
                  if (first := first_check_in_ms(state)) is not None}
        if firsts:
            await redis.zadd(keys.check_ins(), firsts, lt=True)
            indexed += len(firsts)
        start += INDEX_PAGE


async def keep_ending(redis: Redis, stop: asyncio.Event, *, limit: CheckInLimit,
                      ledger_ttl_s: int | None, every_s: float) -> None:
    """Sweep every `every_s` until `stop`; a failed round is tried again at the next."""
    indexed = False
    while not stop.is_set():
        try:
            if not indexed:
                await index_stored(redis)
                indexed = True
            ended = await end_run_out(redis, now=utcnow(), limit=limit,
                                      ledger_ttl_s=ledger_ttl_s)
            if ended:
                log.info("ended the run-out check-ins of %d team(s)", ended)
        except (RedisError, OSError) as exc:
            log.warning("ending run-out check-ins failed: %s", type(exc).__name__)
        except Exception:  # a bug must not stop the sweep for good
            log.exception("ending run-out check-ins failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)
