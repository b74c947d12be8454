"""The command room assigns a team by hand (POST /v1/incidents/{id}/assign), in-process
against a real Redis: one order, also when the request is made again after a failure or a
lost answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import locks
from services.dispatch.domain import LIVE_ORDER_STATES as LIVE
from services.dispatch.domain import distance_m, travel_time_s
from services.dispatch.engine import Dispatcher
from services.dispatch.main import create_app
from shared import streams
from shared.events import OrderIssued, OrderWithdrawn, UnitPosition, UnitStatus, utcnow
from shared.policy import load_policy
from tests.helpers import poll_until, read_stream

from .conftest import fail_a_write_once, fail_once, settings_for
from .test_duty import dispatcher
from .test_engine import (
    DISTRICT,
    SCENE,
    orders_for,
    orders_once,
    report,
    team,
    wait_for_units,
)
from .test_followup import incident_fields

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def incident_and_a_second_team(url: str, publisher: RedisBroker) -> str:
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "patrol", kind="police", lat=22.8300, lon=108.3665)
    await wait_for_units(url, 2)
    incident_id = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: orders_for(url, incident_id), "the first order")
    return incident_id


def manual_orders(url: str, incident_id: str) -> list[OrderIssued]:
    return [o for o in read_stream(url, streams.ORDER_ISSUED.name, OrderIssued)
            if o.incident_id == incident_id and o.kind == "manual"]


def entries(url: str, incident_id: str, kind: str) -> int:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return sum(json.loads(e)["kind"] == kind
                   for e in client.lrange(f"dispatch:timeline:{incident_id}", 0, -1))
    finally:
        client.close()


def known_team(url: str, team_id: str) -> bool:
    client = sync_redis.Redis.from_url(url)
    try:
        return bool(client.exists(f"dispatch:unit:{team_id}"))
    finally:
        client.close()


async def assign(console: httpx.AsyncClient, incident_id: str) -> httpx.Response:
    return await console.post(f"/v1/incidents/{incident_id}/assign", headers=ADMIN,
                              json={"team_id": "patrol"})


async def test_asking_twice_gives_the_same_order(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id = await incident_and_a_second_team(clean_redis, publisher)
    first = await assign(console, incident_id)
    assert first.status_code == 200 and first.json()["team_id"] == "patrol"
    again = await assign(console, incident_id)  # the first answer lost on the way, say
    assert again.status_code == 200 and again.json() == first.json()
    assert [o.order_id for o in manual_orders(clean_redis, incident_id)] == [
        first.json()["order_id"]]
    assert entries(clean_redis, incident_id, "manual_assign") == 1


async def test_an_assignment_that_failed_after_its_offer_is_finished_when_asked_again(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = await incident_and_a_second_team(clean_redis, publisher)
    failures = fail_a_write_once(monkeypatch, "manual_order")
    failed = await assign(console, incident_id)
    assert failed.status_code == 503 and failures == ["failed"]
    again = await assign(console, incident_id)
    assert again.status_code == 200
    assert [o.order_id for o in manual_orders(clean_redis, incident_id)] == [
        again.json()["order_id"]]
    assert entries(clean_redis, incident_id, "manual_assign") == 1


async def test_a_team_busy_on_another_incident_is_a_conflict(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id = await incident_and_a_second_team(clean_redis, publisher)
    assert (await assign(console, incident_id)).status_code == 200
    other = await report(publisher, "noise", priority="P4")  # waits: both teams are busy

    async def waiting() -> bool:
        r = await console.get(f"/v1/incidents/{other}", headers=ADMIN)
        return r.status_code == 200 and r.json()["status"] == "unassigned"

    await poll_until(waiting, "the other incident waiting")
    busy = await assign(console, other)
    assert busy.status_code == 409 and "holds open order" in busy.json()["error"]["message"]


@pytest.mark.roster(DISTRICT, "xixiangtang")
async def test_a_dispatcher_sends_only_teams_of_their_own_districts(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id = await incident_and_a_second_team(clean_redis, publisher)
    await team(publisher, "neighbour", kind="police", lat=22.8200, lon=108.3665,
               district="xixiangtang")
    await poll_until(lambda: known_team(clean_redis, "neighbour"),
                     "the other district's team known to dispatch")
    _, desk = await dispatcher(console, "Wang Lei")  # covers this district only
    body = {"team_id": "neighbour"}
    url = f"/v1/incidents/{incident_id}/assign"
    r = await console.post(url, headers=desk, json=body)
    assert r.status_code == 403 and "xixiangtang" in r.json()["error"]["message"]
    assert manual_orders(clean_redis, incident_id) == []
    # whoever covers both districts sends the neighbour's team as reinforcement
    _, both = await dispatcher(console, "Li Na", (DISTRICT, "xixiangtang"))
    r = await console.post(url, headers=both, json=body)
    assert r.status_code == 200, r.text
    assert [o.team_id for o in manual_orders(clean_redis, incident_id)] == ["neighbour"]


@pytest.mark.roster(DISTRICT)
async def test_an_unknown_team_is_a_422_naming_team_id_before_the_incident_is_looked_up(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """DESIGN's check order is 401 → 400/422 → 404 → 403 → 409: a mistyped team is a 422
    naming `team_id` whatever the incident, also a mistyped one or another district's the
    dispatcher may not act on; a known team goes on to the incident (404), then to whether
    the caller covers it (403)."""
    there = await report(publisher, "noise", priority="P4", district="xixiangtang")

    async def stored() -> bool:
        return (await console.get(f"/v1/incidents/{there}", headers=ADMIN)).status_code == 200

    await poll_until(stored, "the neighbour's incident stored")
    _, desk = await dispatcher(console, "Wang Lei")  # covers this district only
    for incident_id, headers in (("inc_nope", ADMIN), ("inc_nope", desk), (there, desk)):
        r = await console.post(f"/v1/incidents/{incident_id}/assign", headers=headers,
                               json={"team_id": "no-such-team"})
        assert (r.status_code, r.json()["error"].get("field")) == (422, "team_id"), r.json()

    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    r = await console.post("/v1/incidents/inc_nope/assign", headers=desk,
                           json={"team_id": "guard"})
    assert r.status_code == 404, r.json()
    r = await console.post(f"/v1/incidents/{there}/assign", headers=desk,
                           json={"team_id": "guard"})
    assert r.status_code == 403 and "xixiangtang" in r.json()["error"]["message"], r.json()
    assert manual_orders(clean_redis, there) == []


@pytest.mark.roster(DISTRICT)
async def test_a_dispatcher_does_not_take_a_team_off_another_districts_incident(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The admin sent this district's patrol to reinforce a neighbour's incident; a dispatcher
    # of this district only may not move it back from there (they may not even read it).
    here = await incident_and_a_second_team(clean_redis, publisher)
    there = await report(publisher, "noise", priority="P4", district="xixiangtang")

    async def stored() -> bool:
        r = await console.get(f"/v1/incidents/{there}", headers=ADMIN)
        return r.status_code == 200

    await poll_until(stored, "the neighbour's incident stored")
    sent = await console.post(f"/v1/incidents/{there}/assign", headers=ADMIN,
                              json={"team_id": "patrol"})
    assert sent.status_code == 200, sent.text
    _, desk = await dispatcher(console, "Wang Lei")
    r = await console.post(f"/v1/incidents/{here}/assign", headers=desk,
                           json={"team_id": "patrol", "reassign": True})
    assert r.status_code == 403 and "xixiangtang" in r.json()["error"]["message"]
    assert withdrawals(clean_redis, there) == []
    assert manual_orders(clean_redis, here) == []
    view = (await console.get(f"/v1/incidents/{there}", headers=ADMIN)).json()
    assert [(o["team_id"], o["state"]) for o in view["orders"]] == [("patrol", "offered")]


async def test_an_incident_held_by_a_stalled_step_answers_503_and_the_assignment_waits_for_it(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # A step that holds the incident's lock past the wait (a stalled worker; its TTL frees
    # it) is a state that passes: 503 with Retry-After, not 500, and asking again works.
    monkeypatch.setattr(locks, "WAIT_S", 0.3)
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as console:
            incident_id = await incident_and_a_second_team(clean_redis, publisher)
            client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
            try:
                client.set(locks.key(incident_id), "a-stalled-worker", px=60_000)
                held = await assign(console, incident_id)
                assert held.status_code == 503 and held.headers["Retry-After"] == "1"
                assert held.json()["error"] == {
                    "code": "unavailable",
                    "message": f"incident {incident_id} is being changed by another step; "
                               "ask again"}
                assert manual_orders(clean_redis, incident_id) == []
                client.delete(locks.key(incident_id))  # the stalled worker's TTL ran out
            finally:
                client.close()
            again = await assign(console, incident_id)
            assert again.status_code == 200
            assert [o.order_id for o in manual_orders(clean_redis, incident_id)] == [
                again.json()["order_id"]]


def withdrawals(url: str, incident_id: str) -> list[OrderWithdrawn]:
    return [w for w in read_stream(url, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
            if w.incident_id == incident_id]


def timeline(url: str, incident_id: str) -> list[dict[str, Any]]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return [json.loads(e) for e in client.lrange(f"dispatch:timeline:{incident_id}", 0, -1)]
    finally:
        client.close()


async def three_teams_and_a_minor_incident(url: str, publisher: RedisBroker) -> OrderIssued:
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "patrol", kind="police", role="patrol", lat=22.8300, lon=108.3665)
    await team(publisher, "station", kind="police", role="station", lat=22.8400, lon=108.3665)
    await wait_for_units(url, 3)
    minor = await report(publisher, "noise", priority="P4")
    [first] = await orders_once(url, minor, 1, "the noise complaint's order")
    assert first.team_id == "guard"  # the nearest
    return first


async def test_the_command_room_takes_a_team_back_and_the_incident_goes_to_its_next_team(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    first = await three_teams_and_a_minor_incident(clean_redis, publisher)
    url = f"/v1/orders/{first.order_id}/withdraw"
    r = await console.post(url, headers=ADMIN, json={"note": "needed at the market fight"})
    assert r.status_code == 200, r.text
    assert r.json() == {"order_id": first.order_id, "incident_id": first.incident_id,
                        "team_id": "guard", "state": "withdrawn"}
    [withdrawn] = withdrawals(clean_redis, first.incident_id)  # the phones drop it, volunteers
    assert (withdrawn.order_id, withdrawn.reason) == (first.order_id, "reassigned")  # frees it
    orders = await orders_once(clean_redis, first.incident_id, 2, "the next team's order")
    assert orders[1].team_id == "patrol"  # the next candidate, never the team taken back
    [entry] = [e for e in timeline(clean_redis, first.incident_id) if e["kind"] == "withdrawn"]
    assert (entry["team_id"], entry["note"]) == ("guard", "needed at the market fight")
    assert entry["detail"] == "taken back by admin:admin"

    again = await console.post(url, headers=ADMIN, json={})  # the answer lost: asked again
    assert again.status_code == 200 and again.json()["state"] == "withdrawn"
    assert len(withdrawals(clean_redis, first.incident_id)) == 1
    assert len(orders_for(clean_redis, first.incident_id)) == 2
    assert sum(e["kind"] == "withdrawn" for e in timeline(clean_redis, first.incident_id)) == 1

    assert (await console.post("/v1/orders/ord_nope/withdraw", headers=ADMIN,
                               json={})).status_code == 404
    r = await console.post(url, headers=ADMIN, json={"note": "x" * 501})
    assert r.status_code == 422 and r.json()["error"]["field"] == "note"


async def test_a_team_is_moved_from_a_minor_incident_to_a_worse_one(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    first = await three_teams_and_a_minor_incident(clean_redis, publisher)
    worse = await report(publisher, "suspicious", priority="P2")  # goes to the patrol
    [patrol] = await orders_once(clean_redis, worse, 1, "the patrol's order")
    assert patrol.team_id == "patrol"

    body = {"team_id": "guard"}
    busy = await console.post(f"/v1/incidents/{worse}/assign", headers=ADMIN, json=body)
    assert busy.status_code == 409 and '"reassign": true' in busy.json()["error"]["message"]
    moved = await console.post(f"/v1/incidents/{worse}/assign", headers=ADMIN,
                               json={**body, "reassign": True})
    assert moved.status_code == 200, moved.text
    [manual] = manual_orders(clean_redis, worse)
    assert (manual.team_id, manual.order_id) == ("guard", moved.json()["order_id"])
    [withdrawn] = withdrawals(clean_redis, first.incident_id)
    assert (withdrawn.order_id, withdrawn.reason) == (first.order_id, "reassigned")
    [entry] = [e for e in timeline(clean_redis, first.incident_id) if e["kind"] == "withdrawn"]
    assert entry["note"] == f"sent to incident {worse} instead"
    # the noise complaint is not dropped: its next team is the station's (the patrol is busy)
    orders = await orders_once(clean_redis, first.incident_id, 2, "the minor incident's next team")
    assert orders[1].team_id == "station"


async def test_a_team_is_not_taken_off_its_order_for_an_incident_that_cannot_have_it(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    first = await three_teams_and_a_minor_incident(clean_redis, publisher)
    worse = await report(publisher, "suspicious", priority="P2")
    await orders_once(clean_redis, worse, 1, "the patrol's order")
    assert (await console.post(f"/v1/incidents/{worse}/close", headers=ADMIN)).status_code == 200
    r = await console.post(f"/v1/incidents/{worse}/assign", headers=ADMIN,
                           json={"team_id": "guard", "reassign": True})
    assert r.status_code == 409 and "closed" in r.json()["error"]["message"]
    assert withdrawals(clean_redis, first.incident_id) == []  # the guard stays on its order


async def test_volunteers_cannot_be_assigned_by_hand_to_a_weapon_incident(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # A help request flagged `weapon` finds nobody (only a volunteer patrol is on shift,
    # and a weapon bars volunteers) and waits on the board. The command room may not send
    # the volunteers by hand either: revise takes them off such an incident at once.
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot")
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "help_request", flags=("weapon",), priority="P1")
    await poll_until(lambda: incident_fields(clean_redis, incident_id).get("status")
                     == "unassigned", "the incident waiting (volunteers barred)")
    r = await console.post(f"/v1/incidents/{incident_id}/assign", headers=ADMIN,
                           json={"team_id": "aunties"})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "conflict"
    assert "flagged weapon" in error["message"] and "police or security" in error["message"]
    assert orders_for(clean_redis, incident_id) == []
    assert entries(clean_redis, incident_id, "manual_assign") == 0


async def test_volunteers_are_not_taken_off_their_order_to_be_reassigned_to_a_weapon_incident(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The volunteers answer a help request; the command room tries to move them to a knife
    # incident: refused before they are taken off the order they have.
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot")
    await wait_for_units(clean_redis, 1)
    minor = await report(publisher, "help_request", priority="P3")
    [first] = await orders_once(clean_redis, minor, 1, "the volunteers' order")
    assert first.team_id == "aunties"
    armed = await report(publisher, "help_request", flags=("weapon",), priority="P1")
    await poll_until(lambda: incident_fields(clean_redis, armed).get("status") == "unassigned",
                     "the armed incident waiting")
    r = await console.post(f"/v1/incidents/{armed}/assign", headers=ADMIN,
                           json={"team_id": "aunties", "reassign": True})
    assert r.status_code == 409 and "flagged weapon" in r.json()["error"]["message"], r.text
    assert withdrawals(clean_redis, minor) == []  # the volunteers stay on their order
    assert orders_for(clean_redis, armed) == []


async def a_reassign_that_fails(url: str, console: httpx.AsyncClient, publisher: RedisBroker,
                                failing: Callable[[OrderIssued], list[str]]
                                ) -> tuple[OrderIssued, str, dict[str, Any]]:
    """The guard on a noise complaint (its order: the first) and the patrol on a worse
    incident; the command room's reassign of the guard to the worse one answered 503, the
    failure `failing(first)` sets up having failed it: (the first order, the worse incident,
    the request's body)."""
    first = await three_teams_and_a_minor_incident(url, publisher)
    worse = await report(publisher, "suspicious", priority="P2")  # goes to the patrol
    await orders_once(url, worse, 1, "the patrol's order")
    failures = failing(first)
    body = {"team_id": "guard", "reassign": True}
    r = await console.post(f"/v1/incidents/{worse}/assign", headers=ADMIN, json=body)
    assert r.status_code == 503 and failures == ["failed"]
    return first, worse, body


async def test_a_reassign_whose_refill_failed_leaves_the_other_incident_waiting_not_stuck(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard is taken off the noise complaint; its refill fails (Redis away, a crash).
    first, worse, body = await a_reassign_that_fails(
        clean_redis, console, publisher, lambda first: fail_once(
            monkeypatch, Dispatcher, "_fill",
            lambda _engine, incident_id, *_, **__: incident_id == first.incident_id))
    again = await console.post(f"/v1/incidents/{worse}/assign", headers=ADMIN, json=body)
    assert again.status_code == 200, again.text  # the same order: the guard is this one's
    # The noise complaint waits for a freed team instead of staying without one: the next
    # team that comes free takes it.
    await team(publisher, "guard2", kind="security", lat=22.8172, lon=108.3665)
    orders = await orders_once(clean_redis, first.incident_id, 2, "the noise complaint refilled")
    assert orders[1].team_id in ("guard2", "station")


async def test_a_reassign_that_failed_after_letting_the_team_go_never_leaves_it_on_two_incidents(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard is being moved from the noise complaint to a worse incident; the write that
    # withdraws its old order fails (Redis away). Before the command room asks again, a
    # third report comes in. Before: the guard's claim had been let go ahead of that write,
    # so the third report took the guard, and the assignment asked again took it from that
    # one: the noise complaint's order stayed live, the guard on two incidents for good.
    first, worse, body = await a_reassign_that_fails(  # at the take-back's write
        clean_redis, console, publisher,
        lambda _: fail_a_write_once(monkeypatch, "order.withdrawn"))
    third = await report(publisher, "noise", priority="P4")
    await orders_once(clean_redis, third, 1, "the third incident's order")
    again = await console.post(f"/v1/incidents/{worse}/assign", headers=ADMIN, json=body)
    assert again.status_code == 200, again.text
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        guard_orders = [o for incident_id in (first.incident_id, worse, third)
                        for o in [client.hgetall(f"dispatch:order:{order_id}") for order_id
                                  in client.lrange(f"dispatch:orders:{incident_id}", 0, -1)]
                        if o["team_id"] == "guard" and o["state"] in LIVE]
        assert client.hget(f"dispatch:order:{first.order_id}", "state") == "withdrawn"
    finally:
        client.close()
    assert [(o["incident_id"], o["kind"]) for o in guard_orders] == [(worse, "manual")]


async def test_a_moved_team_is_claimed_before_the_other_incidents_refill(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Volunteers frees the guard when its old order is withdrawn, and dispatch offers a free
    # team to the incidents waiting: that must not happen before the guard is the worse
    # incident's, however long the old incident's refill (a search) takes.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "patrol", kind="police", role="patrol", lat=22.8300, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    minor = await report(publisher, "noise", priority="P4")
    await orders_once(clean_redis, minor, 1, "the guard's order")
    worse = await report(publisher, "suspicious", priority="P2")
    await orders_once(clean_redis, worse, 1, "the patrol's order")
    # nobody free: it waits, ahead of the noise complaint once that waits too
    third = await report(publisher, "suspicious", priority="P2")
    await poll_until(lambda: waiting_in(clean_redis, third), "the third incident waiting")

    refill = Dispatcher._fill

    async def slow_refill(engine: Dispatcher, incident_id: str, *args: Any, **kw: Any) -> None:
        if incident_id == minor:  # the guard reported free meanwhile, as volunteers does
            await publisher.publish(UnitStatus(
                district=DISTRICT, unit_id="guard", status="available", name="guard",
                agency_id="ag-security", agency_kind="security", mode="car", on_shift=True,
                occurred_at=utcnow() + timedelta(milliseconds=5)),  # after the one it had
                stream=streams.UNIT_STATUS.name)
            await asyncio.sleep(0.3)
        await refill(engine, incident_id, *args, **kw)

    monkeypatch.setattr(Dispatcher, "_fill", slow_refill)
    r = await console.post(f"/v1/incidents/{worse}/assign", headers=ADMIN,
                           json={"team_id": "guard", "reassign": True})
    assert r.status_code == 200, r.text
    [manual] = manual_orders(clean_redis, worse)
    assert manual.team_id == "guard"
    await asyncio.sleep(0.3)  # what the freed guard's status would have set off
    assert [o.team_id for o in orders_for(clean_redis, third)] == []


def waiting_in(url: str, incident_id: str) -> bool:
    client = sync_redis.Redis.from_url(url)
    try:
        return client.zscore(f"dispatch:waiting:{DISTRICT}", incident_id) is not None
    finally:
        client.close()


async def test_a_p1_given_one_team_by_hand_gets_its_second_when_one_comes_free(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # A fight with nobody free: the command room sends a police team that was busy on
    # something of its own. The fight still wants its second unit, and the next security
    # team that comes free joins without anyone asking.
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id="pol", status="busy", name="pol", agency_id="ag-police",
        agency_kind="police", mode="car", on_shift=True), stream=streams.UNIT_STATUS.name)
    await team(publisher, "far", kind="volunteer", lat=22.9, lon=108.3665)  # never for a fight
    await wait_for_units(clean_redis, 1)
    fight = await report(publisher, "violence", priority="P1")

    async def unassigned() -> bool:
        r = await console.get(f"/v1/incidents/{fight}", headers=ADMIN)
        return r.status_code == 200 and r.json()["status"] == "unassigned"

    await poll_until(unassigned, "the fight waiting")
    sent = await console.post(f"/v1/incidents/{fight}/assign", headers=ADMIN,
                              json={"team_id": "pol"})
    assert sent.status_code == 200, sent.text
    await team(publisher, "sec", kind="security", lat=22.8172, lon=108.3665)
    orders = await orders_once(clean_redis, fight, 2, "the second unit, unasked")
    assert [(o.team_id, o.kind) for o in orders] == [("pol", "manual"), ("sec", "dispatch")]
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        await poll_until(lambda: client.zrange(f"dispatch:waiting:{DISTRICT}", 0, -1) == [],
                         "the fight complete, out of the queue")
    finally:
        client.close()


async def test_an_assignment_asked_again_after_a_colleague_s_is_on_the_timeline_once(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # Two dispatchers send a team each at the same moment; the first one's answer is lost
    # and their console asks again: the same order, and no second "assigned" entry.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "patrol", kind="police", lat=22.8300, lon=108.3665)
    await team(publisher, "car2", kind="police", lat=22.8400, lon=108.3665)
    await wait_for_units(clean_redis, 3)
    incident_id = await report(publisher, "noise", priority="P4")
    await orders_once(clean_redis, incident_id, 1, "the first order")
    url = f"/v1/incidents/{incident_id}/assign"
    patrol, car2 = await asyncio.gather(
        console.post(url, headers=ADMIN, json={"team_id": "patrol"}),
        console.post(url, headers=ADMIN, json={"team_id": "car2"}))
    assert patrol.status_code == car2.status_code == 200
    first, team_id = ((car2, "car2")
                      if incident_fields(clean_redis, incident_id)["manual_order"]
                      == patrol.json()["order_id"] else (patrol, "patrol"))
    again = await console.post(url, headers=ADMIN, json={"team_id": team_id})
    assert again.status_code == 200 and again.json() == first.json()
    assert [e["kind"] for e in timeline(clean_redis, incident_id)].count("manual_assign") == 2


async def test_a_team_already_on_the_incident_is_a_conflict_that_says_so(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # Not "send it with reassign" (the console would ask to take it off *another*
    # incident's order, and the reassign would answer the same).
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    [order] = await orders_once(clean_redis, incident_id, 1, "the guard's order")
    url = f"/v1/incidents/{incident_id}/assign"
    for body in ({"team_id": "guard"}, {"team_id": "guard", "reassign": True}):
        r = await console.post(url, headers=ADMIN, json=body)
        assert r.status_code == 409
        assert r.json()["error"]["message"] == (
            f"team guard is already on this incident (order {order.order_id}, offered): "
            "nothing to assign")


@pytest.mark.roster(DISTRICT)
async def test_an_inspector_is_told_of_a_wrong_field_before_it_is_refused(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """An inspector reads and changes nothing (403 on assign), but DESIGN's order puts a
    wrong field (422) before that refusal; the kind is refused before the incident is looked
    up (an inspector may assign on no incident), and nothing is assigned."""
    incident_id = await incident_and_a_second_team(clean_redis, publisher)
    r = await console.post("/v1/dispatchers", headers=ADMIN, json={
        "name": "Inspector Sun", "districts": [DISTRICT], "role": "inspector"})
    assert r.status_code == 201, r.text
    inspector = {"Authorization": f"Bearer {r.json()['token']}"}
    wrong = {"team_id": ""}
    r = await console.post(f"/v1/incidents/{incident_id}/assign", json=wrong)
    assert r.status_code == 401, r.text
    for target, who in ((incident_id, inspector), ("inc_nope", inspector),
                        (incident_id, ADMIN)):
        r = await console.post(f"/v1/incidents/{target}/assign", headers=who, json=wrong)
        assert (r.status_code, r.json()["error"].get("field")) == (422, "team_id"), r.text
    for target in (incident_id, "inc_nope"):
        r = await console.post(f"/v1/incidents/{target}/assign", headers=inspector,
                               json={"team_id": "patrol"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    assert manual_orders(clean_redis, incident_id) == []


async def manual_order_of(console: httpx.AsyncClient, incident_id: str) -> dict[str, Any]:
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    (order,) = [o for o in r.json()["orders"] if o["kind"] == "manual"]
    return order


async def test_a_team_sent_by_hand_has_its_travel_time_and_when_it_is_expected(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The console said "arrival time not known" for every team the command room sent: its
    # order had no travel time, where dispatch's own orders have one.
    incident_id = await incident_and_a_second_team(clean_redis, publisher)
    r = await assign(console, incident_id)
    assert r.status_code == 200, r.text
    order = await manual_order_of(console, incident_id)
    # the same travel time as dispatch's own choice counts: from where the team is
    policy = load_policy()
    eta = travel_time_s(distance_m(SCENE.lat, SCENE.lon, 22.8300, 108.3665), "car", policy)
    assert order["eta_s"] == pytest.approx(eta, abs=0.1)
    assert order["expected_at"] is not None
    (issued,) = manual_orders(clean_redis, incident_id)
    assert issued.eta_s == order["eta_s"]  # the team's phone says it too


async def test_a_team_sent_by_hand_with_no_position_that_counts_has_no_travel_time(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # A fix older than the policy's fix_max_age_s: where the team was half an hour ago says
    # nothing of when it will be there (dispatch's own choice does not count it either).
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: orders_for(clean_redis, incident_id), "the first order")
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id="patrol", status="available", name="patrol",
        agency_id="ag-police", agency_kind="police", mode="car", on_shift=True),
        stream=streams.UNIT_STATUS.name)
    await publisher.publish(UnitPosition(
        district=DISTRICT, unit_id="patrol", lat=22.8300, lon=108.3665,
        at=utcnow() - timedelta(minutes=30)), stream=streams.UNIT_POSITION.name)
    await poll_until(lambda: known_team(clean_redis, "patrol"), "the patrol known")
    await poll_until(lambda: _placed(clean_redis, "patrol"), "the patrol's old position")
    r = await assign(console, incident_id)
    assert r.status_code == 200, r.text
    order = await manual_order_of(console, incident_id)
    assert (order["eta_s"], order["expected_at"]) == (None, None)


def _placed(url: str, team_id: str) -> bool:
    client = sync_redis.Redis.from_url(url)
    try:
        return bool(client.hget(f"dispatch:unit:{team_id}", "lat"))
    finally:
        client.close()
