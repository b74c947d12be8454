"""Need to know: callers' data reaches police devices only, and never logs or traces; nor
do the devices' and systems' credentials."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest

from tests.e2e.journey import (
    admin,
    all_exported_text,
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

SCENE = (22.8300, 108.3300)
PHONE = "13912345678"
NAME = "Huang Xiaoming"
DESCRIPTION = "neighbour upstairs drilling at midnight"
BODY_CAM = "bwc-0417-20261205-2140.mp4"  # a team's file: the command room's, not the caller's


async def test_caller_data_goes_to_police_orders_only_and_never_into_logs_or_traces(
        stack: Stack) -> None:
    district = unique_district()
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                              headers=admin(stack), json=district_roster(district, SCENE))
        assert r.status_code == 200, r.text
        guard = await enrol(client, stack, f"{district}-m-sec")
        police = await enrol(client, stack, f"{district}-m-near-1")
        guard_phone = await connect_device(stack, guard, exits)
        police_phone = await connect_device(stack, police, exits, as_the_page=True)
        await on_shift_at(client, stack, guard, lat + 0.001, lon)
        await on_shift_at(client, stack, police, lat + 0.002, lon)

        await wait_until_dispatch_sees(client, stack, district, 2)
        key = await register_system(client, stack, district)
        # A P1 fight: police and the nearest security post both go (a joint response).
        r = await client.post(f"{stack.url('intake')}/v1/incidents", headers=bearer(key), json={
            "external_ref": f"priv-{district}", "category": "violence", "district": district,
            "location": {"lat": lat, "lon": lon}, "flags": ["in_progress"],
            "caller": {"phone": PHONE, "name": NAME}, "description": DESCRIPTION})
        assert r.status_code == 202, r.text

        to_guard = await guard_phone.next_of("order", timeout=15)
        to_police = await police_phone.next_of("order", timeout=15)
        assert to_police["caller"] == {"phone": PHONE, "name": NAME}
        assert to_police["description"] == DESCRIPTION
        assert "caller" not in to_guard and "description" not in to_guard
        assert PHONE not in str(to_guard) and NAME not in str(to_guard)

        for frame, token in ((to_guard, guard), (to_police, police)):
            r = await client.post(f"{stack.url('notify')}/v1/orders/{frame['order_id']}/responses",
                                  headers=bearer(token), json={
                                      "response": "acknowledged", "note": f"call {PHONE}",
                                      "evidence": [{"kind": "video", "ref": BODY_CAM}]})
            assert r.status_code == 200, r.text

        async def acknowledged() -> bool:
            r = await client.get(f"{stack.url('dispatch')}/v1/incidents/"
                                 f"{to_police['incident_id']}", headers=admin(stack))
            return r.json()["status"] == "acknowledged"

        await poll_until(acknowledged, "the incident acknowledged")
        seen_by_reporter = await client.get(f"{stack.url('intake')}/v1/incidents/"
                                            f"{to_police['incident_id']}", headers=bearer(key))
        trace_id = seen_by_reporter.json()["trace_id"]
        # the teams' notes are the command room's: not the reporting system's, nor the
        # caller's number they happen to hold
        assert PHONE not in seen_by_reporter.text and BODY_CAM not in seen_by_reporter.text
        r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{to_police['incident_id']}",
                             headers=admin(stack))
        assert f"call {PHONE}" in [e.get("note") for e in r.json()["timeline"]]
        assert BODY_CAM in r.text  # the command room has the body camera's file
        metrics = ""
        for service in ("intake", "dispatch", "volunteers", "notify"):
            r = await client.get(f"{stack.url(service)}/metrics", headers=admin(stack))
            assert r.status_code == 200
            metrics += r.text

    # Give the batch span processors time to flush this journey's spans.
    await poll_until(lambda: trace_id in all_exported_text(stack.traces_dir), "spans exported")
    await poll_until(lambda: _spans_with(stack, trace_id) >= 10, "the journey's spans")
    exported = all_exported_text(stack.traces_dir)
    logs = "\n".join(p.read_text(errors="replace") for p in (stack.workdir / "logs").glob("*.log"))
    assert "/v1/devices/stream" in logs  # the sockets' lines are there, their tokens not
    for secret in (PHONE, NAME, DESCRIPTION, "midnight", police, guard, key):
        assert secret not in exported, f"{secret!r} in exported spans"
        assert secret not in logs, f"{secret!r} in service logs"
        assert secret not in metrics, f"{secret!r} in metrics"


def _spans_with(stack: Stack, trace_id: str) -> int:
    return all_exported_text(stack.traces_dir).count(trace_id)


async def test_a_credential_in_a_request_s_query_string_never_reaches_the_spans(
        stack: Stack) -> None:
    # A phone whose proxy dropped the WebSocket upgrade of `/v1/devices/stream?token=`, a
    # system that puts its key in the URL: refused with 401, and FastAPI's server span keeps
    # the query string (`url.query`), which must reach no exporter with the token in it.
    district = unique_district()
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{stack.url('volunteers')}/v1/roster/import",
                              headers=admin(stack), json=district_roster(district, SCENE))
        assert r.status_code == 200, r.text
        device = await enrol(client, stack, f"{district}-m-sec")
        key = await register_system(client, stack, district)
        r = await client.get(f"{stack.url('notify')}/v1/devices/stream",
                             params={"token": device, "probe": district})
        assert r.status_code == 401
        r = await client.get(f"{stack.url('intake')}/v1/categories",
                             params={"token": key, "probe": district})
        assert r.status_code == 401

    probe = f"probe={district}"
    await poll_until(lambda: all_exported_text(stack.traces_dir).count(probe) == 2,
                     "both requests' server spans exported")
    exported = all_exported_text(stack.traces_dir)
    leaked = [what for what, secret in (("device token", device), ("system key", key))
              if secret in exported]
    assert leaked == [], f"in the exported spans: {leaked}"
    assert exported.count(f'"url.query":"token=***&{probe}"') == 2
