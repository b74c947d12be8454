"""An agency's own desk (role "agency": a security company's duty manager, a police
station's), in-process against a real Redis: made only for an agency of the roster, of one
of its districts; it reads its own teams and their orders, and changes nothing. Volunteers
is stood in with the roster's districts and agencies."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.dispatch import api, records, store
from services.dispatch.agency_page import AGENCY_PAGE
from services.dispatch.locks import IncidentLocks
from shared import streams
from shared.events import (
    Caller,
    IncidentReported,
    Location,
    OrderResponded,
    UnitPosition,
    UnitStatus,
    new_id,
    utcnow,
)
from shared.labels import label
from tests.helpers import poll_until, run_in_node
from tests.integration.notify.conftest import roster_of
from tests.unit.dispatch.test_agency_page import HARNESS as PAGE_HARNESS
from tests.unit.dispatch.test_agency_page import said as page_said
from tests.unit.test_pages import script

from .conftest import console_of
from .test_close import ADMIN
from .test_engine import DISTRICT, SCENE
from .test_supervision import newer_reports, seed_incidents

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


CALLER = Caller(phone="13912345678", name="Huang Xiaoming")
DESCRIPTION = "two men fighting at the north gate"


async def reported(publisher: RedisBroker, category: str, priority: str) -> str:
    """A report with its caller and what they said."""
    incident_id = new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys-110",
        external_ref=f"110-{incident_id}", category=category, priority=priority,
        location=Location(lat=SCENE.lat, lon=SCENE.lon, address="North gate, Minzu Ave"),
        description=DESCRIPTION, caller=CALLER, reported_at=utcnow()),
        stream=streams.INCIDENT_REPORTED.name)
    return incident_id


async def answered(publisher: RedisBroker, order: dict[str, Any], response: str) -> None:
    """The order's team answers, as notify would announce it."""
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order["order_id"], incident_id=order["incident_id"],
        team_id=order["team_id"], member_id=f"m-{order['team_id']}", response=response),
        stream=streams.ORDER_RESPONDED.name)


def nothing_of_the_caller(text: str) -> None:
    for said in (CALLER.phone, CALLER.name, DESCRIPTION, "sys-110", "caller", "description",
                 "timeline"):
        assert said not in text, said


async def test_an_agency_desk_reads_its_own_orders_of_an_incident_and_nothing_else(
        desk: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """A fight gets the police patrol and the nearest security post (company A's); a noise
    complaint then goes to company B's post. Each agency's desk lists the incidents its own
    teams were sent to, each with its own orders only; the fight shows the police desk the
    patrol's order and company A's desk its post's, neither the other's; no desk reads the
    caller, what they said or an incident none of its teams was sent to."""
    await company_team(publisher, "a-post-1", "sec-a")
    await company_team(publisher, "b-post-1", "sec-b", lat=SCENE.lat + 0.02)
    await company_team(publisher, "patrol-1", "ag-police", kind="police")
    await wait_for_units(desk, 3)
    fight = await reported(publisher, "violence", "P1")
    orders = await incident_orders(desk, fight, 2)
    assert {o["team_id"] for o in orders} == {"a-post-1", "patrol-1"}
    noise = await reported(publisher, "noise", "P4")
    [noise_order] = await incident_orders(desk, noise, 1)
    assert noise_order["team_id"] == "b-post-1"
    a_order = next(o for o in orders if o["team_id"] == "a-post-1")
    a_order["incident_id"] = fight
    for response in ("acknowledged", "on_scene"):
        await answered(publisher, a_order, response)

    async def on_scene() -> bool:
        r = await desk.get(f"/v1/incidents/{fight}", headers=ADMIN)
        return any(o["state"] == "on_scene" for o in r.json()["orders"])

    await poll_until(on_scene, "company A's post on scene")
    company_a, company_b, police = (await agency_desk(desk, "sec-a"),
                                    await agency_desk(desk, "sec-b"),
                                    await agency_desk(desk, "ag-police"))

    async def board(headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
        r = await desk.get("/v1/incidents", headers=headers, params=params)
        assert r.status_code == 200, r.text
        nothing_of_the_caller(r.text)
        return r.json()["incidents"]

    [row] = await board(company_a)
    assert (row["incident_id"], row["category"], row["priority"]) == (fight, "violence", "P1")
    assert row["location"] == {"lat": SCENE.lat, "lon": SCENE.lon,
                               "address": "North gate, Minzu Ave"}
    [own] = row["orders"]
    assert (own["team_id"], own["state"]) == ("a-post-1", "on_scene")
    assert own["issued_at"] and own["acknowledged_at"] and own["on_scene_at"]
    assert set(row) == {"incident_id", "district", "category", "priority", "flags",
                        "location", "zone_id", "reported_at", "orders"}
    assert [r["incident_id"] for r in await board(company_a, order="received")] == [fight]
    assert [(r["incident_id"], [o["team_id"] for o in r["orders"]])
            for r in await board(company_b, district=DISTRICT)] == [(noise, ["b-post-1"])]
    assert [(r["incident_id"], [o["team_id"] for o in r["orders"]])
            for r in await board(police)] == [(fight, ["patrol-1"])]

    async def incident(headers: dict[str, str], incident_id: str) -> httpx.Response:
        r = await desk.get(f"/v1/incidents/{incident_id}", headers=headers)
        nothing_of_the_caller(r.text)
        return r

    r = await incident(company_a, fight)
    assert r.status_code == 200, r.text
    assert [o["team_id"] for o in r.json()["orders"]] == ["a-post-1"]
    assert "status" not in r.json() and r.json()["now"]
    # the police order carried the caller and what they said to the patrol's phones: the
    # police station's desk is no phone of that team, and reads neither
    r = await incident(police, fight)
    assert [o["team_id"] for o in r.json()["orders"]] == ["patrol-1"]
    for headers, other in ((company_a, noise), (company_b, fight)):
        r = await incident(headers, other)  # none of its teams was sent to it
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    assert (await incident(company_a, "inc_nope")).status_code == 404
    # the command room's own reads of it: refused, not answered unfiltered
    for path in (f"/v1/incidents/{fight}/teams", "/v1/reports-not-handled",
                 f"/v1/duty/{DISTRICT}", f"/v1/heatmap?district={DISTRICT}",
                 f"/v1/zones?district={DISTRICT}", "/v1/pipeline"):
        r = await desk.get(path, headers=company_a)
        assert r.status_code == 403, (path, r.text)
    # the command room's filters: refused, naming the filter
    for name, value in (("status", "assigned"), ("flagged", "true"), ("ref", "110-x"),
                        ("problem", "declined"), ("supervisor", "me")):
        r = await desk.get("/v1/incidents", headers=company_a,
                           params={name: value, "district": DISTRICT})
        assert (r.status_code, r.json()["error"]["field"]) == (403, name), r.text
    r = await desk.get("/v1/incidents", headers=company_a, params={"district": OTHER_DISTRICT})
    assert r.status_code == 403, r.text


async def incident_orders(desk: httpx.AsyncClient, incident_id: str,
                          count: int) -> list[dict[str, Any]]:
    """The incident's orders as the admin reads them, once there are `count`."""
    async def given() -> list[dict[str, Any]] | None:
        r = await desk.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        orders = r.json()["orders"] if r.status_code == 200 else []
        return orders if len(orders) >= count else None

    return await poll_until(given, f"{count} orders of {incident_id}")


async def wait_for_units(desk: httpx.AsyncClient, count: int) -> None:
    async def known() -> bool:
        r = await desk.get("/v1/units", headers=ADMIN, params={"district": DISTRICT})
        return sum(1 for u in r.json()["units"] if u["position"]) >= count

    await poll_until(known, f"dispatch knowing {count} teams placed")


def seed_orders(url: str, orders: dict[str, list[str | dict[str, str]]]) -> None:
    """Orders stored as dispatch stores them: {incident id: [each order's agency, or its
    fields over a resolved order of a team of the agency]}."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        pipe = client.pipeline(transaction=False)
        for incident_id, given in orders.items():
            for n, fields in enumerate(given):
                fields = {"agency_id": fields} if isinstance(fields, str) else fields
                order_id = f"ord_{incident_id}_{n}"
                pipe.hset(store.order_key(order_id), mapping={
                    "order_id": order_id, "incident_id": incident_id,
                    "team_id": f"t-{fields['agency_id']}", "agency_kind": "security",
                    "kind": "dispatch", "state": "resolved", "issued_at": utcnow().isoformat(),
                    **fields})
                pipe.rpush(store.orders_key(incident_id), order_id)
        pipe.execute()
    finally:
        client.close()


async def test_an_agency_desk_pages_through_its_own_incidents_however_many_others_came(
        clean_redis: str, desk: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Company A's post went to one incident in six of the district's month: its board
    pages through them as the command room's does (`next`, `after`), and a hunt that looked
    at its budget of incidents says how far back it got (`scanned_to`)."""
    reports = newer_reports(30, prefix="inc_month")
    seed_incidents(clean_redis, reports)
    ours = [incident_id for incident_id, _, _ in reports[::6]]  # five of them
    seed_orders(clean_redis, {incident_id: (["sec-b", "sec-a"] if incident_id in ours
                                            else ["sec-b"])
                              for incident_id, _, _ in reports})
    company_a = await agency_desk(desk, "sec-a")
    listed: list[str] = []
    after = None
    for _ in range(3):
        r = await desk.get("/v1/incidents", headers=company_a,
                           params={"limit": "2", **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        assert all([o["team_id"] for o in row["orders"]] == ["t-sec-a"]
                   for row in page["incidents"])
        listed += [row["incident_id"] for row in page["incidents"]]
        after = page["next"]
        if not after:
            break
    assert listed == ours  # the newest first, each once
    monkeypatch.setattr(api, "BOARD_BATCH", 5)
    monkeypatch.setattr(api, "BOARD_SCAN", 10)
    r = await desk.get("/v1/incidents", headers=company_a)
    page = r.json()
    assert [row["incident_id"] for row in page["incidents"]] == ours[:2]  # of the first ten
    assert page["scanned_to"] and page["next"]


async def test_an_agency_desk_s_figures_are_of_its_own_teams_orders(
        clean_redis: str, desk: httpx.AsyncClient) -> None:
    """Company A's contract review: its posts' orders of the day's incidents, their declines,
    missed deadlines and times from each offer, by team; nothing of company B's posts on the
    same incidents, nor of the incidents none of A's posts was sent to."""
    now = utcnow()
    offered = now - timedelta(hours=2)

    def after(seconds: float) -> str:
        return (offered + timedelta(seconds=seconds)).isoformat()

    seed_incidents(clean_redis, [
        ("inc_fight", offered, {"category": "violence", "priority": "P1"}),
        ("inc_noise", offered, {}),
        ("inc_b_only", offered, {}),
        ("inc_last_week", now - timedelta(days=7), {}),
    ])
    a_post = {"agency_id": "sec-a", "team_id": "a-post-1", "team_name": "Guard post 3",
              "issued_at": after(0)}
    seed_orders(clean_redis, {
        "inc_fight": [{**a_post, "state": "declined", "declined_at": after(8)},
                      {"agency_id": "sec-b", "acknowledged_at": after(1),
                       "on_scene_at": after(2)},
                      {**a_post, "team_id": "a-post-2", "team_name": "Guard post 4",
                       "state": "on_scene", "acknowledged_at": after(20),
                       "on_scene_at": after(140)}],
        "inc_noise": [{**a_post, "state": "timed_out", "timed_out_at": after(300)},
                      {**a_post, "acknowledged_at": after(30), "on_scene_at": after(400),
                       "resolved_at": after(900)}],
        "inc_b_only": [{"agency_id": "sec-b", "state": "timed_out"}],
        "inc_last_week": ["sec-a"],
    })
    company_a, company_b = await agency_desk(desk, "sec-a"), await agency_desk(desk, "sec-b")

    async def figures(headers: dict[str, str], **params: str) -> dict[str, Any]:
        r = await desk.get("/v1/kpis", headers=headers, params={"district": DISTRICT, **params})
        assert r.status_code == 200, r.text
        return r.json()

    a = await figures(company_a)
    assert (a["agency_id"], a["incidents"], a["orders"]) == ("sec-a", 2, 4)
    assert a["by_category"] == {"violence": 1, "noise": 1}
    assert (a["declines"], a["routing_timeouts"], a["resolved"]) == (1, 1, 1)
    assert a["offer_to_acknowledge_s"] == {"p50": 25.0, "p90": 29.0, "count": 2}
    assert a["offer_to_scene_s"]["by_priority"]["P1"]["p50"] == 140.0
    assert a["by_team"]["a-post-1"]["declines"] == 1 and a["by_team"]["a-post-1"]["orders"] == 3
    assert set(a["by_team"]) == {"a-post-1", "a-post-2"}  # never company B's
    # RECORDS_DAYS, 90 by default: a whole number of days, as it is set
    assert a["orders_kept_days"] == 90 and isinstance(a["orders_kept_days"], int)
    assert "never_assigned" not in a and "by_zone" not in a
    b = await figures(company_b)
    assert (b["incidents"], b["orders"], b["routing_timeouts"]) == (2, 2, 1)
    assert set(b["by_team"]) == {"t-sec-b"}
    assert (await figures(company_a, category="noise"))["orders"] == 2
    week = await figures(company_a, since=(now - timedelta(days=8)).isoformat())
    assert week["incidents"] == 3
    r = await desk.get("/v1/kpis", headers=company_a, params={"district": DISTRICT,
                                                              "compare": "previous_year"})
    assert (r.status_code, r.json()["error"]["field"]) == (403, "compare"), r.text
    assert "kept 90 days" in r.json()["error"]["message"], r.text
    r = await desk.get("/v1/kpis", headers=company_a)  # whose district: one of its own
    assert (r.status_code, r.json()["error"]["field"]) == (422, "district"), r.text
    r = await desk.get("/v1/kpis", headers=company_a, params={"district": OTHER_DISTRICT})
    assert r.status_code == 403, r.text


async def test_an_agency_desk_is_told_an_archived_incident_s_orders_are_no_longer_kept(
        clean_redis: str, desk: httpx.AsyncClient) -> None:
    """RECORDS_DAYS after an incident ended its orders are deleted (records.py): whose teams
    it had is no longer known, so company A's desk is refused it, as any incident it cannot
    show to be its own, but told why; not that none of its teams was sent (its post was)."""
    seed_incidents(clean_redis, [("inc_long_ago", utcnow() - timedelta(days=100), {}),
                                 ("inc_b_only", utcnow() - timedelta(days=1), {})])
    seed_orders(clean_redis, {"inc_long_ago": ["sec-a"], "inc_b_only": ["sec-b"]})
    redis = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    locks = IncidentLocks(redis)
    try:
        await redis.zadd(store.ENDED, {"inc_long_ago": time.time()})
        assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 1
    finally:
        await locks.close()
        await redis.aclose()
    company_a = await agency_desk(desk, "sec-a")
    r = await desk.get("/v1/incidents/inc_long_ago", headers=company_a)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), r.text
    message = r.json()["error"]["message"]
    assert "archived" in message and "RECORDS_DAYS" in message, message
    assert "none of this agency's teams" not in message
    r = await desk.get("/v1/incidents/inc_b_only", headers=company_a)
    assert r.status_code == 403 and "none of this agency's teams" in r.json()["error"]["message"]
    # the command room reads what is kept of it, as ever
    r = await desk.get("/v1/incidents/inc_long_ago", headers=ADMIN)
    assert r.status_code == 200 and r.json()["archived_at"], r.text


async def test_a_team_moved_to_another_agency_shows_its_new_desk_an_order_of_its_former_one(
        desk: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """A roster import moves company A's post, on its way to a noise complaint, to company B:
    the order goes on (the same guards on their way) and stays company A's, on A's board and
    in A's figures. B's desk sees its new team busy with an order given under its former
    agency, without that order's id (which B's desk may not open), never a link to a 403."""
    await company_team(publisher, "a-post-1", "sec-a")
    await wait_for_units(desk, 1)
    noise = await reported(publisher, "noise", "P4")
    [order] = await incident_orders(desk, noise, 1)
    assert order["team_id"] == "a-post-1"
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id="a-post-1", status="busy", name="team a-post-1",
        agency_id="sec-b", agency_kind="security", mode="foot", on_shift=True,
        order_id=order["order_id"]), stream=streams.UNIT_STATUS.name)

    async def moved() -> bool:
        r = await desk.get("/v1/units", headers=ADMIN, params={"district": DISTRICT})
        return [(u["agency_id"], u["open_order_id"]) for u in r.json()["units"]] == [
            ("sec-b", order["order_id"])]

    await poll_until(moved, "company A's post moved to company B, its order still open")
    company_a, company_b = await agency_desk(desk, "sec-a"), await agency_desk(desk, "sec-b")
    r = await desk.get("/v1/units", headers=company_b, params={"district": DISTRICT})
    assert r.status_code == 200, r.text
    [unit] = r.json()["units"]
    assert (unit["team_id"], unit["status"]) == ("a-post-1", "busy")
    assert unit["open_order_id"] is None and unit["open_order_of_former_agency"] is True
    assert order["order_id"] not in r.text
    r = await desk.get("/v1/incidents", headers=company_b)
    assert r.json()["incidents"] == []
    [row] = (await desk.get("/v1/incidents", headers=company_a)).json()["incidents"]
    assert [o["order_id"] for o in row["orders"]] == [order["order_id"]]  # still A's
    r = await desk.get("/v1/units", headers=company_a, params={"district": DISTRICT})
    assert r.json()["units"] == []  # no longer its team


async def test_the_agency_page_shows_what_dispatch_answers_the_desk(
        desk: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """The desk's own page (GET /agency, public: it holds no data) fed dispatch's answers to
    company A's token, as they are: its post on the noise complaint it took, that order in
    its list, its figures; nothing of the caller. The shift plans, which this stand-in of
    volunteers does not keep, are said not read in their place."""
    if shutil.which("node") is None:  # before the set-up (run_in_node would skip after it)
        pytest.skip("node is not installed")
    await company_team(publisher, "a-post-1", "sec-a")
    await wait_for_units(desk, 1)
    noise = await reported(publisher, "noise", "P4")
    [order] = await incident_orders(desk, noise, 1)
    await answered(publisher, {**order, "incident_id": noise}, "acknowledged")

    async def taken() -> bool:
        r = await desk.get(f"/v1/incidents/{noise}", headers=ADMIN)
        return r.json()["orders"][0]["state"] == "acknowledged"

    await poll_until(taken, "company A's post taking the order")
    page = await desk.get("/agency")
    assert page.status_code == 200 and "connect-src 'self'" in page.headers[
        "content-security-policy"]
    company_a = await agency_desk(desk, "sec-a")
    today = (await desk.get("/v1/kpis", headers=company_a,
                            params={"district": DISTRICT})).json()["today"]
    answers: dict[str, list[Any]] = {}
    for path, params in (("/v1/me", {}), ("/v1/incidents", {"district": DISTRICT, "limit": "50"}),
                         ("/v1/units", {"district": DISTRICT}),
                         ("/v1/shift-check-ins", {"district": DISTRICT}),
                         ("/v1/kpis", {"district": DISTRICT, "date": today})):
        r = await desk.get(path, headers=company_a, params=params)
        answers[path] = [r.status_code, r.json()]
    assert answers["/v1/shift-check-ins"][0] == 503
    setup = (f"var answers = {json.dumps(answers)}; "
             "var answer = url => reply(...answers[url.split('?')[0]]); "
             "const table = id => $(id).children.map(tr => tr.children.map(td => td.textContent)); "
             "const items = id => $(id).children.map(li => li.textContent);")
    [shown] = await asyncio.to_thread(run_in_node, PAGE_HARNESS, {
        "page": script(AGENCY_PAGE), "setup": setup,
        "steps": ['[table("teams"), table("orders"), items("figures"), '
                  '$("rollcount").textContent, $("err").textContent]']})
    teams, orders, figures, rollcount, err = shown
    assert err == ""
    noise_said = label("category", "noise")
    # (its status as volunteers last said it: busy once volunteers reads the order)
    [unit] = answers["/v1/units"][1]["units"]
    assert teams == [["team a-post-1", label("team_status", unit["status"]), page_said(
        "order_of", priority="P4" + label("priority", "P4"), category=noise_said,
        place="North gate, Minzu Ave", state=label("order_state", "acknowledged"))]]
    [row] = orders
    assert row[1:6] == ["P4" + label("priority", "P4"), noise_said, "North gate, Minzu Ave",
                        "team a-post-1", label("order_state", "acknowledged")]
    assert f"{page_said('f_orders')}：1" in figures
    assert rollcount.startswith(page_said("not_read", why="\0").split("\0")[0])
    nothing_of_the_caller(json.dumps([teams, orders, figures]))
