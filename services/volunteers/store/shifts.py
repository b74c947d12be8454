"""Shift plans per team, and the set of planned teams per district."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from ..domain.shifts import STORED, ShiftPlan
from . import keys
from .tx import atomically


async def put_plan(redis: Redis, *, team_id: str, plan: ShiftPlan) -> bool:
    """Set the team's plan, filed under its district; False (nothing written) for a team
    not on the roster. The team is watched from its read to the write: a removal landing
    between them (which deletes the plan) would leave this one behind, listed by its old
    district's shifts under whichever team is later imported with the id."""

    async def body(pipe: Pipeline) -> bool:
        team = await pipe.hgetall(keys.team(team_id))
        if not team:
            return False
        pipe.multi()
        pipe.set(keys.plan(team_id), plan.model_dump_json())
        pipe.sadd(keys.plans(team["district"]), team_id)
        return True

    return await atomically(redis, [keys.team(team_id)], body)


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
