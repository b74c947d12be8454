"""Dispatch's projection of the zones: a place outside every zone is not a place whose zone
is unknown (the zones could not be loaded), and the two are told apart."""

from __future__ import annotations

import httpx
import pytest

from services.dispatch.zones import ZoneProjection, ZonesUnavailable

ZONES = {"zones": [{"zone_id": "z-1", "name": "Territory", "owner_agency_id": "ag-police",
                    "polygon": [[108.0, 22.0], [108.1, 22.0], [108.1, 22.1], [108.0, 22.1]]}]}


def projection(handler: httpx.MockTransport) -> ZoneProjection:
    return ZoneProjection(http=httpx.AsyncClient(transport=handler),
                          volunteers_url="http://volunteers", admin_token="t",
                          timeout_s=1.0, refresh_s=60.0, retry_after_s=0.0)


async def test_a_place_inside_and_outside_the_loaded_zones() -> None:
    zones = projection(httpx.MockTransport(lambda request: httpx.Response(200, json=ZONES)))
    zone = await zones.lookup("qingxiu", lat=22.05, lon=108.05)
    assert zone is not None and zone.owner_agency_id == "ag-police"
    assert await zones.lookup("qingxiu", lat=23.0, lon=108.05) is None


async def test_zones_that_could_not_be_loaded_are_unavailable_until_they_are() -> None:
    answers = [httpx.Response(503), httpx.Response(200, json=ZONES)]
    zones = projection(httpx.MockTransport(lambda request: answers.pop(0)))
    with pytest.raises(ZonesUnavailable):
        await zones.lookup("qingxiu", lat=22.05, lon=108.05)
    zone = await zones.lookup("qingxiu", lat=22.05, lon=108.05)  # loaded on the next try
    assert zone is not None and zone.zone_id == "z-1"
