"""Volunteers' HTTP routes, one module per area; `build_router` puts them together."""

from __future__ import annotations

from fastapi import APIRouter
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from shared.http import InputFirstRoute
from shared.timezones import parse_timezone

from ..config import Settings
from ..store import devices as devices_store
from ..store.points import ledger_ttl
from ..store.teams import PositionWriter
from ..store.zones import ZoneLookup
from . import coordinators, devices, me, points, roster, shifts, stints


def build_router(
    *, settings: Settings, redis: Redis, broker: RedisBroker, zones: ZoneLookup,
    positions: PositionWriter,
) -> APIRouter:
    router = APIRouter(route_class=InputFirstRoute)
    # Fixed paths before parameterised ones: /v1/zones/lookup before /v1/zones/{zone_id}.
    router.include_router(points.build_router(
        redis=redis, zones=zones, ledger_ttl_s=ledger_ttl(settings.retention_days),
        tz=parse_timezone(settings.timezone)))
    ended_for_them = stints.Stints(redis=redis, settings=settings)
    router.include_router(devices.build_router(
        redis=redis, broker=broker,
        revoked_kept_s=devices_store.revoked_kept(settings.retention_days),
        stints=ended_for_them))
    router.include_router(stints.build_router(redis=redis, stints=ended_for_them))
    router.include_router(me.build_router(settings=settings, redis=redis, broker=broker,
                                          positions=positions))
    router.include_router(shifts.build_router(settings=settings, redis=redis))
    router.include_router(roster.build_router(settings=settings, redis=redis, broker=broker))
    router.include_router(coordinators.build_router(
        redis=redis, revoked_kept_s=round(settings.kpi_days * 86400)))
    return router
