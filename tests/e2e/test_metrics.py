"""After a journey, each service's /metrics shows the operations metrics with sane values."""

from __future__ import annotations

import re
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

SCENE = (22.8000, 108.3900)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = SAMPLE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            out.append((match.group(1), labels, float(match.group(3))))
    return out


def values(rows, name: str, **labels: str) -> list[float]:
    return [v for n, lab, v in rows if n == name and all(lab.get(k) == x for k, x in labels.items())]


async def test_metrics_after_a_journey(stack: Stack) -> None:
    district = unique_district()
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                              headers=admin(stack), json=district_roster(district, SCENE))
        assert r.status_code == 200
        token = await enrol(client, stack, f"{district}-m-sec")
        phone = await connect_device(stack, token, exits)
        await on_shift_at(client, stack, token, lat + 0.001, lon)

        await wait_until_dispatch_sees(client, stack, district, 1)
        key = await register_system(client, stack, district)
        r = await client.post(f"{stack.url('intake')}/v1/incidents", headers=bearer(key), json={
            "external_ref": f"m-{district}", "category": "hazard_report", "district": district,
            "location": {"lat": lat, "lon": lon}})
        assert r.status_code == 202
        order = await phone.order_for(client, stack, r.json()["incident_id"])
        await phone.send({"type": "received", "order_id": order["order_id"]})
        for response in ("acknowledged", "resolved"):
            await phone.send({"type": "response", "order_id": order["order_id"],
                              "response": response})

        async def scrape(service: str) -> list[tuple[str, dict[str, str], float]]:
            r = await client.get(f"{stack.url(service)}/metrics", headers=admin(stack))
            assert r.status_code == 200, r.text
            return samples(r.text)

        assert (await client.get(f"{stack.url('dispatch')}/metrics")).status_code == 401

        async def drained() -> list | None:
            rows = await scrape("dispatch")
            lag = values(rows, "lianfang_stream_lag", stream="order.responded", group="dispatch")
            pending = values(rows, "lianfang_stream_pending", group="dispatch")
            resolved = values(rows, "lianfang_incidents", status="resolved")
            return rows if lag == [0] and pending and max(pending) == 0 and resolved and \
                resolved[0] >= 1 else None

        dispatch = await poll_until(drained, "dispatch's lag back to 0 and a resolved incident")
        assert values(dispatch, "lianfang_stream_length", stream="incident.reported")[0] >= 1
        assert values(dispatch, "lianfang_dispatch_time_to_assign_seconds_count")
        assert sum(values(dispatch, "lianfang_dispatch_time_to_assign_seconds_count")) >= 1
        assert sum(values(dispatch, "lianfang_dispatch_time_to_acknowledge_seconds_count")) >= 1
        # The per-entry histogram is exported (a count of entries handled; no timing judged).
        assert sum(values(dispatch, "lianfang_stream_handle_duration_seconds_count",
                          stream="incident.reported", group="dispatch",
                          outcome="handled")) >= 1

        notify = await scrape("notify")
        assert sum(values(notify, "lianfang_notify_deliveries_total", outcome="received")) >= 1
        assert values(notify, "lianfang_notify_websocket_connections")[0] >= 1
        assert values(notify, "lianfang_stream_lag", stream="order.issued", group="notify")

        # A missed deadline (P4: 3 s on the test stack) shows in the routing-timeout counter.
        r = await client.post(f"{stack.url('intake')}/v1/incidents", headers=bearer(key), json={
            "external_ref": f"m2-{district}", "category": "hazard_report", "district": district,
            "location": {"lat": lat, "lon": lon}})
        assert r.status_code == 202
        await phone.order_for(client, stack, r.json()["incident_id"])
        await phone.next_of("order_withdrawn", timeout=P4_DEADLINE_S + 10)

        async def timed_out() -> bool:
            rows = await scrape("dispatch")
            return sum(values(rows, "lianfang_dispatch_routing_timeouts_total")) >= 1

        await poll_until(timed_out, "a routing timeout counted")

        for service in ("intake", "volunteers"):
            rows = await scrape(service)
            assert all(v >= 0 for v in values(rows, "lianfang_stream_pending")), service
            assert values(rows, "lianfang_stream_length"), service
