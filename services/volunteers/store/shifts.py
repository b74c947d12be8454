"""Shift plans per team, and the set of planned teams per district."""

from __future__ import annotations

from redis.asyncio import Redis

from ..domain.shifts import STORED, ShiftPlan
from . import keys


async def put_plan(redis: Redis, *, team_id: str, district: str, plan: ShiftPlan) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.plan(team_id), plan.model_dump_json())
        pipe.sadd(keys.plans(district), team_id)
        await pipe.execute()


async def get_plan(redis: Redis, team_id: str) -> ShiftPlan | None:
    raw = await redis.get(keys.plan(team_id))
    return ShiftPlan.model_validate_json(raw, context=STORED) if raw else None


async def plans_of(redis: Redis, district: str) -> dict[str, ShiftPlan]:
    team_ids = sorted(await redis.smembers(keys.plans(district)))
    async with redis.pipeline(transaction=False) as pipe:
        for team_id in team_ids:
            pipe.get(keys.plan(team_id))
        raws = await pipe.execute()
    return {t: ShiftPlan.model_validate_json(r, context=STORED)
            for t, r in zip(team_ids, raws, strict=True) if r}
