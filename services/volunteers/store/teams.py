"""Team state, orders, positions: each change and its UnitStatus in one script.

A state change, the order record, any points it earns and the `unit.status` entry that
announces it commit together, so the stream's order is the state's order and a redelivered
event (finding the change already made) writes and publishes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from faststream.redis.parser.binary import BinaryMessageFormatV1
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from shared import streams
from shared.bus import queue_publish
from shared.events import UnitPosition
from shared.scripts import (
    RUN_COMMANDS_LUA,
    ScriptBatch,
    commands_as_args,
    queued_commands,
    run_script,
)

from ..domain.points import LedgerEntry, award_patrol
from ..domain.positions import fix_senders
from ..domain.status import (
    CheckInLimit,
    OrderRecord,
    Outcome,
    Refused,
    TeamState,
    expire_check_ins,
    unit_status,
)
from . import keys
from .points import AWARD_LUA, award_call
from .tx import ATTEMPTS, Contended, contention_pause

log = logging.getLogger(__name__)

# Long after any redelivery of the order's events, and longer than notify keeps an open
# order (ORDER_OPEN_TTL_S, 90 days from its last answer): an answer notify still takes must
# find the order's record here, or it is made again without its kind, and an order of no
# kind holds its team (a station's hand-over answered on day 40 left the team busy).
ORDER_TTL_S = 100 * 24 * 3600


def decode_state(data: Mapping[str, str]) -> TeamState:
    raw = data.get("state")
    return TeamState.model_validate_json(raw) if raw else TeamState()


def encode_state(state: TeamState, *, seq: int, now: datetime) -> dict[str, str]:
    """The state's hash: the state itself, and what the position script reads of it
    (`status`, `fixes_from`) without decoding it."""
    return {"state": state.model_dump_json(), "status": state.status,
            "fixes_from": fix_senders(state), "seq": str(seq), "changed_at": now.isoformat()}


def skills_of(team: Mapping[str, str]) -> list[str]:
    return json.loads(team.get("skills") or "[]")


@dataclass(frozen=True, slots=True)
class TeamView:
    team: dict[str, str]
    agency: dict[str, str]
    state: TeamState
    seq: int
    record: OrderRecord | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    state: TeamState
    record: OrderRecord | None = None
    ledger: tuple[LedgerEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Applied:
    before: TeamView
    decision: Decision
    announced: bool


def patrol_ledger(view: TeamView, outcome: Outcome, *, max_hours: float
                  ) -> tuple[LedgerEntry, ...]:
    """The patrol points of a shift `outcome` ended (for all its members, or for one who
    left it), for this team."""
    if outcome.ended is None:
        return ()
    return tuple(award_patrol(
        ended=outcome.ended, team_id=view.team["id"], district=view.team["district"],
        agency_kind=view.agency.get("kind", ""), max_hours=max_hours))


def first_check_in_ms(state: TeamState) -> int | None:
    """The score of the team in `keys.check_ins()`: its earliest check-in still on the shift."""
    if not state.shift_members:
        return None
    return int(min(state.shift_members.values()).timestamp() * 1000)


def queue_check_in_index(pipe: Pipeline, team_id: str, state: TeamState) -> None:
    first = first_check_in_ms(state)
    if first is None:
        pipe.zrem(keys.check_ins(), team_id)
    else:
        pipe.zadd(keys.check_ins(), {team_id: first})


def _expired_first(view: TeamView, *, now: datetime, limit: CheckInLimit
                   ) -> tuple[TeamView, tuple[LedgerEntry, ...]]:
    """The team as it stands `now`: the check-ins that ran out ended (at the cap), with
    their patrol points; what a transition decides on, so that an event or a request never
    counts a member whose check-in ran out as on the shift (the sweep may not have come)."""
    expired = expire_check_ins(view.state, now=now, limit=limit)
    if not expired.ended:
        return view, ()
    hours = limit.max_stint.total_seconds() / 3600
    ledger = tuple(entry for ended in expired.ended for entry in award_patrol(
        ended=ended, team_id=view.team["id"], district=view.team["district"],
        agency_kind=view.agency.get("kind", ""), max_hours=hours))
    return replace(view, state=expired.state), ledger


async def publish_unit_status(
    pipe: Pipeline, *, team: Mapping[str, str], agency: Mapping[str, str], state: TeamState,
    removed: bool = False,
) -> None:
    """Queue the team's UnitStatus on `pipe` (inside its MULTI); `removed`: the team's last,
    as it leaves the roster."""
    event = unit_status(team=team, agency=agency, state=state, skills=skills_of(team),
                        removed=removed)
    await queue_publish(pipe, streams.UNIT_STATUS, event)


# A team's profile, its agency's, its state and (KEYS[3], '' for none) an order record, in
# one round trip: read before a transition's MULTI, four reads cost four round trips on the
# watching connection.
_VIEW = """
local team = redis.call('HGETALL', KEYS[1])
if #team == 0 then return {} end
local agency = {}
for i = 1, #team, 2 do
  if team[i] == 'agency_id' then agency = redis.call('HGETALL', ARGV[1] .. team[i + 1]) end
end
local order = false
if KEYS[3] ~= '' then order = redis.call('GET', KEYS[3]) end
return {team, agency, redis.call('HGETALL', KEYS[2]), order}
"""


def _as_dict(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def load_view(redis: Redis, team_id: str,
                    order_id: str | None = None) -> TeamView | None:
    """The team as a transition sees it; None: no such team."""
    reply = await _view_reply(redis, team_id, keys.order(order_id) if order_id is not None else "")
    return _view_from(reply) if reply else None


async def _view_reply(redis: Redis, team_id: str, order_key: str) -> list[Any] | None:
    """`_VIEW`'s raw reply (the stored values, which `_COMMIT` compares); None: no such team."""
    return await run_script(redis, _VIEW, [keys.team(team_id), keys.state(team_id), order_key],
                            [keys.agency("")]) or None


def _view_from(reply: list[Any]) -> TeamView:
    team, agency, data, raw = reply
    data = _as_dict(data)
    record = OrderRecord.model_validate_json(raw) if raw else None
    return TeamView(team=_as_dict(team), agency=_as_dict(agency), state=decode_state(data),
                    seq=int(data.get("seq") or 0), record=record)


# A transition's writes, made only if what its decision read is unchanged (optimistic, as
# WATCH would have it, without WATCH's round trip): the team's profile (KEYS[1], the same
# fields and values as the read's, ARGV[1] pairs from ARGV[2]), its state's `seq` and
# `state` (KEYS[2]; every write of a team's state moves its seq) and the order's record
# (KEYS[3], '' for none). Then the writes (shared.scripts.RUN_COMMANDS_LUA) and the points
# the change earned (store.points' award, inlined: none to a member removed from the roster
# meanwhile, while the change itself stands). Returns 0, writing nothing, if anything
# read has changed: the caller reads again and decides again; -1, writing nothing, if the
# member whose device acts (KEYS[4], '' for none) is no longer on the team (a roster import
# moved or removed them after their token was resolved to it).
_COMMIT = RUN_COMMANDS_LUA + AWARD_LUA + """
local n = tonumber(ARGV[1])
local team = redis.call('HGETALL', KEYS[1])
if #team ~= 2 * n then return 0 end
local fields = {}
for i = 1, #team, 2 do fields[team[i]] = team[i + 1] end
for i = 2, 2 * n, 2 do
  if fields[ARGV[i]] ~= ARGV[i + 1] then return 0 end
end
local at = 2 * n + 2
local state = redis.call('HMGET', KEYS[2], 'seq', 'state')
if (state[1] or '') ~= ARGV[at] or (state[2] or '') ~= ARGV[at + 1] then return 0 end
if KEYS[3] ~= '' and (redis.call('GET', KEYS[3]) or '') ~= ARGV[at + 2] then return 0 end
if KEYS[4] ~= '' and redis.call('HGET', KEYS[4], 'team_id') ~= fields['id'] then return -1 end
local i = run_commands(at + 5, tonumber(ARGV[at + 3]))
for _ = 1, tonumber(ARGV[at + 4]) do
  award(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6],
        ARGV[i + 7], ARGV[i + 8])
  i = i + 9  -- award_call's 5 keys and 4 arguments
end
return 1
"""


async def transition(
    redis: Redis, *, team_id: str, decide: Callable[[TeamView], Decision],
    now: datetime, order_id: str | None = None, ledger_ttl_s: int | None = None,
    member_id: str | None = None, check_ins: CheckInLimit | None = None,
    reindex: bool = False,
) -> Applied | None:
    """Read the team (and order), let `decide` rule, write what changed; None: no such team.
    The ledger keeps the points it earns for `ledger_ttl_s` (None: for ever; see
    store.points.ledger_ttl). `member_id`: the member whose device acts, who must still be on
    the team when the change is written (`Refused` if a roster import moved them meanwhile:
    their token was resolved to the old team).

    Two round trips: the read (`_VIEW`) and the writes (`_COMMIT`), which are made only if
    nothing the decision read has changed meanwhile; else it reads and decides again.
    `decide` may raise `Refused`; nothing is written then.

    `check_ins`: first end the check-ins that ran out by `now` (`expire_check_ins`, their
    patrol points written with the change), and let `decide` rule on what is left. The
    team's entry in `keys.check_ins()` is written with every change of who is on its shift,
    and also when nothing changed if `reindex` (the sweep's correction).
    """
    order_key = keys.order(order_id) if order_id is not None else ""
    member_key = keys.member(member_id) if member_id is not None else ""
    for attempt in range(ATTEMPTS):
        reply = await _view_reply(redis, team_id, order_key)
        if reply is None:
            return None
        view = _view_from(reply)
        seen, expired = view, ()
        if check_ins is not None:
            seen, expired = _expired_first(view, now=now, limit=check_ins)
        decision = decide(seen)
        if expired:
            decision = replace(decision, ledger=(*expired, *decision.ledger))
        announce = decision.state.visible() != view.state.visible()
        async with redis.pipeline(transaction=False) as pipe:  # collects; never sent
            if decision.state != view.state:
                pipe.hset(keys.state(team_id),
                          mapping=encode_state(decision.state, seq=view.seq + 1, now=now))
            if reindex or decision.state.shift_members != view.state.shift_members:
                queue_check_in_index(pipe, team_id, decision.state)
            if order_id is not None and decision.record is not None and (
                decision.record != view.record
            ):
                pipe.set(keys.order(order_id), decision.record.model_dump_json(),
                         ex=ORDER_TTL_S)
                if decision.record.final == "resolved":
                    # with the resolution: the incident's closing finds it by incident
                    resolutions = keys.incident_resolutions(decision.record.incident_id)
                    pipe.sadd(resolutions, order_id)
                    pipe.expire(resolutions, ORDER_TTL_S)
            if announce:
                await publish_unit_status(pipe, team=view.team, agency=view.agency,
                                          state=decision.state)
            commands = queued_commands(pipe)
        team, _, state, raw_order = reply
        read = _as_dict(state)
        args: list[Any] = [len(team) // 2, *team, read.get("seq", ""), read.get("state", ""),
                           raw_order or "", len(commands), len(decision.ledger),
                           *commands_as_args(commands)]
        for entry in decision.ledger:
            award_keys, award_args = award_call(entry, ledger_ttl_s=ledger_ttl_s)
            args += [*award_keys, *award_args]
        result = await run_script(redis, _COMMIT, [keys.team(team_id), keys.state(team_id),
                                                   order_key, member_key], args)
        if result == -1:
            raise Refused(f"the member is no longer on team {team_id} (the roster moved or "
                          "removed them meanwhile): retry, which acts on their team now")
        if result:
            return Applied(view, decision, announce)
        await contention_pause(attempt)
    raise Contended(f"gave up after {ATTEMPTS} concurrent changes")


async def order_of_no_team(redis: Redis, *, order_id: str, team_id: str,
                           incident_id: str) -> None:
    """An event of an order whose team is not on the roster (removed before dispatch heard
    it): the order is recorded as finished (`final` "no_team") unless it has a record, so
    that the same event read again once the team is imported again (its ack lost, the
    entry redelivered) finds it done, and never holds the new team for an order nobody
    will end (dispatch withdrew it, unheard, while the team was gone)."""
    record = OrderRecord(team_id=team_id, incident_id=incident_id, open=False, final="no_team")
    await redis.set(keys.order(order_id), record.model_dump_json(), ex=ORDER_TTL_S, nx=True)


# An order's record decided again without its team (KEYS[1]; ARGV[1] the record as read,
# ARGV[2] the new one, ARGV[3] its TTL): written, with the awards the change makes
# (store.points' `award`, nine words each from ARGV[5], ARGV[4] of them), only if the record is
# still the one read. Returns 0, writing nothing, if it changed: read and decide again.
_ORDER_COMMIT = AWARD_LUA + """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  award(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6],
        ARGV[i + 7], ARGV[i + 8])
  i = i + 9
end
return 1
"""


async def order_record(redis: Redis, order_id: str) -> OrderRecord | None:
    raw = await redis.get(keys.order(order_id))
    return OrderRecord.model_validate_json(raw) if raw else None


async def settle_order(
    redis: Redis, *, order_id: str,
    decide: Callable[[OrderRecord], tuple[OrderRecord, tuple[LedgerEntry, ...]]],
    ledger_ttl_s: int | None,
) -> None:
    """An event of an order whose team has left the roster: `decide` rules on its record
    alone (nothing to do without one), and what it changes is written with the points it
    gives, once (the record written with them says so to a redelivery)."""
    key = keys.order(order_id)
    for attempt in range(ATTEMPTS):
        raw = await redis.get(key)
        if raw is None:
            return
        before = OrderRecord.model_validate_json(raw)
        record, ledger = decide(before)
        if record == before:
            return
        args: list[Any] = [raw, record.model_dump_json(), ORDER_TTL_S, len(ledger)]
        for entry in ledger:
            award_keys, award_args = award_call(entry, ledger_ttl_s=ledger_ttl_s)
            args += [*award_keys, *award_args]
        if await run_script(redis, _ORDER_COMMIT, [key], args):
            return
        await contention_pause(attempt)
    raise Contended(f"gave up after {ATTEMPTS} concurrent changes")


async def team_state(redis: Redis, team_id: str) -> TeamState:
    return decode_state(await redis.hgetall(keys.state(team_id)))


async def team_states(redis: Redis, team_ids: Sequence[str]) -> list[TeamState]:
    """The states of many teams in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for team_id in team_ids:
            pipe.hgetall(keys.state(team_id))
        return [decode_state(data) for data in await pipe.execute()]


# --- a hazard report's confirmation: the closing and the resolution, in either order -----


async def resolved_orders(redis: Redis, incident_id: str) -> list[tuple[str, OrderRecord]]:
    """The incident's orders that their teams resolved, with their records."""
    order_ids = sorted(await redis.smembers(keys.incident_resolutions(incident_id)))
    if not order_ids:
        return []
    raws = await redis.mget([keys.order(o) for o in order_ids])
    return [(o, OrderRecord.model_validate_json(raw))
            for o, raw in zip(order_ids, raws, strict=True) if raw]


async def confirm_hazard(redis: Redis, *, incident_id: str, team_ids: Sequence[str]) -> None:
    """The incident's closing confirmed these teams' resolution of a hazard report. Written
    before the closing reads the resolutions, and read by a resolution after it is written:
    of a closing and a resolution handled at the same time, one always sees the other."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.hazard_confirmed(incident_id), *team_ids)
        pipe.expire(keys.hazard_confirmed(incident_id), ORDER_TTL_S)
        await pipe.execute()


async def hazard_confirmed(redis: Redis, *, incident_id: str, team_id: str) -> bool:
    return bool(await redis.sismember(keys.hazard_confirmed(incident_id), team_id))


# Kept for a reporter the first reading of a closing found off the roster (removed).
OFF_THE_ROSTER = ""


async def reporter_team(redis: Redis, *, incident_id: str, member_id: str,
                        team_now: str | None) -> str | None:
    """The team of the member who reported the incident from the street, as its closing
    judges their report by: the one the first reading of the closing found them on
    (`team_now`: theirs now, None: not on the roster), kept, so that the closing read again
    after a roster moved them (its acknowledgement lost) decides as it did. None: not on the
    roster at the first reading (kept too: imported again since, they are still paid
    nothing by it, as that reading decided). Its answer is the fallback for a closing that
    names no `reporter_team_id` (an incident reported before events carried the reporter's
    team when they reported)."""
    key = keys.hazard_reporters(incident_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hsetnx(key, member_id, OFF_THE_ROSTER if team_now is None else team_now)
        pipe.expire(key, ORDER_TTL_S)
        pipe.hget(key, member_id)
        *_, team_id = await pipe.execute()
    return team_id or None


async def hazard_reporters(redis: Redis, *, incident_id: str) -> list[str]:
    """The members a closing of the incident named as its reporter, found on the roster
    (`reporter_team` keeps them, written before the closing marks the teams it confirms)."""
    kept = await redis.hgetall(keys.hazard_reporters(incident_id))
    return [member for member, team_id in kept.items() if team_id != OFF_THE_ROSTER]


# --- positions: the hot path, one round trip --------------------------------------------

# Checks the device is still who the caller cached (token not revoked, member still in this
# team and district: -2 otherwise), refuses off-duty teams (-1), members whose fixes do
# not move the team (-3: not on its shift) and the other devices of a member on it (-4:
# not the one they checked in with; domain.positions.fix_senders), ignores fixes older
# than the stored one, overwrites the latest position and, at most once per interval per
# team, appends the prebuilt UnitPosition. The device's check is a search in the same
# `fixes_from` the member's was: no read more. A state written before `fixes_from` was kept
# has it worked out from the state itself, by the same rule (until its next change).
_POSITION = """
if redis.call('HGET', KEYS[5], 'device_id') ~= ARGV[13] then return -2 end
local m = redis.call('HMGET', KEYS[6], 'team_id', 'district')
if m[1] ~= ARGV[11] or m[2] ~= ARGV[12] then return -2 end
local st = redis.call('HMGET', KEYS[2], 'status', 'fixes_from')
local status, from = st[1], st[2]
if (not status) or status == 'off_duty' then return -1 end
if not from then
  local state = cjson.decode(redis.call('HGET', KEYS[2], 'state') or '{}')
  local on, orders = state['shift_members'], state['orders']
  if type(on) == 'table' and next(on) ~= nil then
    if on[ARGV[6]] == nil then return -3 end
    local devices = state['shift_devices']
    if type(devices) == 'table' and devices[ARGV[6]] ~= nil
        and devices[ARGV[6]] ~= ARGV[13] then
      return -4
    end
  elseif type(orders) ~= 'table' or next(orders) == nil then
    return -3
  end
elseif from ~= '*' and not string.find(from, ' ' .. ARGV[6] .. ':' .. ARGV[13] .. ' ', 1, true)
    and not string.find(from, ' ' .. ARGV[6] .. ' ', 1, true) then
  if string.find(from, ' ' .. ARGV[6] .. ':', 1, true) then return -4 end
  return -3
end
local last = redis.call('HGET', KEYS[1], 'at_ms')
if last and tonumber(ARGV[1]) < tonumber(last) then return 0 end
redis.call('HSET', KEYS[1], 'at_ms', ARGV[1], 'lat', ARGV[2], 'lon', ARGV[3],
           'accuracy_m', ARGV[4], 'at', ARGV[5], 'member_id', ARGV[6], 'district', ARGV[12])
local pub = tonumber(redis.call('HGET', KEYS[1], 'pub_ms') or '0')
if tonumber(ARGV[7]) - pub >= tonumber(ARGV[8]) then
  if ARGV[9] == '' then
    redis.call('XADD', KEYS[3], '*', '__data__', ARGV[10])
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', '__data__', ARGV[10])
  end
  redis.call('HSET', KEYS[1], 'pub_ms', ARGV[7], 'pub_fix', ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
  redis.call('ZREM', KEYS[4], ARGV[11])
  return 2
end
-- Coalesced: publish this fix when the interval ends (the trailing edge), so the latest
-- position always reaches dispatch, even if the team sends no further fix.
redis.call('ZADD', KEYS[4], 'NX', pub + tonumber(ARGV[8]), ARGV[11])
return 1
"""

PENDING = "roster:pos-pending"

# Publishes a team's latest stored fix (the one read, ARGV[1]) if its interval has ended.
# A newer fix stored since the read stays pending (the next flush publishes it: its own
# ZADD NX found this entry there); one published meanwhile moves the entry to the end of
# its interval, where the newest fix goes out (the trailing edge is never dropped).
# The fix published last (`pub_fix`: its stamp and place, as two members' fixes may share a
# stamp) is not put back: under HTTP_WORKERS each worker
# flushes, and the second of two that read the same due team found the interval begun by
# the first's publication and queued the very fix it had just published, to go out again.
_FLUSH = """
local pub = tonumber(redis.call('HGET', KEYS[1], 'pub_ms') or '0')
local at = tonumber(redis.call('HGET', KEYS[1], 'at_ms') or '0')
if at ~= tonumber(ARGV[1]) then return 0 end
local cur = redis.call('HMGET', KEYS[1], 'lat', 'lon')
local fix = ARGV[1] .. ' ' .. (cur[1] or '') .. ' ' .. (cur[2] or '')
if redis.call('HGET', KEYS[1], 'pub_fix') == fix then
  redis.call('ZREM', KEYS[3], ARGV[4])
  return 0
end
if tonumber(ARGV[5]) - pub < tonumber(ARGV[6]) then
  redis.call('ZADD', KEYS[3], pub + tonumber(ARGV[6]), ARGV[4])
  return 0
end
redis.call('ZREM', KEYS[3], ARGV[4])
if ARGV[2] == '' then
  redis.call('XADD', KEYS[2], '*', '__data__', ARGV[3])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', '__data__', ARGV[3])
end
redis.call('HSET', KEYS[1], 'pub_ms', ARGV[5], 'pub_fix', fix)
return 1
"""

(POSITION_OTHER_DEVICE, POSITION_NOT_ON_SHIFT, POSITION_NOT_CURRENT, POSITION_OFF_DUTY,
 POSITION_STALE, POSITION_STORED, POSITION_PUBLISHED) = (-4, -3, -2, -1, 0, 1, 2)


class PositionWriter:
    """Writes fixes with one script each, the fixes of concurrent requests in one round trip
    (ScriptBatch); the UnitPosition envelope is FastStream's own format."""

    def __init__(self, redis: Redis, *, publish_interval_ms: int) -> None:
        self._redis = redis
        self._batch = ScriptBatch(redis)
        self._flush = redis.register_script(_FLUSH)
        self._interval = str(publish_interval_ms)
        maxlen = streams.UNIT_POSITION.maxlen
        self._maxlen = str(maxlen) if maxlen else ""

    @staticmethod
    async def _envelope(event: UnitPosition) -> bytes:
        return await BinaryMessageFormatV1.encode(
            message=event.model_dump_json().encode(),
            reply_to=None,
            headers={"content-type": "application/json"},
            correlation_id=event.event_id,
        )

    async def write(self, event: UnitPosition, *, member_id: str, device_id: str,
                    token_hash: str, now: datetime) -> int:
        """Store (and maybe publish) a fix of `device_id`, whose token hashes to
        `token_hash`; POSITION_NOT_CURRENT when that token is revoked or the member is no
        longer in the event's team and district, POSITION_OFF_DUTY when the team is off
        duty, POSITION_NOT_ON_SHIFT when the member is not on its shift,
        POSITION_OTHER_DEVICE when they are, but checked in with another device."""
        envelope = await self._envelope(event)
        at_ms = int(event.at.timestamp() * 1000)
        args: list[Any] = [
            at_ms, repr(event.lat), repr(event.lon),
            "" if event.accuracy_m is None else repr(event.accuracy_m),
            event.at.isoformat(), member_id, int(now.timestamp() * 1000), self._interval,
            self._maxlen, envelope, event.unit_id, event.district, device_id,
        ]
        keys_ = [keys.position(event.unit_id), keys.state(event.unit_id),
                 streams.UNIT_POSITION.name, PENDING, keys.token(token_hash),
                 keys.member(member_id)]
        return int(await run_script(self._batch, _POSITION, keys_, args))

    async def flush_due(self, now: datetime) -> int:
        """Publish the coalesced fixes whose interval has ended; returns how many went out."""
        now_ms = int(now.timestamp() * 1000)
        due = await self._redis.zrangebyscore(PENDING, "-inf", now_ms, start=0, num=500)
        sent = 0
        for team_id in due:
            data = await self._redis.hgetall(keys.position(team_id))
            if not data or "at_ms" not in data or not data.get("district"):
                await self._redis.zrem(PENDING, team_id)
                continue
            try:
                event = UnitPosition(
                    district=data["district"], unit_id=team_id, lat=float(data["lat"]),
                    lon=float(data["lon"]), at=datetime.fromisoformat(data["at"]),
                    accuracy_m=float(data["accuracy_m"]) if data.get("accuracy_m") else None)
            except ValidationError:
                # stored before fixes were checked as now (past the map's latitudes): never
                # published, nor the loop stopped for every team's trailing fix
                log.warning("pending fix of team %s is no valid unit.position: dropped",
                            team_id)
                await self._redis.zrem(PENDING, team_id)
                continue
            sent += int(await self._flush(
                keys=[keys.position(team_id), streams.UNIT_POSITION.name, PENDING],
                args=[data["at_ms"], self._maxlen, await self._envelope(event), team_id,
                      now_ms, self._interval]))
        return sent

    async def keep_flushing(self, stop: asyncio.Event, *, every_s: float = 0.25) -> None:
        while not stop.is_set():
            try:
                await self.flush_due(datetime.now(UTC))
            except RedisError as exc:
                log.warning("position flush failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)


async def latest_position(redis: Redis, team_id: str) -> dict[str, Any] | None:
    data = await redis.hgetall(keys.position(team_id))
    if not data or "lat" not in data:
        return None
    return {
        "lat": float(data["lat"]),
        "lon": float(data["lon"]),
        "accuracy_m": float(data["accuracy_m"]) if data.get("accuracy_m") else None,
        "at": data["at"],
    }
