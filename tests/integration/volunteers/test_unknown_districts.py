"""The reads that take a `district` tell a district the roster does not hold (a misspelling,
`D1` for `d1`, or one never imported) from one that holds nothing yet: 422 naming `district`,
as intake's keys and dispatch's desks are refused for one. `GET /v1/shifts?district=nowhere`
answered 200 with no teams: a typo read as "nobody was planned"."""

from __future__ import annotations

import pytest

from .conftest import ADMIN, Volunteers

READS = [
    ("/v1/shifts", {"date": "2026-12-07"}),
    ("/v1/shifts/now", {}),
    ("/v1/agencies", {}),
    ("/v1/teams", {}),
    ("/v1/members", {}),
    ("/v1/points/leaderboard", {}),
    ("/v1/zones/lookup", {"lat": 22.83, "lon": 108.33}),
]


@pytest.mark.parametrize(("path", "params"), READS)
async def test_a_district_the_roster_does_not_hold_is_named_not_answered_empty(
        volunteers: Volunteers, path: str, params: dict[str, object]) -> None:
    client = volunteers.client
    r = await client.get(path, headers=ADMIN, params={"district": "d1", **params})
    assert r.status_code == 422, r.text  # the first day: no roster at all
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "district"), error
    assert "no district yet" in error["message"] and "POST /v1/roster/import" in error["message"]

    await volunteers.import_district()
    r = await client.get(path, headers=ADMIN, params={"district": "D1", **params})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "district" and "holds d1 " in error["message"], error
    assert "D1" not in error["message"], error  # what was sent is not repeated


async def test_a_district_of_the_roster_with_nothing_planned_is_answered_empty(
        volunteers: Volunteers) -> None:
    await volunteers.import_district()
    r = await volunteers.client.get("/v1/shifts", headers=ADMIN,
                                    params={"district": "d1", "date": "2026-12-07"})
    assert r.status_code == 200 and r.json()["teams"] == [], r.text
    r = await volunteers.client.get("/v1/shifts/now", headers=ADMIN, params={"district": "d1"})
    assert r.status_code == 200 and r.json()["teams"] == [], r.text
    r = await volunteers.client.get("/v1/members", headers=ADMIN)  # every district's
    assert r.status_code == 200 and r.json()["items"], r.text
