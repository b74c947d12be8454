"""Point-to-zone lookup: covering zone, the most specific of overlapping ones, borders, misses."""

from __future__ import annotations

from shared.zones import Zone, ZoneIndex

SQUARE = ((108.0, 22.0), (108.1, 22.0), (108.1, 22.1), (108.0, 22.1))
CELL = ((108.02, 22.02), (108.04, 22.02), (108.04, 22.04), (108.02, 22.04))
EAST = ((108.1, 22.0), (108.2, 22.0), (108.2, 22.1), (108.1, 22.1))


def index() -> ZoneIndex:
    return ZoneIndex([
        Zone("z-station", "Station territory", "p1", SQUARE),
        Zone("z-cell", "Grid cell 7", "p1", CELL),
        Zone("z-east", "East", "p2", EAST),
    ])


def test_a_point_inside_one_zone_finds_it() -> None:
    zone = index().lookup(lat=22.08, lon=108.08)
    assert zone is not None and (zone.zone_id, zone.owner_agency_id) == ("z-station", "p1")


def test_overlapping_zones_give_the_smallest() -> None:
    zone = index().lookup(lat=22.03, lon=108.03)
    assert zone is not None and zone.zone_id == "z-cell"


def test_lat_and_lon_are_not_swapped() -> None:
    assert index().lookup(lat=22.05, lon=108.15).zone_id == "z-east"  # type: ignore[union-attr]
    assert index().lookup(lat=108.05, lon=22.05) is None


def test_a_point_outside_every_zone_finds_none() -> None:
    assert index().lookup(lat=23.0, lon=108.05) is None
    assert ZoneIndex([]).lookup(lat=22.0, lon=108.0) is None


def test_a_point_on_a_border_counts() -> None:
    zone = index().lookup(lat=22.0, lon=108.05)
    assert zone is not None and zone.zone_id == "z-station"
