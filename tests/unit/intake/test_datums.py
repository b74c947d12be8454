"""Places given on a Chinese web map (GCJ-02, Baidu's BD-09) taken to WGS-84."""

from __future__ import annotations

import pytest

from services.intake.datums import bd09_to_gcj02, gcj02_to_wgs84, to_wgs84, wgs84_to_gcj02
from services.intake.domain import distance_m
from shared.events import Location


def test_the_published_gcj02_offset_is_reproduced() -> None:
    # the reference values of the widely used coordtransform library (its README)
    lon, lat = wgs84_to_gcj02(128.543, 37.065)
    assert lon == pytest.approx(128.54820547949757, abs=1e-9)
    assert lat == pytest.approx(37.065651049489816, abs=1e-9)
    lon, lat = bd09_to_gcj02(116.404, 39.915)
    assert lon == pytest.approx(116.39762729119315, abs=1e-9)
    assert lat == pytest.approx(39.90865673957631, abs=1e-9)


@pytest.mark.parametrize(("lon", "lat"), [(108.3660, 22.8170), (116.3975, 39.9087),
                                          (87.6168, 43.8256), (121.4737, 31.2304)])
def test_a_gcj02_place_goes_back_to_its_wgs84_place_within_a_centimetre(
        lon: float, lat: float) -> None:
    shifted = wgs84_to_gcj02(lon, lat)
    # the offset that put a 110 call hundreds of metres from its scene
    assert distance_m(Location(lat=lat, lon=lon),
                      Location(lat=shifted[1], lon=shifted[0])) > 100
    back = gcj02_to_wgs84(*shifted)
    assert distance_m(Location(lat=lat, lon=lon), Location(lat=back[1], lon=back[0])) < 0.01
    assert to_wgs84("gcj02", *shifted) == back


def test_a_place_outside_china_is_the_same_in_every_datum() -> None:
    assert to_wgs84("gcj02", 2.3522, 48.8566) == (2.3522, 48.8566)
    # Baidu's maps abroad are WGS-84: BD-09 is shifted only inside the same box
    assert to_wgs84("bd09", 2.3522, 48.8566) == (2.3522, 48.8566)
    assert to_wgs84("wgs84", 108.366, 22.817) == (108.366, 22.817)
