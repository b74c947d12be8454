"""The points ledger: append-only entries written once by id, a running balance, a leaderboard."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from ..domain.points import LedgerEntry
from . import keys

# The entry's key is its deterministic id: SET NX admits it once, and only then do the
# history, the balance and the district's leaderboard move. A second award is a no-op.
# (A function, so that a team's transition makes its awards in its own script.)
AWARD_LUA = """
local function award(entry_key, history_key, balance_key, board_key, entry, points, member)
  if redis.call('SET', entry_key, entry, 'NX') then
    redis.call('LPUSH', history_key, entry)
    redis.call('INCRBYFLOAT', balance_key, points)
    redis.call('ZINCRBY', board_key, points, member)
    return 1
  end
  return 0
end
"""

_AWARD = AWARD_LUA + """
return award(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])
"""


def award_call(entry: LedgerEntry) -> tuple[list[str], list[str]]:
    """An award's keys and arguments, in `award`'s order."""
    return (
        [keys.ledger_entry(entry.entry_id), keys.points_history(entry.member_id),
         keys.points_balance(entry.member_id), keys.leaderboard(entry.district)],
        [entry.model_dump_json(exclude_none=True), repr(entry.points), entry.member_id],
    )


def queue_entries(pipe: Pipeline, entries: Iterable[LedgerEntry]) -> None:
    """Queue awards on a pipeline (inside a MULTI: they commit with the change that earned them)."""
    for entry in entries:
        k, a = award_call(entry)
        pipe.eval(_AWARD, len(k), *k, *a)


async def award(redis: Redis, entries: Iterable[LedgerEntry]) -> int:
    """Write awards on their own; returns how many were new."""
    entries = list(entries)
    if not entries:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        queue_entries(pipe, entries)
        return sum(int(x) for x in await pipe.execute())


async def entry(redis: Redis, entry_id: str) -> dict[str, Any] | None:
    raw = await redis.get(keys.ledger_entry(entry_id))
    return json.loads(raw) if raw else None


def _number(value: str | None) -> float | int:
    number = float(value or 0)
    return int(number) if number.is_integer() else number


async def balance_and_history(
    redis: Redis, member_id: str, *, offset: int, limit: int
) -> tuple[float | int, list[dict[str, Any]], int]:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(keys.points_balance(member_id))
        pipe.lrange(keys.points_history(member_id), offset, offset + limit - 1)
        pipe.llen(keys.points_history(member_id))
        total, raw, count = await pipe.execute()
    return _number(total), [json.loads(x) for x in raw], int(count)


async def leaderboard(redis: Redis, district: str, *, limit: int) -> list[dict[str, Any]]:
    top = await redis.zrevrange(keys.leaderboard(district), 0, limit - 1, withscores=True)
    async with redis.pipeline(transaction=False) as pipe:
        for member_id, _ in top:
            pipe.hmget(keys.member(member_id), "name", "team_id")
        profiles = await pipe.execute()
    return [
        {"rank": rank, "member_id": member_id, "name": name, "team_id": team_id,
         "points": _number(str(score))}
        for rank, ((member_id, score), (name, team_id)) in enumerate(zip(top, profiles,
                                                                          strict=True), start=1)
    ]
