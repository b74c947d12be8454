"""Dispatch's rules with every service running: joint response, escalation, hand-over, KPIs."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest

from tests.e2e.conftest import P4_DEADLINE_S
from tests.e2e.journey import (
    admin,
    bearer,
    connect_device,
    district_roster,
    enrol,
    on_shift_at,
    register_system,
    unique_district,
    wait_until_dispatch_sees,
)
from tests.helpers import poll_until
from tools.stack import Stack

pytestmark = pytest.mark.e2e

SCENE = (22.8400, 108.3100)


async def test_missed_acknowledgement_escalates_and_handover_reaches_the_owning_station(
        stack: Stack) -> None:
    district = unique_district()
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                              headers=admin(stack), json=district_roster(district, SCENE))
        assert r.status_code == 200, r.text
        tokens = {who: await enrol(client, stack, f"{district}-m-{who}")
                  for who in ("sec", "near-1", "st")}
        phones = {who: await connect_device(stack, token, exits) for who, token in tokens.items()}
        await on_shift_at(client, stack, tokens["sec"], lat + 0.001, lon)     # guard, 110 m
        await on_shift_at(client, stack, tokens["near-1"], lat + 0.01, lon)   # patrol, 1.1 km
        await on_shift_at(client, stack, tokens["st"], lat + 0.015, lon)      # station, 1.7 km

        await wait_until_dispatch_sees(client, stack, district, 3)
        key = await register_system(client, stack, district)
        r = await client.post(f"{stack.url('intake')}/v1/incidents", headers=bearer(key), json={
            "external_ref": f"noise-{district}", "category": "noise", "district": district,
            "location": {"lat": lat, "lon": lon}})
        incident_id = r.json()["incident_id"]
        assert r.json()["priority"] == "P4"

        # Noise goes to security first; the guard never answers.
        first = await phones["sec"].next_of("order")
        assert first["incident_id"] == incident_id
        withdrawn = await phones["sec"].next_of("order_withdrawn", timeout=P4_DEADLINE_S + 10)
        assert withdrawn["order_id"] == first["order_id"]
        # ... so street patrol police (next in the list) get it.
        second = await phones["near-1"].next_of("order", timeout=10)
        assert second["incident_id"] == incident_id
        for response in ("acknowledged", "on_scene", "handover"):
            r = await client.post(
                f"{stack.url('notify')}/v1/orders/{second['order_id']}/responses",
                headers=bearer(tokens["near-1"]), json={"response": response})
            assert r.status_code == 200, r.text

        # The police station owning the zone gets an ordinary order with a filing deadline.
        handover = await phones["st"].next_of("order", timeout=10)
        assert handover["incident_id"] == incident_id
        assert handover["kind"] == "handover" and handover.get("filing_due")
        assert handover.get("ack_by") is None

        async def detail() -> dict | None:
            r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{incident_id}",
                                 headers=admin(stack))
            body = r.json()
            kinds = [e["kind"] for e in body["timeline"]]
            return body if body["status"] == "handed_over" and "handover" in kinds else None

        body = await poll_until(detail, "the incident handed over")
        kinds = [e["kind"] for e in body["timeline"]]
        assert "timeout" in kinds and body["routing_timeouts"] == 1
        states = {o["team_id"]: o["state"] for o in body["orders"]}
        assert states == {f"{district}-sec-1": "timed_out",
                          f"{district}-patrol-near": "handover",
                          f"{district}-station-1": "offered"}

        r = await client.get(f"{stack.url('dispatch')}/v1/kpis", headers=admin(stack),
                             params={"district": district})
        kpis = r.json()
        assert kpis["incidents"] == 1 and kpis["routing_timeouts"] == 1
        assert kpis["handed_over"] == 1 and kpis["by_category"] == {"noise": 1}
        assert kpis["time_to_assign_s"]["count"] == 1
        assert kpis["time_to_acknowledge_s"]["p50"] >= P4_DEADLINE_S


async def test_the_command_room_moves_a_guard_from_a_noise_complaint_to_a_fight(
        stack: Stack) -> None:
    district = unique_district()
    lat, lon = 22.8450, 108.3150
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                              headers=admin(stack), json=district_roster(district, (lat, lon)))
        assert r.status_code == 200, r.text
        tokens = {who: await enrol(client, stack, f"{district}-m-{who}")
                  for who in ("sec", "near-1")}
        phones = {who: await connect_device(stack, token, exits) for who, token in tokens.items()}
        await on_shift_at(client, stack, tokens["sec"], lat + 0.001, lon)     # guard, 110 m
        await on_shift_at(client, stack, tokens["near-1"], lat + 0.01, lon)   # patrol, 1.1 km
        await wait_until_dispatch_sees(client, stack, district, 2)
        key = await register_system(client, stack, district)

        async def report(ref: str, category: str, at: tuple[float, float]) -> str:
            r = await client.post(f"{stack.url('intake')}/v1/incidents", headers=bearer(key), json={
                "external_ref": ref, "category": category, "district": district,
                "location": {"lat": at[0], "lon": at[1]}})
            assert r.status_code == 202, r.text
            return r.json()["incident_id"]

        noise = await report(f"noise-{district}", "noise", (lat, lon))
        first = await phones["sec"].next_of("order")
        assert first["incident_id"] == noise
        # a fight two streets away: the dispatcher wants the guard there, not at the noise
        fight = await report(f"fight-{district}", "suspicious", (lat - 0.004, lon))
        await phones["near-1"].next_of("order", timeout=10)  # the patrol has it first
        r = await client.post(f"{stack.url('dispatch')}/v1/incidents/{fight}/assign",
                              headers=admin(stack),
                              json={"team_id": f"{district}-sec-1", "reassign": True})
        assert r.status_code == 200, r.text

        withdrawn = await phones["sec"].next_of("order_withdrawn", timeout=10)  # off the noise
        assert withdrawn["order_id"] == first["order_id"]
        moved = await phones["sec"].next_of("order", timeout=10)  # onto the fight
        assert (moved["incident_id"], moved["kind"]) == (fight, "manual")

        async def noise_waits_for_a_team() -> bool:  # nobody else may take a noise complaint
            r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{noise}",
                                 headers=admin(stack))
            kinds = [e["kind"] for e in r.json()["timeline"]]
            return r.json()["status"] == "unassigned" and "withdrawn" in kinds

        await poll_until(noise_waits_for_a_team, "the noise complaint back in the queue")

        async def guard_on_the_fight() -> bool:  # volunteers: the old order ended, the new one on
            r = await client.get(f"{stack.url('volunteers')}/v1/teams/{district}-sec-1",
                                 headers=admin(stack))
            state = r.json()["state"]
            return state["open_orders"] == [{"order_id": moved["order_id"], "stage": "dispatched"}]

        await poll_until(guard_on_the_fight, "the guard's team busy with the fight only")

        # the caller rings back: a knife. The guard on it is told at once, on the phone.
        r = await client.patch(f"{stack.url('dispatch')}/v1/incidents/{fight}",
                               headers=admin(stack), json={"add_flags": ["weapon"],
                                                           "note": "caller: he has a knife"})
        assert r.status_code == 200 and r.json()["priority"] == "P1", r.text
        update = await phones["sec"].next_of("order_update", timeout=10)
        assert (update["order_id"], update["priority"], update["flags"]) == (
            moved["order_id"], "P1", ["weapon"])


async def test_the_console_map_reads_the_district_s_zones_as_dispatch_holds_them(
        stack: Stack) -> None:
    district = unique_district()
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                              headers=admin(stack), json=district_roster(district, SCENE))
        assert r.status_code == 200, r.text
        r = await client.get(f"{stack.url('dispatch')}/v1/zones", headers=admin(stack),
                             params={"district": district})
        assert r.status_code == 200, r.text
        [zone] = r.json()["zones"]
        assert (zone["zone_id"], zone["name"], zone["station_agency_id"]) == (
            f"{district}-z1", "Xinzhu community", f"{district}-ps")
        assert len(zone["polygon"]) >= 4 and all(len(xy) == 2 for xy in zone["polygon"])
