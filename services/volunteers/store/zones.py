"""Zone lookup per district: a cached STRtree, rebuilt when an import bumps the district's rev,
never of a map an import is half-way through."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from shared.http import TryAgain
from shared.zones import Zone, ZoneIndex

from . import keys

IMPORTING = "the district's zones are being re-cut by a roster import; ask again in a second"
READ_ATTEMPTS = 3  # reads a zone's write overtook, before a 503


class ZoneLookup:
    """One GET per lookup (the rev) while the cache is current; a reload after an import.

    Never a map half re-cut: while an import's zones are written in several steps
    (keys.zones_importing, holding the rev before it) the map from before it is served, or,
    not cached here, TryAgain (503: dispatch keeps the zones it has and asks again); a map
    whose rev moved while it was read is read again, not cached."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._cache: dict[str, tuple[str, ZoneIndex]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _rev(self, district: str) -> tuple[str, str | None]:
        rev, importing = await self._redis.mget(keys.zones_rev(district),
                                                keys.zones_importing(district))
        return rev or "0", importing

    async def index(self, district: str) -> ZoneIndex:
        for _ in range(READ_ATTEMPTS):
            rev, importing = await self._rev(district)
            cached = self._cache.get(district)
            if importing is not None:
                if cached and cached[0] == importing:
                    return cached[1]
                raise TryAgain(IMPORTING)
            if cached and cached[0] == rev:
                return cached[1]
            async with self._locks.setdefault(district, asyncio.Lock()):
                cached = self._cache.get(district)
                if cached and cached[0] == rev:
                    return cached[1]
                index = await self._load(district)
                if await self._rev(district) == (rev, None):  # no zone written meanwhile
                    self._cache[district] = (rev, index)
                    return index
        raise TryAgain(IMPORTING)

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
