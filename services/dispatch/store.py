"""Dispatch's Redis keys (prefix `dispatch:`), behind named functions.

Units: a projection of unit.status / unit.position (hash per team, GEO index and set of modes
per district).
Claims: `dispatch:claim:{team}` holds the one open order a team may have; taken by Lua.
Incidents, orders and timelines: hashes and lists. Timers: one sorted set, leased on fire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from shared import streams
from shared.bus import XADD_LUA, maxlen_arg
from shared.events import TimelineEntry
from shared.jsontext import ascii_json
from shared.scripts import RUN_COMMANDS_LUA, ScriptBatch, commands_as_args, run_script

from .domain import PRIORITY_RANK, CandidateQuery, Unit, sent_as, skills_signature
from .locks import LockLost

log = logging.getLogger(__name__)

# --- units ----------------------------------------------------------------------------


def _unit_key(team_id: str) -> str:
    return f"dispatch:unit:{team_id}"


def _geo_key(district: str) -> str:
    return f"dispatch:geo:{district}"


def _waiting_key(district: str) -> str:
    return f"dispatch:waiting:{district}"


# The districts whose queue of waiting incidents may hold some: added to with every incident
# queued (in the same write), left by the sweep (free_units) once the queue is empty.
WAITING_DISTRICTS = "dispatch:waiting-districts"


def _removed_key(team_id: str) -> str:
    """A team removed from the roster: when (its removal's `status_at`), so that no older
    status or fix of it, read late, brings it back; kept as long as such an event could come
    (`save_unit_status`'s `removed_kept_s`)."""
    return f"dispatch:removed-unit:{team_id}"


def station_orders_key(team_id: str) -> str:
    """The team's hand-over and follow-up orders (a set of order ids; `_OFFER` adds one and
    drops those no longer live): a station's tasks claim no team, so `dispatch:claim:` does
    not name them, and a team removed from the roster must not keep them (_UNIT_STATUS)."""
    return f"dispatch:station-orders:{team_id}"


async def index_station_order(redis: Redis, team_id: str, order_id: str) -> None:
    """The team's station order `order_id` in its index again (station_orders_key)."""
    await redis.sadd(station_orders_key(team_id), order_id)


def _modes_key(district: str) -> str:
    """Every mode a team of the district was ever seen with (never shrinks): the candidate
    search bounds its radius by the fastest of them, not by the fastest the policy knows."""
    return f"dispatch:modes:{district}"


# A team is free: available and on shift in the projection, and claimed by no live order
# (see _CLAIMABLE). Used by the projection scripts to tell whether waiting incidents may
# take the team, so the common case (nothing waiting) costs no further round trip.
_FREE = """
local function free_with_waiting(unit_key, team_id, waiting_key)
  if redis.call('ZCARD', waiting_key) == 0 then return 0 end
  local u = redis.call('HMGET', unit_key, 'status', 'on_shift')
  if u[1] ~= 'available' or u[2] ~= '1' then return 0 end
  if redis.call('EXISTS', 'dispatch:claim:' .. team_id) == 1 then return 0 end
  return 1
end
"""

# Newer status wins; a redelivered or reordered older event changes nothing, nor does one
# not newer than the team's removal (KEYS[6]). A removal (ARGV[6] == '1') takes the team
# out of the lists and the map and deletes its record (and a claim no live order holds),
# leaving only the removal's time, for ARGV[7] seconds; each live hand-over or follow-up
# order of the team (KEYS[7]) gets a `removed:{order}` timer (KEYS[8]) due at once, which
# hands it on (Dispatcher.on_removed_team_order_due), and the index goes: a removal read
# again sets none (that timer, finding the team imported again, puts its order back). Set
# LT, not NX: a removal read while that timer fires (the team read imported again, removed
# again since) brings it forward from its lease, so the firing's end leaves it to fire again.
# Returns {applied, free with incidents waiting}.
_UNIT_STATUS = _FREE + """
local at = tonumber(redis.call('HGET', KEYS[1], 'status_at') or '0')
if tonumber(ARGV[1]) < at then return {0, 0} end
local gone = redis.call('GET', KEYS[6])
if gone and tonumber(ARGV[1]) <= tonumber(gone) and ARGV[6] ~= '1' then return {0, 0} end
-- A team now of another district (removed from one roster, imported into the next under
-- its id) leaves the old district's lists and map: its dispatchers no longer see it.
local was = redis.call('HGET', KEYS[1], 'district')
if was and was ~= ARGV[5] then
  redis.call('SREM', 'dispatch:units:' .. was, ARGV[3])
  redis.call('ZREM', 'dispatch:geo:' .. was, ARGV[3])
end
if ARGV[6] == '1' then
  redis.call('SREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('DEL', KEYS[1])
  local claim = redis.call('GET', 'dispatch:claim:' .. ARGV[3])
  if claim then
    local st = redis.call('HGET', 'dispatch:order:' .. claim, 'state')
    if not (st == 'claiming' or st == 'offered' or st == 'acknowledged' or st == 'en_route'
            or st == 'on_scene') then
      redis.call('DEL', 'dispatch:claim:' .. ARGV[3])
    end
  end
  if (not gone) or tonumber(ARGV[1]) > tonumber(gone) then
    redis.call('SET', KEYS[6], ARGV[1], 'EX', ARGV[7])
  end
  for _, order in ipairs(redis.call('SMEMBERS', KEYS[7])) do
    local st = redis.call('HGET', 'dispatch:order:' .. order, 'state')
    if st == 'offered' or st == 'acknowledged' or st == 'en_route' or st == 'on_scene' then
      redis.call('ZADD', KEYS[8], 'LT', ARGV[1], 'removed:' .. order)
    end
  end
  redis.call('DEL', KEYS[7])
  return {1, 0}
end
if gone then redis.call('DEL', KEYS[6]) end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[2])))
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[4])
local pos = redis.call('HMGET', KEYS[1], 'lat', 'lon')
if pos[1] and pos[2] then redis.call('GEOADD', KEYS[3], pos[2], pos[1], ARGV[3]) end
-- A team now of another agency (ARGV[8]), or no longer a police station's (ARGV[9] '0'): a
-- roster import moved it. Its live station orders are handed on (a `moved:` timer each, set
-- once); those that ended leave its index.
for _, order in ipairs(redis.call('SMEMBERS', KEYS[7])) do
  local o = redis.call('HMGET', 'dispatch:order:' .. order, 'state', 'agency_id')
  local st = o[1]
  if st == 'offered' or st == 'acknowledged' or st == 'en_route' or st == 'on_scene' then
    if ARGV[9] ~= '1' or o[2] ~= ARGV[8] then
      redis.call('ZADD', KEYS[8], 'LT', ARGV[1], 'moved:' .. order)
    end
  else
    redis.call('SREM', KEYS[7], order)
  end
end
-- A team now of another kind or role (ARGV[10], as domain.sent_as names it) than its live
-- order was sent to it as, or last judged as (`judged_as`; `moved_to_volunteers` marked
-- before that was kept): its category may not list the new kind (a police case left to
-- guards), its incident may bar volunteers (a weapon), which that order never checked, or
-- want an escort for them (a P1). So with other skills (ARGV[11], domain.skills_signature;
-- `judged_skills`, else `skills` as sent; an order written before it kept none): its
-- category may require one it lost (first aid). So under another agency (ARGV[8];
-- `judged_agency`, else `agency_id` as sent): its category may go to its zone's own
-- station only (a fraud warning), which a station team moved to another station is not. A
-- `moved:{order}` timer, set once, judges it (Dispatcher.on_moved_team_order_due), and
-- marks what it judged: a team's next statuses set none, until it moves again.
-- Both set `moved:` LT, not NX: a timer firing holds its lease's score (later than now),
-- and a move read meanwhile (the import putting right the one being judged) brings it
-- forward, so the firing's end leaves it to fire again (finish_timer); NX left it at the
-- lease, removed as handled, and the move back was never judged.
local claim = redis.call('GET', 'dispatch:claim:' .. ARGV[3])
if claim then
  local o = redis.call('HMGET', 'dispatch:order:' .. claim, 'state', 'agency_kind',
                       'moved_to_volunteers', 'agency_role', 'judged_as', 'skills',
                       'judged_skills', 'agency_id', 'judged_agency')
  local st = o[1]
  if (st == 'offered' or st == 'acknowledged' or st == 'en_route' or st == 'on_scene')
      and o[2] then
    local judged = o[5]
    if not judged or judged == '' then
      if o[3] == '1' then
        judged = 'volunteer'
      elseif o[4] and o[4] ~= '' then
        judged = o[2] .. ':' .. o[4]
      else
        judged = o[2]
      end
    end
    local skills = o[7] or o[6]
    local agency = o[9] or o[8]
    if judged ~= ARGV[10] or (skills and skills ~= ARGV[11])
        or (agency and agency ~= ARGV[8]) then
      redis.call('ZADD', KEYS[8], 'LT', ARGV[1], 'moved:' .. claim)
    end
  end
end
return {1, free_with_waiting(KEYS[1], ARGV[3], KEYS[4])}
"""

# Fixes of many teams, four arguments each (team, ts, lat, lon): a newer fix wins. Returns,
# per fix, {applied, free with incidents of its district waiting}.
_UNIT_POSITIONS = _FREE + """
local out = {}
for i = 1, #ARGV, 4 do
  local team, ts, lat, lon = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local key = 'dispatch:unit:' .. team
  local at = tonumber(redis.call('HGET', key, 'fix_ts') or '0')
  -- a fix of a team removed since (read late) would leave a record nobody removes
  local gone = tonumber(redis.call('GET', 'dispatch:removed-unit:' .. team) or '0')
  if tonumber(ts) <= at or tonumber(ts) <= gone then
    out[#out + 1] = {0, 0}
  else
    redis.call('HSET', key, 'lat', lat, 'lon', lon, 'fix_ts', ts)
    local district = redis.call('HGET', key, 'district')
    if not district then
      redis.call('HSET', key, 'team_id', team)
      out[#out + 1] = {1, 0}
    else
      redis.call('GEOADD', 'dispatch:geo:' .. district, lon, lat, team)
      out[#out + 1] = {1, free_with_waiting(key, team, 'dispatch:waiting:' .. district)}
    end
  end
end
return out
"""


def of_a_station(agency_kind: str, agency_role: str | None) -> bool:
    """Whether a team of this agency is a police station's (a station's role is the
    default): only such a team answers a station's hand-over or follow-up."""
    return agency_kind == "police" and (agency_role or "station") == "station"


async def save_unit_status(redis: Redis, *, at: datetime, fields: dict[str, str],
                           removed: bool = False, removed_kept_s: int = 0
                           ) -> tuple[bool, bool]:
    """Project a team's status; (applied, free while incidents of its district wait).
    `removed`: the team left the roster: out of the projection, and no status or fix of it
    not newer than this one counts for `removed_kept_s` (how long one could still be read).
    A team a roster import put under another agency, or whose agency is no longer a police
    station, has its live station orders handed on (`moved:` timers), in the same script;
    a team holding an order sent to it as another kind or role, with other skills or of
    another agency (or last judged so), has that order judged by a `moved:` timer too
    (on_moved_team_order_due): no round trip of its own for the many statuses of teams
    whose agency, kind and skills did not change. The team's record keeps its skills' signature
    (`skills_sig`), which the offer's script compares with its order's."""
    skills = skills_signature(json.loads(fields.get("skills") or "[]"))
    flat = [x for kv in fields.items() for x in kv] + ["status_at", repr(at.timestamp()),
                                                       "skills_sig", skills]
    district = fields["district"]
    team_id = fields["team_id"]
    applied, retry = await run_script(
        redis, _UNIT_STATUS, [_unit_key(team_id), f"dispatch:units:{district}",
                              _geo_key(district), _waiting_key(district), _modes_key(district),
                              _removed_key(team_id), station_orders_key(team_id), TIMERS],
        [repr(at.timestamp()), ascii_json(flat), team_id, fields["mode"], district,
         "1" if removed else "0", str(max(1, removed_kept_s)), fields.get("agency_id", ""),
         "1" if of_a_station(fields.get("agency_kind", ""), fields.get("agency_role"))
         else "0", sent_as(fields.get("agency_kind", ""), fields.get("agency_role")), skills])
    return bool(applied), bool(retry)


async def save_unit_position(redis: Redis, *, team_id: str, lat: float, lon: float,
                             at: datetime) -> tuple[bool, bool]:
    """Project a team's fix; (applied, free while incidents of its district wait)."""
    [(applied, retry)] = await save_unit_positions(redis, [(team_id, lat, lon, at)])
    return applied, retry


async def save_unit_positions(redis: Redis, fixes: list[tuple[str, float, float, datetime]]
                              ) -> list[tuple[bool, bool]]:
    """Project many teams' fixes (team, lat, lon, at) in one script call; for each,
    (applied, free while incidents of its district wait)."""
    args = [x for team_id, lat, lon, at in fixes
            for x in (team_id, repr(at.timestamp()), repr(lat), repr(lon))]
    return [(bool(applied), bool(retry))
            for applied, retry in await run_script(redis, _UNIT_POSITIONS, [], args)]


def _unit_from(data: dict[str, str]) -> Unit | None:
    if "agency_kind" not in data:
        return None
    fix = data.get("fix_ts")
    return Unit(
        team_id=data["team_id"],
        agency_id=data["agency_id"],
        agency_kind=data["agency_kind"],
        agency_role=data.get("agency_role") or None,
        mode=data["mode"],
        district=data["district"],
        status=data.get("status", "off_duty"),
        on_shift=data.get("on_shift") == "1",
        skills=tuple(json.loads(data.get("skills") or "[]")),
        home_zone_id=data.get("home_zone_id") or None,
        name=data.get("name") or None,
        lat=float(data["lat"]) if "lat" in data else None,
        lon=float(data["lon"]) if "lon" in data else None,
        fix_at=datetime.fromtimestamp(float(fix), UTC) if fix else None,
        missed_in_a_row=int(data.get("missed_in_a_row") or 0),
        missed_since=(datetime.fromisoformat(data["missed_since"])
                      if data.get("missed_since") else None),
    )


# A team's orders in a row timed out (domain.Unit.missed_in_a_row), kept on its record in
# the projection, which a status or fix updates field by field (its removal deletes it).
# Counted by the timeout's own write (write_incident_step's `missed`), the run's start kept
# from its first, only while the record is there: checked in that script, not by a read
# before it (a round trip, and a removal landing in between left a record of the count
# alone, for ever).
MISSED_FIELDS = ("missed_in_a_row", "missed_since")


def answered_command(team_id: str) -> tuple[str, ...]:
    """The command, for a step's end, that ends the team's run of missed orders: it
    answered one (a field deleted from no record writes nothing)."""
    return ("HDEL", _unit_key(team_id), *MISSED_FIELDS)


async def get_unit(redis: Redis, team_id: str) -> Unit | None:
    return _unit_from(await redis.hgetall(_unit_key(team_id)))


def _unit_from_flat(flat: list[str]) -> Unit | None:
    return _unit_from(dict(zip(flat[::2], flat[1::2], strict=True)))


# The district's candidates for one incident, pruned in Redis: every team within the radius
# is checked against the query (domain.CandidateQuery: the same eligibility and score as
# domain.rank_candidates) and only the best `keep` overall, of each answering kind, and
# (a P1, or a volunteer team's call for backup: `escort`) of the police or security teams
# that may escort volunteers, whatever the category's kinds and skills (domain.may_escort),
# are returned, as HGETALL arrays.
# Reading and ranking 400 teams in Python cost dispatch 5 ms per incident;
# domain.rank_candidates still ranks what comes
# back, and a property test holds the pruning to "never drops a team choose_units would
# send" (tests/integration/dispatch/test_candidates.py).
_CANDIDATES = """
local q = cjson.decode(ARGV[4])
local lon0, lat0 = tonumber(ARGV[1]), tonumber(ARGV[2])
local rad = math.pi / 180
local function distance(lat, lon)
  local p1, p2 = lat0 * rad, lat * rad
  local dp, dl = p2 - p1, (lon - lon0) * rad
  local h = math.sin(dp / 2) ^ 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ^ 2
  return 2 * 6371000.0 * math.asin(math.sqrt(h))
end
local entries, keep = q.entries, q.keep
-- The fastest a farther team could be: that of the fastest mode seen in the district (the
-- set only grows), or the policy's fastest before any was seen.
local fastest = 0
for _, mode in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local speed = q.speeds[mode] or q.default_speed
  if speed > fastest then fastest = speed end
end
if fastest == 0 then fastest = q.max_speed end
-- groups: 1..#entries (each answering kind), then the escorts, then everyone that answers
local groups = {}
for g = 1, #entries + 2 do groups[g] = {} end
local escort, overall = #entries + 1, #entries + 2
-- rank_candidates' order: score (to the millisecond), the home zone first, then the id
local function before(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  if a[3] ~= b[3] then return a[3] < b[3] end
  return a[1] < b[1]
end
-- Only the groups choose_units may look at on their own are kept (and must fill up).
local active = {}
for i, entry in ipairs(entries) do active[i] = entry.group end
active[escort], active[overall] = q.escort, true
local changed = false
local function offer(g, row)
  if not active[g] then return end
  local list = groups[g]
  local n = #list
  if n >= keep and not before(row, list[n]) then return end
  local at = n + 1
  while at > 1 and before(row, list[at - 1]) do at = at - 1 end
  table.insert(list, at, row)
  if #list > keep then list[#list] = nil end
  changed = true
end
-- The radius is the domain's (domain.distance_m, on 6,371,000 m): Redis measures a
-- GEOSEARCH on 6,372,797.56 m (~0.028 % longer) from geohash-rounded places, so BYRADIUS
-- 10 km missed a team the domain puts at 9,999 m. The rings reach a little farther and
-- each team is judged on the domain's distance.
local reach_m = tonumber(ARGV[3]) * 1000
-- The worst score any group would still take (infinite while a group is not full).
local ceiling = math.huge
local function recompute_ceiling()
  local worst = 0
  for g = 1, overall do
    if active[g] then
      local list = groups[g]
      if #list < keep then return math.huge end
      if list[#list][2] > worst then worst = list[#list][2] end
    end
  end
  return worst
end
local function score_row(id, eta, rank, home)
  return {id, math.floor((eta + rank * q.rank_step) * 1000 + 0.5) / 1000, home}
end
-- One team within the radius: kept in the groups it may enter, if eligible now.
local function consider(id)
  if not q.excluded[id] and redis.call('EXISTS', 'dispatch:claim:' .. id) == 0 then
    local u = redis.call('HMGET', 'dispatch:unit:' .. id, 'status', 'on_shift', 'agency_kind',
                         'agency_role', 'agency_id', 'mode', 'skills', 'fix_ts', 'lat', 'lon',
                         'home_zone_id', 'district')
    -- The team's district now (a team removed and imported again elsewhere under its id
    -- leaves its old place in this district's GEO index): only the command room's
    -- assignment reaches outside the incident's district.
    if u[1] == 'available' and u[2] == '1' and u[8] and u[9] and u[10]
       and u[12] == q.district and tonumber(u[8]) >= q.min_fix_ts then
      local kind = u[3]
      local role = (u[4] and u[4] ~= '') and u[4] or 'station'
      local rank = nil
      for i, entry in ipairs(entries) do
        if entry.kind == 'any' or (entry.kind == kind and (entry.role == '' or entry.role == role)) then
          rank = i - 1
          break
        end
      end
      -- An escort (a P1's, a volunteer team's backup): any police or security team free
      -- and placed, whatever the category's kinds, skills or station; a kind the list
      -- lacks ranks below all of it.
      local escorting = q.escort and (kind == 'police' or kind == 'security')
      local ok = rank ~= nil
      if ok and q.station ~= '' and kind == 'police' and role == 'station' and u[5] ~= q.station then
        ok = false
      end
      if ok and q.bar_volunteers and kind == 'volunteer' then ok = false end
      if ok and #q.skills > 0 then
        local have = {}
        for _, skill in ipairs(cjson.decode(u[7] or '[]')) do have[skill] = true end
        for _, skill in ipairs(q.skills) do if not have[skill] then ok = false end end
      end
      local d = (ok or escorting) and distance(tonumber(u[9]), tonumber(u[10]))
      if d and d <= reach_m then
        local speed = q.speeds[u[6]] or q.default_speed
        local eta = d * q.road_factor / speed
        local away = (q.zone_id ~= '' and u[11] == q.zone_id) and 0 or 1
        if escorting then offer(escort, score_row(id, eta, rank or #entries, away)) end
        if ok then
          local row = score_row(id, eta, rank, away)
          offer(overall, row)
          for i, entry in ipairs(entries) do
            if entry.kind == 'any' or (entry.kind == kind and (entry.role == '' or entry.role == role)) then
              offer(i, row)
            end
          end
        end
        if changed then
          ceiling = recompute_ceiling()
          changed = false
        end
      end
    end
  end
end
-- Nearest first, a ring at a time from 1 km (a district's whole radius is hundreds of
-- teams, and a GEOSEARCH costs what its radius covers: 10 km ~95 us, 2 km ~26 us): once
-- every group holds `keep` teams that beat the best any farther team could do (its
-- distance at the fastest speed), the rest cannot change the outcome. A wider ring skips
-- the teams already read.
local read, radius, max_radius = {}, 1.0, tonumber(ARGV[3]) * 1.001 + 0.001
local function beyond(km)  -- no team this far or farther can enter any group
  return (km * 999 - 1) * q.road_factor / fastest > ceiling + 0.001
end
while true do
  if radius > max_radius then radius = max_radius end
  local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
                           'BYRADIUS', radius, 'km', 'ASC', 'WITHDIST')
  local stop = false
  for _, hit in ipairs(found) do
    local id = hit[1]
    if not read[id] then
      read[id] = true
      if beyond(tonumber(hit[2])) then
        stop = true
        break
      end
      consider(id)
    end
  end
  if stop or radius >= max_radius or beyond(radius) then break end
  radius = radius * 2
end
local picked, out = {}, {}
for g = 1, overall do
  for _, row in ipairs(groups[g]) do
    if not picked[row[1]] then
      picked[row[1]] = true
      out[#out + 1] = redis.call('HGETALL', 'dispatch:unit:' .. row[1])
    end
  end
end
return out
"""


async def candidates(redis: Redis | ScriptBatch, query: CandidateQuery) -> list[Unit]:
    """Free teams near the incident that may answer it: at least the best `query.keep` of
    each kind the category allows (see _CANDIDATES), unordered."""
    found = await run_script(redis, *_candidates_call(query))
    return [u for u in map(_unit_from_flat, found) if u is not None]


def _candidates_call(query: CandidateQuery) -> tuple[str, list[str], list[str]]:
    return (_CANDIDATES, [_geo_key(query.district), _modes_key(query.district)],
            [repr(query.lon), repr(query.lat), repr(query.radius_km),
             ascii_json(query.for_script())])


async def units_in(redis: Redis, district: str) -> list[tuple[Unit, str | None]]:
    """Every unit of a district with its open order, if any."""
    ids = await redis.smembers(f"dispatch:units:{district}")
    async with redis.pipeline(transaction=False) as pipe:
        for team_id in sorted(ids):
            pipe.hgetall(_unit_key(team_id))
            pipe.get(f"dispatch:claim:{team_id}")
        replies = await pipe.execute()
    out = []
    for data, claim in zip(replies[::2], replies[1::2], strict=True):
        unit = _unit_from(data)
        if unit is not None:
            out.append((unit, claim))
    return out


# Whether a team of the districts (KEYS: their lists of teams) is on shift in the
# projection: 1 at the first found, else 0. Read every few seconds per console (GET
# /v1/pipeline); on shift, the first team looked at usually ends it, and a district with
# nobody on shift costs a lookup per team (a few hundred, well under a millisecond).
_ANY_ON_SHIFT = """
for _, listed in ipairs(KEYS) do
  for _, team in ipairs(redis.call('SMEMBERS', listed)) do
    if redis.call('HGET', 'dispatch:unit:' .. team, 'on_shift') == '1' then return 1 end
  end
end
return 0
"""


async def queue_any_on_shift(pipe: Pipeline, districts: Sequence[str]) -> None:
    """Queue on `pipe` whether any team of `districts` is on shift (1 or 0)."""
    await run_script(pipe, _ANY_ON_SHIFT, [f"dispatch:units:{d}" for d in districts], [])


async def units_of_agency(redis: Redis, *, district: str, agency_id: str) -> list[Unit]:
    return [unit for unit, _ in await units_in(redis, district) if unit.agency_id == agency_id]


# --- claims ---------------------------------------------------------------------------

# A claim held by an order that is no longer live (or is this very order) does not block.
_CLAIMABLE = """
local function claimable(claim_key, unit_key, order_id, require_available)
  local cur = redis.call('GET', claim_key)
  if cur == order_id then return true end
  if cur then
    local st = redis.call('HGET', 'dispatch:order:' .. cur, 'state')
    if st == 'claiming' or st == 'offered' or st == 'acknowledged' or st == 'en_route'
       or st == 'on_scene' then return false end
  end
  if require_available == '1' then
    if redis.call('HGET', unit_key, 'status') ~= 'available' then return false end
    if redis.call('HGET', unit_key, 'on_shift') ~= '1' then return false end
  end
  return true
end
"""

_CLAIM = _CLAIMABLE + """
if not claimable(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A new order, its claim on the team (for orders that claim one), the team's place among the
# incident's offered teams, its acknowledge deadline and its timeline entry, in one step:
# either the team is claimed and the order is there, or nothing was written. With
# ARGV[10] == '1' the same step makes the step's last writes (LastWrites) too: order.issued
# and the order's published mark, the incident's change (as queue_incident_change), its
# incident.updated, off the waiting list (or, still short of units, on it and its district
# among WAITING_DISTRICTS), and its lock released (token compared, as
# locks.release_in_script). With a lock token in ARGV[9], nothing is written unless the
# incident's lock (KEYS[9]) still holds it: a step whose lock expired while it stalled
# (another step may have given the incident its team since) writes no second order.
# Returns {offered (-1: the lock was lost), first order of the incident}. An order that
# exists already means this very script ran before (every offer has a new order id) and
# redis-py sent it again after losing its reply: it is offered, and nothing is written
# twice (the lock it released may have let other steps change the incident since).
_OFFER = _CLAIMABLE + XADD_LUA + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- written already: by this very call, sent again by redis-py after its reply was lost,
  -- when the incident's first assignment is this call's time (so it is counted once)
  if ARGV[8] ~= '' and redis.call('HGET', KEYS[8], 'first_assigned_at') == ARGV[8] then
    return {1, 1}
  end
  return {1, 0}
end
if ARGV[9] ~= '' and redis.call('GET', KEYS[9]) ~= ARGV[9] then return {-1, 0} end
if ARGV[3] == '1' then
  if not claimable(KEYS[3], KEYS[4], ARGV[1], ARGV[4]) then return {0, 0} end
  redis.call('SET', KEYS[3], ARGV[1])
end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[2])))
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[5])
local kind = redis.call('HGET', KEYS[1], 'kind')
if (kind == 'handover' or kind == 'followup') and redis.call('EXISTS', KEYS[4]) == 0
   and redis.call('EXISTS', 'dispatch:removed-unit:' .. ARGV[5]) == 1 then
  -- its team was removed after the step chose it (_UNIT_STATUS): handed on at once
  redis.call('ZADD', KEYS[6], 'NX', 0, 'removed:' .. ARGV[1])
elseif kind == 'handover' or kind == 'followup' then
  -- its team was moved to another agency after the step chose it (a roster import; the
  -- move's look at the team's index, save_unit_status, came before this order):
  -- handed on at once
  local now_of = redis.call('HGET', KEYS[4], 'agency_id')
  if now_of and now_of ~= redis.call('HGET', KEYS[1], 'agency_id') then
    redis.call('ZADD', KEYS[6], 'NX', 0, 'moved:' .. ARGV[1])
  end
  -- the team's station orders (station_orders_key), kept to the live ones
  local index = 'dispatch:station-orders:' .. ARGV[5]
  for _, other in ipairs(redis.call('SMEMBERS', index)) do
    local st = redis.call('HGET', 'dispatch:order:' .. other, 'state')
    if not (st == 'offered' or st == 'acknowledged' or st == 'en_route' or st == 'on_scene') then
      redis.call('SREM', index, other)
    end
  end
  redis.call('SADD', index, ARGV[1])
elseif ARGV[3] == '1' then
  -- its team was moved to another agency, kind or role, or given other skills, after the
  -- step chose it (a roster import into a volunteer agency, or one its category does not
  -- list, or another police station; first aid taken off it; the move's look at the
  -- team's claim, save_unit_status, came before this order): judged at once, as that look
  -- would have
  -- (Dispatcher.on_moved_team_order_due). A record saved before teams kept their skills'
  -- signature (`skills_sig`) compares none.
  local now_is = redis.call('HMGET', KEYS[4], 'agency_kind', 'agency_role', 'skills_sig',
                           'agency_id')
  local sent = redis.call('HMGET', KEYS[1], 'agency_kind', 'agency_role', 'skills',
                          'agency_id')
  if now_is[1] and (now_is[1] ~= sent[1] or (now_is[2] or '') ~= (sent[2] or '')
                    or (now_is[3] and now_is[3] ~= (sent[3] or ''))
                    or (now_is[4] or '') ~= (sent[4] or '')) then
    redis.call('ZADD', KEYS[6], 'NX', 0, 'moved:' .. ARGV[1])
  end
end
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[6], ARGV[6], 'ack:' .. ARGV[1]) end
redis.call('RPUSH', KEYS[7], ARGV[7])
local first = 0
if ARGV[8] ~= '' then first = redis.call('HSETNX', KEYS[8], 'first_assigned_at', ARGV[8]) end
if ARGV[10] == '1' then
  xadd(KEYS[10], ARGV[11], ARGV[12])
  redis.call('HSET', KEYS[1], 'published', '1')
  redis.call('HSET', KEYS[8], unpack(cjson.decode(ARGV[13])))
  -- the incident's place among the flagged, in step with its `flagged` (as queue_flag)
  if ARGV[22] == '1' then
    redis.call('ZADD', KEYS[15], ARGV[23], ARGV[19])
    redis.call('ZADD', KEYS[16], ARGV[23], ARGV[19])
  elseif ARGV[22] == '0' then
    redis.call('ZREM', KEYS[15], ARGV[19])
    redis.call('ZREM', KEYS[16], ARGV[19])
  end
  if ARGV[14] ~= ARGV[15] then
    redis.call('HINCRBY', KEYS[12], ARGV[14], -1)
    redis.call('HINCRBY', KEYS[12], ARGV[15], 1)
  end
  redis.call('RPUSH', KEYS[7], ARGV[16])
  xadd(KEYS[11], ARGV[17], ARGV[18])
  if ARGV[21] ~= '' then
    redis.call('ZADD', KEYS[13], ARGV[21], ARGV[19])
    redis.call('SADD', KEYS[17], ARGV[24])
  else redis.call('ZREM', KEYS[13], ARGV[19]) end
  if ARGV[20] ~= '' and redis.call('GET', KEYS[14]) == ARGV[20] then
    redis.call('DEL', KEYS[14])
  end
end
return {1, first}
"""


@dataclass(frozen=True, slots=True)
class LastWrites:
    """A step's last writes after its one new order, made by the order's own script (one
    round trip instead of the offer's and a transaction's): nothing of it is written when
    the claim is lost. The entries are FastStream envelopes (shared.bus.entry_to_write)."""

    order_issued: bytes
    incident_changes: dict[str, str]
    old_status: str
    status_entry: TimelineEntry
    incident_updated: bytes
    district: str
    lock_key: str = ""
    lock_token: str = ""  # "" = no lock to release
    short_score: float | None = None  # still short of units: stays waiting, at this score
    # the incident's place among the flagged (reported_ts), given when incident_changes
    # sets `flagged`
    reported_ts: float | None = None


async def claim_unit(redis: Redis, *, team_id: str, order_id: str,
                     require_available: bool = True) -> bool:
    """Give the team this (already stored) order unless it already holds one: one Lua call,
    so two dispatch replicas (or two incidents at once) can never give one team two open
    orders. The engine claims through offer_order, which runs the same _CLAIMABLE check in
    the script that writes the order; tests/integration/dispatch/test_claims.py holds the
    check's rules to account through this function."""
    return bool(await run_script(redis, _CLAIM, [f"dispatch:claim:{team_id}", _unit_key(team_id)],
                           [order_id, "1" if require_available else "0"]))


async def release_unit(redis: Redis, *, team_id: str, order_id: str) -> bool:
    return bool(await run_script(redis, _RELEASE, [f"dispatch:claim:{team_id}"], [order_id]))


_FREE_WITH_WAITING = _FREE + """
return free_with_waiting(KEYS[1], ARGV[1], KEYS[2])
"""


async def free_with_waiting(redis: Redis | Pipeline, *, team_id: str, district: str) -> Any:
    """Whether the team is free (available, on shift, no claim) while incidents of the
    district wait for one (1 or 0; on a pipeline, queued: its reply comes with the rest)."""
    return await run_script(redis, _FREE_WITH_WAITING, [_unit_key(team_id), _waiting_key(district)],
                            [team_id])


# The district's teams free while its incidents wait (free_with_waiting), as HGETALL arrays;
# a district with none waiting leaves WAITING_DISTRICTS (KEYS[3]) instead: an incident
# queued meanwhile names it again in the write that queues it.
_FREE_UNITS = _FREE + """
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return {}
end
local out = {}
for _, team in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = 'dispatch:unit:' .. team
  if free_with_waiting(key, team, KEYS[2]) == 1
     and redis.call('HGET', key, 'district') == ARGV[1] then
    out[#out + 1] = redis.call('HGETALL', key)
  end
end
return out
"""


async def free_units(redis: Redis, district: str) -> list[Unit]:
    """The district's teams free in dispatch's view (available, on shift, no claim) while
    incidents of it wait; none when none waits (the district then leaves
    waiting_districts)."""
    found = await run_script(redis, _FREE_UNITS, [f"dispatch:units:{district}",
                                                  _waiting_key(district), WAITING_DISTRICTS],
                             [district])
    return [u for u in map(_unit_from_flat, found) if u is not None]


async def claim_of(redis: Redis, team_id: str) -> str | None:
    return await redis.get(f"dispatch:claim:{team_id}")


async def districts_with_claims(redis: Redis) -> set[str]:
    """The districts of the teams holding an order (a claim): those with live orders sent to
    a team. Read by SCAN, which walks the whole keyspace: for dispatch's start, not a round."""
    prefix = "dispatch:claim:"
    teams = [key.removeprefix(prefix) async for key in
             redis.scan_iter(match=f"{prefix}*", count=1000, _type="string")]
    found: set[str] = set()
    for start in range(0, len(teams), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for team_id in teams[start:start + 500]:
                pipe.hget(_unit_key(team_id), "district")
            found.update(d for d in await pipe.execute() if d)
    return found


# --- incidents ------------------------------------------------------------------------


ALL_INCIDENTS = "dispatch:incidents"  # zset by the time reported; district_key: a district's
# The same incidents by when dispatch received each (its `received_at`), all districts' here,
# one district's at received_key: the board's `?order=received`, the console's. A report
# that reached dispatch late (a 110 system's queue stuck, a video system catching up after a
# network cut) is the newest there, however long before it was reported; by the time
# reported it may be behind hundreds of newer ones. Written in the incident's creation
# (first_step), removed with the others (records._forget).
RECEIVED = "dispatch:received"


def incident_key(incident_id: str) -> str:
    return f"dispatch:incident:{incident_id}"


def district_key(district: str) -> str:
    return f"dispatch:district:{district}"


def received_key(district: str) -> str:
    return f"dispatch:received:{district}"


def timeline_key(incident_id: str) -> str:
    return f"dispatch:timeline:{incident_id}"


def orders_key(incident_id: str) -> str:
    return f"dispatch:orders:{incident_id}"


def offered_key(incident_id: str) -> str:
    """The teams the incident was offered to: never offered it again (they declined it,
    missed its deadline, or the command room took them off it), but see queue_offer_again."""
    return f"dispatch:offered:{incident_id}"


def queue_offer_again(pipe: Pipeline, *, incident_id: str, team_id: str) -> None:
    """The team may be offered the incident again: nobody turned it down for it (its offer
    went with its shift, or dispatch took it off for a roster or zone move)."""
    pipe.srem(offered_key(incident_id), team_id)


# One step: when the id was claimed (HSETNX) before the fields were written, a crash in
# between left a record holding only its id, which reads as missing and which the
# redelivered report then took for "exists already": the incident was lost for good. The
# status count and the first timeline entry go in the same step, and so does taking the
# incident's lock (KEYS[6] with token ARGV[6], see locks.py): -1 when another worker holds
# it (nothing written), else 1 created (SENT_OUT: created, and KEYS[9], its sent_on, names
# the report sent out in its place) or 0 exists already, the lock held either way. The
# indexes by report time (KEYS[2], KEYS[3], score ARGV[2]) and by receipt (KEYS[10],
# KEYS[11], score ARGV[5]); the timeline's first entries from ARGV[8] on.
_CREATE_INCIDENT = """
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[6] then return -1 end
if not holder then redis.call('SET', KEYS[6], ARGV[6], 'PX', ARGV[7]) end
if redis.call('HEXISTS', KEYS[1], 'district') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'incident_id', ARGV[1], unpack(cjson.decode(ARGV[3])))
-- the duty leader when it came in supervises it until done (whoever receives it first)
local duty = redis.call('HMGET', KEYS[7], 'dispatcher_id', 'name')
if duty[1] then
  redis.call('HSET', KEYS[1], 'supervisor_id', duty[1], 'supervisor_name', duty[2] or '')
end
-- the reporting system's reference, by which a caller asks the command room about it
if KEYS[8] ~= '' then redis.call('SADD', KEYS[8], ARGV[1]) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[10], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[11], ARGV[5], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
if #ARGV >= 8 then redis.call('RPUSH', KEYS[5], unpack(ARGV, 8)) end
-- a report of its event was sent out in its place meanwhile (queue_sent_on)
if KEYS[9] ~= '' and redis.call('EXISTS', KEYS[9]) == 1 then return 2 end
return 1
"""


SENT_OUT = 2  # first_step: created, and a report of its event was sent out in its place


async def first_step(redis: Redis | ScriptBatch, *, incident_id: str, district: str,
                     reported_ts: float, received_ts: float, fields: dict[str, str],
                     entries: Sequence[TimelineEntry], lock_key: str, token: str, ttl_ms: int,
                     query: CandidateQuery | None) -> tuple[int, list[Unit]]:
    """A report's first round trip: take the incident's lock and store the incident
    (counted in its status, in the board's indexes by the time reported and by the time
    received, with its first timeline entries and the district's duty leader
    as its supervisor), and search its candidates
    with `query` (nearly every report is new: the search is then ready); both scripts go
    with the rest of `redis`'s batch when it is a ScriptBatch. Returns -1 when
    another worker holds the lock (nothing written), 0 when the incident exists already
    (a redelivered report; the candidates do not count), 1 when created, SENT_OUT when
    created but a report linked to it was sent out in its place (sent_on: it came late, a
    dead letter replayed); and the candidates."""
    flat = [x for kv in fields.items() for x in kv]
    batch = redis if isinstance(redis, ScriptBatch) else ScriptBatch(redis)
    created = batch.submit(
        _CREATE_INCIDENT,
        [incident_key(incident_id), ALL_INCIDENTS, district_key(district),
         STATUS_COUNTS, timeline_key(incident_id), lock_key, duty_key(district),
         ref_key(district, fields.get("external_ref") or "") if fields.get("external_ref") else "",
         _sent_on_key(incident_id) if fields["status"] != "linked" else "",
         RECEIVED, received_key(district)],
        [incident_id, repr(reported_ts), ascii_json(flat), fields["status"],
         repr(received_ts), token, ttl_ms, *(e.model_dump_json() for e in entries)])
    if query is None:
        return int(await created), []
    reply, found = await asyncio.gather(created, batch.submit(*_candidates_call(query)))
    return int(reply), [u for u in map(_unit_from_flat, found) if u is not None]


# An incident with its orders and the teams it was offered to, and whether an event was
# already handled (KEYS[4], a done mark's key as end_step sets it; '' for none), in one
# round trip.
_INCIDENT_STATE = """
local incident = redis.call('HGETALL', KEYS[1])
local orders = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local order = redis.call('HGETALL', 'dispatch:order:' .. id)
  if #order > 0 then orders[#orders + 1] = order end
end
local seen = 0
if KEYS[4] ~= '' then seen = redis.call('EXISTS', KEYS[4]) end
return {incident, orders, redis.call('SMEMBERS', KEYS[3]), seen}
"""


# _INCIDENT_STATE with the incident's lock taken first (KEYS[5] with token ARGV[1] for
# ARGV[2] ms, see locks.py), in one round trip; false when another step holds the lock.
_LOCK_AND_STATE = """
if not redis.call('SET', KEYS[5], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
""" + _INCIDENT_STATE


@dataclass
class IncidentState:
    incident: dict[str, str] | None
    orders: list[dict[str, str]]
    offered: set[str]
    seen: bool = False


def _as_dict(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _state_keys(incident_id: str, seen: str | None) -> list[str]:
    return [incident_key(incident_id), orders_key(incident_id),
            offered_key(incident_id), _seen_key(seen) if seen else ""]


async def incident_state(redis: Redis, incident_id: str, *, seen: str | None = None
                         ) -> IncidentState:
    """The incident, its orders and offered teams; with `seen`, whether end_step has marked
    that event done."""
    return _state_from(await run_script(redis, _INCIDENT_STATE, _state_keys(incident_id, seen),
                                        []))


async def lock_and_state(redis: Redis, incident_id: str, *, lock_key: str, token: str,
                         ttl_ms: int, seen: str | None = None) -> IncidentState | None:
    """incident_state, after taking the incident's lock with `token` in the same round
    trip; None (nothing read) when another step holds the lock."""
    reply = await run_script(redis, _LOCK_AND_STATE, [*_state_keys(incident_id, seen), lock_key],
                             [token, ttl_ms])
    return _state_from(reply) if reply else None


def _state_from(reply: list[Any]) -> IncidentState:
    incident, orders, offered_, was_seen = reply
    data = _as_dict(incident)
    return IncidentState(incident=data if data.get("district") else None,
                         orders=[_as_dict(o) for o in orders], offered=set(offered_),
                         seen=bool(was_seen))


async def get_incident(redis: Redis, incident_id: str) -> dict[str, str] | None:
    data = await redis.hgetall(incident_key(incident_id))
    return data if data.get("district") else None


async def trace_context(redis: Redis, incident_id: str) -> str | None:
    """The incident's stored trace context (W3C headers as JSON, from its report's span)."""
    return await redis.hget(incident_key(incident_id), "trace_ctx")


# A timer's incident (named by the timer, or by its order's record) and that incident's
# trace context, in one round trip.
_TIMER_INCIDENT = """
local incident_id = ARGV[1]
if incident_id == '' then
  incident_id = redis.call('HGET', KEYS[1], 'incident_id')
  if not incident_id then return {false, false} end
end
return {incident_id, redis.call('HGET', 'dispatch:incident:' .. incident_id, 'trace_ctx')}
"""


async def timer_incident(redis: Redis, *, order_id: str | None = None,
                         incident_id: str | None = None) -> tuple[str | None, str | None]:
    """The incident a timer concerns (`incident_id`, or its order's) and its stored trace
    context; (None, None) for an order no longer kept."""
    found, trace_ctx = await run_script(
        redis, _TIMER_INCIDENT, [order_key(order_id) if order_id else ""],
        [incident_id or ""])
    return found, trace_ctx


async def update_incident(redis: Redis, incident_id: str, fields: dict[str, str]) -> None:
    await redis.hset(incident_key(incident_id), mapping=fields)




STATUS_COUNTS = "dispatch:status-counts"
# Ended incidents by the time of their last change: their records' retention (records.py)
# starts from it.
ENDED = "dispatch:ended"
ENDED_STATUSES = ("resolved", "handed_over", "closed", "linked")


def queue_incident_change(pipe: Pipeline, inc: dict[str, str], changes: dict[str, str], *,
                          entry: TimelineEntry) -> None:
    """Queue on `pipe` the new fields of the incident `inc` (as stored before them), the
    status counts (kept for the metrics as statuses change), its place among the flagged
    incidents and its timeline entry."""
    incident_id, old_status = inc["incident_id"], inc["status"]
    pipe.hset(incident_key(incident_id), mapping=changes)
    new_status = changes.get("status", old_status)
    if new_status != old_status:
        pipe.hincrby(STATUS_COUNTS, old_status, -1)
        pipe.hincrby(STATUS_COUNTS, new_status, 1)
    if new_status in ENDED_STATUSES:
        pipe.zadd(ENDED, {incident_id: time.time()})
    if "flagged" in changes:
        queue_flag(pipe, inc, flagged=changes["flagged"] == "1")
    queue_entry(pipe, incident_id, entry)


def queue_entry(pipe: Pipeline, incident_id: str, entry: TimelineEntry) -> None:
    """Queue `entry` on the incident's timeline: alone, with no change of the incident's
    (no status, seq or incident.updated), for a write that is an order's, not the
    incident's (Dispatcher._withdraw's)."""
    pipe.rpush(timeline_key(incident_id), entry.model_dump_json())


# The incidents flagged now (the board's alarm: DESIGN's unassigned incident "stays on the
# command room's board, flagged, until someone is assigned"; a hand-over no station team
# took), scored by the time reported as the board's indexes are: all districts' here, one
# district's at flagged_key. The console asks for them on every poll, however long ago they
# were reported, and reads these few, not months of reports. Kept in step with the record's
# `flagged` by the very write that sets it (queue_incident_change, _OFFER's last writes),
# so a script redis-py sends again, or one that writes nothing, leaves both alike.
FLAGGED = "dispatch:flagged"


def flagged_key(district: str) -> str:
    return f"dispatch:flagged:{district}"


async def flagged_ids(redis: Redis, keys: Sequence[str]) -> list[str]:
    """Every incident flagged now in the indexes `keys` (FLAGGED, flagged_key): a few."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zrange(key, 0, -1)
        found = await pipe.execute()
    return list(dict.fromkeys(incident_id for ids in found for incident_id in ids))


def reported_ts(inc: dict[str, str]) -> float:
    """The incident's place in the board's indexes: the time reported (as first_step scored
    it); a record stored broken (no such time): -inf, last, as the board lists it."""
    try:
        return datetime.fromisoformat(inc["reported_at"]).timestamp()
    except (KeyError, ValueError, OverflowError):
        return float("-inf")


def queue_flag(pipe: Pipeline, inc: dict[str, str], *, flagged: bool) -> None:
    """Queue the incident's entry into the indexes of flagged incidents, or its leaving them."""
    incident_id = inc["incident_id"]
    for key in (FLAGGED, flagged_key(inc["district"])):
        if flagged:
            pipe.zadd(key, {incident_id: reported_ts(inc)})
        else:
            pipe.zrem(key, incident_id)


# Incidents flagged before FLAGGED was kept, a page of ALL_INCIDENTS (id, score pairs): each
# flagged one joins FLAGGED and its district's at its place on the board. One script, so a
# step that changes a flag meanwhile comes wholly before or after the look at it.
_INDEX_FLAGGED = """
local added = 0
for i = 1, #ARGV, 2 do
  local id, score = ARGV[i], ARGV[i + 1]
  local inc = redis.call('HMGET', 'dispatch:incident:' .. id, 'flagged', 'district')
  if inc[1] == '1' and inc[2] then
    added = added + redis.call('ZADD', KEYS[1], 'NX', score, id)
    redis.call('ZADD', 'dispatch:flagged:' .. inc[2], 'NX', score, id)  -- flagged_key
  end
end
return added
"""


# Station orders made before a team's were indexed (station_orders_key), for a page of
# incidents (ids): the live hand-over or follow-up order each names joins its team's index.
# One script, so a step that ends or hands on such an order meanwhile comes wholly before or
# after the look at it.
_INDEX_STATION_ORDERS = """
local added = 0
for _, id in ipairs(ARGV) do
  local marks = redis.call('HMGET', 'dispatch:incident:' .. id, 'handover_order',
                           'followup_order')
  for _, order in ipairs(marks) do
    if order and order ~= '' then
      local o = redis.call('HMGET', 'dispatch:order:' .. order, 'state', 'kind', 'team_id')
      local st = o[1]
      if (st == 'offered' or st == 'acknowledged' or st == 'en_route' or st == 'on_scene')
         and (o[2] == 'handover' or o[2] == 'followup') and o[3] then
        added = added + redis.call('SADD', 'dispatch:station-orders:' .. o[3], order)
      end
    end
  end
end
return added
"""


async def index_station_orders(redis: Redis, incident_ids: Sequence[str]) -> int:
    """The live hand-over and follow-up orders the incidents name, each in its team's index
    (station_orders_key); the number newly added."""
    return int(await run_script(redis, _INDEX_STATION_ORDERS, [], list(incident_ids)))


async def index_flagged(redis: Redis, page: Sequence[tuple[str, float]]) -> int:
    """The flagged incidents of `page` (id, score in ALL_INCIDENTS) indexed as flagged; the
    number newly added."""
    args = [x for incident_id, score in page for x in (incident_id, repr(score))]
    return int(await run_script(redis, _INDEX_FLAGGED, [FLAGGED], args))


def queue_incident_fields(pipe: Pipeline, incident_id: str, fields: dict[str, str]) -> None:
    pipe.hset(incident_key(incident_id), mapping=fields)


# The reports linked to an incident now (duplicates that joined it), scored by when
# dispatch received each (linked_key), and how many of them each source reported
# (linked_sources_key: linked.report_source -> count): the incident's view lists them by
# who reported them, its board row counts them (the board leaves linked reports out, and a
# caller's account among a camera's repeats was then on no screen but a timeline line).
# Written with the report's link (its record's `linked_index` names the incident it is
# counted under, `linked_source` its source), taken out by the write that takes it out of
# `linked` (unlinked by the command room, sent out as an incident of its own); deleted with
# the incident's timeline (records._archive). Reports linked before 2026-12-08 are in neither:
# the view finds them on the timeline, the row does not count them.
def linked_key(incident_id: str) -> str:
    return f"dispatch:linked:{incident_id}"


def linked_sources_key(incident_id: str) -> str:
    return f"dispatch:linked-sources:{incident_id}"


def queue_link_indexed(pipe: Pipeline, report: dict[str, str], *, parent: str,
                       source: str) -> None:
    """Queue the linked report `report` (its record as it stands before this write)
    counted among `parent`'s, from `source`; moved there when it was counted under another
    (it followed on from an incident that had ended, or was never received). Counted
    already under `parent`: nothing (a write of the same link again)."""
    if report.get("linked_index") == parent:
        return
    queue_link_unindexed(pipe, report)
    report_id = report["incident_id"]
    try:
        at = datetime.fromisoformat(report["received_at"]).timestamp()
    except (KeyError, ValueError):
        at = time.time()
    pipe.zadd(linked_key(parent), {report_id: at})
    pipe.hincrby(linked_sources_key(parent), source, 1)
    pipe.hset(incident_key(report_id), mapping={"linked_index": parent,
                                                "linked_source": source})
    report.update(linked_index=parent, linked_source=source)


def queue_link_unindexed(pipe: Pipeline, report: dict[str, str]) -> None:
    """Queue the report (its record as it stands before this write) taken out of the
    reports of the incident it is counted under, if any."""
    parent = report.get("linked_index")
    if not parent:
        return
    pipe.zrem(linked_key(parent), report["incident_id"])
    pipe.hincrby(linked_sources_key(parent), report.get("linked_source") or "", -1)
    pipe.hset(incident_key(report["incident_id"]), mapping={"linked_index": "",
                                                            "linked_source": ""})
    report.update(linked_index="", linked_source="")


async def linked_ids(redis: Redis, incident_id: str) -> list[str]:
    """The reports counted as linked to the incident, in the order dispatch received them."""
    return list(await redis.zrange(linked_key(incident_id), 0, -1))


# Each incident's (KEYS) reports linked now, by source: their number, how many sources
# (counts above 0: one whose last report was unlinked is none), and whether the incident's
# own source (ARGV, the same position) is one of them.
_LINKED_COUNTS = """
local out = {}
for i, key in ipairs(KEYS) do
  local flat = redis.call('HGETALL', key)
  local count, sources, own = 0, 0, 0
  for j = 1, #flat, 2 do
    local n = tonumber(flat[j + 1]) or 0
    if n > 0 then
      count = count + n
      sources = sources + 1
      if flat[j] == ARGV[i] then own = 1 end
    end
  end
  out[i] = {count, sources, own}
end
return out
"""


async def linked_counts(redis: Redis, incidents: Sequence[tuple[str, str]]
                        ) -> list[tuple[int, int, int]]:
    """For each (incident id, its own source) of `incidents`: how many reports are linked
    to it, from how many sources, and from how many other than its own. One round trip."""
    if not incidents:
        return []
    replies = await run_script(redis, _LINKED_COUNTS,
                               [linked_sources_key(i) for i, _ in incidents],
                               [source for _, source in incidents])
    return [(int(count), int(sources), int(sources) - int(own))
            for count, sources, own in replies]


# The report sent out as an incident of its own because the incident intake linked it to
# never reached dispatch (engine.on_link_due): the next reports intake links to that
# incident join it, as an ended incident's `sent_on_as` (that incident has no record to
# hold it); and that incident's own report, should it come after all (its dead letter
# replayed), joins it too (first_step's SENT_OUT). Kept as long as a dead letter is replayed
# without `force` (shared.dead_letters.REPLAY_SAFE_S, 7 days); intake links reports to it
# within its duplicate window (10 min).
SENT_ON_TTL_S = 7 * 86_400


def _sent_on_key(incident_id: str) -> str:
    return f"dispatch:sent-on:{incident_id}"


def queue_sent_on(pipe: Pipeline, unknown_id: str, report_id: str) -> None:
    pipe.set(_sent_on_key(unknown_id), report_id, ex=SENT_ON_TTL_S)


async def sent_on(redis: Redis, unknown_id: str) -> str | None:
    """The report sent out in place of the incident `unknown_id` dispatch never received."""
    return await redis.get(_sent_on_key(unknown_id))


async def list_incidents(redis: Redis, *, district: str | None, since_ts: float, until_ts: float,
                         limit: int, newest_first: bool = True) -> list[str]:
    """The incidents reported in [since_ts, until_ts): `until` left out, so that two periods
    that meet (yesterday, today) count an incident reported at the instant between them once."""
    key = district_key(district) if district else ALL_INCIDENTS
    until = f"({until_ts!r}"
    if newest_first:
        return await redis.zrevrangebyscore(key, until, since_ts, start=0, num=limit)
    return await redis.zrangebyscore(key, since_ts, until, start=0, num=limit)


def _index_upper(after: tuple[float, str] | None, until_ts: float) -> str:
    """The greatest score still to read: `after`'s (included: others reported at its
    instant may follow it), else `until` (left out)."""
    if after is None or after[0] >= until_ts:
        return f"({until_ts!r}"
    return repr(after[0])


def _past(page: list[tuple[str, float]], after: tuple[float, str] | None,
          until_ts: float) -> list[tuple[str, float]]:
    if after is None or after[0] >= until_ts:
        return page
    score, incident_id = after
    # the same instant: Redis orders by the member's bytes, as Python's str order does
    return [(m, s) for m, s in page if s < score or m < incident_id]


async def index_pages(redis: Redis, reads: Sequence[tuple[str, tuple[float, str] | None]], *,
                      since_ts: float, until_ts: float, count: int
                      ) -> list[tuple[list[tuple[str, float]], bool]]:
    """For each (index key, after) of `reads`: up to `count` (id, score) of that index of
    incidents (ALL_INCIDENTS, district_key by the time reported; RECEIVED, received_key by
    the time received) scored in [since_ts, until_ts), the newest
    first (the same instant: the greater id first), after the incident at (score, id)
    `after` (None: from the newest; it need not be indexed any more); and whether the
    index has no more. One round trip, unless a whole page was of `after`'s instant."""
    async with redis.pipeline(transaction=False) as pipe:
        for key, after in reads:
            pipe.zrevrangebyscore(key, _index_upper(after, until_ts), since_ts, start=0,
                                  num=count, withscores=True)
        pages = await pipe.execute()
    out = []
    for (key, after), page in zip(reads, pages, strict=True):
        kept, offset = _past(page, after, until_ts), 0
        while not kept and len(page) == count:  # a page reported at `after`'s instant
            offset += count
            page = await redis.zrevrangebyscore(key, _index_upper(after, until_ts), since_ts,
                                                start=offset, num=count, withscores=True)
            kept = _past(page, after, until_ts)
        out.append((kept, len(page) < count))
    return out


BOARD_FIELDS = ("district", "status", "flagged", "timeouts", "declines", "supervisor_id")
# What the board's ?problem=unassigned_late judges by besides (review.no_team_by_deadline):
# read only for that filter.
WAIT_FIELDS = ("priority", "reported_at", "received_at", "first_assigned_at", "closed_at",
               "resolved_at", "handed_over_at")


# The same fields of many hashes in one reply: a pipeline of HMGETs costs redis-py ~25 µs
# of CPU per command, most of a board's hunt through thousands of records.
_HMGET_EACH = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HMGET', key, unpack(ARGV)) end
return out
"""


async def incidents_heads(redis: Redis, ids: Sequence[str],
                          fields: Sequence[str] = BOARD_FIELDS) -> list[dict[str, str] | None]:
    """The `fields` (BOARD_FIELDS unless asked; the district first) of each incident of
    `ids`, in their order (None: no such incident): what the board filters on, without
    reading whole records it will not show."""
    if not ids:
        return []
    replies = await run_script(redis, _HMGET_EACH, [incident_key(i) for i in ids],
                               list(fields))
    return [{f: v for f, v in zip(fields, values, strict=True) if v is not None}
            if values[0] else None  # its district: a record, not a leftover key
            for values in replies]


# Hand-overs whose filing may still be owed, scored by the time handed over: the inspector's
# list of filings overdue reads these, however old, not the board's window of reports. One
# leaves when its station files it (its hand-over order resolved) or its record is archived
# (records.py): what stays is the unfiled, and those the command room closed meanwhile.
HANDOVERS = "dispatch:handovers"


def queue_handed_over(pipe: Pipeline, incident_id: str, at: datetime) -> None:
    pipe.zadd(HANDOVERS, {incident_id: at.timestamp()}, nx=True)


def queue_filed(pipe: Pipeline, incident_id: str) -> None:
    pipe.zrem(HANDOVERS, incident_id)


async def handovers(redis: Redis) -> list[str]:
    """The indexed hand-overs, the latest handed over first."""
    return await redis.zrevrange(HANDOVERS, 0, -1)


# Every hand-over by when its station's filing falls due (the incident's own `filing_due`,
# handover_filing_h after its first hand-over), filed or not, archived or not, as long as its
# record is kept: the KPIs' filings due in a period (受立案超期 of the day the filing went
# overdue) find those reported however long before it. Leaves with the record
# (records._forget).
FILINGS_DUE = "dispatch:filings-due"


def queue_filing_due(pipe: Pipeline, incident_id: str, due: datetime) -> None:
    pipe.zadd(FILINGS_DUE, {incident_id: due.timestamp()})


async def filings_due_between(redis: Redis, *, since_ts: float, until_ts: float) -> list[str]:
    """The hand-overs whose filing falls due in [since_ts, until_ts)."""
    return await redis.zrangebyscore(FILINGS_DUE, since_ts, f"({until_ts!r}")


async def incidents_bulk(redis: Redis, ids: Iterable[str]) -> list[dict[str, str]]:
    return [d for d in await _hgetall_each(redis, ids) if d]


async def _hgetall_each(redis: Redis, ids: Iterable[str]) -> list[dict[str, str]]:
    """Each incident's whole hash, in the order of `ids` ({} for no key)."""
    async with redis.pipeline(transaction=False) as pipe:
        for incident_id in ids:
            pipe.hgetall(incident_key(incident_id))
        return await pipe.execute()


# Waiting incidents are offered the most urgent first, then the longest waiting: a team
# that comes free goes to the P1 before the P4 that arrived ahead of it. One score orders
# both (the rank's step is ~300 years of seconds), and it is the same each time the
# incident is put back, so a retry that finds nobody never sends it to the back.
def waiting_score(priority: str, received_at: float) -> float:
    return PRIORITY_RANK.get(priority, len(PRIORITY_RANK)) * 1e10 + received_at


async def add_waiting(redis: Redis, *, district: str, incident_id: str, score: float) -> bool:
    """Queue the incident for the next freed team; True if it was not queued before."""
    async with redis.pipeline(transaction=False) as pipe:
        queue_waiting(pipe, district=district, incident_id=incident_id, score=score)
        added, _ = await pipe.execute()
    return bool(added)


def queue_waiting(pipe: Pipeline, *, district: str, incident_id: str, score: float) -> None:
    # The district named after the queue's write: free_units takes it out only while its
    # queue is empty, which it is no longer.
    pipe.zadd(_waiting_key(district), {incident_id: score})
    pipe.sadd(WAITING_DISTRICTS, district)


def queue_not_waiting(pipe: Pipeline, *, district: str, incident_id: str) -> None:
    pipe.zrem(_waiting_key(district), incident_id)


async def place_in_reach(redis: Redis, *, district: str, lat: float, lon: float,
                          radius_km: float) -> bool:
    """Whether any team of the district, whatever its status, was last placed within
    `radius_km` of the point (the district's map keeps each team's last fix); or none of
    its teams is placed anywhere yet (a roster just imported, no phone sharing its
    position): then nothing says the place is wrong."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.geosearch(_geo_key(district), longitude=lon, latitude=lat, radius=radius_km,
                       unit="km", count=1)
        pipe.zcard(_geo_key(district))
        found, placed = await pipe.execute()
    return bool(found) or not placed


async def remove_waiting(redis: Redis, *, district: str, incident_id: str) -> None:
    await redis.zrem(_waiting_key(district), incident_id)


async def waiting(redis: Redis, district: str, *, after: float | None = None,
                  limit: int = 50) -> list[tuple[str, float]]:
    """The waiting incidents in offer order with their scores, from just past `after`."""
    low = "-inf" if after is None else f"({after!r}"
    return await redis.zrangebyscore(_waiting_key(district), low, "+inf", start=0, num=limit,
                                     withscores=True)


# The fields of a waiting incident's record that judging it for a free team reads
# (Dispatcher._would_send with _facts_now, _facts and _station_known) and its span (the
# trace it belongs to): the record is read whole by the search under its lock, for the
# few a team would be sent to. `district` first: the script below reads it first.
WAITING_FIELDS = ("district", "status", "category", "priority", "flags", "lat", "lon",
                  "zone_id", "station_agency_id", "trace_ctx")

# A page of the district's queue (KEYS[1]) to judge: of each incident of ARGV[2..], the
# WAITING_FIELDS of its record and, when ARGV[1] is '1', the teams it was offered (its
# offered set, last: a few teams, those that declined it or missed its deadline); {} for
# one whose record is gone (no district: see get_incident), taken off the queue here;
# first, the number taken off. The record is looked at in the script that takes the
# incident off: nothing queues an incident before its record is written (first_step's
# script writes it whole), so one read with a record never leaves the queue here, whenever
# it was queued. The offered set whole, not a SISMEMBER for each team asked about: the
# sweep asks about every free team (hundreds), and an incident's set is small.
_WAITING_TO_JUDGE = """
local fields = {WAITING_FIELDS}
local off, out = 0, {}
for i = 2, #ARGV do
  local incident_id = ARGV[i]
  local row = redis.call('HMGET', 'dispatch:incident:' .. incident_id, unpack(fields))
  if not row[1] then
    off = off + redis.call('ZREM', KEYS[1], incident_id)
    row = {}
  elseif ARGV[1] == '1' then
    row[#row + 1] = redis.call('SMEMBERS', 'dispatch:offered:' .. incident_id)
  end
  out[#out + 1] = row
end
return {off, out}
""".replace("WAITING_FIELDS", ", ".join(f"'{field}'" for field in WAITING_FIELDS))


async def waiting_incidents(redis: Redis, district: str, page: Sequence[tuple[str, float]], *,
                            offered_to: Sequence[str] = ()
                            ) -> tuple[list[dict[str, str]], dict[str, set[str]]]:
    """The records of a page of the district's queue (`waiting`), in its order, each with
    the WAITING_FIELDS it has (and its id); and, by incident, those of the teams
    `offered_to` it was offered (they never are again; an incident none of them was
    offered is left out), read with them: one round trip a page, however many teams. A
    freed team's offer read each record whole and asked of each it might answer, one round
    trip each, whether it had been offered it: with a backlog, hundreds a freed team; the
    sweep asked it of each free team: thousands a round. The incidents whose record is
    gone (retention removed it, or only a leftover key is left: a field written after it
    went) are taken off the queue: kept, each look paged over them for ever, and enough of
    them hid the incidents behind from the looks' bounds."""
    ids = [incident_id for incident_id, _ in page]
    if not ids:
        return [], {}
    off, rows = await run_script(redis, _WAITING_TO_JUDGE, [_waiting_key(district)],
                                 ["1" if offered_to else "", *ids])
    if off:
        log.warning("waiting incidents of %s: %d with no record taken off the queue",
                    district, off)
    found: list[dict[str, str]] = []
    offered: dict[str, set[str]] = {}
    asked = set(offered_to)
    for incident_id, row in zip(ids, rows, strict=True):
        # each named by its place in the queue, also an odd one that lacks the field
        record = {field: value for field, value in zip(WAITING_FIELDS, row, strict=False)
                  if value is not None}
        if not record.get("district"):
            continue
        found.append({**record, "incident_id": incident_id})
        if asked and (teams := asked.intersection(row[len(WAITING_FIELDS)])):
            offered[incident_id] = teams
    return found, offered


WAITING_DISTRICTS_INDEXED = "dispatch:waiting-districts-indexed"  # set once the catch-up ran


async def waiting_districts(redis: Redis) -> list[str]:
    """The districts with incidents waiting (and some whose queue emptied since). Once per
    Redis, the queues of an earlier version, which kept no such list, join it first (read by
    SCAN)."""
    if not await redis.exists(WAITING_DISTRICTS_INDEXED):
        prefix = _waiting_key("")
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000, _type="zset"):
            await redis.sadd(WAITING_DISTRICTS, key.removeprefix(prefix))
        await redis.set(WAITING_DISTRICTS_INDEXED, "1")
    return sorted(await redis.smembers(WAITING_DISTRICTS))


def _swept_key(incident_id: str) -> str:
    return f"dispatch:swept:{incident_id}"


# The longest an incident is left to the others by the sweep once tried (mark_swept): the
# sweep's three rounds (waiting.AGAIN_AFTER_ROUNDS) of the longest WAITING_SWEEP_S.
SWEPT_MAX_S = 3 * 3600


async def mark_swept(redis: Redis, incident_id: str, *, for_s: float) -> bool:
    """Whether the sweep may try the waiting incident now: not tried by a sweep (this
    replica's or another's) in the last `for_s` seconds (at most SWEPT_MAX_S); if so, it is
    marked tried from now."""
    return await _mark_for(redis, _swept_key(incident_id), min(for_s, SWEPT_MAX_S))


def _looked_on_key(team_id: str) -> str:
    return f"dispatch:looked-on:{team_id}"


async def mark_looked_on(redis: Redis, team_id: str, *, for_s: float) -> bool:
    """Whether the free team's position fix may read its district's queue past the first
    page: none of its fixes did (this replica's or another's) in the last `for_s` seconds;
    if so, it is marked from now."""
    return await _mark_for(redis, _looked_on_key(team_id), for_s)


async def _mark_for(redis: Redis, key: str, for_s: float) -> bool:
    """Whether `key` was not set; set now, for `for_s` seconds."""
    return bool(await redis.set(key, "1", nx=True, px=max(1, int(for_s * 1000))))






# --- orders ---------------------------------------------------------------------------


def order_key(order_id: str) -> str:
    return f"dispatch:order:{order_id}"


async def offer_order(redis: Redis | ScriptBatch, *, order_id: str, incident_id: str,
                      fields: dict[str, str], claim: bool, require_available: bool,
                      ack_by: datetime | None, entry: TimelineEntry,
                      first_assignment_at: str | None,
                      last: LastWrites | None = None,
                      lock: tuple[str, str] | None = None) -> tuple[bool, bool]:
    """Write a new order and, if `claim`, claim its team, in one step (_OFFER), with the
    step's `last` writes when given; (offered, first order of the incident to count for
    time-to-assign). `lock`: the incident lock's key and the step's token, which the lock
    must still hold (else LockLost, and nothing written)."""
    flat = [x for kv in {"order_id": order_id, "incident_id": incident_id, **fields}.items()
            for x in kv]
    team_id = fields["team_id"]
    keys = [order_key(order_id), orders_key(incident_id), f"dispatch:claim:{team_id}",
            _unit_key(team_id), offered_key(incident_id), TIMERS,
            timeline_key(incident_id), incident_key(incident_id),
            lock[0] if lock else "dispatch:lock:-"]
    args: list[str | bytes] = [
        order_id, ascii_json(flat), "1" if claim else "0", "1" if require_available else "0",
        team_id, repr(ack_by.timestamp()) if ack_by else "", entry.model_dump_json(),
        first_assignment_at or "", lock[1] if lock else ""]
    if last is not None:
        keys += [streams.ORDER_ISSUED.name, streams.INCIDENT_UPDATED.name, STATUS_COUNTS,
                 _waiting_key(last.district), last.lock_key or "dispatch:lock:-",
                 FLAGGED, flagged_key(last.district), WAITING_DISTRICTS]
        changes = [x for kv in last.incident_changes.items() for x in kv]
        flag = last.incident_changes.get("flagged", "")
        assert not flag or last.reported_ts is not None, "a flag's change needs its place"
        args += ["1", maxlen_arg(streams.ORDER_ISSUED), last.order_issued, ascii_json(changes),
                 last.old_status, last.incident_changes.get("status", last.old_status),
                 last.status_entry.model_dump_json(), maxlen_arg(streams.INCIDENT_UPDATED),
                 last.incident_updated, incident_id, last.lock_token,
                 "" if last.short_score is None else repr(last.short_score),
                 flag, repr(last.reported_ts) if flag else "", last.district]
    offered_, first = await run_script(redis, _OFFER, keys, args)
    if offered_ == -1:
        raise LockLost(incident_id)
    return bool(offered_), bool(first)


async def get_order(redis: Redis, order_id: str) -> dict[str, str] | None:
    data = await redis.hgetall(order_key(order_id))
    return data or None


async def orders_bulk(redis: Redis, ids: Sequence[str]) -> list[dict[str, str]]:
    """Each order of `ids` whole, in their order ({} for no such order)."""
    async with redis.pipeline(transaction=False) as pipe:
        for order_id in ids:
            pipe.hgetall(order_key(order_id))
        return await pipe.execute()


def queue_order_change(pipe: Pipeline, order_id: str, fields: dict[str, str]) -> None:
    pipe.hset(order_key(order_id), mapping=fields)


async def update_order(redis: Redis, order_id: str, fields: dict[str, str]) -> None:
    await redis.hset(order_key(order_id), mapping=fields)


# The orders of each incident given to one agency's teams (by the agency the team was of
# when the order was given: the order's own `agency_id`), whole; none of another agency's
# leaves Redis. KEYS: the incidents' lists of orders; ARGV[1]: the agency. The orders'
# hashes are named from the lists, as _ANY_ON_SHIFT names the units'.
_AGENCY_ORDERS = """
local out = {}
for i, listed in ipairs(KEYS) do
  local mine = {}
  for _, order in ipairs(redis.call('LRANGE', listed, 0, -1)) do
    local key = 'dispatch:order:' .. order
    if redis.call('HGET', key, 'agency_id') == ARGV[1] then
      mine[#mine + 1] = redis.call('HGETALL', key)
    end
  end
  out[i] = mine
end
return out
"""


async def agency_orders(redis: Redis, incident_ids: Sequence[str],
                        agency_id: str) -> list[list[dict[str, str]]]:
    """For each incident of `incident_ids`, in their order, the orders given to a team of
    `agency_id` (in the order given; [] for none, or no such incident), in one round trip:
    what an agency's desk reads of the board, an incident and the figures."""
    if not incident_ids:
        return []
    replies = await run_script(redis, _AGENCY_ORDERS,
                               [orders_key(i) for i in incident_ids], [agency_id])
    return [[dict(zip(flat[::2], flat[1::2], strict=True)) for flat in mine]
            for mine in replies]


async def orders_agencies(redis: Redis, order_ids: Sequence[str]) -> list[str | None]:
    """The agency each order of `order_ids` was given to, as recorded on the order (its
    team's then; None for no such order), in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for order_id in order_ids:
            pipe.hget(order_key(order_id), "agency_id")
        return list(await pipe.execute())


async def orders_of(redis: Redis, incident_id: str) -> list[dict[str, str]]:
    ids = await redis.lrange(orders_key(incident_id), 0, -1)
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for order_id in ids:
            pipe.hgetall(order_key(order_id))
        return [d for d in await pipe.execute() if d]


async def orders_of_each(redis: Redis, incident_ids: Sequence[str]
                         ) -> list[list[dict[str, str]]]:
    """Each incident's orders (`orders_of`), in two pipelines for them all: a month's
    incidents of a district in two round trips, not two each."""
    async with redis.pipeline(transaction=False) as pipe:
        for incident_id in incident_ids:
            pipe.lrange(orders_key(incident_id), 0, -1)
        lists = await pipe.execute()
    flat = await orders_bulk(redis, [o for ids in lists for o in ids])
    out: list[list[dict[str, str]]] = []
    start = 0
    for ids in lists:
        out.append([o for o in flat[start:start + len(ids)] if o])
        start += len(ids)
    return out


# --- timeline -------------------------------------------------------------------------




async def timeline(redis: Redis, incident_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in await redis.lrange(timeline_key(incident_id), 0, -1)]


# --- idempotency of consumed events ---------------------------------------------------


SEEN_TTL_S = 7 * 86400


def _seen_key(key: str) -> str:
    return f"dispatch:seen:{key}"


# A step's end in one round trip: its writes (the commands its transaction would hold, as
# redis-py queued them, from ARGV[6]: shared.scripts.RUN_COMMANDS_LUA), then the event's
# done mark, the lock's release (token compared) and, for a team the step freed, whether
# it is free while incidents of its district wait (`free_with_waiting`). First, given an
# order (ARGV[1]), the team's claim is released if that order holds it (as release_unit).
# A command that fails stops the script before the done mark, so the event is handled
# again, as after a failed transaction; the lock is then released by the step's exit.
# It writes nothing if the event is already marked done: redis-py sends a script again when
# it lost the reply (Redis restarted after running it), and by then the lock this script
# released may have let other steps change the incident. Nor if the lock is no longer the
# step's (-1): it expired, and another step may hold it now.
_STEP_END = _FREE + RUN_COMMANDS_LUA + """
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[3] then return -1 end
  if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
  run_commands(6, tonumber(ARGV[5]))
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  if ARGV[3] ~= '' then redis.call('DEL', KEYS[3]) end
end
if ARGV[4] == '' then return 0 end
return free_with_waiting(KEYS[4], ARGV[4], KEYS[5])
"""


async def end_step(redis: Redis, commands: Sequence[Sequence[Any]], *, done: str, lock_key: str,
                   lock_token: str, freed: tuple[str, str] | None = None,
                   release_claim: tuple[str, str] | None = None) -> bool | None:
    """Run `commands` (a transaction's, taken from a pipeline's command stack) and the step's
    end in one script: the done mark of `done`, the lock released, and for a `freed` team
    (team, district) whether it is free while incidents of its district wait (the result);
    first, given `release_claim` (team, order), that order's claim on the team released.
    None: the lock was no longer `lock_token`'s, and nothing was written."""
    team, order = release_claim or ("", "")
    args: list[Any] = [order, SEEN_TTL_S, lock_token, freed[0] if freed else "", len(commands),
                       *commands_as_args(commands)]
    keys = [f"dispatch:claim:{team}" if team else "", _seen_key(done), lock_key,
            _unit_key(freed[0]) if freed else "", _waiting_key(freed[1]) if freed else ""]
    result = int(await run_script(redis, _STEP_END, keys, args))
    return None if result < 0 else bool(result)


# Writes made once: a step's writes that do not end it (Dispatcher._emit's, _announce's,
# _withdraw's), the commands a transaction would hold (from ARGV[5], ARGV[4] of them:
# RUN_COMMANDS_LUA).
# redis-py sends a transaction or a script again when it lost the reply (Redis restarted
# after running it), and a MULTI sent again writes all of it twice: a second timeline entry,
# status count and event. Here nothing is written if KEYS[1]'s field ARGV[1] holds ARGV[2]
# (set after the writes: these very writes ran) -> 0; nor, given ARGV[3], unless KEYS[1]'s
# `seq` is still ARGV[3] (the incident as the step read it: another value means the step's
# lock expired and another step changed the incident) -> -1. Written -> 1. Given an order
# (ARGV[4]) whose end the writes make, the team's claim (KEYS[2]) is released with them if
# that order holds it (as release_unit): released in a write of its own before them, a
# failure in between left the order live and its team free for another incident. Given a
# team's record (KEYS[3]) the writes count one more order it let time out (MISSED_FIELDS,
# the run's start the time in the word after the commands), if the record is there: a team removed
# from the roster meanwhile gets no record of that count alone (no TTL, no status_at).
_ONCE = RUN_COMMANDS_LUA + """
local marks = redis.call('HMGET', KEYS[1], ARGV[1], 'seq')
if marks[1] == ARGV[2] then return 0 end
if ARGV[3] ~= '' and (marks[2] or '0') ~= ARGV[3] then return -1 end
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
local after = run_commands(6, tonumber(ARGV[5]))
if KEYS[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'missed_in_a_row', 1)
  redis.call('HSETNX', KEYS[3], 'missed_since', ARGV[after])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


async def _write_once(redis: Redis, commands: Sequence[Sequence[Any]], *, key: str,
                      mark: tuple[str, str], seq: str = "",
                      release_claim: tuple[str, str] | None = None,
                      missed: tuple[str, datetime] | None = None) -> int:
    team, order = release_claim or ("", "")
    return int(await run_script(
        redis, _ONCE, [key, f"dispatch:claim:{team}" if team else "",
                       _unit_key(missed[0]) if missed else ""],
        [*mark, seq, order, len(commands), *commands_as_args(commands),
         missed[1].isoformat() if missed else ""]))


async def write_incident_step(redis: Redis, commands: Sequence[Sequence[Any]], *,
                              incident_id: str, seq: str, token: str,
                              release_claim: tuple[str, str] | None = None,
                              missed: tuple[str, datetime] | None = None) -> bool:
    """Make `commands` (an incident's change, taken from a pipeline's command stack) once:
    marked with `token` (new for each write), and only while the incident's `seq` is the
    one the step read; with them, given `release_claim` (team, order), that order's claim on
    the team released, and given `missed` (team, when), one more order counted that the
    team let time out, if the projection holds the team (domain.Unit.missed_in_a_row).
    False: it was not (nothing written)."""
    return await _write_once(redis, commands, key=incident_key(incident_id),
                             mark=("last_write", token), seq=seq,
                             release_claim=release_claim, missed=missed) >= 0


async def write_order_once(redis: Redis, commands: Sequence[Sequence[Any]], *, order_id: str,
                           unless: tuple[str, str],
                           release_claim: tuple[str, str] | None = None) -> None:
    """Make `commands` (an order's announcement or withdrawal) unless the order's field
    `unless[0]` holds `unless[1]` (set after them: they ran); with them, given
    `release_claim` (team, order), that order's claim on the team released."""
    await _write_once(redis, commands, key=order_key(order_id), mark=unless,
                      release_claim=release_claim)


# --- timers ---------------------------------------------------------------------------

TIMERS = "dispatch:timers"

# A due timer is leased (its score pushed out) by the replica that fires it; the lease is
# the score itself, so a script that ends or renews it acts only while the score is still
# that lease: a timer that its handler or another step set again meanwhile (cancelled, set
# for later or sooner), or that another replica leased once the lease ran out, is left as
# it is.
_IS_LEASED = """
local function leased(member, lease)
  local score = redis.call('ZSCORE', KEYS[1], member)
  return score and tonumber(score) == tonumber(lease)
end
"""

# Takes due timers, but those under way here (ARGV[4]...: a renewal late, or a handler
# that set its own timer due again), and pushes their score out by a lease, so that a
# replica that dies while handling one does not lose it: it fires again after the lease.
_LEASE_DUE = """
local limit = tonumber(ARGV[3])
local here = {}
for i = 4, #ARGV do here[ARGV[i]] = true end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, limit + #ARGV - 3)
local taken = {}
for _, member in ipairs(due) do
  if not here[member] and #taken < limit then
    redis.call('ZADD', KEYS[1], ARGV[2], member)
    taken[#taken + 1] = member
  end
end
return taken
"""


async def schedule(redis: Redis, member: str, at: datetime, *, nx: bool = False,
                   lt: bool = False) -> None:
    """Set the timer `member` to fire at `at`; with `nx`, only if it is not set already;
    with `lt`, unless it is set to fire sooner. A timer being fired holds its lease (a
    score later than now): set `lt`, it is brought forward and fires again once that
    firing ends (finish_timer leaves it), where `nx` left it at the lease and the firing's
    end removed it as handled, what set it again never seen."""
    await redis.zadd(TIMERS, {member: at.timestamp()}, nx=nx, lt=lt)


def queue_schedule(pipe: Pipeline, member: str, at: datetime, *, nx: bool = False) -> None:
    pipe.zadd(TIMERS, {member: at.timestamp()}, nx=nx)


def queue_cancel(pipe: Pipeline, member: str) -> None:
    pipe.zrem(TIMERS, member)


async def cancel(redis: Redis, member: str) -> None:
    await redis.zrem(TIMERS, member)


async def lease_due(redis: Redis, *, lease_s: float, limit: int = 100,
                    under_way: Iterable[str] = ()) -> tuple[list[str], float]:
    """Due timers but those `under_way` here, and the time their lease runs out."""
    now = time.time()
    until = now + lease_s
    return await run_script(redis, _LEASE_DUE, [TIMERS],
                            [repr(now), repr(until), limit, *under_way]), until


# Sets each timer still under the lease given (ARGV[i + 1]) to ARGV[1]. One already at
# ARGV[1] counts as moved: this script run again by redis-py after a lost reply, whose
# first run moved it.
_MOVE_LEASES = _IS_LEASED + """
local moved = {}
for i = 2, #ARGV, 2 do
  if leased(ARGV[i], ARGV[i + 1]) or leased(ARGV[i], ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
    moved[#moved + 1] = ARGV[i]
  end
end
return moved
"""


async def move_leases(redis: Redis, leases: dict[str, float], to: float) -> list[str]:
    """The timers of `leases` (each with the time its lease runs out) still so leased, set
    to fire at `to` (a lease renewed, or handed back); those it set."""
    pairs = [arg for member, until in leases.items() for arg in (member, repr(until))]
    return await run_script(redis, _MOVE_LEASES, [TIMERS], [repr(to), *pairs])


_FINISH = _IS_LEASED + """
if leased(ARGV[1], ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""


async def finish_timer(redis: Redis, member: str, leased_until: float) -> None:
    """Remove a handled timer, unless it was set again meanwhile (its handler's next look)."""
    await run_script(redis, _FINISH, [TIMERS], [member, repr(leased_until)])


_POSTPONE = _IS_LEASED + """
if leased(ARGV[1], ARGV[2]) then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
"""


async def postpone_timer(redis: Redis, member: str, at: datetime, leased_until: float) -> None:
    """A fired timer that is not to be handled yet, set to fire again at `at` (sooner than
    its lease would): unless it was cancelled meanwhile (gone: an answer made it moot) or
    its handler or another step set it again."""
    await run_script(redis, _POSTPONE, [TIMERS],
                     [member, repr(leased_until), repr(at.timestamp())])


# An unhandled entry is read to see whom it concerns, this many at most: more (a backlog)
# count as unhandled answers of every incident.
UNHANDLED_READ = 200


async def unhandled_entries(redis: Redis, stream: str, *, group: str, upto: datetime,
                            concerning: str | None = None) -> bool:
    """Whether `group` has not yet finished with some entry of `stream` added up to `upto`:
    one not read yet (after the group's last delivered id), or read and still pending (being
    handled, or failed and waiting for its reclaimer). With `concerning` (an incident's id),
    only an entry that names it counts: another team's answer stuck in the stream (its
    incident's lock held, a poison entry waiting for its tries) holds no other deadline."""
    upto_id = str(int(upto.timestamp() * 1000))  # the whole millisecond, every sequence
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream yet: nothing was ever added to it
        return False
    info = next((g for g in groups if g["name"] == group), None)
    if info is None:
        return False
    pending_ids: list[str] = []
    if int(info["pending"]):
        pending = await redis.xpending_range(stream, group, min="-", max=upto_id,
                                             count=UNHANDLED_READ + 1)
        if pending and (concerning is None or len(pending) > UNHANDLED_READ):
            return True
        pending_ids = [str(p["message_id"]) for p in pending]
    # the entries' values as Redis holds them (FastStream's binary envelope is no text)
    unread = await redis.execute_command(
        "XRANGE", stream, f"({info['last-delivered-id']}", upto_id, "COUNT",
        UNHANDLED_READ + 1 if concerning is not None else 1, NEVER_DECODE=True)
    if concerning is None or len(unread) > UNHANDLED_READ:
        return bool(unread)
    entries = list(unread)
    if pending_ids:
        async with redis.pipeline(transaction=False) as pipe:
            for entry_id in pending_ids:
                pipe.execute_command("XRANGE", stream, entry_id, entry_id, NEVER_DECODE=True)
            for found in await pipe.execute():
                entries.extend(found)
    needle = concerning.encode()
    return any(needle in value for _, fields in entries for value in (fields or {}).values())


def queue_order_first(pipe: Pipeline, order_id: str, name: str, value: str) -> None:
    """Queue setting an order's field unless it has a value already."""
    pipe.hsetnx(order_key(order_id), name, value)


# --- dispatcher tokens (the command room's people) --------------------------------------


def _token_hash(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


async def create_dispatcher(redis: Redis, *, dispatcher_id: str, name: str, districts: list[str],
                            token: str, role: str = "dispatcher",
                            agency_id: str | None = None) -> None:
    """`agency_id`: an agency desk's agency (role "agency"), whose teams' orders it reads."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(f"dispatch:dispatcher:{dispatcher_id}", mapping={
            "name": name, "districts": json.dumps(sorted(set(districts))), "role": role,
            **({"agency_id": agency_id} if agency_id else {}),
            "token_hash": _token_hash(token), "created_at": datetime.now(UTC).isoformat()})
        pipe.set(f"dispatch:dispatcher-token:{_token_hash(token)}", dispatcher_id)
        pipe.sadd("dispatch:dispatchers", dispatcher_id)
        await pipe.execute()


async def dispatcher_for_token(redis: Redis, token: str) -> dict[str, Any] | None:
    dispatcher_id = await redis.get(f"dispatch:dispatcher-token:{_token_hash(token)}")
    if not dispatcher_id:
        return None
    return await get_dispatcher(redis, dispatcher_id)


async def list_dispatchers(redis: Redis) -> list[dict[str, Any]]:
    out = []
    for dispatcher_id in sorted(await redis.smembers("dispatch:dispatchers")):
        data = await redis.hgetall(f"dispatch:dispatcher:{dispatcher_id}")
        if data:
            out.append({"dispatcher_id": dispatcher_id, "name": data["name"],
                        "districts": json.loads(data["districts"]),
                        "role": data.get("role") or "dispatcher",
                        "agency_id": data.get("agency_id") or None,
                        "created_at": data.get("created_at")})
    return out


async def get_dispatcher(redis: Redis, dispatcher_id: str) -> dict[str, Any] | None:
    data = await redis.hgetall(f"dispatch:dispatcher:{dispatcher_id}")
    if not data:
        return None
    return {"dispatcher_id": dispatcher_id, "name": data["name"],
            "districts": json.loads(data["districts"]), "role": data.get("role") or "dispatcher",
            "agency_id": data.get("agency_id") or None}


def former_dispatcher_key(dispatcher_id: str) -> str:
    """A revoked dispatcher's display name, kept for the timelines that name them."""
    return f"dispatch:former-dispatcher:{dispatcher_id}"


async def dispatcher_names(redis: Redis, dispatcher_ids: Iterable[str]) -> dict[str, str]:
    """The display names of the dispatchers (and inspectors) of `dispatcher_ids`, in one
    round trip however many: a revoked one's as it was kept at its revocation (while the
    incidents it acted on are kept), else none."""
    ids = sorted(set(dispatcher_ids))
    if not ids:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for dispatcher_id in ids:
            pipe.hget(f"dispatch:dispatcher:{dispatcher_id}", "name")
            pipe.get(former_dispatcher_key(dispatcher_id))
        found = await pipe.execute()
    names = {dispatcher_id: current or former for dispatcher_id, current, former
             in zip(ids, found[::2], found[1::2], strict=True)}
    return {dispatcher_id: name for dispatcher_id, name in names.items() if name}


@dataclass(frozen=True)
class Revoked:
    """A dispatcher's token revoked: the districts it covered, and those whose duty it led
    (ended with it)."""

    districts: list[str]
    duty_ended: list[str]


async def revoke_dispatcher(redis: Redis, dispatcher_id: str, *,
                            name_kept_s: float) -> Revoked | None:
    """None: no such dispatcher. Its token goes; its display name stays `name_kept_s` (as
    long as the incidents it may have acted on: the command room's timelines name who
    acted, an audit's trail)."""
    data = await redis.hgetall(f"dispatch:dispatcher:{dispatcher_id}")
    if not data:
        return None
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(f"dispatch:dispatcher-token:{data['token_hash']}")
        if data.get("name"):
            pipe.set(former_dispatcher_key(dispatcher_id), data["name"],
                     ex=max(1, int(name_kept_s)))
        pipe.delete(f"dispatch:dispatcher:{dispatcher_id}")
        pipe.srem("dispatch:dispatchers", dispatcher_id)
        await pipe.execute()
    districts = sorted(set(json.loads(data["districts"])))
    ended = [district for district in districts  # a revoked leader leaves the duty
             if await run_script(redis, _LEAVE_DUTY, [duty_key(district)], [dispatcher_id])]
    return Revoked(districts=districts, duty_ended=ended)


# --- the duty leader of a district's command room ---------------------------------------


def ref_key(district: str, external_ref: str) -> str:
    """The incidents a reporting system's reference names in a district (a set: two systems
    may use the same reference)."""
    return f"dispatch:ref:{district}:{external_ref}"


async def incidents_by_ref(redis: Redis, district: str, external_ref: str) -> list[str]:
    return sorted(await redis.smembers(ref_key(district, external_ref)))



def duty_key(district: str) -> str:
    return f"dispatch:duty:{district}"


# The dispatcher leading it already (Take duty pressed again, the PUT retried) keeps the
# duty as it is, since its start.
_TAKE_DUTY = """
local previous = redis.call('HGETALL', KEYS[1])
if redis.call('HGET', KEYS[1], 'dispatcher_id') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'name', ARGV[2])
  return previous
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'dispatcher_id', ARGV[1], 'name', ARGV[2], 'since', ARGV[3])
return previous
"""

_LEAVE_DUTY = """
if redis.call('HGET', KEYS[1], 'dispatcher_id') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


async def take_duty(redis: Redis, *, district: str, dispatcher_id: str,
                    name: str) -> tuple[dict[str, str], dict[str, str] | None]:
    """The dispatcher leads the district's duty from now, or since they took it if they lead
    it already; returns the duty and the one it took over from (None if nobody led it; the
    same dispatcher's duty if they led it already)."""
    since = datetime.now(UTC).isoformat()
    flat = await run_script(redis, _TAKE_DUTY, [duty_key(district)], [dispatcher_id, name, since])
    previous = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else None
    if previous is not None and previous.get("dispatcher_id") == dispatcher_id:
        since = previous.get("since") or since
        previous = {**previous, "name": name}
    return {"dispatcher_id": dispatcher_id, "name": name, "since": since}, previous


async def duty_of(redis: Redis, district: str) -> dict[str, str] | None:
    return await redis.hgetall(duty_key(district)) or None
