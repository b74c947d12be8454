"""The command room learns more of an incident (PATCH /v1/incidents/{id}): its priority and
flags change, a weapon takes volunteer teams off it, and it gets the units it now wants."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from services.dispatch.main import create_app
from shared import streams
from shared.events import IncidentUpdated, OrderAmended, OrderIssued
from tests.helpers import poll_until, read_stream

from .conftest import fail_a_write_once, settings_for
from .test_assign import ADMIN, timeline, withdrawals
from .test_engine import DISTRICT, orders_once, report, team, wait_for_units
from .test_reinforcement import make_due


def amendments(url: str, incident_id: str) -> list[OrderAmended]:
    return [a for a in read_stream(url, streams.ORDER_AMENDED.name, OrderAmended)
            if a.incident_id == incident_id]


async def a_guard_on_a_suspicious_incident(url: str, publisher: RedisBroker) -> OrderIssued:
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    incident_id = await report(publisher, "suspicious", priority="P2")
    [order] = await orders_once(url, incident_id, 1, "the guard's order")
    return order


def updates(url: str, incident_id: str) -> list[IncidentUpdated]:
    return [u for u in read_stream(url, streams.INCIDENT_UPDATED.name, IncidentUpdated)
            if u.incident_id == incident_id]


# however the dispatcher typed it: "Weapon " bars volunteers as "weapon" does
@pytest.mark.parametrize("typed", [["weapon"], ["Weapon ", "WEAPON"]])
async def test_a_weapon_takes_the_volunteers_off_and_the_incident_becomes_p1(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        typed: list[str]) -> None:
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot")
    await team(publisher, "guard", kind="security", lat=22.8250, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    incident_id = await report(publisher, "hazard_report", priority="P4")
    [first] = await orders_once(clean_redis, incident_id, 1, "the volunteers' order")
    assert first.team_id == "aunties"

    r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN, json={
        "add_flags": typed, "note": "the caller rang back: a man with a knife"})
    assert r.status_code == 200, r.text
    assert r.json() == {"incident_id": incident_id, "priority": "P1", "flags": ["weapon"],
                        "withdrawn": [first.order_id]}
    [withdrawn] = withdrawals(clean_redis, incident_id)
    assert (withdrawn.order_id, withdrawn.reason) == (first.order_id, "reassigned")
    # its phones are told why (notify: order_withdrawn's barred_by), to leave if on scene
    assert withdrawn.barred_by == ("weapon",)
    orders = await orders_once(clean_redis, incident_id, 2, "the guards' order")
    assert (orders[1].team_id, orders[1].priority) == ("guard", "P1")
    assert "weapon" in orders[1].flags
    assert amendments(clean_redis, incident_id) == []  # the team on it was taken off, not told
    kinds = [(e["kind"], e.get("note"), e.get("detail")) for e in timeline(clean_redis, incident_id)]
    assert ("revised", "the caller rang back: a man with a knife",
            "priority P4 → P1; flags added: weapon by admin:admin") in kinds
    assert ("withdrawn", None, "volunteers are not sent to an incident flagged weapon: taken off"
            ) in kinds

    async def reporting_system_sees_p1() -> bool:  # what intake projects from
        return any(u.priority == "P1" for u in updates(clean_redis, incident_id))

    await poll_until(reporting_system_sees_p1, "incident.updated with the new priority")
    # the same again: nothing new, nothing written
    again = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN,
                                json={"add_flags": ["weapon"]})
    assert again.status_code == 200 and again.json()["withdrawn"] == []
    assert sum(e["kind"] == "revised" for e in timeline(clean_redis, incident_id)) == 1


async def test_an_offer_not_yet_acknowledged_gets_the_sooner_deadline_of_a_raised_priority(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # A noise report (P4, 300 s to acknowledge) goes to a guard; the caller rings back: a
    # fight. Raised to P1, the guard's offer must be acknowledged 30 s after it was issued,
    # not 300: if the phone is in a pocket the next team is offered it then.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    [order] = await orders_once(clean_redis, incident_id, 1, "the guard's order")
    assert order.ack_by is not None
    assert (order.ack_by - order.occurred_at).total_seconds() == pytest.approx(300, abs=1)
    r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN,
                            json={"priority": "P1", "note": "a fight has started"})
    assert r.status_code == 200, r.text
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        assert client.hget(store.order_key(order.order_id), "state") == "offered"
        due = client.zscore(store.TIMERS, f"ack:{order.order_id}")
        ack_by = client.hget(store.order_key(order.order_id), "ack_by")
    finally:
        client.close()
    assert due == pytest.approx(order.occurred_at.timestamp() + 30, abs=1)
    assert ack_by is not None and datetime.fromisoformat(ack_by).timestamp() == due
    [amended] = await poll_until(lambda: amendments(clean_redis, incident_id), "the amendment")
    assert amended.priority == "P1"
    assert amended.ack_by is not None and amended.ack_by.timestamp() == due  # the phone's too
    # Lowered again: the deadline is not put back later.
    r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN,
                            json={"priority": "P4"})
    assert r.status_code == 200, r.text
    second = await poll_until(lambda: amendments(clean_redis, incident_id)[1:], "the second")
    assert second[0].ack_by == amended.ack_by


async def test_an_offer_timed_out_after_a_raised_priority_is_withdrawn_naming_its_sooner_deadline(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # Volunteers judges a volunteer shift's missed-deadline penalty by the deadline the order
    # was timed out for (an answer by it costs nothing, one after it is a miss): it reads no
    # order.amended, so the withdrawal names it, not order.issued's later one.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    [order] = await orders_once(clean_redis, incident_id, 1, "the guard's order")
    r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN,
                            json={"priority": "P1", "note": "a fight has started"})
    assert r.status_code == 200, r.text
    [amended] = await poll_until(lambda: amendments(clean_redis, incident_id), "the amendment")
    assert amended.ack_by is not None and order.ack_by is not None
    assert amended.ack_by < order.ack_by
    make_due(clean_redis, f"ack:{order.order_id}")
    [withdrawn] = await poll_until(lambda: withdrawals(clean_redis, incident_id),
                                   "the timeout's withdrawal")
    assert (withdrawn.reason, withdrawn.ack_by) == ("timeout", amended.ack_by)


async def test_the_command_room_lowers_a_priority_and_bad_revisions_are_named(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    order = await a_guard_on_a_suspicious_incident(clean_redis, publisher)
    incident_id = order.incident_id
    url = f"/v1/incidents/{incident_id}"
    r = await console.patch(url, headers=ADMIN, json={"priority": "P3", "add_flags": ["night"],
                                                      "note": "a delivery rider, known"})
    assert r.status_code == 200 and r.json()["priority"] == "P3"
    assert withdrawals(clean_redis, incident_id) == []  # the guard stays on it, and is told
    [amended] = amendments(clean_redis, incident_id)
    assert (amended.order_id, amended.team_id, amended.priority, amended.flags) == (
        order.order_id, "guard", "P3", ("night",))

    for body, field in [({}, "priority"), ({"priority": "P0"}, "priority"),
                        ({"add_flags": [""]}, "add_flags.0"), ({"note": "x" * 501}, "note"),
                        ({"priority": "P1", "colour": "red"}, "colour")]:
        bad = await console.patch(url, headers=ADMIN, json=body)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == field, (body, bad.text)
    # the OpenAPI says an array: "Input should be a valid tuple" named pydantic's type
    bad = await console.patch(url, headers=ADMIN, json={"add_flags": "weapon"})
    assert (bad.status_code, bad.json()["error"]) == (422, {
        "code": "invalid_field", "message": "add_flags must be a list",
        "field": "add_flags"}), bad.text
    assert (await console.patch("/v1/incidents/inc_nope", headers=ADMIN,
                                json={"priority": "P1"})).status_code == 404
    await console.post(f"{url}/close", headers=ADMIN)
    closed = await console.patch(url, headers=ADMIN, json={"priority": "P1"})
    assert closed.status_code == 409


@pytest.mark.roster(DISTRICT)
async def test_an_inspector_is_told_of_a_revision_that_changes_nothing_before_it_is_refused(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # An inspector changes nothing (403), but DESIGN's order puts wrong input (422) before
    # that: a revision with neither a priority nor flags to add is one, as for the admin.
    order = await a_guard_on_a_suspicious_incident(clean_redis, publisher)
    url = f"/v1/incidents/{order.incident_id}"
    r = await console.post("/v1/dispatchers", headers=ADMIN, json={
        "name": "Inspector Sun", "districts": [DISTRICT], "role": "inspector"})
    assert r.status_code == 201, r.text
    inspector = {"Authorization": f"Bearer {r.json()['token']}"}
    for who in (inspector, ADMIN):
        r = await console.patch(url, headers=who, json={"note": "nothing new"})
        assert (r.status_code, r.json()["error"]) == (422, {
            "code": "invalid_field", "message": "give a priority or flags to add",
            "field": "priority"}), r.text
    r = await console.patch(url, headers=inspector, json={"priority": "P1"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    r = await console.get(url, headers=ADMIN)
    assert (r.json()["priority"], r.json()["flags"]) == ("P2", []), r.text




async def test_a_revision_that_failed_before_the_volunteers_were_taken_off_finishes_when_asked_again(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as console:
            await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665,
                       mode="foot")
            await wait_for_units(clean_redis, 1)
            incident_id = await report(publisher, "hazard_report", priority="P4")
            [first] = await orders_once(clean_redis, incident_id, 1, "the volunteers' order")
            failures = fail_a_write_once(monkeypatch, "order.withdrawn")  # the take-off's write
            body = {"add_flags": ["weapon"]}
            failed = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN, json=body)
            assert failed.status_code == 503 and failures == ["failed"]
            assert withdrawals(clean_redis, incident_id) == []  # revised, volunteers still on it
            again = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN, json=body)
            assert again.status_code == 200 and again.json()["withdrawn"] == [first.order_id]
            [withdrawn] = withdrawals(clean_redis, incident_id)
            assert withdrawn.order_id == first.order_id
            assert sum(e["kind"] == "revised" for e in timeline(clean_redis, incident_id)) == 1


async def test_the_command_room_s_remarks_go_on_the_timeline_once_also_after_the_end(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id = (await a_guard_on_a_suspicious_incident(clean_redis, publisher)).incident_id
    url = f"/v1/incidents/{incident_id}/remarks"
    said = {"note": "called the caller back: no answer"}
    r = await console.post(url, headers=ADMIN, json=said)
    assert r.status_code == 201 and r.json() == {"incident_id": incident_id, "added": True}
    again = await console.post(url, headers=ADMIN, json=said)  # the answer lost: a retry
    assert again.status_code == 201 and again.json()["added"] is False
    await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    later = await console.post(url, headers=ADMIN, json={"note": "the shop owner confirmed"})
    assert later.json()["added"] is True
    remarks = [(e["note"], e["detail"]) for e in timeline(clean_redis, incident_id)
               if e["kind"] == "remark"]
    assert remarks == [("called the caller back: no answer", "remark by admin:admin"),
                       ("the shop owner confirmed", "remark by admin:admin")]
    for body in ({}, {"note": "  "}, {"note": "x" * 501}):
        bad = await console.post(url, headers=ADMIN, json=body)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "note", body
