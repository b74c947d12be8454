"""Dispatch's Redis keys (prefix `dispatch:`), behind named functions.

Units: a projection of unit.status / unit.position (hash per team, GEO index per district).
Claims: `dispatch:claim:{team}` holds the one open order a team may have; taken by Lua.
Incidents, orders and timelines: hashes and lists. Timers: one sorted set, leased on fire.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from shared.events import TimelineEntry

from .domain import Unit

# --- units ----------------------------------------------------------------------------


def _unit_key(team_id: str) -> str:
    return f"dispatch:unit:{team_id}"


def _geo_key(district: str) -> str:
    return f"dispatch:geo:{district}"


def _waiting_key(district: str) -> str:
    return f"dispatch:waiting:{district}"


# Newer status wins; a redelivered or reordered older event changes nothing.
_UNIT_STATUS = """
local at = tonumber(redis.call('HGET', KEYS[1], 'status_at') or '0')
if tonumber(ARGV[1]) < at then return 0 end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[2])))
return 1
"""

_UNIT_POSITION = """
local at = tonumber(redis.call('HGET', KEYS[1], 'fix_ts') or '0')
if tonumber(ARGV[1]) <= at then return 0 end
redis.call('HSET', KEYS[1], 'lat', ARGV[2], 'lon', ARGV[3], 'fix_ts', ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'district') == 1 then
  redis.call('GEOADD', KEYS[2] .. redis.call('HGET', KEYS[1], 'district'), ARGV[3], ARGV[2], ARGV[4])
else
  redis.call('HSET', KEYS[1], 'team_id', ARGV[4])
end
return 1
"""


async def save_unit_status(redis: Redis, *, at: datetime, fields: dict[str, str]) -> bool:
    flat = [x for kv in fields.items() for x in kv] + ["status_at", repr(at.timestamp())]
    applied = await redis.eval(_UNIT_STATUS, 1, _unit_key(fields["team_id"]),
                               repr(at.timestamp()), json.dumps(flat))
    if applied:
        await redis.sadd(f"dispatch:units:{fields['district']}", fields["team_id"])
        data = await redis.hgetall(_unit_key(fields["team_id"]))
        if "lat" in data:
            await redis.geoadd(_geo_key(fields["district"]),
                               (float(data["lon"]), float(data["lat"]), fields["team_id"]))
    return bool(applied)


async def save_unit_position(redis: Redis, *, team_id: str, lat: float, lon: float,
                             at: datetime) -> bool:
    return bool(await redis.eval(_UNIT_POSITION, 2, _unit_key(team_id), "dispatch:geo:",
                                 repr(at.timestamp()), repr(lat), repr(lon), team_id))


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
    )


async def get_unit(redis: Redis, team_id: str) -> Unit | None:
    return _unit_from(await redis.hgetall(_unit_key(team_id)))


# One reply (a JSON array) instead of a pipelined HGETALL + EXISTS per unit: parsing those
# replies in redis-py cost ~75 % of dispatch's CPU per incident with 400 teams in a district
# (docs/benchmarks.md); json.loads of one string is C.
_UNITS_NEAR = """
local ids = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
                       'BYRADIUS', ARGV[3], 'km', 'ASC')
local out = {}
for _, id in ipairs(ids) do
  if redis.call('EXISTS', 'dispatch:claim:' .. id) == 0 then
    local flat = redis.call('HGETALL', 'dispatch:unit:' .. id)
    local unit = {}
    for i = 1, #flat, 2 do unit[flat[i]] = flat[i + 1] end
    out[#out + 1] = unit
  end
end
if #out == 0 then return '[]' end
return cjson.encode(out)
"""


async def units_near(redis: Redis, *, district: str, lat: float, lon: float,
                     radius_km: float) -> list[Unit]:
    """Units with a position within the radius, nearest first, without a claim."""
    found = await redis.eval(_UNITS_NEAR, 1, _geo_key(district), repr(lon), repr(lat),
                             repr(radius_km))
    units: list[Unit] = []
    for data in json.loads(found):
        unit = _unit_from(data) if data else None
        if unit is not None:
            units.append(unit)
    return units


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


async def units_of_agency(redis: Redis, *, district: str, agency_id: str) -> list[Unit]:
    return [unit for unit, _ in await units_in(redis, district) if unit.agency_id == agency_id]


# --- claims ---------------------------------------------------------------------------

# A claim held by an order that is no longer live (or is this very order) does not block.
_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return 1 end
if cur then
  local st = redis.call('HGET', 'dispatch:order:' .. cur, 'state')
  if st == 'claiming' or st == 'offered' or st == 'acknowledged' or st == 'en_route'
     or st == 'on_scene' then return 0 end
end
if ARGV[2] == '1' then
  if redis.call('HGET', KEYS[2], 'status') ~= 'available' then return 0 end
  if redis.call('HGET', KEYS[2], 'on_shift') ~= '1' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def claim_unit(redis: Redis, *, team_id: str, order_id: str,
                     require_available: bool = True) -> bool:
    """Give the team this order unless it already holds one: one Lua call, so two dispatch
    replicas (or two incidents at once) can never give one team two open orders."""
    return bool(await redis.eval(_CLAIM, 2, f"dispatch:claim:{team_id}", _unit_key(team_id),
                                 order_id, "1" if require_available else "0"))


async def release_unit(redis: Redis, *, team_id: str, order_id: str) -> bool:
    return bool(await redis.eval(_RELEASE, 1, f"dispatch:claim:{team_id}", order_id))


async def claim_of(redis: Redis, team_id: str) -> str | None:
    return await redis.get(f"dispatch:claim:{team_id}")


# --- incidents ------------------------------------------------------------------------


def _incident_key(incident_id: str) -> str:
    return f"dispatch:incident:{incident_id}"


# One step: when the id was claimed (HSETNX) before the fields were written, a crash in
# between left a record holding only its id, which reads as missing and which the
# redelivered report then took for "exists already": the incident was lost for good.
_CREATE_INCIDENT = """
if redis.call('HEXISTS', KEYS[1], 'district') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'incident_id', ARGV[1], unpack(cjson.decode(ARGV[3])))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""


async def create_incident(redis: Redis, *, incident_id: str, district: str, reported_ts: float,
                          fields: dict[str, str]) -> bool:
    """Store a new incident; False if it exists already (a redelivered report)."""
    flat = [x for kv in fields.items() for x in kv]
    return bool(await redis.eval(_CREATE_INCIDENT, 3, _incident_key(incident_id),
                                 "dispatch:incidents", f"dispatch:district:{district}",
                                 incident_id, repr(reported_ts), json.dumps(flat)))


async def get_incident(redis: Redis, incident_id: str) -> dict[str, str] | None:
    data = await redis.hgetall(_incident_key(incident_id))
    return data if data.get("district") else None


async def update_incident(redis: Redis, incident_id: str, fields: dict[str, str]) -> None:
    await redis.hset(_incident_key(incident_id), mapping=fields)


async def set_if_absent(redis: Redis, incident_id: str, name: str, value: str) -> bool:
    return bool(await redis.hsetnx(_incident_key(incident_id), name, value))


STATUS_COUNTS = "dispatch:status-counts"


async def count_status_change(redis: Redis, old: str | None, new: str) -> None:
    """Keeps the number of incidents in each status (for the metrics) as statuses change."""
    if old == new:
        return
    async with redis.pipeline(transaction=True) as pipe:
        if old:
            pipe.hincrby(STATUS_COUNTS, old, -1)
        pipe.hincrby(STATUS_COUNTS, new, 1)
        await pipe.execute()


async def incr_incident(redis: Redis, incident_id: str, name: str, by: int = 1) -> int:
    return int(await redis.hincrby(_incident_key(incident_id), name, by))


async def list_incidents(redis: Redis, *, district: str | None, since_ts: float, until_ts: float,
                         limit: int, newest_first: bool = True) -> list[str]:
    key = f"dispatch:district:{district}" if district else "dispatch:incidents"
    if newest_first:
        return await redis.zrevrangebyscore(key, until_ts, since_ts, start=0, num=limit)
    return await redis.zrangebyscore(key, since_ts, until_ts, start=0, num=limit)


async def incidents_bulk(redis: Redis, ids: Iterable[str]) -> list[dict[str, str]]:
    async with redis.pipeline(transaction=False) as pipe:
        for incident_id in ids:
            pipe.hgetall(_incident_key(incident_id))
        return [d for d in await pipe.execute() if d]


async def add_waiting(redis: Redis, *, district: str, incident_id: str, ts: float) -> None:
    await redis.zadd(_waiting_key(district), {incident_id: ts})


async def remove_waiting(redis: Redis, *, district: str, incident_id: str) -> None:
    await redis.zrem(_waiting_key(district), incident_id)


async def waiting(redis: Redis, district: str, limit: int = 50) -> list[str]:
    return await redis.zrange(_waiting_key(district), 0, limit - 1)


async def add_offered(redis: Redis, incident_id: str, team_id: str) -> None:
    await redis.sadd(f"dispatch:offered:{incident_id}", team_id)


async def offered(redis: Redis, incident_id: str) -> set[str]:
    return set(await redis.smembers(f"dispatch:offered:{incident_id}"))


# --- orders ---------------------------------------------------------------------------


def _order_key(order_id: str) -> str:
    return f"dispatch:order:{order_id}"


async def save_order(redis: Redis, *, order_id: str, incident_id: str,
                     fields: dict[str, str]) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(_order_key(order_id), mapping={"order_id": order_id,
                                                 "incident_id": incident_id, **fields})
        pipe.rpush(f"dispatch:orders:{incident_id}", order_id)
        await pipe.execute()


async def get_order(redis: Redis, order_id: str) -> dict[str, str] | None:
    data = await redis.hgetall(_order_key(order_id))
    return data or None


async def update_order(redis: Redis, order_id: str, fields: dict[str, str]) -> None:
    await redis.hset(_order_key(order_id), mapping=fields)


async def orders_of(redis: Redis, incident_id: str) -> list[dict[str, str]]:
    ids = await redis.lrange(f"dispatch:orders:{incident_id}", 0, -1)
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for order_id in ids:
            pipe.hgetall(_order_key(order_id))
        return [d for d in await pipe.execute() if d]


# --- timeline -------------------------------------------------------------------------


async def append_timeline(redis: Redis, incident_id: str, entry: TimelineEntry) -> None:
    await redis.rpush(f"dispatch:timeline:{incident_id}", entry.model_dump_json())


async def timeline(redis: Redis, incident_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in await redis.lrange(f"dispatch:timeline:{incident_id}", 0, -1)]


# --- idempotency of consumed events ---------------------------------------------------


async def first_time(redis: Redis, key: str, ttl_s: int = 7 * 86400) -> bool:
    """True the first time `key` is seen (an event id, or a business key)."""
    return bool(await redis.set(f"dispatch:seen:{key}", "1", nx=True, ex=ttl_s))


async def seen(redis: Redis, key: str) -> bool:
    """Whether `key` was marked by `first_time` (a step that marks itself done at its end)."""
    return bool(await redis.exists(f"dispatch:seen:{key}"))


async def forget(redis: Redis, key: str) -> None:
    await redis.delete(f"dispatch:seen:{key}")


# --- timers ---------------------------------------------------------------------------

TIMERS = "dispatch:timers"

# Takes due timers and pushes their score out by a lease, so that a replica that dies while
# handling one does not lose it: it fires again after the lease.
_LEASE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
"""


async def schedule(redis: Redis, member: str, at: datetime) -> None:
    await redis.zadd(TIMERS, {member: at.timestamp()})


async def cancel(redis: Redis, member: str) -> None:
    await redis.zrem(TIMERS, member)


async def lease_due(redis: Redis, *, lease_s: float, limit: int = 100) -> tuple[list[str], float]:
    """Due timers, and the time their lease runs out."""
    now = time.time()
    until = now + lease_s
    return await redis.eval(_LEASE_DUE, 1, TIMERS, repr(now), repr(until), limit), until


_FINISH = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""


async def finish_timer(redis: Redis, member: str, leased_until: float) -> None:
    """Remove a handled timer, unless its handler scheduled it again for later."""
    await redis.eval(_FINISH, 1, TIMERS, member, repr(leased_until + 0.001))


async def timer_at(redis: Redis, member: str) -> float | None:
    score = await redis.zscore(TIMERS, member)
    return float(score) if score is not None else None


async def set_if_absent_order(redis: Redis, order_id: str, name: str, value: str) -> None:
    await redis.hsetnx(_order_key(order_id), name, value)


# --- dispatcher tokens (the command room's people) --------------------------------------


def _token_hash(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


async def create_dispatcher(redis: Redis, *, dispatcher_id: str, name: str, districts: list[str],
                            token: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(f"dispatch:dispatcher:{dispatcher_id}", mapping={
            "name": name, "districts": json.dumps(sorted(set(districts))),
            "token_hash": _token_hash(token), "created_at": datetime.now(UTC).isoformat()})
        pipe.set(f"dispatch:dispatcher-token:{_token_hash(token)}", dispatcher_id)
        pipe.sadd("dispatch:dispatchers", dispatcher_id)
        await pipe.execute()


async def dispatcher_for_token(redis: Redis, token: str) -> dict[str, Any] | None:
    dispatcher_id = await redis.get(f"dispatch:dispatcher-token:{_token_hash(token)}")
    if not dispatcher_id:
        return None
    data = await redis.hgetall(f"dispatch:dispatcher:{dispatcher_id}")
    if not data:
        return None
    return {"dispatcher_id": dispatcher_id, "name": data["name"],
            "districts": json.loads(data["districts"])}


async def list_dispatchers(redis: Redis) -> list[dict[str, Any]]:
    out = []
    for dispatcher_id in sorted(await redis.smembers("dispatch:dispatchers")):
        data = await redis.hgetall(f"dispatch:dispatcher:{dispatcher_id}")
        if data:
            out.append({"dispatcher_id": dispatcher_id, "name": data["name"],
                        "districts": json.loads(data["districts"]),
                        "created_at": data.get("created_at")})
    return out


async def revoke_dispatcher(redis: Redis, dispatcher_id: str) -> bool:
    data = await redis.hgetall(f"dispatch:dispatcher:{dispatcher_id}")
    if not data:
        return False
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(f"dispatch:dispatcher-token:{data['token_hash']}")
        pipe.delete(f"dispatch:dispatcher:{dispatcher_id}")
        pipe.srem("dispatch:dispatchers", dispatcher_id)
        await pipe.execute()
    return True
