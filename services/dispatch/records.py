"""How long an ended incident's record is kept. Redis holds everything in memory and, once
full, refuses writes (new incidents among them): no record may stay for ever.

- RECORDS_DAYS after its last change, an ended incident with no live order and no timer
  due keeps only its figures: the fields the board, the KPIs and the heat map read
  (category, priority, place, zone, times, outcome, who handled it, the filing that went
  overdue), marked `archived_at`; it leaves the index of hand-overs (store.HANDOVERS).
  Its timeline, orders, offered teams and the count of its linked reports go, and so do
  the caller's details, the description, the address and the teams' own words kept
  beside the timeline (what a hand-over or a revisit said): personal data kept no longer
  than the case needs.
- KPI_DAYS after it was reported, an archived incident goes altogether.

Each incident is changed under its lock, so a sweep never meets a step half-way, and
several replicas may sweep at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.events import utcnow
from shared.scripts import RUN_COMMANDS_LUA, commands_as_args, queued_commands, run_script

from . import domain, store
from .locks import IncidentLocks

log = logging.getLogger(__name__)

# the teams' words (handover_note, followup_note) are copies of the timeline's, kept for
# the station's next order: free text, as the caller's description is
DROPPED = ("caller", "description", "address", "trace_ctx", "handover_note", "followup_note")
PAGE = 200
# An incident's timers that still act once it has ended (an ack deadline is its order's; a
# zone look-up finds the incident ended and stops)
TIMER_KINDS = ("followup", "handover")


def overdue_filings(inc: dict[str, str], orders: list[dict[str, str]], now: datetime) -> list[str]:
    """The incident's hand-over whose filing went past its due (受立案超期: filed late, still
    unfiled after it, or closed by the command room after it; domain.filing_of): none or
    one, named by the order the filing is judged on, or by the incident's own id when no
    station order was ever made (nobody of the station on shift since the hand-over). An
    archived incident's, as stored when it was archived; an earlier version stored there
    the orders then unfiled past their due (a declined one among them, a late filing not)."""
    if not inc.get("handed_over_at"):
        return []
    if inc.get("archived_at"):  # its orders are gone: as they stood when it was archived
        return list(json.loads(inc.get("filings_overdue") or "[]"))
    filing = _filing(inc, orders)
    return [filing.order_id or inc["incident_id"]] if filing is not None and filing.went_overdue(
        now) else []


def unfiled_filings(inc: dict[str, str], orders: list[dict[str, str]], now: datetime) -> list[str]:
    """The incident's hand-over its station still owes past the due, named as
    overdue_filings names it: the inspector's work list. None once archived (an archived
    incident has no live order)."""
    if not inc.get("handed_over_at") or inc.get("archived_at"):
        return []
    filing = _filing(inc, orders)
    return [filing.order_id or inc["incident_id"]] if filing is not None and filing.overdue(
        now) else []


@dataclass(frozen=True)
class FilingOutcome:
    """How a hand-over's filing stands, as the KPIs' filings due count it: filed by its due,
    not filed by it (受立案超期: filed late, still owed past it, or closed by the command
    room after it), and of those, still owed."""

    in_time: bool
    overdue: bool
    unfiled: bool


def filing_outcome(inc: dict[str, str], orders: list[dict[str, str]],
                   now: datetime) -> FilingOutcome | None:
    """The hand-over's filing as judged for the overdue ones (domain.filing_of, on the
    order that counts); None when none is judged (not handed over, or no due is known). An
    archived one's from what was stored when it was archived: overdue if a filing was
    overdue then, else filed in time if the station filed it (the incident resolved); a
    case the command room closed before its due is neither."""
    if not inc.get("handed_over_at"):
        return None
    if inc.get("archived_at"):  # its orders are gone
        overdue = bool(json.loads(inc.get("filings_overdue") or "[]"))
        return FilingOutcome(in_time=not overdue and inc.get("status") == "resolved",
                             overdue=overdue, unfiled=False)
    filing = _filing(inc, orders)
    if filing is None:
        return None
    return FilingOutcome(
        in_time=filing.filed_at is not None and filing.filed_at <= filing.due,
        overdue=filing.went_overdue(now), unfiled=filing.overdue(now))


def _filing(inc: dict[str, str], orders: list[dict[str, str]]) -> domain.Filing | None:
    """domain.filing_of for a handed-over incident: owed while it is still handed over, due
    by the hand-over's own `filing_due` while no station order carries it (kept since this
    version: a hand-over made before that has none, and is judged on its orders alone)."""
    return domain.filing_of(orders, closed_at=_time(inc.get("closed_at")),
                            handed_over=inc.get("status") == "handed_over",
                            due=_time(inc.get("filing_due")))


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


INDEXED = "dispatch:ended:indexed"  # set once the incidents ended before ENDED was kept are in it
HANDOVERS_INDEXED = "dispatch:handovers:indexed"  # set once the earlier hand-overs are in it


async def _index_once(redis: Redis, *, mark: str, index: str, field: str,
                      score: Callable[[str], float | None], archived_too: bool = False) -> int:
    """Once per Redis (`mark`): every incident not archived (`archived_too`: archived or
    not) whose `field` has a value that `score` scores (None: left out) joins `index`, read
    by ZSCAN about 500 at a time (every incident there throughout is seen, however many the
    retention removes meanwhile: pages by position skipped some). The number added."""
    if await redis.exists(mark):
        return 0
    added, cursor = 0, 0
    while True:
        cursor, pairs = await redis.zscan(store.ALL_INCIDENTS, cursor, count=500)
        page = [incident_id for incident_id, _ in pairs]
        async with redis.pipeline(transaction=False) as pipe:
            for incident_id in page:
                pipe.hmget(store.incident_key(incident_id), field, "archived_at")
            found = await pipe.execute()
        scores = {incident_id: at for incident_id, (value, archived) in zip(
            page, found, strict=True)
            if value and (archived_too or not archived) and (at := score(value)) is not None}
        if scores:
            added += await redis.zadd(index, scores, nx=True)
        if cursor == 0:
            break
    await redis.set(mark, "1")
    return added



def _one_at_a_time(catch_up: Callable[[Redis], Awaitable[int]]) -> Callable[[Redis], Awaitable[int]]:
    """A catch-up of an earlier version's incidents, run once at a time in this process:
    the board starts one on its first read after an upgrade and every console polls every
    3 s, each poll beginning a scan of every incident kept while the first still ran,
    against the Redis the incidents' path shares. Asked meanwhile, it waits for the one
    running (shielded: a request given up on does not stop it) and answers what it did."""
    running: dict[int, asyncio.Task[int]] = {}

    @functools.wraps(catch_up)
    async def once(redis: Redis) -> int:
        task = running.get(id(redis))
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(catch_up(redis))
            running[id(redis)] = task
        return await asyncio.shield(task)

    return once


@_one_at_a_time
async def index_ended_before(redis: Redis) -> int:
    """Once per Redis: the incidents that ended before this version kept ENDED join it, as
    if they ended now (their RECORDS_DAYS start from the upgrade). The number added."""
    return await _index_once(
        redis, mark=INDEXED, index=store.ENDED, field="status",
        score=lambda status: time.time() if status in store.ENDED_STATUSES else None)


@_one_at_a_time
async def index_handovers_before(redis: Redis) -> int:
    """Once per Redis: the hand-overs made before this version kept store.HANDOVERS join it
    (the archived ones excepted: they owe nothing), so the inspector's list of filings
    overdue finds them however old. The number added."""
    return await _index_once(redis, mark=HANDOVERS_INDEXED, index=store.HANDOVERS,
                             field="handed_over_at", score=_timestamp)


def _timestamp(value: str) -> float:
    try:
        return datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError):  # a record stored broken: listed, as handed over now
        return time.time()


FILINGS_DUE_INDEXED = "dispatch:filings-due-indexed"  # set once the earlier are in it


@_one_at_a_time
async def index_filings_due_before(redis: Redis) -> int:
    """Once per Redis: the hand-overs made before this version kept store.FILINGS_DUE join
    it at their own `filing_due` (archived ones too: their figures are kept), so the KPIs'
    filings due in a period find them. A hand-over made before the incident kept its
    `filing_due` (an earlier version still) has none, and is not in it. The number added."""
    return await _index_once(redis, mark=FILINGS_DUE_INDEXED, index=store.FILINGS_DUE,
                             field="filing_due", score=_due_timestamp, archived_too=True)


def _due_timestamp(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError):  # a record stored broken: no day it fell due on
        return None


FLAGGED_INDEXED = "dispatch:flagged-indexed"  # set once the earlier flagged are in store.FLAGGED


@_one_at_a_time
async def index_flagged_before(redis: Redis) -> int:
    """Once per Redis: the incidents flagged before this version kept store.FLAGGED join it
    (and their district's), so the board's flagged incidents are found however long ago
    reported. Read by ZSCAN (every incident there throughout is seen, however many the
    retention removes meanwhile: pages by position would skip some), a page of about 500
    at a time, each in one script (store.index_flagged). The number added."""
    if await redis.exists(FLAGGED_INDEXED):
        return 0
    added, cursor = 0, 0
    while True:
        cursor, page = await redis.zscan(store.ALL_INCIDENTS, cursor, count=500)
        if page:
            added += await store.index_flagged(redis, page)
        if cursor == 0:
            break
    await redis.set(FLAGGED_INDEXED, "1")
    return added


RECEIVED_INDEXED = "dispatch:received-indexed"  # set once the earlier are in store.RECEIVED

# Incidents of an earlier version (id, score by receipt) joining the index by receipt
# (KEYS[1]) and their district's, each only while its record is there: one _forget took
# out between the read of its record and this is not put back, for good.
_INDEX_RECEIVED = """
local added = 0
for i = 1, #ARGV, 2 do
  local district = redis.call('HGET', 'dispatch:incident:' .. ARGV[i], 'district')
  if district then
    added = added + redis.call('ZADD', KEYS[1], 'NX', ARGV[i + 1], ARGV[i])
    redis.call('ZADD', 'dispatch:received:' .. district, 'NX', ARGV[i + 1], ARGV[i])  -- received_key
  end
end
return added
"""


@_one_at_a_time
async def index_received_before(redis: Redis) -> int:
    """Once per Redis: the incidents made before this version kept store.RECEIVED join it
    (and their district's), at when dispatch received them (`received_at`; a record without
    one, at its report's time), so the board in the order received lists them too. Read by
    ZSCAN from store.ALL_INCIDENTS, about 500 at a time. The number added."""
    if await redis.exists(RECEIVED_INDEXED):
        return 0
    added, cursor = 0, 0
    while True:
        cursor, pairs = await redis.zscan(store.ALL_INCIDENTS, cursor, count=500)
        async with redis.pipeline(transaction=False) as pipe:
            for incident_id, _ in pairs:
                pipe.hget(store.incident_key(incident_id), "received_at")
            found = await pipe.execute()
        args: list[str] = []
        for (incident_id, reported), received in zip(pairs, found, strict=True):
            args += [incident_id, repr(_received_score(received, reported))]
        if args:
            added += int(await run_script(redis, _INDEX_RECEIVED, [store.RECEIVED], args))
        if cursor == 0:
            break
    await redis.set(RECEIVED_INDEXED, "1")
    return added


def _received_score(received: str | None, reported: float) -> float:
    try:
        return datetime.fromisoformat(received).timestamp() if received else reported
    except (ValueError, OverflowError):  # a record stored broken: where its report is
        return reported


STATION_ORDERS_INDEXED = "dispatch:station-orders-indexed"  # set once the earlier are indexed


@_one_at_a_time
async def index_station_orders_before(redis: Redis) -> int:
    """Once per Redis: the live hand-over and follow-up orders made before this version
    indexed them by team join their team's index, so that the team's removal from the
    roster hands them on. Only an ended incident (handed over, filed) holds one: read from
    store.ENDED (filled by index_ended_before first) by ZSCAN, about 500 at a time. The
    number added."""
    if await redis.exists(STATION_ORDERS_INDEXED):
        return 0
    added, cursor = 0, 0
    while True:
        cursor, page = await redis.zscan(store.ENDED, cursor, count=500)
        if page:
            added += await store.index_station_orders(redis, [i for i, _ in page])
        if cursor == 0:
            break
    await redis.set(STATION_ORDERS_INDEXED, "1")
    return added


async def archive_ended(redis: Redis, locks: IncidentLocks, *, ended_before: float) -> int:
    """Archive the incidents ended (last changed) before `ended_before`; the number archived.
    One still in hand (a live order, a follow-up or hand-over timer) is looked at again a
    whole RECORDS_DAYS later; one that is open again leaves the list until it ends."""
    archived = 0
    while True:
        due = await redis.zrangebyscore(store.ENDED, "-inf", ended_before, start=0, num=PAGE)
        if not due:
            return archived
        for incident_id in due:
            async with locks.hold(incident_id):
                archived += await _archive(redis, incident_id)
        if len(due) < PAGE:
            return archived


async def _archive(redis: Redis, incident_id: str) -> int:
    state = await store.incident_state(redis, incident_id)
    inc = state.incident
    if inc is None or inc.get("archived_at") or inc["status"] not in store.ENDED_STATUSES:
        await redis.zrem(store.ENDED, incident_id)
        return 0
    timers = [f"{kind}:{incident_id}" for kind in TIMER_KINDS]
    if (any(o["state"] in domain.LIVE_ORDER_STATES for o in state.orders)
            or any(score is not None for score in await redis.zmscore(store.TIMERS, timers))):
        await redis.zadd(store.ENDED, {incident_id: time.time()})
        return 0
    now = utcnow()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(store.incident_key(incident_id), *DROPPED)
        pipe.hset(store.incident_key(incident_id), mapping={
            "archived_at": now.isoformat(),
            "filings_overdue": json.dumps(overdue_filings(inc, state.orders, now))})
        # a step whose lock expired before this finds the incident changed: it writes nothing
        pipe.hincrby(store.incident_key(incident_id), "seq", 1)
        pipe.delete(store.timeline_key(incident_id), store.orders_key(incident_id),
                    store.offered_key(incident_id),
                    # the reports linked to it, by source (archived by now themselves)
                    store.linked_key(incident_id), store.linked_sources_key(incident_id),
                    *(store.order_key(o["order_id"]) for o in state.orders))
        pipe.zrem(store.ENDED, incident_id)
        pipe.zrem(store.HANDOVERS, incident_id)  # no live order: no filing owed any more
        # nor a station order of its team to hand on should the team be removed
        for o in state.orders:
            if o.get("kind") in ("handover", "followup") and o.get("team_id"):
                pipe.srem(store.station_orders_key(o["team_id"]), o["order_id"])
        await pipe.execute()
    return 1


async def forget_archived(redis: Redis, locks: IncidentLocks, *, reported_before: float) -> int:
    """Delete the archived incidents reported before `reported_before`; the number deleted.
    Any not archived (still open, or ended too recently) is left and passed over."""
    forgotten = skipped = 0
    while True:
        page = await redis.zrangebyscore(store.ALL_INCIDENTS, "-inf", reported_before,
                                         start=skipped, num=PAGE)
        if not page:
            return forgotten
        for incident_id in page:
            async with locks.hold(incident_id):
                inc = await store.get_incident(redis, incident_id)
                if inc is not None and not inc.get("archived_at"):
                    skipped += 1
                    continue
                await _forget(redis, incident_id, inc)
                forgotten += 1
        if len(page) < PAGE:
            return forgotten


# An incident's record (KEYS[1]) deleted and, only if it was still there, taken out of its
# status (ARGV[1]; '' for a record without its fields, left as it is) in the status counts
# (KEYS[2]); then its places in the indexes (the commands from ARGV[3], ARGV[2] of them:
# RUN_COMMANDS_LUA), harmless made again. One script: a transaction that redis-py sent
# again after losing its reply took the incident out of the counts twice, and the gauge of
# incidents by status fell below what is stored (below 0 once the last of a status went).
_FORGET = RUN_COMMANDS_LUA + """
if ARGV[1] ~= '' and redis.call('DEL', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
end
run_commands(3, tonumber(ARGV[2]))
"""


async def _forget(redis: Redis, incident_id: str, inc: dict[str, str] | None) -> None:
    async with redis.pipeline(transaction=False) as pipe:  # sent by the script
        pipe.zrem(store.ALL_INCIDENTS, incident_id)
        pipe.zrem(store.RECEIVED, incident_id)
        pipe.zrem(store.HANDOVERS, incident_id)
        pipe.zrem(store.FILINGS_DUE, incident_id)
        # the command room's remarks and evidence attached after it was archived; the
        # reports linked to it (an archive before they were deleted with it)
        pipe.delete(store.timeline_key(incident_id), store.linked_key(incident_id),
                    store.linked_sources_key(incident_id))
        pipe.zrem(store.FLAGGED, incident_id)
        if inc is not None:
            pipe.zrem(store.district_key(inc["district"]), incident_id)
            pipe.zrem(store.received_key(inc["district"]), incident_id)
            pipe.zrem(store.flagged_key(inc["district"]), incident_id)
            if inc.get("external_ref"):
                pipe.srem(store.ref_key(inc["district"], inc["external_ref"]), incident_id)
        commands = queued_commands(pipe)
    await run_script(redis, _FORGET, [store.incident_key(incident_id), store.STATUS_COUNTS],
                     [inc["status"] if inc is not None else "", len(commands),
                      *commands_as_args(commands)])


async def keep_sweeping(redis: Redis, locks: IncidentLocks, *, records_days: float,
                        kpi_days: float, stop: asyncio.Event, interval_s: float = 3600.0,
                        first_after_s: float = 60.0) -> None:
    """Archive and forget, every `interval_s`, until `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=first_after_s)
    while not stop.is_set():
        now = time.time()
        try:
            if indexed := await index_ended_before(redis):
                log.info("incident records: %d ended incidents of an earlier version indexed "
                         "for retention", indexed)
            if indexed := await index_handovers_before(redis):
                log.info("incident records: %d hand-overs of an earlier version indexed for "
                         "the filings overdue", indexed)
            if indexed := await index_filings_due_before(redis):
                log.info("incident records: %d hand-overs of an earlier version indexed by "
                         "their filing's due", indexed)
            if indexed := await index_station_orders_before(redis):
                log.info("incident records: %d station orders of an earlier version indexed "
                         "by team", indexed)
            if indexed := await index_flagged_before(redis):
                log.info("incident records: %d flagged incidents of an earlier version "
                         "indexed for the board", indexed)
            if indexed := await index_received_before(redis):
                log.info("incident records: %d incidents of an earlier version indexed by "
                         "receipt for the board", indexed)
            archived = await archive_ended(redis, locks, ended_before=now - records_days * 86400)
            forgotten = await forget_archived(redis, locks,
                                              reported_before=now - kpi_days * 86400)
            if archived or forgotten:
                log.info("incident records: %d archived (ended over %g days ago), %d deleted "
                         "(reported over %g days ago)", archived, records_days, forgotten,
                         kpi_days)
        except (RedisError, TimeoutError) as exc:  # the next sweep tries again
            log.warning("incident records sweep failed: %s", type(exc).__name__)
        except Exception:  # one odd record must not end the sweeps for good
            log.exception("incident records sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
