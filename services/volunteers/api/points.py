"""Points and zone routes: the district leaderboard, a district's zones, point-to-zone lookup."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from redis.asyncio import Redis

from shared.http import not_found

from ..store import points as points_store
from ..store.zones import ZoneLookup
from .deps import Reader


def build_router(*, redis: Redis, zones: ZoneLookup) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/points/leaderboard", summary="A district's volunteers by points (admin)")
    async def leaderboard(
        _: Reader,
        district: Annotated[str, Query(min_length=1, max_length=64)],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        return {"district": district,
                "entries": await points_store.leaderboard(redis, district, limit=limit)}

    @router.get("/zones", summary="A district's zones with their polygons and owning stations "
                "(admin; dispatch keeps a projection of them)")
    async def district_zones(
        _: Reader, district: Annotated[str, Query(min_length=1, max_length=64)],
    ) -> dict[str, Any]:
        index = await zones.index(district)
        return {"district": district, "zones": [
            {"zone_id": z.zone_id, "name": z.name, "owner_agency_id": z.owner_agency_id,
             "polygon": [list(p) for p in z.polygon]} for z in index.zones]}

    @router.get("/zones/lookup", summary="The zone of a point, and its owning police station")
    async def zone_lookup(
        _: Reader,
        district: Annotated[str, Query(min_length=1, max_length=64)],
        lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
        lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    ) -> dict[str, str]:
        index = await zones.index(district)
        zone = index.lookup(lat=lat, lon=lon)
        if zone is None:
            raise not_found("zone covering this point")
        return {"zone_id": zone.zone_id, "zone_name": zone.name,
                "owner_agency_id": zone.owner_agency_id}

    return router
