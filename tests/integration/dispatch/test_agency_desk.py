"""An agency's own desk (role "agency": a security company's duty manager, a police
station's), in-process against a real Redis: made only for an agency of the roster, of one
of its districts; it reads its own teams and their orders, and changes nothing. Volunteers
is stood in with the roster's districts and agencies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from faststream.redis import RedisBroker

from shared import streams
from shared.events import UnitPosition, UnitStatus, utcnow
from tests.helpers import poll_until
from tests.integration.notify.conftest import roster_of

from .conftest import console_of
from .test_close import ADMIN
from .test_engine import DISTRICT, SCENE

OTHER_DISTRICT = "xixiangtang"
# the agencies of the roster stood in: id -> (district, kind)
AGENCIES = {"sec-a": (DISTRICT, "security"), "sec-b": (DISTRICT, "security"),
            "ag-police": (DISTRICT, "police"), "sec-far": (OTHER_DISTRICT, "security")}


@pytest.fixture
async def desk(clean_redis: str) -> AsyncIterator[httpx.AsyncClient]:
    """Dispatch in this process, reached by its HTTP API, volunteers stood in."""
    async with roster_of(DISTRICT, OTHER_DISTRICT) as volunteers:
        volunteers.agencies = dict(AGENCIES)
        async with console_of(clean_redis, volunteers_url=volunteers.url) as client:
            yield client


async def agency_desk(desk: httpx.AsyncClient, agency_id: str,
                      districts: tuple[str, ...] = (DISTRICT,)) -> dict[str, str]:
    """An agency desk's headers."""
    r = await desk.post("/v1/dispatchers", headers=ADMIN, json={
        "name": f"duty manager {agency_id}", "districts": list(districts), "role": "agency",
        "agency_id": agency_id})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_an_agency_desk_is_made_for_an_agency_of_the_roster_of_its_districts(
        desk: httpx.AsyncClient) -> None:
    async def refused(body: dict[str, object]) -> dict[str, str]:
        r = await desk.post("/v1/dispatchers", headers=ADMIN,
                            json={"name": "Hengan duty manager", "districts": [DISTRICT], **body})
        assert r.status_code == 422, r.text
        return r.json()["error"]

    assert (await refused({"role": "agency"}))["field"] == "agency_id"  # no agency
    for role in ("dispatcher", "inspector"):  # an agency on a command room's desk
        assert (await refused({"role": role, "agency_id": "sec-a"}))["field"] == "agency_id"
    error = await refused({"role": "agency", "agency_id": "sec-nowhere"})
    assert error["field"] == "agency_id" and "POST /v1/roster/import" in error["message"]
    assert "sec-nowhere" not in error["message"]  # the body is not echoed
    # an agency of another district: its desk would read where none of its teams is
    assert (await refused({"role": "agency", "agency_id": "sec-far"}))["field"] == "agency_id"
    assert (await refused({"role": "agency", "agency_id": ""}))["field"] == "agency_id"
    assert (await desk.get("/v1/dispatchers", headers=ADMIN)).json()["count"] == 0

    headers = await agency_desk(desk, "sec-a")
    r = await desk.get("/v1/me", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"kind": "agency", "dispatcher_id": r.json()["dispatcher_id"],
                        "name": "duty manager sec-a", "districts": [DISTRICT],
                        "agency_id": "sec-a"}
    [listed] = (await desk.get("/v1/dispatchers", headers=ADMIN)).json()["dispatchers"]
    assert (listed["role"], listed["agency_id"]) == ("agency", "sec-a")
    assert (await desk.get("/v1/me", headers=ADMIN)).json()["agency_id"] is None


async def test_an_agency_desk_leads_no_duty_and_issues_no_token(desk: httpx.AsyncClient) -> None:
    headers = await agency_desk(desk, "sec-a")
    r = await desk.put(f"/v1/duty/{DISTRICT}", headers=headers, json={})
    assert r.status_code == 403, r.text
    r = await desk.post("/v1/dispatchers", headers=headers,
                        json={"name": "x", "districts": [DISTRICT]})
    assert r.status_code == 403, r.text
    me = (await desk.get("/v1/me", headers=headers)).json()
    r = await desk.put(f"/v1/duty/{DISTRICT}", headers=ADMIN,
                       json={"dispatcher_id": me["dispatcher_id"]})
    assert r.status_code == 409, r.text  # only a dispatcher leads a duty


async def company_team(publisher: RedisBroker, team_id: str, agency_id: str, *,
                       kind: str = "security", lat: float = SCENE.lat + 0.001,
                       district: str = DISTRICT) -> None:
    """A team of `agency_id` on shift near the scene, as volunteers would announce it."""
    await publisher.publish(UnitStatus(
        district=district, unit_id=team_id, status="available", name=f"team {team_id}",
        agency_id=agency_id, agency_kind=kind, mode="foot", on_shift=True),
        stream=streams.UNIT_STATUS.name)
    await publisher.publish(UnitPosition(district=district, unit_id=team_id, lat=lat,
                                         lon=SCENE.lon, at=utcnow()),
                            stream=streams.UNIT_POSITION.name)


async def test_an_agency_desk_sees_its_own_teams_and_not_another_agency_s(
        desk: httpx.AsyncClient, publisher: RedisBroker) -> None:
    await company_team(publisher, "a-post-1", "sec-a")
    await company_team(publisher, "a-post-2", "sec-a", lat=SCENE.lat + 0.01)
    await company_team(publisher, "b-post-1", "sec-b")
    await company_team(publisher, "patrol-1", "ag-police", kind="police")
    await company_team(publisher, "far-post", "sec-far", district=OTHER_DISTRICT)

    async def units(headers: dict[str, str], district: str = DISTRICT) -> list[str]:
        r = await desk.get("/v1/units", headers=headers, params={"district": district})
        assert r.status_code == 200, r.text
        return sorted(u["team_id"] for u in r.json()["units"])

    async def all_known() -> bool:
        return len(await units(ADMIN)) == 4

    await poll_until(all_known, "dispatch knowing the district's four teams")
    company_a = await agency_desk(desk, "sec-a")
    assert await units(company_a) == ["a-post-1", "a-post-2"]
    assert await units(await agency_desk(desk, "sec-b")) == ["b-post-1"]
    assert await units(await agency_desk(desk, "ag-police")) == ["patrol-1"]
    r = await desk.get("/v1/units", headers=company_a, params={"district": OTHER_DISTRICT})
    assert r.status_code == 403, r.text  # not a district of its desk
