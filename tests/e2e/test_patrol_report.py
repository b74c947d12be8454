"""A patrol's own report from the street (DOMAIN.md: incidents arrive by "patrol report" too;
volunteers report hidden hazards): a member's device token at intake's POST /v1/incidents,
checked with volunteers; the incident is dispatched as any other and the member follows it;
nobody else's device, no other district, and no revoked phone may."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest

from tests.e2e import journey
from tests.e2e.journey import admin, bearer, enrol
from tests.helpers import poll_until
from tools.stack import Stack

pytestmark = pytest.mark.e2e

SCENE = (22.8400, 108.3400)


async def test_a_volunteer_reports_a_hazard_from_the_street_follows_it_and_earns_points(
        stack: Stack) -> None:
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        district = await journey.new_district(client, stack, SCENE)
        volunteer = await enrol(client, stack, f"{district}-m-vol")
        guard = await enrol(client, stack, f"{district}-m-sec")
        # a volunteer off shift, walking by; the guard post on shift
        guard_phone = await journey.connect_device(stack, guard, exits)
        await journey.on_shift_at(client, stack, guard, lat + 0.01, lon)
        await journey.wait_until_dispatch_sees(client, stack, district, 1)

        report = {"external_ref": f"patrol-{district}-1", "category": "hazard_report",
                  "district": district, "location": {"lat": lat, "lon": lon},
                  "description": "manhole cover missing outside No. 12"}
        url = f"{stack.url('intake')}/v1/incidents"
        r = await client.post(url, headers=bearer(volunteer), json=report)
        assert r.status_code == 202, r.text
        incident_id = r.json()["incident_id"]
        again = await client.post(url, headers=bearer(volunteer), json=report)  # a retry
        assert (again.status_code, again.json()["incident_id"]) == (200, incident_id)

        order = await guard_phone.next_of("order", timeout=15)
        assert (order["incident_id"], order["category"]) == (incident_id, "hazard_report")

        r = await client.get(f"{url}/{incident_id}", headers=bearer(volunteer))
        assert r.status_code == 200, r.text
        assert r.json()["category"] == "hazard_report"
        r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{incident_id}",
                             headers=admin(stack))
        assert r.json()["system_id"] == f"member:{district}-m-vol"

        # not the guard's to follow, nor a system's; no report in another district
        assert (await client.get(f"{url}/{incident_id}", headers=bearer(guard))).status_code == 403
        key = await journey.register_system(client, stack, district)
        assert (await client.get(f"{url}/{incident_id}", headers=bearer(key))).status_code == 403
        r = await client.post(url, headers=bearer(volunteer),
                              json={**report, "district": "elsewhere", "external_ref": "x"})
        assert r.status_code == 403
        r = await client.post(url, headers=bearer("lfd_not-a-device"), json=report)
        assert r.status_code == 401
        r = await client.post(url, headers=bearer(volunteer), json={**report, "category": "ufo"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "category"

        # the guards find the cover missing and have it fenced off: a confirmed hazard report,
        # whose points go to the volunteer who reported it
        answer = f"{stack.url('notify')}/v1/orders/{order['order_id']}/responses"
        for response in ("acknowledged", "resolved"):
            r = await client.post(answer, headers=bearer(guard), json={"response": response})
            assert r.status_code == 200, r.text

        async def reporters_points() -> list[tuple[str, float]] | None:
            r = await client.get(f"{stack.url('volunteers')}/v1/me/points",
                                 headers=bearer(volunteer))
            history = [(e["reason"], e["points"]) for e in r.json()["history"]]
            return history or None

        assert await poll_until(reporters_points, "the reporter's points") == [
            ("hazard_report", 3)]


async def test_a_revoked_phone_can_no_longer_report_nor_read_its_reports_at_intake(
        stack: Stack) -> None:
    # A lost or stolen phone revoked by the admin: refused at once everywhere (operations.md),
    # intake too, although it checked the same token with volunteers a moment before.
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client:
        district = await journey.new_district(client, stack, SCENE)
        member = f"{district}-m-vol"
        volunteer = await enrol(client, stack, member)
        r = await client.get(f"{stack.url('volunteers')}/v1/members/{member}/devices",
                             headers=admin(stack))
        (device,) = r.json()
        url = f"{stack.url('intake')}/v1/incidents"
        report = {"external_ref": f"patrol-{district}-1", "category": "hazard_report",
                  "district": district, "location": {"lat": lat, "lon": lon}}
        r = await client.post(url, headers=bearer(volunteer), json=report)
        assert r.status_code == 202, r.text
        own = r.json()["incident_id"]

        r = await client.delete(f"{stack.url('volunteers')}/v1/members/{member}/devices/"
                                f"{device['device_id']}", headers=admin(stack))
        assert r.status_code == 204
        r = await client.post(url, headers=bearer(volunteer),
                              json={**report, "external_ref": f"patrol-{district}-2",
                                    "location": {"lat": lat + 0.05, "lon": lon}})
        assert r.status_code == 401, r.text
        assert (await client.get(f"{url}/{own}", headers=bearer(volunteer))).status_code == 401
        for service, path in (("volunteers", "/v1/me"), ("notify", "/v1/devices/me")):
            r = await client.get(f"{stack.url(service)}{path}", headers=bearer(volunteer))
            assert r.status_code == 401, service
