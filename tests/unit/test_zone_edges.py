"""Zone geometry at its edges, with real shapely: a zone no report can fall in ([lat, lon] by
mistake), and which overlaps of two stations' zones an import refuses (the lookup would give
the ground to whichever zone is smaller, or whose id sorts first) and which it keeps."""

from __future__ import annotations

import pytest

from services.volunteers.domain.roster import (
    GEO_MAX_LAT,
    ZoneRow,
    conflicting_claims,
    normalise_ring,
    parse_document,
)
from shared.zones import Zone, ZoneIndex

LAT, LON = 22.817, 108.3665


def square(lat: float, lon: float, half: float) -> list[list[float]]:
    return [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half],
            [lon - half, lat + half]]


def row(zone_id: str, owner: str, polygon: list[list[float]]) -> ZoneRow:
    return ZoneRow(id=zone_id, name=zone_id, owner_agency_id=owner, polygon=polygon)


def test_a_ring_reaching_past_the_maps_latitudes_is_refused_as_lat_lon() -> None:
    urumqi = square(43.8, 87.6, 0.02)
    with pytest.raises(ValueError, match=r"\[lat, lon\]"):
        normalise_ring([(lat, lon) for lon, lat in urumqi])
    assert len(normalise_ring(urumqi)) == 4
    # up to the map's edge is still a place a report can be
    edge = [(0.0, GEO_MAX_LAT - 1), (1.0, GEO_MAX_LAT - 1), (1.0, GEO_MAX_LAT)]
    assert normalise_ring(edge) == tuple(edge)


def test_the_same_block_under_two_stations_is_a_conflict() -> None:
    block = square(LAT, LON, 0.01)
    assert conflicting_claims([row("z-a", "ps-1", block), row("z-b", "ps-2", block)]) == [(0, 1)]
    # drawn again from another corner, and a hair larger: still the same block
    again = [[x * 1.0000001, y] for x, y in block[1:] + block[:1]]
    assert conflicting_claims([row("z-a", "ps-1", block), row("z-b", "ps-2", again)]) == [(0, 1)]


def test_a_partial_overlap_of_two_stations_is_a_conflict() -> None:
    zones = [row("z-a", "ps-1", square(LAT, LON, 0.01)),
             row("z-far", "ps-3", square(LAT + 1, LON, 0.01)),
             row("z-b", "ps-2", square(LAT, LON + 0.015, 0.01))]
    assert conflicting_claims(zones) == [(0, 2)]


def test_borders_slivers_cells_and_one_stations_own_overlaps_are_kept() -> None:
    lat0, lon0 = LAT, LON
    zones = [
        # neighbours drawn from different centres: float noise along the shared border
        row("z-north", "ps-1", square(lat0 + 0.01, lon0 - 0.01, 0.01)),
        row("z-south", "ps-2", square(lat0 - 0.01, lon0 - 0.01, 0.01)),
        row("z-east", "ps-3", square(lat0, lon0 + 0.01, 0.01)),
        # a street drawn twice: a sliver well under a hundredth of the smaller zone
        row("z-west", "ps-3", square(lat0, lon0 - 0.0299999, 0.01)),
        # a community's grid cell of another station inside a territory
        row("z-cell", "ps-4", square(lat0 + 0.01, lon0 - 0.01, 0.002)),
        # one station's territory and its own smaller district inside, half out of it
        row("z-ward", "ps-1", square(lat0 + 0.02, lon0 - 0.01, 0.005)),
    ]
    assert conflicting_claims(zones) == []


def test_an_import_names_the_later_zone_and_the_station_it_overlaps() -> None:
    block = square(LAT, LON, 0.01)
    doc = parse_document({
        "district": "d1",
        "agencies": [{"id": "ps-1", "name": "One", "kind": "police"},
                     {"id": "ps-2", "name": "Two", "kind": "police"}],
        "zones": [{"id": "z-a", "name": "A", "owner_agency_id": "ps-1", "polygon": block},
                  {"id": "z-b", "name": "B", "owner_agency_id": "ps-2", "polygon": block}],
    })
    (error,) = doc.errors
    assert error.path == "zones.1.polygon"
    assert "zone z-a of station ps-1" in error.message


def test_a_point_on_a_border_goes_to_the_same_zone_whatever_the_order() -> None:
    west = Zone("z-west", "West", "ps-1", tuple(map(tuple, square(LAT, LON - 0.01, 0.01))))
    east = Zone("z-east", "East", "ps-2", tuple(map(tuple, square(LAT, LON + 0.01, 0.01))))
    on_border = {"lat": LAT, "lon": LON}
    first = ZoneIndex([west, east]).lookup(**on_border)
    assert first is not None
    assert ZoneIndex([east, west]).lookup(**on_border) == first


def test_a_ring_the_long_way_round_the_globe_is_refused() -> None:
    # A longitude's sign left off in a spreadsheet (-108.33 for 108.33), or a zone across the
    # 180th meridian: read as lon/lat, the ring spans more than half the globe, a strip that
    # swallows its neighbours (lying "inside" it) and gives every gap around them, in the
    # district and far beyond, to its station.
    typo = [[108.33, 22.80], [108.36, 22.80], [108.36, 22.83], [-108.33, 22.83]]
    with pytest.raises(ValueError, match="180 degrees of longitude"):
        normalise_ring(typo)
    fiji = [[179.9, -17.0], [-179.9, -17.0], [-179.9, -16.9], [179.9, -16.9]]
    with pytest.raises(ValueError, match="180 degrees of longitude"):
        normalise_ring(fiji)
    doc = parse_document({
        "district": "d1",
        "agencies": [{"id": "ps-1", "name": "One", "kind": "police"}],
        "zones": [{"id": "z-a", "name": "A", "owner_agency_id": "ps-1", "polygon": typo}],
    })
    (error,) = doc.errors
    assert error.path == "zones.0.polygon"
    # a wide territory on one side of the globe is still a zone
    assert len(normalise_ring([[73.5, 39.0], [96.0, 36.0], [87.0, 49.0]])) == 3
