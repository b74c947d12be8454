"""Point-to-zone lookup over a district's zones: an STRtree of prepared polygons.

Shared because volunteers (which owns the zones) and dispatch (which keeps a projection of
them for hand-overs and the home-zone tie-break) must agree on which zone holds a point.
Where zones overlap (a community grid cell inside a station's territory), the smallest
zone that covers the point wins: it is the most specific. A point on a border counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import shapely
from shapely import STRtree
from shapely.geometry import Point, Polygon


@dataclass(frozen=True, slots=True)
class Zone:
    zone_id: str
    name: str
    owner_agency_id: str
    polygon: tuple[tuple[float, float], ...]  # (lon, lat) pairs


class ZoneIndex:
    def __init__(self, zones: Iterable[Zone]) -> None:
        self._zones = list(zones)
        self._shapes = [Polygon(z.polygon) for z in self._zones]
        for shape in self._shapes:
            shapely.prepare(shape)
        self._areas = [shape.area for shape in self._shapes]
        self._tree = STRtree(self._shapes)

    def __len__(self) -> int:
        return len(self._zones)

    @property
    def zones(self) -> tuple[Zone, ...]:
        return tuple(self._zones)

    def lookup(self, *, lat: float, lon: float) -> Zone | None:
        point = Point(lon, lat)
        best: int | None = None
        for i in self._tree.query(point):
            i = int(i)
            if shapely.covers(self._shapes[i], point) and (
                best is None or (self._areas[i], self._zones[i].zone_id)
                < (self._areas[best], self._zones[best].zone_id)
            ):
                best = i
        return self._zones[best] if best is not None else None
