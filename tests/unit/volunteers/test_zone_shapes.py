"""What a police GIS exports, sent as a zone's polygon: GeoJSON geometries, rings with holes,
multipolygons, points with an altitude, a ring that crosses itself somewhere in thousands of
points. Each is refused naming the polygon and saying what to send instead."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from services.volunteers.domain.roster import ZoneRow


def ring(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


OUTER = ring(108.30, 22.80, 108.40, 22.85)
HOLE = ring(108.33, 22.81, 108.34, 22.82)


def refusal(polygon: object) -> str:
    with pytest.raises(ValidationError) as caught:
        ZoneRow(id="z", name="z", owner_agency_id="ps", polygon=polygon)
    (error,) = caught.value.errors()
    assert error["loc"] == ("polygon",)
    return str(error["msg"])


def test_a_geojson_polygon_is_told_to_send_its_ring() -> None:
    for polygon in ({"type": "Polygon", "coordinates": [OUTER]}, [OUTER]):
        message = refusal(polygon)
        assert "GeoJSON" in message and "coordinates[0]" in message, message


def test_a_polygon_with_holes_says_how_to_draw_the_ground_in_the_hole() -> None:
    for polygon in ({"type": "Polygon", "coordinates": [OUTER, HOLE]}, [OUTER, HOLE]):
        message = refusal(polygon)
        assert "hole" in message and "zone of its own" in message, message


def test_a_multipolygon_is_told_to_come_as_one_zone_a_part() -> None:
    parts = [[ring(108.30, 22.80, 108.31, 22.81)], [ring(108.32, 22.80, 108.33, 22.81)]]
    for polygon in ({"type": "MultiPolygon", "coordinates": parts}, parts):
        message = refusal(polygon)
        assert "MultiPolygon" in message and "2 parts" in message, message


def test_a_feature_is_told_to_send_its_geometry_s_ring() -> None:
    feature = {"type": "Feature", "properties": {},
               "geometry": {"type": "Polygon", "coordinates": [OUTER]}}
    message = refusal(feature)
    assert "Feature" in message and "geometry" in message, message


def test_points_with_an_altitude_are_told_to_drop_it() -> None:
    message = refusal([[x, y, 0.0] for x, y in OUTER])
    assert "point 0" in message and "altitude" in message, message


def test_a_ring_crossing_itself_says_where() -> None:
    n = 4000
    circle = [[108.3 + 0.01 * math.cos(2 * math.pi * k / n),
               22.8 + 0.01 * math.sin(2 * math.pi * k / n)] for k in range(n)]
    circle[2000], circle[2001] = circle[2001], circle[2000]  # two points swapped: a twist
    message = refusal(circle)
    assert "crosses itself near [108.29" in message, message


def test_a_ring_of_more_points_than_kept_is_told_to_be_simplified() -> None:
    n = 10_001
    circle = [[108.3 + 0.01 * math.cos(2 * math.pi * k / n),
               22.8 + 0.01 * math.sin(2 * math.pi * k / n)] for k in range(n)]
    assert "simplify" in refusal(circle)


def test_a_ring_drawn_clockwise_is_the_same_zone() -> None:
    counter = ZoneRow(id="z", name="z", owner_agency_id="ps", polygon=OUTER)
    clockwise = ZoneRow(id="z", name="z", owner_agency_id="ps", polygon=OUTER[::-1])
    assert set(counter.polygon) == set(clockwise.polygon)


def test_a_wkt_cell_with_holes_or_parts_says_what_to_send() -> None:
    from services.volunteers.domain.roster_csv import parse_polygon

    with pytest.raises(ValueError, match="zone of its own"):
        parse_polygon("POLYGON ((0 0, 4 0, 4 4, 0 4, 0 0), (1 1, 2 1, 2 2, 1 2, 1 1))")
    with pytest.raises(ValueError, match="MULTIPOLYGON of 2 parts.*same station"):
        parse_polygon("MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((2 2, 3 2, 3 3, 2 2)))")
    with pytest.raises(ValueError, match="GeoJSON"):
        parse_polygon('{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}')
    assert parse_polygon("POLYGON Z ((0 0 5, 1 0 5, 1 1 5, 0 0 5))")[1] == [1.0, 0.0]


def test_true_or_false_for_a_coordinate_is_refused_not_read_as_1_or_0() -> None:
    # read as 1.0, [true, 22.5] drew a sliver from the Gulf of Guinea to Guangxi
    message = refusal([[True, 22.5], [108.5, 22.6], [108.6, 22.6]])
    assert "point 0" in message and "true" in message, message


def test_wkt_text_in_a_json_import_is_told_where_wkt_is_taken() -> None:
    message = refusal("POLYGON ((108.4 22.5, 108.5 22.6, 108.6 22.6, 108.4 22.5))")
    assert "WKT" in message and "CSV" in message, message
