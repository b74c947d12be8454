"""Dispatch's projection of volunteers' zones: each district's polygons and owning police
stations, read over HTTP (volunteers owns them) and kept fresh in the background, so an
incident's zone is looked up in memory instead of by a call per incident that waited behind
every position fix volunteers was serving."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import httpx

from shared.zones import Zone, ZoneIndex

log = logging.getLogger(__name__)


class ZonesUnavailable(Exception):
    """The district's zones are not loaded: volunteers did not answer (yet)."""


class ZoneProjection:
    """Zones per district. A district is loaded when its first incident needs it (bounded by
    the timeout: the caller decides what an incident does without them), or at start when
    it has live orders (keep_fresh), and refreshed every `refresh_s`, so a roster import
    that changes zones reaches dispatch within that time."""

    def __init__(self, *, http: httpx.AsyncClient, volunteers_url: str, key: str,
                 timeout_s: float, refresh_s: float, retry_after_s: float = 5.0) -> None:
        self._http = http
        self._url = f"{volunteers_url}/v1/zones"
        self._headers = {"Authorization": f"Bearer {key}"}  # the services' key
        self._timeout_s = timeout_s
        self._refresh_s = refresh_s
        self._retry_after_s = retry_after_s
        self._indexes: dict[str, ZoneIndex] = {}
        self._digests: dict[str, bytes] = {}  # of the answer each index was built from
        self._judged: dict[str, bytes] = {}  # of the answer `on_changed` last took in
        self._judge_again: set[str] = set()  # judged once: once more at the next round
        self._failed_at: dict[str, float] = {}
        self._read_at: dict[str, float] = {}  # wall clock of the last answer read
        self._locks: dict[str, asyncio.Lock] = {}

    async def lookup(self, district: str, *, lat: float, lon: float) -> Zone | None:
        """The zone holding the point; None when no zone of the district holds it. Raises
        ZonesUnavailable when the district's zones could not be loaded: not knowing the
        zone is not the same as a place outside every zone."""
        index = self._indexes.get(district) or await self._first_load(district)
        if index is None:
            raise ZonesUnavailable(district)
        return index.lookup(lat=lat, lon=lon)

    async def zones_of(self, district: str) -> tuple[Zone, ...]:
        """The district's zones (for the command room's map); ZonesUnavailable as lookup."""
        index = self._indexes.get(district) or await self._first_load(district)
        if index is None:
            raise ZonesUnavailable(district)
        return index.zones

    async def refresh(self, district: str) -> None:
        """Read the district's zones again now, not at the next round: a team's status may
        tell of an import whose zones this process has not read yet (volunteers writes an
        import's zones before its teams). Failing, the zones dispatch had stay."""
        await self._load(district)

    def read_at(self, district: str) -> float | None:
        """When (wall clock, epoch seconds) the district's zones were last read from
        volunteers, changed or not; None when never. Zones read after a moment hold every
        import volunteers took in before it (another process's may be older, by up to
        `refresh_s`)."""
        return self._read_at.get(district)

    async def _first_load(self, district: str) -> ZoneIndex | None:
        async with self._locks.setdefault(district, asyncio.Lock()):
            if district in self._indexes:
                return self._indexes[district]
            # Volunteers unreachable: do not make every incident wait for the timeout again.
            if time.monotonic() - self._failed_at.get(district, -1e9) < self._retry_after_s:
                return None
            return await self._load(district)

    async def _load(self, district: str) -> ZoneIndex | None:
        asked_at = time.time()
        try:
            response = await self._http.get(self._url, params={"district": district},
                                            headers=self._headers, timeout=self._timeout_s)
            response.raise_for_status()
            # The same zones as last time (most refreshes): nothing is built again. A
            # district of a thousand detailed zones holds the event loop a few tenths of
            # a second while its index is built.
            digest = hashlib.blake2b(response.content, digest_size=16).digest()
            if digest == self._digests.get(district) and district in self._indexes:
                self._failed_at.pop(district, None)
                self._read_at[district] = asked_at
                return self._indexes[district]
            index = ZoneIndex(
                Zone(zone_id=z["zone_id"], name=z["name"], owner_agency_id=z["owner_agency_id"],
                     polygon=tuple((float(x), float(y)) for x, y in z["polygon"]))
                for z in response.json()["zones"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            self._failed_at[district] = time.monotonic()
            log.warning("zones of district %s not loaded: %s", district, type(exc).__name__)
            return None
        self._indexes[district] = index
        self._digests[district] = digest
        self._failed_at.pop(district, None)
        self._read_at[district] = asked_at
        return index

    async def keep_fresh(self, stop: asyncio.Event, *,
                         on_changed: Callable[[str], Awaitable[object]] | None = None,
                         districts: Callable[[], Awaitable[Iterable[str]]] | None = None,
                         ) -> None:
        """Reload every known district's zones every `refresh_s` until `stop` is set; a failed
        reload keeps the zones dispatch had. `on_changed(district)` is told of zones other
        than those it was last told of (an import's, or the first this process read: a
        change may have come while it was down), until it returns: one that fails (Redis
        away) is told again at the next round. `districts()` (those with live orders) are
        read at once, before the first wait, and each tried again every round until read:
        otherwise a district's zones were first read when an incident or the console's map
        wanted them, and a change made while dispatch was down judged only then (hours, on
        a quiet night). Districts without live orders wait for their first incident.
        A change is told once more at the next round (`refresh_s` later), until that returns:
        an order offered by the zones as they were before it (this process mid-search, its
        lookup made before the new zones were taken in, or another replica, whose zones are
        up to `refresh_s` older) may be written just after `on_changed` looked at the live
        orders, and nothing else tells of it (no status comes, the zones do not change
        again). Each replica judges its own such offers: any it ranked on the old zones was
        ranked before it took in the new ones, in the round it tells of the change (or, by
        `refresh`, the round before), and written within `refresh_s` of that. Telling again
        is cheap and changes nothing already judged (engine.on_zones_changed sets each
        order's timer once, by the rules as they stand)."""
        starting = districts is not None
        unread: set[str] = set()
        while not stop.is_set():
            if not starting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._refresh_s)
            starting = False
            if districts is not None:
                try:
                    unread = set(await districts())
                    districts = None
                except Exception as exc:  # Redis away: asked again next round
                    log.warning("districts with live orders not read: %s", type(exc).__name__)
            just_read: set[str] = set()
            for district in sorted(unread - set(self._indexes)):
                if stop.is_set():
                    break
                await self._load(district)
                just_read.add(district)
            unread -= set(self._indexes)
            for district in list(self._indexes):
                if stop.is_set():
                    break
                if district not in just_read:
                    await self._load(district)
                digest = self._digests.get(district)
                if on_changed is None or digest is None:
                    continue
                again = self._judged.get(district) == digest
                if again and district not in self._judge_again:
                    continue
                try:
                    await on_changed(district)
                except Exception as exc:  # told again next round; the refresh goes on
                    log.warning("zones of district %s changed, not judged yet: %s", district,
                                type(exc).__name__)
                    continue
                if again:
                    self._judge_again.discard(district)
                else:
                    self._judged[district] = digest
                    self._judge_again.add(district)
