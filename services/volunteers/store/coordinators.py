"""Volunteer coordinators' tokens: made by the admin for some districts, stored as sha256,
resolved in one script, refused at once when revoked; a revoked one's record stays a while
(who the audit trail's `coordinator:<id>` was)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from redis.asyncio import Redis

from shared.events import new_id
from shared.tokens import COORDINATOR_TOKEN_PREFIX, new_token

from . import keys
from .devices import token_hash

TOKEN_PREFIX = COORDINATOR_TOKEN_PREFIX

# Token -> coordinator -> its districts in one round trip, always current: a revoked token
# (its key deleted) resolves to nothing.
_RESOLVE = """
local id = redis.call('GET', KEYS[1])
if not id then return false end
local c = redis.call('HMGET', 'roster:coordinator:' .. id, 'districts', 'revoked_at')
if not c[1] or c[2] then return false end
return {id, c[1]}
"""


@dataclass(frozen=True, slots=True)
class CoordinatorIdentity:
    coordinator_id: str
    districts: tuple[str, ...]


class CoordinatorTokens:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_RESOLVE)

    async def resolve(self, token: str) -> CoordinatorIdentity | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        found = await self._script(keys=[keys.coordinator_token(token_hash(token))], args=[])
        if not found:
            return None
        coordinator_id, districts = found
        return CoordinatorIdentity(coordinator_id, tuple(json.loads(districts)))


async def create_coordinator(redis: Redis, *, name: str, districts: list[str],
                             now: datetime) -> tuple[str, str]:
    """A new coordinator and its token (returned once, stored hashed)."""
    coordinator_id = new_id("crd")
    token = new_token(TOKEN_PREFIX)
    hashed = token_hash(token)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.coordinator(coordinator_id), mapping={
            "name": name, "districts": json.dumps(sorted(set(districts))),
            "token_hash": hashed, "created_at": now.isoformat()})
        pipe.set(keys.coordinator_token(hashed), coordinator_id)
        pipe.sadd(keys.coordinators(), coordinator_id)
        await pipe.execute()
    return coordinator_id, token


async def list_coordinators(redis: Redis) -> list[dict[str, Any]]:
    """Every coordinator by id, revoked ones with their `revoked_at`; never a token."""
    ids = sorted(await redis.smembers(keys.coordinators()))
    async with redis.pipeline(transaction=False) as pipe:
        for coordinator_id in ids:
            pipe.hgetall(keys.coordinator(coordinator_id))
        found = await pipe.execute()
    if gone := [coordinator_id for coordinator_id, data in zip(ids, found, strict=True)
                if not data]:  # revoked, and their record expired since
        await redis.srem(keys.coordinators(), *gone)
    return [{"coordinator_id": coordinator_id, "name": data["name"],
             "districts": json.loads(data["districts"]), "created_at": data.get("created_at"),
             "revoked_at": data.get("revoked_at") or None}
            for coordinator_id, data in zip(ids, found, strict=True) if data]


async def get_coordinator(redis: Redis, coordinator_id: str) -> dict[str, Any] | None:
    """A coordinator as `list_coordinators` shows one, never its token; None: none (or its
    revoked record expired)."""
    data = await redis.hgetall(keys.coordinator(coordinator_id))
    if not data:
        return None
    return {"coordinator_id": coordinator_id, "name": data["name"],
            "districts": json.loads(data["districts"]), "created_at": data.get("created_at"),
            "revoked_at": data.get("revoked_at") or None}


RevokeResult = Literal["revoked", "already_revoked", "not_found"]


@dataclass(frozen=True, slots=True)
class Revoked:
    result: RevokeResult
    districts: tuple[str, ...] = ()


async def revoke_coordinator(redis: Redis, coordinator_id: str, *, now: datetime,
                             kept_s: int) -> Revoked:
    """Its token refused from now on; its record kept `kept_s` more, marked revoked (who the
    audit trail's `coordinator:<id>` was)."""
    data = await redis.hgetall(keys.coordinator(coordinator_id))
    if not data:
        return Revoked("not_found")
    districts = tuple(json.loads(data["districts"]))
    if data.get("revoked_at"):
        return Revoked("already_revoked", districts)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.coordinator_token(data["token_hash"]))
        # the first of two revocations at once marks it, and is the one audited
        pipe.hsetnx(keys.coordinator(coordinator_id), "revoked_at", now.isoformat())
        pipe.expire(keys.coordinator(coordinator_id), kept_s)
        _, marked, _ = await pipe.execute()
    return Revoked("revoked" if marked else "already_revoked", districts)
