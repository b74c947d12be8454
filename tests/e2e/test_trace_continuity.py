"""What operations staff read in the span files: an incident that takes the unhappy paths
(a missed deadline, a reinforcement, a hand-over to the station, answers over the socket and
over HTTP) is still one trace, its spans named and attributed by OpenTelemetry's messaging
and HTTP conventions, and no span carries the caller's details or a team's note."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import P4_DEADLINE_S
from tests.e2e.journey import (
    admin,
    bearer,
    connect_device,
    enrol,
    new_district,
    on_shift_at,
    register_system,
    spans_of_trace,
    wait_until_dispatch_sees,
)
from tests.helpers import poll_until
from tools.stack import Stack

pytestmark = pytest.mark.e2e

SCENE = (22.8600, 108.2900)
PHONE = "13977104242"
NAME = "Qin Meiling"
DESCRIPTION = "karaoke through the wall since the small hours"
SOCKET_NOTE = "heard it from the stairwell kumquat"
HTTP_NOTE = "need a second car persimmon"
HANDOVER_NOTE = "landlord dispute, station to follow up quince"
SECRETS = (PHONE, NAME, DESCRIPTION, "small hours", SOCKET_NOTE, "kumquat", HTTP_NOTE,
           "persimmon", HANDOVER_NOTE, "quince")
# Attribute names of the HTTP conventions before they were declared stable.
OLD_HTTP_KEYS = {"http.method", "http.url", "http.status_code", "http.target", "http.host",
                 "http.scheme", "net.peer.name", "net.peer.port"}
# The messaging conventions' operation type (1.26 on) of the operations named as in 1.24.
OPERATION_TYPES = {"publish": "send", "process": "process"}


async def test_a_timed_out_reinforced_and_handed_over_incident_is_one_clean_trace(
        stack: Stack) -> None:
    lat, lon = SCENE
    async with httpx.AsyncClient(timeout=10) as client, AsyncExitStack() as exits:
        district = await new_district(client, stack, SCENE)
        members = {"sec": 0.001, "near-1": 0.01, "far": 0.012, "st": 0.015}
        tokens = {who: await enrol(client, stack, f"{district}-m-{who}") for who in members}
        phones = {who: await connect_device(stack, token, exits)
                  for who, token in tokens.items()}
        for who, north in members.items():
            await on_shift_at(client, stack, tokens[who], lat + north, lon)
        await wait_until_dispatch_sees(client, stack, district, len(members))
        key = await register_system(client, stack, district)
        r = await client.post(f"{stack.url('intake')}/v1/incidents", headers=bearer(key), json={
            "external_ref": f"trace-{district}", "category": "noise", "district": district,
            "location": {"lat": lat, "lon": lon, "address": "Lane 9, Xinzhu Road"},
            "caller": {"phone": PHONE, "name": NAME}, "description": DESCRIPTION})
        assert r.status_code == 202, r.text
        incident_id = r.json()["incident_id"]

        # Noise goes to security first; the guard does not answer in time ...
        first = await phones["sec"].next_of("order", timeout=15)
        await phones["sec"].next_of("order_withdrawn", timeout=P4_DEADLINE_S + 15)
        # ... so the street patrol gets it, and answers on the socket ...
        second = await phones["near-1"].next_of("order", timeout=15)
        assert second["incident_id"] == incident_id
        await phones["near-1"].send({"type": "received", "order_id": second["order_id"]})
        await phones["near-1"].send({"type": "response", "order_id": second["order_id"],
                                     "response": "acknowledged", "note": SOCKET_NOTE})

        async def acknowledged() -> bool:
            r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{incident_id}",
                                 headers=admin(stack))
            return any(o["order_id"] == second["order_id"] and o["state"] == "acknowledged"
                       for o in r.json()["orders"])

        await poll_until(acknowledged, "the patrol's acknowledgement recorded", timeout=15)
        # ... then over HTTP, as the member's page does: a reinforcement, then a hand-over.
        for response, note in (("reinforce", HTTP_NOTE), ("handover", HANDOVER_NOTE)):
            r = await client.post(
                f"{stack.url('notify')}/v1/orders/{second['order_id']}/responses",
                headers={**bearer(tokens["near-1"]), "traceparent": second["traceparent"]},
                json={"response": response, "note": note})
            assert r.status_code == 200, r.text

        async def orders_for_station_and_backup() -> list[dict[str, Any]] | None:
            r = await client.get(f"{stack.url('dispatch')}/v1/incidents/{incident_id}",
                                 headers=admin(stack))
            detail = r.json()
            return detail if len(detail["orders"]) >= 4 else None

        detail = await poll_until(orders_for_station_and_backup,
                                  "the backup's and the station's orders", timeout=20)
        trace_id = detail["trace_id"]
        order_ids = {o["order_id"] for o in detail["orders"]}
        assert {first["order_id"], second["order_id"]} <= order_ids

    def whole_trace() -> list[dict[str, Any]] | None:
        spans = spans_of_trace(stack.traces_dir, trace_id)
        pushed = {s["attributes"].get("lianfang.order_id") for s in spans
                  if s["name"] == "push order"}
        names = {(s["service"], s["name"]) for s in spans}
        expected = {("dispatch", "acknowledgement deadline missed"),
                    ("notify", "order.withdrawn process"),
                    ("volunteers", "order.withdrawn process"),
                    ("notify", "order received"),
                    ("notify", "POST /v1/orders/{order_id}/responses"),
                    ("dispatch", "incident.handed_over publish")}
        responded = [s for s in spans if s["name"] == "respond to order"]
        done = order_ids <= pushed and expected <= names and len(responded) >= 3
        return spans if done else None

    # Every order of the incident (the one that timed out, the next offer, the backup and
    # the station's) was pushed in the incident's own trace, with its withdrawal and every
    # answer, however it came.
    spans = await poll_until(whole_trace, "every step of the incident in its one trace",
                             timeout=30)

    wrong: list[str] = []
    for span in spans:
        attributes, name = span["attributes"], span["name"]
        where = f"{span['service']} {span['kind']} {name!r}"
        stream, _, operation = name.rpartition(" ")
        if span["kind"] in ("PRODUCER", "CONSUMER") and operation in ("publish", "process") \
                and attributes.get("messaging.system") == "redis":
            if attributes.get("messaging.destination.name") != stream or \
                    attributes.get("messaging.operation") != operation or \
                    attributes.get("messaging.operation.type") != OPERATION_TYPES[operation]:
                wrong.append(f"{where}: {attributes}")
        if span["kind"] in ("SERVER", "CLIENT"):
            if "http.request.method" not in attributes or \
                    "http.response.status_code" not in attributes:
                wrong.append(f"{where}: no http.request.method/http.response.status_code")
            if span["kind"] == "CLIENT" and "url.full" not in attributes:
                wrong.append(f"{where}: no url.full")
            if OLD_HTTP_KEYS & set(attributes):
                wrong.append(f"{where}: {sorted(OLD_HTTP_KEYS & set(attributes))}")
    assert wrong == [], "\n".join(wrong)
    assert any(s["kind"] == "CLIENT" for s in spans)  # the zone look-up, the token checks

    # No attribute of any span of any service says who called or what anyone wrote.
    leaked = []
    for path in stack.traces_dir.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            span = json.loads(line)
            for key, value in span["attributes"].items():
                text = json.dumps(value, ensure_ascii=False)
                leaked += [f"{span['service']} {span['name']} {key}" for secret in SECRETS
                           if secret in text]
    assert leaked == []
