"""Device enrolment: tokens stored only as sha256, resolved with one script, revoked at once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from faststream.redis import RedisBroker
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared import streams
from shared.events import DeviceRevoked, new_id
from shared.tokens import DEVICE_TOKEN_PREFIX, new_token

from . import keys
from .tx import atomically

TOKEN_PREFIX = DEVICE_TOKEN_PREFIX


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Token -> device -> member -> agency in one round trip, always current: a revoked token
# (its key deleted) or a removed member resolves to nothing.
_RESOLVE = """
local t = redis.call('HMGET', KEYS[1], 'device_id', 'member_id')
if not t[1] or not t[2] then return false end
local m = redis.call('HMGET', 'roster:member:' .. t[2], 'name', 'team_id', 'agency_id', 'district')
if not m[2] or not m[3] then return false end
local kind = redis.call('HGET', 'roster:agency:' .. m[3], 'kind')
return {t[1], t[2], m[1] or '', m[2], m[3], kind or '', m[4] or ''}
"""


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    device_id: str
    member_id: str
    member_name: str
    team_id: str
    agency_id: str
    agency_kind: str
    district: str


class TokenResolver:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_RESOLVE)

    async def resolve(self, token: str) -> DeviceIdentity | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        found = await self._script(keys=[keys.token(token_hash(token))], args=[])
        if not found:
            return None
        return DeviceIdentity(*found)


async def create_device(
    redis: Redis, *, member_id: str, now: datetime, label: str | None = None
) -> tuple[str, str] | None:
    """A new device and its token (returned once, stored hashed); None: no such member."""
    device_id = new_id("dev")
    token = new_token(TOKEN_PREFIX)
    hashed = token_hash(token)

    async def body(pipe: Pipeline) -> tuple[str, str] | None:
        if not await pipe.exists(keys.member(member_id)):
            return None
        pipe.multi()
        pipe.hset(keys.device(device_id), mapping={
            "device_id": device_id, "member_id": member_id, "token_hash": hashed,
            "created_at": now.isoformat(), "label": label or "",
        })
        pipe.sadd(keys.member_devices(member_id), device_id)
        pipe.hset(keys.token(hashed), mapping={"device_id": device_id, "member_id": member_id})
        return device_id, token

    return await atomically(redis, [keys.member(member_id)], body)


RevokeResult = Literal["revoked", "already_revoked", "not_found"]


def revoked_kept(retention_days: float) -> int:
    """How long a revoked device's record stays (then it expires): twice the stream history
    (RETENTION_DAYS), as the points ledger's entries, so that a revocation asked again, or
    an event of the device read late, still finds it. Its token is refused for good all the
    same: the token's own key is deleted at the revocation, and nothing else resolves one."""
    return round(2 * retention_days * 86400)


async def revoke_device(
    redis: Redis, *, broker: RedisBroker, member_id: str, device_id: str, now: datetime,
    kept_s: int,
) -> RevokeResult:
    """Delete the token and publish DeviceRevoked in the same MULTI, so notify always hears;
    the device's record expires `kept_s` later (`revoked_kept`)."""

    async def body(pipe: Pipeline) -> RevokeResult:
        device = await pipe.hgetall(keys.device(device_id))
        if not device or device.get("member_id") != member_id:
            return "not_found"
        if device.get("revoked_at"):
            return "already_revoked"
        member = await pipe.hgetall(keys.member(member_id))
        pipe.multi()
        pipe.delete(keys.token(device["token_hash"]))
        pipe.hset(keys.device(device_id), "revoked_at", now.isoformat())
        pipe.expire(keys.device(device_id), kept_s)
        pipe.srem(keys.member_devices(member_id), device_id)
        await broker.publish(
            DeviceRevoked(district=member.get("district") or "unknown", device_id=device_id,
                          member_id=member_id, team_id=member.get("team_id") or None),
            stream=streams.DEVICE_REVOKED.name, pipeline=pipe,
        )
        return "revoked"

    return await atomically(redis, [keys.device(device_id)], body)


async def devices_of(redis: Redis, member_id: str) -> list[dict[str, str]]:
    ids = sorted(await redis.smembers(keys.member_devices(member_id)))
    out = []
    for device_id in ids:
        device = await redis.hgetall(keys.device(device_id))
        if device:
            out.append({"device_id": device_id, "created_at": device.get("created_at", ""),
                        "label": device.get("label") or None})
    return out
