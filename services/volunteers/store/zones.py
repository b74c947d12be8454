"""Zone lookup per district: a cached STRtree, rebuilt when an import bumps the district's rev."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from shared.zones import Zone, ZoneIndex

from . import keys


class ZoneLookup:
    """One GET per lookup (the rev) while the cache is current; a reload after an import."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._cache: dict[str, tuple[str, ZoneIndex]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def index(self, district: str) -> ZoneIndex:
        rev = await self._redis.get(keys.zones_rev(district)) or "0"
        cached = self._cache.get(district)
        if cached and cached[0] == rev:
            return cached[1]
        async with self._locks.setdefault(district, asyncio.Lock()):
            cached = self._cache.get(district)
            if cached and cached[0] == rev:
                return cached[1]
            index = await self._load(district)
            self._cache[district] = (rev, index)
            return index

    async def _load(self, district: str) -> ZoneIndex:
        ids = await self._redis.zrange(keys.index("zones", district), 0, -1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for zone_id in ids:
                pipe.hgetall(keys.entity("zones", zone_id))
            records = await pipe.execute()
        zones = [
            Zone(zone_id=r["id"], name=r["name"], owner_agency_id=r["owner_agency_id"],
                 polygon=tuple((float(x), float(y)) for x, y in json.loads(r["polygon"])))
            for r in records if r
        ]
        return ZoneIndex(zones)
