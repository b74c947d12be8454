"""The points ledger: append-only entries written once by id, a running balance, a leaderboard."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import uuid4

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared.scripts import run_script

from ..domain.points import LedgerEntry
from . import keys

# What a member's history keeps: their most recent entries (GET /v1/me/points pages through
# them; the member's page shows the latest). The balance and the leaderboard count them all.
HISTORY_KEPT = 1000

# The entry's key is its deterministic id: SET NX admits it once, and only then do the
# history, the balance and the district's leaderboard move. A second award is a no-op.
# The key stays for its TTL (`ttl`; '': for ever), long after any redelivery of the event
# that earned it: kept for ever, the keys of every award ever made would fill Redis.
# An award to a member no longer on the roster (`member_key` gone: removed after the event
# that earned it, or never imported) writes nothing, not even its entry key: checked in the
# script, so no removal lands between the check and the write, and a removed member's
# balance, history and leaderboard line (which the removal deleted) never come back.
# Returns 1 (written), 0 (written before) or -1 (no such member).
# (A function, so that a team's transition makes its awards in its own script.)
AWARD_LUA = f"""
local function award(entry_key, history_key, balance_key, board_key, member_key, entry, points,
                     member, ttl)
  if redis.call('EXISTS', member_key) == 0 then return -1 end
  local admitted
  if ttl == '' then
    admitted = redis.call('SET', entry_key, entry, 'NX')
  else
    admitted = redis.call('SET', entry_key, entry, 'NX', 'EX', ttl)
  end
  if admitted then
    -- the entry's number in the member's history (history_page's cursor); a history kept
    -- before the numbers counts on from its length
    local seq_key = history_key .. ':seq'
    if redis.call('EXISTS', seq_key) == 0 then
      redis.call('SET', seq_key, redis.call('LLEN', history_key))
    end
    redis.call('INCR', seq_key)
    redis.call('LPUSH', history_key, entry)
    redis.call('LTRIM', history_key, 0, {HISTORY_KEPT - 1})
    redis.call('INCRBYFLOAT', balance_key, points)
    redis.call('ZINCRBY', board_key, points, member)
    return 1
  end
  return 0
end
"""

NO_MEMBER = -1  # `award_each`: the member is not on the roster; nothing written

_AWARD = AWARD_LUA + """
return award(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""


def ledger_ttl(retention_days: float) -> int:
    """How long an award's entry key stays: twice the stream history (RETENTION_DAYS), so
    that no redelivered event, nor a retried request, finds it gone and pays again."""
    return round(2 * retention_days * 86400)


def award_call(entry: LedgerEntry, *, ledger_ttl_s: int | None
               ) -> tuple[list[str], list[str]]:
    """An award's keys and arguments, in `award`'s order; its entry key kept `ledger_ttl_s`
    (None: for ever)."""
    return (
        [keys.ledger_entry(entry.entry_id), keys.points_history(entry.member_id),
         keys.points_balance(entry.member_id), keys.leaderboard(entry.district),
         keys.member(entry.member_id)],
        [entry.model_dump_json(exclude_none=True), repr(entry.points), entry.member_id,
         "" if ledger_ttl_s is None else str(ledger_ttl_s)],
    )


def queue_entries(pipe: Pipeline, entries: Iterable[LedgerEntry], *,
                  ledger_ttl_s: int) -> None:
    """Queue awards on a pipeline (inside a MULTI: they commit with the change that earned them)."""
    for entry in entries:
        k, a = award_call(entry, ledger_ttl_s=ledger_ttl_s)
        pipe.eval(_AWARD, len(k), *k, *a)


async def award_each(redis: Redis, entries: Iterable[LedgerEntry], *, ledger_ttl_s: int
                     ) -> list[int]:
    """Write awards on their own; for each, 1 (new), 0 (recorded before) or NO_MEMBER (the
    member is not on the roster: nothing written)."""
    entries = list(entries)
    if not entries:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        queue_entries(pipe, entries, ledger_ttl_s=ledger_ttl_s)
        return [int(x) for x in await pipe.execute()]


async def award(redis: Redis, entries: Iterable[LedgerEntry], *, ledger_ttl_s: int) -> int:
    """Write awards on their own; returns how many were new (none to a member not on the
    roster)."""
    return sum(x == 1 for x in await award_each(redis, entries, ledger_ttl_s=ledger_ttl_s))


# The key already given to the same adjustment within the window, else the one proposed
# (ARGV[1]), kept ARGV[2] seconds. KEYS[1]: the window's key.
_RETRY_KEY = """
local given = redis.call('GET', KEYS[1])
if given then return given end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""


async def adjustment_key(redis: Redis, *, member_id: str, points: int, note: str,
                         window_s: int) -> str:
    """The key of a coordinator's adjustment sent without one: the same member, amount and
    reason within `window_s` of the first get the first's key, so a retry (its reply lost on
    the network) is recorded once; a new key after that. The reason is kept only as a digest."""
    digest = hashlib.sha256(json.dumps([member_id, points, note]).encode()).hexdigest()[:32]
    return str(await run_script(redis, _RETRY_KEY, [keys.adjustment_retry(digest)],
                                [f"auto-{uuid4().hex}", window_s]))


async def entry(redis: Redis, entry_id: str) -> dict[str, Any] | None:
    raw = await redis.get(keys.ledger_entry(entry_id))
    return json.loads(raw) if raw else None


def _number(value: str | None) -> float | int:
    number = float(value or 0)
    return int(number) if number.is_integer() else number


class HistoryPage(NamedTuple):
    balance: float | int  # every award's points, also of entries no longer kept
    history: list[dict[str, Any]]  # newest first
    count: int  # entries the history keeps (at most HISTORY_KEPT)
    next: int | None  # the `before` of the next page (None: the history ends here)
    # The points of the entries older than those kept (HISTORY_KEPT): the balance is this
    # plus the kept entries' sum. None when not asked (`brought_forward=False`).
    brought_forward: float | int | None = None


async def balance_and_history(
    redis: Redis, member_id: str, *, offset: int, limit: int
) -> tuple[float | int, list[dict[str, Any]], int]:
    """The balance (every award), a page of the history kept (HISTORY_KEPT, newest first)
    and how many entries that holds."""
    page = await history_page(redis, member_id, before=None, offset=offset, limit=limit)
    return page.balance, page.history, page.count


# Entries are numbered as they are pushed (AWARD_LUA: `<history>:seq`, the newest's number),
# so the entry numbered n sits at index seq - n however many came since: a page read
# `before` a number starts where the last one ended, while offsets move with every award.
# KEYS: balance, history, its counter; ARGV: before ('' = from the newest, at `offset`),
# offset, limit, and '1' to sum every kept entry's points (else ''). Returns the balance,
# the page, the history's length, the newest's number, the page's first index and the sum
# (as a string: Lua numbers become integers on the way out).
_PAGE = """
local seq = tonumber(redis.call('GET', KEYS[3]) or redis.call('LLEN', KEYS[2]))
local start = tonumber(ARGV[2])
if ARGV[1] ~= '' then start = seq - tonumber(ARGV[1]) + 1 end
if start < 0 then start = 0 end
local kept = ''
if ARGV[4] == '1' then
  local sum = 0
  for _, raw in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    sum = sum + tonumber(cjson.decode(raw)['points'])
  end
  kept = string.format('%.17g', sum)
end
return {redis.call('GET', KEYS[1]) or '0',
        redis.call('LRANGE', KEYS[2], start, start + tonumber(ARGV[3]) - 1),
        redis.call('LLEN', KEYS[2]), seq, start, kept}
"""


async def history_page(
    redis: Redis, member_id: str, *, before: int | None, limit: int, offset: int = 0,
    brought_forward: bool = False,
) -> HistoryPage:
    """The balance, a page of the history (newest first: the entries numbered below `before`,
    else from `offset`), how many entries the history holds, and the `before` of the next
    page (None: the history ends here); with `brought_forward`, the points of the entries
    no longer kept, read in the same script (a dispute over a balance adds up)."""
    history = keys.points_history(member_id)
    total, raw, count, seq, start, kept = await run_script(
        redis, _PAGE, [keys.points_balance(member_id), history, keys.points_seq(member_id)],
        ["" if before is None else str(before), str(offset), str(limit),
         "1" if brought_forward else ""])
    oldest_shown = int(seq) - int(start) - len(raw) + 1  # the page's last entry's number
    more = bool(raw) and int(start) + len(raw) < int(count)
    balance = _number(total)
    earlier = None
    if brought_forward:
        # quarter points (patrol) and whole ones: exact in binary, no rounding to hide
        earlier = _number(str(float(balance) - float(kept or 0)))
    return HistoryPage(balance, [json.loads(x) for x in raw], int(count),
                       oldest_shown if more else None, earlier)


def _ranked(rows: list[tuple[str, float | int, str | None, str | None]]
            ) -> list[dict[str, Any]]:
    """Board lines from (member, points, name, team) rows, most points first: equal points
    share a rank, the next rank counting those before it (30, 30, 12: 1, 1, 3), so that a
    commendation is not decided by the order of two ids."""
    board: list[dict[str, Any]] = []
    for member_id, points, name, team_id in rows:
        rank = (board[-1]["rank"] if board and board[-1]["points"] == points
                else len(board) + 1)
        board.append({"rank": rank, "member_id": member_id, "name": name, "team_id": team_id,
                      "points": points})
    return board


async def leaderboard(redis: Redis, district: str, *, limit: int) -> list[dict[str, Any]]:
    """The district's top `limit` members by points, ranked among themselves. A line whose
    member is not on the roster (left by an award before awards checked the member) is
    skipped, and the board reads on past it to fill its limit."""
    rows: list[tuple[str, float | int, str | None, str | None]] = []
    start = 0
    while len(rows) < limit:
        top = await redis.zrevrange(keys.leaderboard(district), start, start + limit - 1,
                                    withscores=True)
        if not top:
            break
        start += len(top)
        async with redis.pipeline(transaction=False) as pipe:
            for member_id, _ in top:
                pipe.hmget(keys.member(member_id), "id", "name", "team_id")
            profiles = await pipe.execute()
        for (member_id, score), (found, name, team_id) in zip(top, profiles, strict=True):
            if found is None or len(rows) == limit:  # removed from the roster
                continue
            rows.append((_text(member_id), _number(str(score)), _text(name), _text(team_id)))
    return _ranked(rows)


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


# The points each member earned between two instants, from the histories kept: KEYS are the
# members' histories, then their records (the same order); ARGV the period's bounds and the
# instant past which a history is read no further, each as epoch seconds and as UTC text
# (YYYY-MM-DDTHH:MM:SS), and how many entries a read takes. A history is newest first as the
# awards were pushed, not strictly by their time: an event read late (dispatch catching up)
# pushes an older entry after newer ones. None is read later than its entry's key lives
# (store.points.ledger_ttl), so reading on until an entry that much older than the period's
# start finds every entry of the period. An entry's `at` is ISO 8601; its second is enough
# (the bounds are whole seconds): one in UTC (`Z`, as LedgerEntry writes them) is compared
# as text, one with an offset is counted out. Its fields are found by their keys, not
# decoded (`"at":"` cannot occur inside a JSON string, whose quotes are escaped): a few
# hundred entries of each of the batch's members are read in milliseconds. Returns, for
# each member on the roster with an entry in the period, their place in KEYS (1-based) and
# their sum (as text: Lua numbers leave as integers).
_EARNED = """
local function epoch(text)
  local y, mo, d, h, mi, se, rest = string.match(
    text, '^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)(.*)$')
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  local offset = 0
  local sign, oh, om = string.match(rest, '([+-])(%d%d):?(%d%d)$')
  if sign then
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == '-' and -1 or 1)
  end
  -- days from 1970-01-01 to the date (the proleptic Gregorian calendar's civil days)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100)
               + doy - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(se) - offset
end
local since, upto, stop = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local since_t, upto_t, stop_t = ARGV[4], ARGV[5], ARGV[6]
local step = tonumber(ARGV[7])
-- -1: before the stop (read no further), 1: in the period, 0: neither
local function place(at)
  if string.sub(at, -1) == 'Z' then
    local second = string.sub(at, 1, 19)
    if second < stop_t then return -1 end
    if second >= since_t and second < upto_t then return 1 end
    return 0
  end
  local t = epoch(at)
  if t < stop then return -1 end
  if t >= since and t < upto then return 1 end
  return 0
end
local n = #KEYS / 2
local out = {}
for k = 1, n do
  if redis.call('EXISTS', KEYS[n + k]) == 1 then
    local sum, found, start, done = 0, false, 0, false
    while not done do
      local chunk = redis.call('LRANGE', KEYS[k], start, start + step - 1)
      for _, raw in ipairs(chunk) do
        local where = place(string.match(raw, '"at":"([^"]+)"'))
        if where < 0 then done = true break end
        if where > 0 then
          sum = sum + tonumber(string.match(raw, '"points":(-?[%d.eE+-]+)'))
          found = true
        end
      end
      if #chunk < step then done = true end
      start = start + step
    end
    if found then
      out[#out + 1] = k
      out[#out + 1] = string.format('%.17g', sum)
    end
  end
end
return out
"""
# Members a script reads: about 10 ms of Redis for 16 volunteers with 230 entries each in
# the period and its 60 days before (3 a day); a city's 11,000 in some seconds, a script at
# a time, while every other command goes on between them.
EARNED_BATCH = 16


def _utc_second(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


async def leaderboard_between(redis: Redis, district: str, *, since: datetime,
                              until: datetime, limit: int, late_s: int
                              ) -> list[dict[str, Any]]:
    """The district's top `limit` members by the points of their entries timed in
    [since, until) (a month's commendation), ranked as `leaderboard`; those with none then
    are not listed, nor a member no longer on the roster. `late_s`: how much older than
    `since` an entry pushed after the period's may be (ledger_ttl: an event is never read
    later than that). Read from the histories kept (HISTORY_KEPT each), so that a period
    before this board existed is counted too."""
    member_ids = [_text(m) or "" for m in
                  await redis.zrange(keys.leaderboard(district), 0, -1)]
    stop = since - timedelta(seconds=late_s)
    bounds = [str(int(since.timestamp())), str(int(until.timestamp())),
              str(int(stop.timestamp())), _utc_second(since), _utc_second(until),
              _utc_second(stop), "64"]
    earned: dict[str, float | int] = {}
    for first in range(0, len(member_ids), EARNED_BATCH):
        batch = member_ids[first:first + EARNED_BATCH]
        found = await run_script(
            redis, _EARNED,
            [*(keys.points_history(m) for m in batch), *(keys.member(m) for m in batch)],
            bounds)
        for place, total in zip(found[::2], found[1::2], strict=True):
            earned[batch[int(place) - 1]] = _number(_text(total))
    top = sorted(earned.items(), key=lambda item: (-item[1], item[0]))[:limit]
    async with redis.pipeline(transaction=False) as pipe:
        for member_id, _ in top:
            pipe.hmget(keys.member(member_id), "name", "team_id")
        profiles = await pipe.execute()
    return _ranked([(member_id, points, _text(name), _text(team_id))
                    for (member_id, points), (name, team_id) in zip(top, profiles,
                                                                     strict=True)])
