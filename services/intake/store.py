"""Intake's Redis keys (prefix `intake:`), behind named functions."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from shared.events import IncidentClosed, IncidentUpdated, Location, new_id, utcnow

from .domain import OpenIncident


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- systems and their keys -------------------------------------------------------------


async def create_system(redis: Redis, *, name: str, districts: list[str]) -> tuple[str, str]:
    system_id = new_id("sys")
    api_key = f"lfs_{secrets.token_urlsafe(32)}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            f"intake:system:{system_id}",
            mapping={
                "name": name,
                "districts": json.dumps(sorted(set(districts))),
                "created_at": utcnow().isoformat(),
                "key_hash": _hash(api_key),
            },
        )
        pipe.set(f"intake:key:{_hash(api_key)}", system_id)
        await pipe.execute()
    return system_id, api_key


async def system_for_key(redis: Redis, api_key: str) -> dict[str, Any] | None:
    system_id = await redis.get(f"intake:key:{_hash(api_key)}")
    if not system_id:
        return None
    data = await redis.hgetall(f"intake:system:{system_id}")
    if not data:
        return None
    return {"system_id": system_id, "name": data["name"], "districts": json.loads(data["districts"])}


async def revoke_system(redis: Redis, system_id: str) -> bool:
    """The key stops working at once; the system's incidents stay."""
    key_hash = await redis.hget(f"intake:system:{system_id}", "key_hash")
    if not key_hash:
        return False
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(f"intake:key:{key_hash}")
        pipe.hset(f"intake:system:{system_id}", mapping={"revoked_at": utcnow().isoformat(),
                                                          "key_hash": ""})
        await pipe.execute()
    return True


async def list_systems(redis: Redis) -> list[dict[str, Any]]:
    out = []
    async for key in redis.scan_iter(match="intake:system:*", count=500):
        data = await redis.hgetall(key)
        out.append({"system_id": key.removeprefix("intake:system:"), "name": data.get("name"),
                    "districts": json.loads(data.get("districts") or "[]"),
                    "created_at": data.get("created_at"),
                    "revoked_at": data.get("revoked_at") or None})
    return sorted(out, key=lambda r: r["created_at"] or "")


# --- incidents ------------------------------------------------------------------------

# Claims the (system, external_ref) pair and writes the record in one step, so a retry
# finds either nothing or the whole record.
_RECORD = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], unpack(cjson.decode(ARGV[2])))
if ARGV[3] ~= '' then
  redis.call('GEOADD', KEYS[3], ARGV[4], ARGV[5], ARGV[1])
end
return ARGV[1]
"""


def _open_index(district: str, category: str) -> str:
    return f"intake:open:{district}:{category}"


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
) -> str:
    """Store a new incident; returns the id already recorded for this ref, if any."""
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
        "published": "0",
        "seq": "0",
        "assignments": "[]",
        "linked_to": linked_to or "",
        "trace_id": trace_id or "",
        "flagged": "0",
    }
    flat = [x for kv in fields.items() for x in kv]
    return await redis.eval(
        _RECORD,
        3,
        f"intake:ref:{system_id}:{external_ref}",
        f"intake:incident:{incident_id}",
        _open_index(district, category),
        incident_id,
        json.dumps(flat),
        "" if linked_to else "1",
        repr(location.lon),
        repr(location.lat),
    )


async def mark_published(redis: Redis, incident_id: str) -> None:
    await redis.hset(f"intake:incident:{incident_id}", "published", "1")


async def get_incident(redis: Redis, incident_id: str) -> dict[str, str] | None:
    data = await redis.hgetall(f"intake:incident:{incident_id}")
    return data or None


async def timeline(redis: Redis, incident_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in await redis.lrange(f"intake:timeline:{incident_id}", 0, -1)]


async def nearby_open(
    redis: Redis, *, district: str, category: str, location: Location, radius_m: float
) -> list[OpenIncident]:
    key = _open_index(district, category)
    ids = await redis.geosearch(
        key, longitude=location.lon, latitude=location.lat, radius=radius_m, unit="m"
    )
    found: list[OpenIncident] = []
    for incident_id in ids:
        data = await redis.hgetall(f"intake:incident:{incident_id}")
        if not data:
            await redis.zrem(key, incident_id)
            continue
        found.append(
            OpenIncident(
                incident_id=incident_id,
                status=data["status"],
                reported_at=datetime.fromisoformat(data["reported_at"]),
                location=Location(lat=float(data["lat"]), lon=float(data["lon"])),
            )
        )
    return found


# Applies an update only if it is newer than what we hold; the timeline entry is appended
# once per event id, so a redelivered event changes nothing.
_PROJECT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[3], 2592000)
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if tonumber(ARGV[2]) > seq then
  redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'status', ARGV[3], 'priority', ARGV[4],
             'assignments', ARGV[5], 'flagged', ARGV[6])
  if ARGV[8] == '1' then redis.call('ZREM', KEYS[4], KEYS[5]) end
end
if ARGV[7] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[7]) end
return 1
"""


async def apply_update(redis: Redis, event: IncidentUpdated, *, category: str | None) -> bool:
    closed = event.status in ("resolved", "handed_over", "closed")
    entry = event.entry.model_dump_json()
    return bool(
        await redis.eval(
            _PROJECT,
            5,
            f"intake:incident:{event.incident_id}",
            f"intake:timeline:{event.incident_id}",
            f"intake:seen:{event.incident_id}",
            _open_index(event.district, category or ""),
            event.incident_id,
            event.event_id,
            str(event.seq),
            event.status,
            event.priority,
            json.dumps([a.model_dump(mode="json") for a in event.assignments]),
            "1" if event.flagged else "0",
            entry,
            "1" if closed else "0",
        )
    )


async def apply_closed(redis: Redis, event: IncidentClosed) -> None:
    data = await get_incident(redis, event.incident_id)
    if not data:
        return
    await redis.zrem(_open_index(event.district, data["category"]), event.incident_id)
