"""Members' own reports from the street and the points they earn, end to end.

The four services run in this process under uvicorn (intake and notify ask volunteers about
device tokens over HTTP) on one real Redis. A member reports at intake with their device
token; dispatch sends a team; the team answers on notify; volunteers pays the points. Each
test imports a district of its own (random name), so the tests share the services only.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest
import pytest_asyncio

from shared.events import IncidentClosed, IncidentReported
from tests.e2e.journey import district_roster
from tests.helpers import poll_until, read_stream
from tests.integration.four_services import four_services

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN_TOKEN = f"reports-admin-{secrets.token_hex(8)}"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SCENE = (22.8300, 108.3300)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    http: httpx.AsyncClient
    urls: dict[str, str]

    def url(self, service: str, path: str) -> str:
        return self.urls[service] + path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(redis_url: str) -> AsyncIterator[World]:
    async with four_services(redis_url, ADMIN_TOKEN) as urls, \
            httpx.AsyncClient(timeout=10) as http:
        yield World(http, urls)


@dataclass
class District:
    """A district of its own (tests.e2e.journey.district_roster), with a second volunteer
    team, `vol-2`, whose member `m-vol2` reports from the street."""

    world: World
    name: str

    def id(self, suffix: str) -> str:
        return f"{self.name}-{suffix}"

    async def enrol(self, member: str) -> str:
        r = await self.world.http.post(
            self.world.url("volunteers", f"/v1/members/{self.id(member)}/devices"),
            headers=ADMIN)
        assert r.status_code == 201, r.text
        return r.json()["token"]

    async def on_shift_at(self, token: str, lat: float, lon: float) -> None:
        http, url = self.world.http, self.world.url
        r = await http.post(url("volunteers", "/v1/me/shift/start"), headers=bearer(token))
        assert r.status_code == 200, r.text
        r = await http.put(url("volunteers", "/v1/me/position"), headers=bearer(token),
                           json={"lat": lat, "lon": lon, "accuracy_m": 8})
        assert r.status_code == 200, r.text

    async def available_at_dispatch(self, teams: int) -> None:
        async def ready() -> bool:
            r = await self.world.http.get(self.world.url("dispatch", "/v1/units"), headers=ADMIN,
                                          params={"district": self.name, "status": "available"})
            return sum(1 for u in r.json()["units"] if u["position"]) == teams

        await poll_until(ready, f"dispatch seeing {teams} available team(s)")

    async def report(self, token: str, *, lat: float = SCENE[0],
                     lon: float = SCENE[1]) -> dict[str, Any]:
        """A hazard reported from the member's page (its device token; no caller)."""
        r = await self.world.http.post(self.world.url("intake", "/v1/incidents"),
                                       headers=bearer(token), json={
            "external_ref": f"app-{uuid4().hex}", "category": "hazard_report", "district": self.name,
            "location": {"lat": lat, "lon": lon}})
        assert r.status_code == 202, r.text
        return r.json()

    async def order_of(self, incident_id: str) -> dict[str, Any]:
        """The incident's one order, once notify holds it."""
        async def issued() -> dict[str, Any] | None:
            r = await self.world.http.get(self.world.url("dispatch", f"/v1/incidents/{incident_id}"),
                                          headers=ADMIN)
            orders = r.json().get("orders") if r.status_code == 200 else None
            return orders[0] if orders else None

        order = await poll_until(issued, f"an order for {incident_id}")

        async def held() -> bool:
            r = await self.world.http.get(
                self.world.url("notify", f"/v1/orders/{order['order_id']}"), headers=ADMIN)
            return r.status_code == 200

        await poll_until(held, f"notify holding {order['order_id']}")
        return order

    async def answer(self, token: str, order_id: str, *responses: str) -> None:
        for response in responses:
            r = await self.world.http.post(
                self.world.url("notify", f"/v1/orders/{order_id}/responses"),
                headers=bearer(token), json={"response": response})
            assert r.status_code == 200, r.text

    async def status(self, incident_id: str) -> str:
        r = await self.world.http.get(self.world.url("dispatch", f"/v1/incidents/{incident_id}"),
                                      headers=ADMIN)
        return r.json()["status"]

    async def points(self, token: str) -> dict[str, Any]:
        r = await self.world.http.get(self.world.url("volunteers", "/v1/me/points"),
                                      headers=bearer(token))
        assert r.status_code == 200, r.text
        return r.json()


async def new_district(world: World) -> District:
    name = f"d{uuid4().hex[:8]}"
    roster = district_roster(name, SCENE)
    roster["teams"].append({"id": f"{name}-vol-2", "agency_id": f"{name}-vol",
                            "name": "Aunties 2", "mode": "foot", "skills": [],
                            "home_zone_id": f"{name}-z1"})
    roster["members"] += [
        {"id": f"{name}-m-vol2", "name": "Volunteer Sun", "agency_id": f"{name}-vol",
         "team_id": f"{name}-vol-2", "role": "volunteer", "phone": "+86 138 0000 0099"},
        {"id": f"{name}-m-vol3", "name": "Volunteer Ma", "agency_id": f"{name}-vol",
         "team_id": f"{name}-vol-2", "role": "volunteer"},
    ]
    r = await world.http.post(world.url("volunteers", "/v1/roster/import"), headers=ADMIN,
                              json=roster)
    assert r.status_code == 200, r.text
    return District(world, name)


def ledger(points: dict[str, Any]) -> list[tuple[str, float]]:
    return sorted((e["reason"], e["points"]) for e in points["history"])


async def test_a_confirmed_hazard_pays_its_first_reporter_not_a_duplicate_report_of_it(
        world: World) -> None:
    # Volunteer Sun (off shift) reports a missing manhole cover; Volunteer Ma reports the same
    # cover a moment later: intake links Ma's report to Sun's, and no team is sent for it.
    # Aunties 1 fence it off. Sun's report is confirmed: 3 to Sun; the resolving volunteer
    # gets 10 + 3; Ma's duplicate earns nothing (else every passer-by who reports a known
    # hazard again would be paid for it).
    d = await new_district(world)
    resolver, reporter, second = (await d.enrol("m-vol"), await d.enrol("m-vol2"),
                                  await d.enrol("m-vol3"))
    await d.on_shift_at(resolver, SCENE[0] + 0.001, SCENE[1])
    await d.available_at_dispatch(1)
    first = await d.report(reporter)
    again = await d.report(second, lat=SCENE[0] + 0.0005)
    assert (again["status"], again.get("linked_to")) == ("linked", first["incident_id"])
    order = await d.order_of(first["incident_id"])
    assert order["team_id"] == d.id("vol-1")
    await d.answer(resolver, order["order_id"], "acknowledged", "resolved")

    async def reporter_paid() -> list[tuple[str, float]]:
        return ledger(await d.points(reporter))

    assert await poll_until(reporter_paid, "the reporter's points") == [("hazard_report", 3)]
    assert ledger(await d.points(resolver)) == [("hazard_report", 3), ("resolved_order", 10)]
    assert await d.status(again["incident_id"]) == "linked"
    assert ledger(await d.points(second)) == []


async def test_a_refused_adjustment_key_is_not_repeated_in_the_answer(world: World) -> None:
    # DESIGN: a message never echoes the request body; the coordinator's own key is theirs.
    d = await new_district(world)
    url = world.url("volunteers", f"/v1/members/{d.id('m-vol2')}/points")
    key = f"coord-{uuid4().hex[:12]}"
    r = await world.http.post(url, headers=ADMIN, json={
        "points": 5, "note": "cleared the stairwell", "adjustment_id": key})
    assert r.status_code == 201, r.text
    r = await world.http.post(url, headers=ADMIN, json={
        "points": 6, "note": "cleared the stairwell", "adjustment_id": key})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "conflict" and "adjustment_id" in error["message"]
    assert key not in r.text


async def test_a_members_report_carries_their_team_at_the_report_to_its_closing(
        world: World, redis_url: str) -> None:
    # Sun (Aunties 2) reports from the street: intake names his team, as his device token
    # says, on the report; dispatch keeps it with the incident and names it on the closing,
    # so volunteers judges whose word confirmed the report by the team he was on then, not
    # the one an import may have moved him to before it read the closing.
    d = await new_district(world)
    resolver, reporter = await d.enrol("m-vol"), await d.enrol("m-vol2")
    await d.on_shift_at(resolver, SCENE[0] + 0.001, SCENE[1])
    await d.available_at_dispatch(1)
    incident_id = (await d.report(reporter))["incident_id"]
    order = await d.order_of(incident_id)
    await d.answer(resolver, order["order_id"], "acknowledged", "resolved")

    def closed() -> IncidentClosed | None:
        return next((e for e in read_stream(redis_url, "incident.closed", IncidentClosed)
                     if e.incident_id == incident_id), None)

    closing = await poll_until(closed, f"the closing of {incident_id}")
    [reported] = [e for e in read_stream(redis_url, "incident.reported", IncidentReported)
                  if e.incident_id == incident_id]
    assert reported.system_id == f"member:{d.id('m-vol2')}"
    assert reported.reporter_team_id == d.id("vol-2")
    assert (closing.reported_by_member, closing.reporter_team_id) == (d.id("m-vol2"),
                                                                      d.id("vol-2"))


async def test_a_members_report_is_read_by_the_member_alone(world: World) -> None:
    """Any of the member's devices reads the member's report; another member is refused in
    the words of who they are: "reported by another device" told Volunteer Ma that the
    report was someone else's phone's, when it was someone else's."""
    d = await new_district(world)
    reporter, other = await d.enrol("m-vol2"), await d.enrol("m-vol3")
    second_phone = await d.enrol("m-vol2")
    report = await d.report(reporter)
    url = world.url("intake", f"/v1/incidents/{report['incident_id']}")
    assert (await world.http.get(url, headers=bearer(second_phone))).status_code == 200
    r = await world.http.get(url, headers=bearer(other))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["message"] == (
        "this incident was not reported by this member: a member reads their own reports, "
        "from any of their devices")
