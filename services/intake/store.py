"""Intake's Redis keys (prefix `intake:`), behind named functions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ResponseError, WatchError

from shared import streams
from shared.bus import XADD_LUA, maxlen_arg
from shared.events import (
    IncidentClosed,
    IncidentUpdated,
    Location,
    OrderWithdrawn,
    TimelineEntry,
    new_id,
    utcnow,
)
from shared.scripts import ScriptBatch, run_script
from shared.tokens import SYSTEM_KEY_PREFIX, new_token

from .domain import OpenIncident


def key_hash(secret: str) -> str:
    """What a system key is stored as (never the key itself)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _key_entry(hashed: str) -> str:
    return f"intake:key:{hashed}"


# --- systems and their keys -------------------------------------------------------------
#
# A system has one key or more: its first (the record's `key_hash`, as systems were made
# before keys could be added) and those added to replace it (`intake:system_keys:<id>`,
# hash -> {"created_at", "revoked_at"?}). Each live key's entry `intake:key:<hash>` names the
# system: what a request, and the report script, resolve. A key revoked on its own keeps its
# line (revoked_at), so that revoking it again is done, not unknown.

KeyChange = Literal["revoked", "already", "not_found", "last"]


def key_id(hashed: str) -> str:
    """A key's name for the admin (GET /v1/systems, DELETE /v1/systems/{id}/keys/{key_id}):
    the start of its SHA-256, which tells nothing of the key (256 random bits)."""
    return f"key_{hashed[:16]}"


def _system(system_id: str) -> str:
    return f"intake:system:{system_id}"


def _system_keys(system_id: str) -> str:
    # not under intake:system:*, which list_systems scans for the systems' records
    return f"intake:system_keys:{system_id}"


def _keys_of(record: dict[str, str], added: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every key a system was given (hash -> created_at, revoked_at?), its first included."""
    keys: dict[str, dict[str, Any]] = {}
    if record.get("key_hash"):
        keys[record["key_hash"]] = {"created_at": record.get("created_at")}
    for hashed, line in added.items():
        keys[hashed] = json.loads(line)
    return keys


async def _watched(redis: Redis, system_id: str,
                   change: Callable[[Any, dict[str, str], dict[str, str]], Awaitable[Any]]
                   ) -> Any:
    """`change(pipe, record, added_keys)` on a pipeline watching the system's record and its
    keys (read first), again on fresh data if either changed before its EXEC: an admin's
    revocation of the system racing a key being added never leaves a key that works for a
    revoked system. `change` calls `pipe.multi()` and queues its writes, or returns without."""
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(_system(system_id), _system_keys(system_id))
                record = await pipe.hgetall(_system(system_id))
                added = await pipe.hgetall(_system_keys(system_id))
                result = await change(pipe, record, added)
                if pipe.explicit_transaction:
                    await pipe.execute()
                return result
            except WatchError:
                continue


async def create_system(redis: Redis, *, name: str, districts: list[str]) -> tuple[str, str]:
    """A new system and its first key: (system_id, api_key)."""
    system_id = new_id("sys")
    api_key = new_token(SYSTEM_KEY_PREFIX)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            _system(system_id),
            mapping={
                "name": name,
                "districts": json.dumps(sorted(set(districts))),
                "created_at": utcnow().isoformat(),
                "key_hash": key_hash(api_key),
            },
        )
        pipe.set(_key_entry(key_hash(api_key)), system_id)
        await pipe.execute()
    return system_id, api_key


async def add_key(redis: Redis, system_id: str
                  ) -> tuple[str, str] | Literal["not_found", "system_revoked"]:
    """Another key of the system (key_id, api_key): the same system, its districts, reports
    and refs; its other keys go on working until revoked (revoke_key)."""
    api_key = new_token(SYSTEM_KEY_PREFIX)
    hashed = key_hash(api_key)

    async def change(pipe: Any, record: dict[str, str], _: dict[str, str]) -> Any:
        if not record:
            return "not_found"
        if record.get("revoked_at"):
            return "system_revoked"
        pipe.multi()
        pipe.hset(_system_keys(system_id), hashed,
                  json.dumps({"created_at": utcnow().isoformat()}))
        pipe.set(_key_entry(hashed), system_id)
        return key_id(hashed), api_key

    result: tuple[str, str] | Literal["not_found", "system_revoked"] = await _watched(
        redis, system_id, change)
    return result


async def revoke_key(redis: Redis, system_id: str, wanted: str) -> KeyChange:
    """One key of the system (by key_id) stops working at once: its entry deleted, nothing
    resolves it again; the system, its reports and its other keys stay. Its last live key is
    not revoked alone ("last": the system is, DELETE /v1/systems/{id})."""

    async def change(pipe: Any, record: dict[str, str], added: dict[str, str]) -> Any:
        if not record:
            return "not_found"
        keys = _keys_of(record, added)
        found = [h for h in keys if key_id(h) == wanted]
        if not found:
            return "not_found"
        hashed = found[0]
        if record.get("revoked_at") or keys[hashed].get("revoked_at"):
            return "already"
        if not [h for h, line in keys.items() if h != hashed and not line.get("revoked_at")]:
            return "last"
        pipe.multi()
        pipe.delete(_key_entry(hashed))
        pipe.hset(_system_keys(system_id), hashed, json.dumps(
            {**keys[hashed], "revoked_at": utcnow().isoformat()}))
        if record.get("key_hash") == hashed:
            pipe.hset(_system(system_id), "key_hash", "")
        return "revoked"

    result: KeyChange = await _watched(redis, system_id, change)
    return result


# Key -> system in one round trip, always current: a revoked key (its entry deleted)
# resolves to nothing.
_SYSTEM_FOR_KEY = """
local system_id = redis.call('GET', KEYS[1])
if not system_id then return false end
local s = redis.call('HMGET', 'intake:system:' .. system_id, 'name', 'districts')
if not s[2] then return false end
return {system_id, s[1], s[2]}
"""


async def system_for_key(redis: Redis, hashed: str) -> dict[str, Any] | None:
    """The system whose key hashes to `hashed` (`key_hash`), if it is not revoked."""
    found = await redis.eval(_SYSTEM_FOR_KEY, 1, _key_entry(hashed))
    if not found:
        return None
    system_id, name, districts = found
    return {"system_id": system_id, "name": name, "districts": json.loads(districts)}


async def revoke_system(redis: Redis, system_id: str, *, kept_s: int
                        ) -> Literal["revoked", "already", "not_found"]:
    """Every key of the system stops working at once (their entries deleted: nothing
    resolves them again); the system's incidents stay, and its record, listed as revoked,
    `kept_s` longer (RECORDS_DAYS: as long as the records that name it). A system revoked
    already stays as it was."""

    async def change(pipe: Any, record: dict[str, str], added: dict[str, str]) -> Any:
        if not record:
            return "not_found"
        if record.get("revoked_at"):
            return "already"
        keys = _keys_of(record, added)
        now = utcnow().isoformat()
        live = [h for h, line in keys.items() if not line.get("revoked_at")]
        pipe.multi()
        for hashed in live:
            pipe.delete(_key_entry(hashed))
            pipe.hset(_system_keys(system_id), hashed,
                      json.dumps({**keys[hashed], "revoked_at": now}))
        pipe.hset(_system(system_id), mapping={"revoked_at": now, "key_hash": ""})
        pipe.expire(_system(system_id), kept_s)
        pipe.expire(_system_keys(system_id), kept_s)
        return "revoked"

    result: Literal["revoked", "already", "not_found"] = await _watched(redis, system_id, change)
    return result


async def list_systems(redis: Redis) -> list[dict[str, Any]]:
    out = []
    async for key in redis.scan_iter(match="intake:system:*", count=500):
        system_id = key.removeprefix("intake:system:")
        data = await redis.hgetall(key)
        if not data:  # expired between the scan and the read
            continue
        added = await redis.hgetall(_system_keys(system_id))
        keys = sorted(({"key_id": key_id(h), "created_at": line.get("created_at")}
                       for h, line in _keys_of(data, added).items()
                       if not line.get("revoked_at") and not data.get("revoked_at")),
                      key=lambda k: k["created_at"] or "")
        out.append({"system_id": system_id, "name": data.get("name"),
                    "districts": json.loads(data.get("districts") or "[]"),
                    "created_at": data.get("created_at"),
                    "revoked_at": data.get("revoked_at") or None,
                    "keys": keys})
    return sorted(out, key=lambda r: r["created_at"] or "")


# --- incidents ------------------------------------------------------------------------

# Claims the (system, external_ref) pair and writes the record in one step, so a retry
# finds either nothing or the whole record (returned with the id it already has). Asked to
# look first (a radius in ARGV[4]), it writes nothing while an incident of the category is
# open that near, and returns those incidents instead: whether one is a duplicate is the
# domain's call, and the caller comes back with it. Most reports have no such neighbour, so
# they take this one round trip. Entries whose record is gone leave the index on the way.
# The caller that judged none of them a duplicate asks again, naming them (ARGV[10]): the
# script then records unless another has come near meanwhile (a report of the same event
# at the same moment), so two such reports never both go out as new incidents.
# Given the incident.reported entry (ARGV[7]), the same step XADDs it and records the
# incident published: an outbox with no window between the two. The XADD comes first: what
# refuses it (OOM under noeviction, a read-only replica) refuses the script before it
# writes anything. Given the caller's key (KEYS[5], its system in ARGV[9]), the script first
# checks it is still that system's: a key revoked since the caller resolved it writes
# nothing ('revoked'), so intake can take the key from memory for a report.
# Every report (ARGV[11]: its keys' TTL) expires unless dispatch takes it up (its first
# incident.updated: _PROJECT keeps it then while it is open) or sends a linked one out as
# its own: should dispatch's word never come (its incident.reported dead-lettered and never
# replayed), nothing else would end it.
# A report linked as a duplicate (ARGV[12], the incident it joins) moves that incident's
# latest report time (`latest_ts`, epoch seconds: ARGV[13]) on, never back: the duplicate
# window runs to it (domain.find_duplicate). The report's time is kept in that incident's
# `joined` set too (_joined_key, expiring with its record), so that a report the command
# room unlinks takes back what it added to the window (_PROJECT).
_RECORD = XADD_LUA + """
if ARGV[9] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[9] then return {'revoked'} end
local existing = redis.call('GET', KEYS[1])
if existing then
  return {'existing', existing, redis.call('HGETALL', 'intake:incident:' .. existing)}
end
if ARGV[4] ~= '' then
  local near = {}
  local ids = redis.call('GEOSEARCH', KEYS[3], 'FROMLONLAT', ARGV[2], ARGV[3],
                         'BYRADIUS', ARGV[4], 'm')
  local judged = {}
  for _, id in ipairs(cjson.decode(ARGV[10])) do judged[id] = true end
  for _, id in ipairs(ids) do
    local c = redis.call('HMGET', 'intake:incident:' .. id, 'status', 'reported_at', 'lat',
                         'lon', 'created_at', 'latest_ts')
    if judged[id] then
      -- judged no duplicate by this caller already: it asks for the others only
    elseif c[1] then
      table.insert(near, {id, c[1], c[2], c[3], c[4], c[5] or '', c[6] or ''})
    else
      redis.call('ZREM', KEYS[3], id)
    end
  end
  if #near > 0 then return {'near', near} end
end
if ARGV[7] ~= '' then xadd(KEYS[4], ARGV[8], ARGV[7]) end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], unpack(cjson.decode(ARGV[6])))
if ARGV[5] == '1' then
  redis.call('GEOADD', KEYS[3], ARGV[2], ARGV[3], ARGV[1])
end
if ARGV[11] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[11])
  redis.call('EXPIRE', KEYS[2], ARGV[11])
end
if ARGV[12] ~= '' then
  local parent = 'intake:incident:' .. ARGV[12]
  if redis.call('EXISTS', parent) == 1 then
    local was = tonumber(redis.call('HGET', parent, 'latest_ts') or '')
    if not was or tonumber(ARGV[13]) > was then
      redis.call('HSET', parent, 'latest_ts', ARGV[13])
    end
    local joined = 'intake:joined:' .. ARGV[12]
    redis.call('ZADD', joined, ARGV[13], ARGV[1])
    local ttl = redis.call('PTTL', parent)
    if ttl > 0 then redis.call('PEXPIRE', joined, ttl) else redis.call('PERSIST', joined) end
  end
end
return {'recorded', ARGV[1]}
"""


# Redis measures a GEOSEARCH radius on a sphere of 6,372,797.56 m, intake's own distance
# (domain.distance_m) on 6,371,000 m (Redis's distances ~0.028 % longer), and from the
# stored place rounded to its 52-bit geohash (up to ~0.3 m off): BYRADIUS 200 m missed a
# neighbour intake puts at 199.9 m. The search takes a little more; find_duplicate judges
# the radius itself.
GEO_MARGIN = 1.001
GEO_MARGIN_M = 1.0


def search_radius_m(radius_m: float) -> float:
    """The GEOSEARCH radius that finds every open incident intake puts within `radius_m`."""
    return radius_m * GEO_MARGIN + GEO_MARGIN_M


def _open_index(district: str, category: str) -> str:
    # (the projection's scripts append the category to _open_index(district, ""))
    return f"intake:open:{district}:{category}"


@dataclass(frozen=True, slots=True)
class Recording:
    """What `record_incident` did: found the ref already taken (`existing_id`, with its
    record, empty if that is gone), found open incidents `near` and wrote nothing, or
    recorded the new incident (neither)."""

    existing_id: str | None = None
    existing: dict[str, str] = field(default_factory=dict)
    near: tuple[OpenIncident, ...] = ()
    # Recorded and published, but WAITAOF did not confirm the fsync in time: the incident is
    # left unmarked, so a retry of its report asks for the fsync again (`confirm_reported`).
    unconfirmed: bool = False
    # The caller's key (`key_hash`) is no longer its system's: nothing was written.
    revoked: bool = False
    # The server refused the WAITAOF (see `_fsynced`): whatever else happened stands, as on
    # a server never asked; whether it can confirm an fsync is to be found again.
    waitaof_refused: bool = False


async def record_incident(
    redis: Redis,
    *,
    incident_id: str,
    system_id: str,
    external_ref: str,
    category: str,
    priority: str,
    district: str,
    location: Location,
    reported_at: datetime,
    linked_to: str | None,
    trace_id: str | None,
    unless_near_m: float | None = None,
    entry: bytes | None = None,
    waitaof_timeout_ms: int | None = None,
    key_hash: str | None = None,
    judged: Sequence[str] = (),
    unheard_ttl_s: int | None = None,
    fingerprint: str = "",
    follow_up_of: str | None = None,
    sent_reported_at: datetime | None = None,
    duplicate_at: datetime | None = None,
) -> Recording:
    """Store a new incident, unless its ref has one already or, given `unless_near_m`, an
    open incident of its category is within that many metres (a little more: those are
    returned for the domain to judge, search_radius_m). Given its incident.reported
    `entry` (shared.bus.entry_to_write), publish it in the same step (the only time it is
    published: intake's reports always give one); given a timeout, then WAITAOF on the
    same connection (it covers only that connection's writes). Given the
    reporting system's `key_hash`, write nothing unless that key is still the system's.
    The record and ref expire after `unheard_ttl_s` (None: never) unless dispatch takes the
    report up, or sends a linked one out as an incident of its own (`apply_update`).
    `fingerprint` (domain.report_fingerprint) is kept to tell a retry from another report
    sent under the same ref. `follow_up_of`: a follow-up's, the report it adds to (kept for
    its view and its retries; its `linked_to` is where it goes). `sent_reported_at`: the time
    the system gave, when `reported_at` is another (domain.taken_time), for its retries.
    `duplicate_at`: a report linked to `linked_to` as a duplicate of it, its report time
    (domain.report_time), which that incident's window runs to from now on."""
    fields: dict[str, str] = {
        "incident_id": incident_id,
        "system_id": system_id,
        "external_ref": external_ref,
        "category": category,
        "priority": priority,
        "district": district,
        "status": "linked" if linked_to else "reported",
        "lat": repr(location.lat),
        "lon": repr(location.lon),
        "reported_at": reported_at.isoformat(),
        "created_at": utcnow().isoformat(),
        "published": "1" if entry is not None else "0",
        "seq": "0",
        "assignments": "[]",
        "linked_to": linked_to or "",
        "trace_id": trace_id or "",
        "flagged": "0",
        "fingerprint": fingerprint,
    }
    if follow_up_of:
        fields["follow_up_of"] = follow_up_of
    if sent_reported_at is not None:
        fields["reported_at_sent"] = sent_reported_at.isoformat()
    if duplicate_at is not None and linked_to:
        fields["window_of"] = linked_to  # the incident whose window it moved on
    stream = streams.INCIDENT_REPORTED
    keys = [f"intake:ref:{system_id}:{external_ref}", f"intake:incident:{incident_id}",
            _open_index(district, category), stream.name]
    if key_hash is not None:
        keys.append(_key_entry(key_hash))
    args = [incident_id, repr(location.lon), repr(location.lat),
            "" if unless_near_m is None else repr(search_radius_m(unless_near_m)),
            "" if linked_to else "1",
            json.dumps([x for kv in fields.items() for x in kv]),
            entry if entry is not None else "",
            maxlen_arg(stream), system_id if key_hash is not None else "",
            json.dumps(list(judged)), _ttl_arg(unheard_ttl_s),
            (linked_to or "") if duplicate_at is not None else "",
            repr(duplicate_at.timestamp()) if duplicate_at is not None else ""]
    fsynced: bool | None = True
    if entry is None or waitaof_timeout_ms is None:
        outcome, *found = await run_script(redis, _RECORD, keys, args)
    else:
        # No MULTI: inside one, WAITAOF would answer at once instead of waiting.
        async with redis.pipeline(transaction=False) as pipe:
            await run_script(pipe, _RECORD, keys, args)
            pipe.execute_command("WAITAOF", 1, 0, waitaof_timeout_ms)
            recorded, waited = await pipe.execute(raise_on_error=False)
        if isinstance(recorded, Exception):  # the script's refusal: nothing was written
            raise recorded
        outcome, *found = recorded
        fsynced = _fsynced(waited)
    refused = fsynced is None
    if outcome == "revoked":
        return Recording(revoked=True, waitaof_refused=refused)
    # Our own id: redis-py ran the script again after losing the first reply.
    if outcome == "existing" and found[0] != incident_id:
        existing_id, flat = found
        return Recording(existing_id=existing_id,
                         existing=dict(zip(flat[::2], flat[1::2], strict=True)),
                         waitaof_refused=refused)
    if outcome == "near":
        return Recording(near=tuple(
            OpenIncident(incident_id=near_id, status=status,
                         reported_at=datetime.fromisoformat(at),
                         location=Location(lat=float(lat), lon=float(lon)),
                         received_at=datetime.fromisoformat(came) if came else None,
                         latest_at=datetime.fromtimestamp(float(latest), UTC) if latest else None)
            for near_id, status, at, lat, lon, came, latest in found[0]
        ), waitaof_refused=refused)
    if entry is not None and fsynced is False:
        await redis.hset(f"intake:incident:{incident_id}", "published", "0")
        return Recording(unconfirmed=True)
    return Recording(waitaof_refused=refused)


# A reporting system's request to cancel its report: its ref claimed (KEYS[1], per system,
# apart from its reports' refs) and its incident.cancel_requested entry XADDed (KEYS[2]) in
# one step, the XADD first (what refuses it refuses the script before it writes anything);
# a ref taken answers what it holds (the retry's, or another request's, to judge).
_CANCEL = XADD_LUA + """
local existing = redis.call('GET', KEYS[1])
if existing then return {'existing', existing} end
xadd(KEYS[2], ARGV[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
return {'recorded', ARGV[3]}
"""


async def cancel_request_for_ref(redis: Redis, *, system_id: str, external_ref: str
                                 ) -> dict[str, str] | None:
    """What a system's cancel request ref holds (record_cancel_request's record), if any."""
    held = await redis.get(f"intake:cancel-ref:{system_id}:{external_ref}")
    return json.loads(held) if held else None


async def record_cancel_request(redis: Redis, *, system_id: str, external_ref: str,
                                record: dict[str, str], entry: bytes, ttl_s: int
                                ) -> tuple[bool, dict[str, str]]:
    """Claims a cancel request's ref and publishes its entry, once: (True, `record`) when
    this call did, else (False, what the ref holds). The record keeps no reason (a digest)."""
    stream = streams.INCIDENT_CANCEL_REQUESTED
    outcome, held = await run_script(
        redis, _CANCEL, [f"intake:cancel-ref:{system_id}:{external_ref}", stream.name],
        [entry, maxlen_arg(stream), json.dumps(record), str(max(ttl_s, 1))])
    found: dict[str, str] = json.loads(held)
    # our own request: redis-py ran the script again after losing the first reply
    return outcome == "recorded" or found == record, found


async def waitaof_supported(redis: Redis) -> bool:
    """Whether this Redis can confirm an fsync: it has WAITAOF (7.2 or newer) and AOF on."""
    info = await redis.info("server")
    version = tuple(int(p) for p in str(info.get("redis_version", "0")).split(".")[:2])
    persistence = await redis.info("persistence")
    return version >= (7, 2) and bool(persistence.get("aof_enabled"))


def _fsynced(reply: Any) -> bool | None:
    """A WAITAOF's reply: whether the local AOF fsync came in time, or None where the server
    refused it (an error reply: one without WAITAOF, as when Redis was replaced by an older
    one, or with AOF off, `CONFIG SET appendonly no`), so there is no fsync to wait for.
    The writes before it were done either way."""
    if isinstance(reply, ResponseError):
        return None
    if isinstance(reply, Exception):
        raise reply
    return int(reply[0]) >= 1


Confirmation = Literal["kept", "unconfirmed", "waitaof_refused"]


async def confirm_reported(redis: Redis, *, incident_id: str,
                           waitaof_timeout_ms: int | None = None) -> Confirmation:
    """For an incident recorded with its incident.reported entry but whose fsync was not
    confirmed (see `Recording.unconfirmed`): mark it published and, given a timeout, WAITAOF
    after the mark on the same connection (it covers only that connection's writes).

    Nothing is published again: the entry went into the stream in the record's own script,
    which Redis applies, persists and replicates whole, so the record being here means its
    event is too; and the AOF is one log written in order, so the fsync of this later write
    is that of the entry as well. The event dispatch reads stays the one recorded, whatever
    the retry that confirms it carries.

    "unconfirmed": the fsync was not confirmed in time; the incident is left unmarked, so
    the next retry of its report asks again. "waitaof_refused": marked, but the server
    refused the WAITAOF (`_fsynced`): there is no fsync to wait for.
    """
    key = f"intake:incident:{incident_id}"
    if waitaof_timeout_ms is None:
        await redis.hset(key, "published", "1")
        return "kept"
    # No MULTI: inside one, WAITAOF would answer at once instead of waiting.
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, "published", "1")
        pipe.execute_command("WAITAOF", 1, 0, waitaof_timeout_ms)
        marked, waited = await pipe.execute(raise_on_error=False)
    if isinstance(marked, Exception):
        raise marked
    fsynced = _fsynced(waited)
    if fsynced is None:
        return "waitaof_refused"
    if not fsynced:
        await redis.hset(key, "published", "0")
        return "unconfirmed"
    return "kept"


async def get_incident(redis: Redis, incident_id: str) -> dict[str, str] | None:
    data = await redis.hgetall(f"intake:incident:{incident_id}")
    return data or None


async def incident_for_ref(redis: Redis, *, system_id: str, external_ref: str,
                           key_hash: str | None = None) -> dict[str, str] | None:
    """The incident a system's `external_ref` already made, if intake still keeps it. Given
    the caller's `key_hash`, None too when that key is no longer the system's (revoked
    since the caller resolved it, as record_incident checks)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(f"intake:ref:{system_id}:{external_ref}")
        pipe.get(_key_entry(key_hash or ""))
        incident_id, holder = await pipe.execute()
    if not incident_id or (key_hash is not None and holder != system_id):
        return None
    return await get_incident(redis, incident_id)


async def timeline(redis: Redis, incident_id: str) -> list[dict[str, Any]]:
    """In the order things happened: an update handled late (reclaimed from a consumer that
    died) is appended after later ones."""
    entries = [json.loads(x) for x in await redis.lrange(f"intake:timeline:{incident_id}", 0, -1)]
    return sorted(entries, key=lambda e: datetime.fromisoformat(e["at"]))


# Applies an update only if it is newer than what we hold; the timeline entry is appended
# once per event id, so a redelivered event changes nothing. A closed incident leaves the
# open index; a linked report that dispatch sent out as its own (the incident it was
# linked to had ended) joins it, so the next report of the same event links to it.
# Given a TTL (ARGV[11]), an incident that has ended (so has a linked report: dispatch sends
# it nowhere) expires with its timeline, its seen events and its ref (record_incident's
# KEYS[1]: a retry of the ref then makes a new incident); a report dispatch takes up (its
# first word: `seq` 0 until then), or a linked one it sent out after all, is kept again
# until it ends (record_incident gave each a TTL, should dispatch's word never come).
# An event with an ended status (ARGV[12]: its entry's time, epoch seconds) keeps the
# earliest such time per status (domain.ended_at_field: the linked reports' `ended_at`),
# whatever order the events come in.
# Each order dispatch lists (ARGV[5]) keeps the earliest time an update listed it
# (domain.sent_at_field: the linked reports' `assigned_at`): dispatch announces a joint
# response's orders, or a take-back's replacement, with one `status` entry naming none, so
# the timeline alone would date a team's sending by its first answer, or its withdrawal.
# A linked report takes the incident dispatch linked it to (ARGV[13]) from dispatch's newest
# word: dispatch follows an ended incident on to the report sent out for the same event
# (`sent_on_as`), so it may be another than the one intake named.
# The incident's first update says when dispatch received the report (ARGV[14]) and how late
# (ARGV[15], '' in time), with the note of a late one (ARGV[16]) for the timeline: kept
# whatever order the updates come in.
# A duplicate dispatch now says is linked to nothing (ARGV[13] empty: the command room
# unlinked it, another event; or sent it out as its own) takes its time out of the window of
# the incident it had moved on (`window_of`, record_incident): that incident's `latest_ts`
# is its latest report still linked, none but its own when none is. Once, from the first
# word that says so (an older one read after it is not applied, as any); a linked report
# closed as a duplicate keeps its place (dispatch still names its incident).
_PROJECT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[3], 2592000)
if ARGV[14] ~= '' then
  redis.call('HSET', KEYS[1], 'received_at', ARGV[14], 'late_by_s', ARGV[15])
end
if ARGV[16] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[16]) end
local ends = {resolved = true, handed_over = true, closed = true}
if ends[ARGV[3]] and ARGV[12] ~= '' then
  local since = 'ended:' .. ARGV[3]
  local had = redis.call('HGET', KEYS[1], since)
  if not had or tonumber(ARGV[12]) < tonumber(had) then
    redis.call('HSET', KEYS[1], since, ARGV[12])
  end
end
if ARGV[12] ~= '' then
  for _, a in ipairs(cjson.decode(ARGV[5])) do
    local sent = 'sent:' .. a['order_id']
    local had = redis.call('HGET', KEYS[1], sent)
    if not had or tonumber(ARGV[12]) < tonumber(had) then
      redis.call('HSET', KEYS[1], sent, ARGV[12])
    end
  end
end
local held = redis.call('HMGET', KEYS[1], 'seq', 'status', 'category', 'lon', 'lat',
                        'system_id', 'external_ref', 'window_of')
local status = held[2]
local unheard = (held[1] or '0') == '0'
if tonumber(ARGV[2]) > tonumber(held[1] or '0') then
  status = ARGV[3]
  redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'status', ARGV[3], 'priority', ARGV[4],
             'assignments', ARGV[5], 'flagged', ARGV[6])
  if ARGV[3] == 'linked' and ARGV[13] ~= '' then
    redis.call('HSET', KEYS[1], 'linked_to', ARGV[13])
  end
  local index = ARGV[9] .. (held[3] or '')
  if ARGV[8] == '1' then
    redis.call('ZREM', index, ARGV[10])
  elseif held[2] == 'linked' and ARGV[3] ~= 'linked' and held[4] and held[5] then
    redis.call('GEOADD', index, held[4], held[5], ARGV[10])
  end
  if held[2] == 'linked' and ARGV[3] ~= 'linked' and ARGV[13] == '' and held[8]
      and held[8] ~= '' then
    local joined = 'intake:joined:' .. held[8]
    local parent = 'intake:incident:' .. held[8]
    if redis.call('ZREM', joined, ARGV[10]) == 1 and redis.call('EXISTS', parent) == 1 then
      local top = redis.call('ZREVRANGE', joined, 0, 0, 'WITHSCORES')
      if top[2] then
        redis.call('HSET', parent, 'latest_ts', top[2])
      else
        redis.call('HDEL', parent, 'latest_ts')
      end
    end
  end
end
if ARGV[7] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[7]) end
if ARGV[11] ~= '' then
  local ref = 'intake:ref:' .. (held[6] or '') .. ':' .. (held[7] or '')
  local ended = {resolved = true, handed_over = true, closed = true, linked = true}
  if ended[status] then
    for _, key in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[4], ref}) do
      redis.call('EXPIRE', key, ARGV[11])
    end
  elseif held[2] == 'linked' or unheard then
    for _, key in ipairs({KEYS[1], KEYS[2], KEYS[4], ref}) do redis.call('PERSIST', key) end
  end
end
return 1
"""


def _ttl_arg(ttl_s: int | None) -> str:
    return "" if ttl_s is None else str(int(ttl_s))


def _incident_keys(incident_id: str) -> list[str]:
    return [f"intake:incident:{incident_id}", f"intake:timeline:{incident_id}",
            f"intake:seen:{incident_id}", _joined_key(incident_id)]


def _joined_key(incident_id: str) -> str:
    """The duplicates linked to an incident (a sorted set: each report's id, scored by its
    report time), whose latest its window runs to; kept as long as its record."""
    return f"intake:joined:{incident_id}"


async def apply_update(redis: Redis | ScriptBatch, event: IncidentUpdated, *,
                       records_ttl_s: int | None = None) -> bool:
    """Projects dispatch's update on the caller's view, once per event: one script, which
    finds the incident's open index from its category itself. An ended incident's keys
    expire `records_ttl_s` later (None: never)."""
    closed = event.status in ("resolved", "handed_over", "closed")
    return bool(await run_script(
        redis, _PROJECT, _incident_keys(event.incident_id),
        [event.event_id, str(event.seq), event.status, event.priority,
         json.dumps([a.model_dump(mode="json") for a in event.assignments]),
         "1" if event.flagged else "0", _callers_entry(event.entry),
         "1" if closed else "0", _open_index(event.district, ""), event.incident_id,
         _ttl_arg(records_ttl_s), repr(event.entry.at.timestamp()), event.linked_to or "",
         event.received_at.isoformat() if event.received_at else "",
         "" if event.late_by_s is None else str(event.late_by_s),
         _callers_entry(event.late_note) if event.late_note else ""]))


def _callers_entry(entry: TimelineEntry) -> str:
    """A timeline entry as the caller's view keeps it: the team's own words and its evidence
    are for the command room, not the caller."""
    return entry.model_dump_json(exclude={"note", "evidence"})


# A withdrawal's entry (a team stood down: order.withdrawn carries it, no update does) on the
# timeline, once per event, of an incident intake keeps; its keys' expiry, once the incident
# has one (ended, or not yet heard of), is the record's (_PROJECT keeps them together).
_STOOD_DOWN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[3], 2592000)
redis.call('RPUSH', KEYS[2], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return 1
"""


async def apply_stood_down(redis: Redis | ScriptBatch, event: OrderWithdrawn) -> bool:
    """Puts the entry of a withdrawal that has one (`event.entry`: a team stood down) on the
    caller's timeline, once per event."""
    if event.entry is None:
        return False
    return bool(await run_script(redis, _STOOD_DOWN, _incident_keys(event.incident_id),
                                 [event.event_id, _callers_entry(event.entry)]))


# The closed incident leaves its district's open index (found from its category); given a
# TTL (ARGV[3]), its keys expire then, as when its final update comes (_PROJECT), whichever
# of the two streams is read first.
_CLOSE = """
local held = redis.call('HMGET', KEYS[1], 'category', 'system_id', 'external_ref')
if not held[1] then return 0 end
if ARGV[3] ~= '' then
  local ref = 'intake:ref:' .. (held[2] or '') .. ':' .. (held[3] or '')
  for _, key in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[4], ref}) do
    redis.call('EXPIRE', key, ARGV[3])
  end
end
return redis.call('ZREM', ARGV[1] .. held[1], ARGV[2])
"""


async def apply_closed(redis: Redis | ScriptBatch, event: IncidentClosed, *,
                       records_ttl_s: int | None = None) -> None:
    await run_script(redis, _CLOSE, _incident_keys(event.incident_id),
                     [_open_index(event.district, ""), event.incident_id,
                      _ttl_arg(records_ttl_s)])
