"""The first complete journey: a system reports, the nearest suitable team's phone gets the
order, the member acknowledges, and everyone sees it, in one trace across four services."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest

from tests.e2e.journey import (
    admin,
    bearer,
    connect_device,
    district_roster,
    enrol,
    on_shift_at,
    register_system,
    spans_of_trace,
    unique_district,
    wait_until_dispatch_sees,
)
from tests.helpers import poll_until
from tools.stack import Stack

pytestmark = pytest.mark.e2e

SCENE = (22.8170, 108.3665)  # Nanning, Minzu Avenue


async def test_incident_reaches_the_nearest_suitable_team_and_is_acknowledged_in_one_trace(
        stack: Stack) -> None:
    district = unique_district()
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                              headers=admin(stack), json=district_roster(district, SCENE))
        assert r.status_code == 200, r.text

        near = await enrol(client, stack, f"{district}-m-near-1")
        far = await enrol(client, stack, f"{district}-m-far")
        guard = await enrol(client, stack, f"{district}-m-sec")
        volunteer = await enrol(client, stack, f"{district}-m-vol")
        near_phone = await connect_device(stack, near, exits)
        far_phone = await connect_device(stack, far, exits)
        guard_phone = await connect_device(stack, guard, exits)
        volunteer_phone = await connect_device(stack, volunteer, exits)

        await on_shift_at(client, stack, near, lat + 0.004, lon)           # ~450 m, car
        await on_shift_at(client, stack, far, lat + 0.05, lon)             # ~5.5 km, car
        await on_shift_at(client, stack, guard, lat + 0.0005, lon)         # 55 m, on foot
        await on_shift_at(client, stack, volunteer, lat + 0.0002, lon)     # 20 m, volunteer

        api_key = await register_system(client, stack, district)
        # A dispute goes to street patrol police first, then security (DESIGN: dispatch rules).
        # The guard is closer, but 3 minutes per place below first outweighs 50 m on foot
        # against 450 m by car; volunteers may not answer disputes at all.
        async def post_incident() -> httpx.Response:
            return await client.post(
                f"{stack.url('intake')}/v1/incidents", headers=bearer(api_key),
                json={"external_ref": f"110-{district}", "category": "dispute",
                      "district": district,
                      "location": {"lat": lat, "lon": lon, "address": "Minzu Ave 88"},
                      "caller": {"phone": "13877001234", "name": "Ms Liang"},
                      "description": "two neighbours arguing loudly"})
        await wait_until_dispatch_sees(client, stack, district, 4)
        r = await post_incident()
        assert r.status_code == 202, r.text
        accepted = r.json()
        incident_id = accepted["incident_id"]
        assert accepted["priority"] == "P2"

        order = await near_phone.next_of("order", timeout=15)
        assert order["incident_id"] == incident_id
        assert order["category"] == "dispute"
        assert order["caller"]["phone"] == "13877001234"  # police orders carry the caller
        await near_phone.send({"type": "received", "order_id": order["order_id"]})

        r = await client.post(
            f"{stack.url('notify')}/v1/orders/{order['order_id']}/responses",
            headers={**bearer(near), "traceparent": order["traceparent"]},
            json={"response": "acknowledged"})
        assert r.status_code == 200, r.text

        async def status_at(service: str) -> str | None:
            r = await client.get(f"{stack.url(service)}/v1/incidents/{incident_id}",
                                 headers=bearer(api_key) if service == "intake" else admin(stack))
            assert r.status_code == 200, r.text
            return r.json()["status"]

        await poll_until(lambda: _is(status_at("intake"), "acknowledged"), "intake: acknowledged")
        await poll_until(lambda: _is(status_at("dispatch"), "acknowledged"),
                         "dispatch: acknowledged")

        detail = (await client.get(f"{stack.url('dispatch')}/v1/incidents/{incident_id}",
                                   headers=admin(stack))).json()
        assert [t["team_id"] for t in detail["teams"]] == [f"{district}-patrol-near"]
        kinds = [e["kind"] for e in detail["timeline"]]
        for expected in ("reported", "offer", "receipt", "response"):
            assert expected in kinds, kinds

        for phone in (far_phone, guard_phone, volunteer_phone):
            assert [f for f in await phone.drain(0.5) if f.get("type") == "order"] == []

        # One trace from the posting system's request to the acknowledgement's effects.
        trace_id = detail["trace_id"]
        assert trace_id
        expected_spans = {
            ("intake", "POST /v1/incidents"),
            ("dispatch", "incident.reported process"),
            ("notify", "order.issued process"),
            ("notify", "push order"),
            ("dispatch", "order.delivered process"),
            ("dispatch", "order.responded process"),
            ("intake", "incident.updated process"),
            ("volunteers", "order.issued process"),
        }

        def journey_spans() -> set[tuple[str, str]] | None:
            found = {(s["service"], s["name"])
                     for s in spans_of_trace(stack.traces_dir, trace_id)}
            return found if expected_spans <= found else None

        found = await poll_until(journey_spans, "the journey's spans in one trace", timeout=15)
        assert {service for service, _ in found} == {"intake", "dispatch", "volunteers",
                                                     "notify"}
        # the acknowledgement came back over HTTP carrying the order's trace context
        assert any(service == "notify" and "responses" in name and "POST" in name
                   for service, name in found), found


async def _is(value, expected: str) -> bool:
    return (await value) == expected
