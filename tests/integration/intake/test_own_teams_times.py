"""A reporting system's view of its own incident (intake's `GET /v1/incidents/{id}`) says of
each team sent when it was assigned, acknowledged, en route, on scene, resolved or handed
over, as a linked report's `linked_incident` says of the incident it joined, and from the
same events (incident.updated's assignments and entries, order.withdrawn): a 110 system's
caller asks when they will come, its supervisors measure response times. On a real Redis:
intake alone, fed dispatch's events; and intake with dispatch, for the whole journey."""

from __future__ import annotations

import json
from typing import Any

from shared import streams
from shared.events import OrderWithdrawn, TimelineEntry
from tests.helpers import poll_until
from tests.integration.intake.test_linked_view import (
    ROOM_SAID,
    TEAM_SAID,
    a_call_and_a_door_alarm,
    at,
    guard,
    guard_goes,
    leaks,
    read_all,
    updated,
    view,
    when,
)
from tests.integration.intake.test_linked_view_of_a_joint_response import joint_response, police
from tests.integration.intake.test_stood_down_and_late_view import a_fight
from tests.integration.stream_probes import DISTRICT, running
from tests.integration.test_dispatch_event_readers import D_ADMIN, both, respond

TIMES = ("assigned_at", "acknowledged_at", "en_route_at", "on_scene_at", "resolved_at",
         "handed_over_at")


def times(team: dict[str, Any]) -> list[Any]:
    return [when(team[name]) for name in TIMES]


async def test_a_110_call_s_own_view_says_when_its_team_came_and_resolved_it(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        call_110, doors, parent, child = await a_call_and_a_door_alarm(svc)
        for event in guard_goes(parent):
            await svc.publish(streams.INCIDENT_UPDATED, event)
        await read_all(svc)

        mine = await view(svc, call_110, parent)
        [team] = mine["teams"]
        # what the view said of the team before, as it said it
        assert {k: team[k] for k in ("order_id", "team_id", "team_name", "agency_kind",
                                     "status", "eta_s")} == guard("resolved").model_dump()
        assert times(team) == [at(1), at(2), None, at(5), at(9), None]
        # the team's and the command room's words stay theirs
        assert leaks(json.dumps(mine["teams"])) == []
        assert TEAM_SAID not in json.dumps(mine) and ROOM_SAID not in json.dumps(mine)
        # the same times a report linked to it is shown
        [theirs] = (await view(svc, doors, child))["linked_incident"]["teams"]
        assert times(theirs) == times(team)


async def test_each_team_of_a_joint_response_read_backwards_and_twice_has_its_first_times(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        call_110, _, parent, _ = await a_call_and_a_door_alarm(svc)
        events = joint_response(parent)
        for event in [*reversed(events), *events]:
            await svc.publish(streams.INCIDENT_UPDATED, event)
        await read_all(svc)
        teams = (await view(svc, call_110, parent))["teams"]
        assert [(t["order_id"], t["team_id"], t["status"]) for t in teams] == [
            ("ord-1", "guard-7", "acknowledged"), ("ord-2", "police-3", "withdrawn"),
            ("ord-5", "police-5", "on_scene")]
        # sent with one entry naming no order: each from the first update listing it
        assert [times(t) for t in teams] == [
            [at(1), at(2), None, None, None, None],
            [at(1), None, None, None, None, None],
            [at(3.2), at(7), None, at(7), None, None]]


async def test_a_team_stood_down_has_no_time_it_did_not_reach(clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        call_110, _, parent, _ = await a_call_and_a_door_alarm(svc)
        car = police("offered", "ord-2", "police-3")
        await svc.publish(streams.INCIDENT_UPDATED, updated(parent, 1, "assigned", TimelineEntry(
            at=at(1), kind="status"), assignments=(guard("offered"), car), priority="P1"))
        await svc.publish(streams.INCIDENT_UPDATED, updated(parent, 2, "acknowledged",
                          TimelineEntry(at=at(2), kind="response", team_id="police-3",
                                        order_id="ord-2", detail="acknowledged"),
                          assignments=(guard("offered"), police("acknowledged")),
                          priority="P1"))
        await svc.publish(streams.INCIDENT_UPDATED, updated(parent, 3, "resolved", TimelineEntry(
            at=at(6), kind="response", team_id="guard-7", order_id="ord-1", detail="resolved"),
            assignments=(guard("resolved"), police("withdrawn")), priority="P1"))
        await svc.publish(streams.ORDER_WITHDRAWN, OrderWithdrawn(
            district=DISTRICT, order_id="ord-2", incident_id=parent, team_id="police-3",
            reason="closed", entry=TimelineEntry(
                at=at(6.1), kind="withdrawn", team_id="police-3", order_id="ord-2",
                detail="stood down: the incident was resolved by Guard post 7",
                detail_code="stood_down_resolved", detail_args={"team": "Guard post 7"})))
        await read_all(svc)
        await poll_until(lambda: svc.drained(streams.ORDER_WITHDRAWN.name),
                         "order.withdrawn read")
        v = await view(svc, call_110, parent)
        assert [e["kind"] for e in v["timeline"]][-1] == "withdrawn"
        guard_team, car_team = v["teams"]
        assert times(guard_team) == [at(1), at(6), None, None, at(6), None]
        assert car_team["status"] == "withdrawn"
        assert times(car_team) == [at(1), at(2), None, None, None, None]


async def test_the_view_documents_each_team_s_times(clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        spec = (await svc.client.get("/openapi.json")).json()
        schemas = spec["components"]["schemas"]
        items = schemas["IncidentView"]["properties"]["teams"]["items"]
        team = schemas[items["$ref"].rsplit("/", 1)[-1]]["properties"]
        for name in ("order_id", "team_id", "team_name", "agency_kind", "status", "eta_s",
                     *TIMES):
            assert name in team, name
        get = spec["paths"]["/v1/incidents/{incident_id}"]["get"]
        assert "on scene" in get["description"].split("linked")[0], get["description"]


async def test_with_dispatch_the_110_call_s_view_says_when_each_team_came(
        clean_redis: str) -> None:
    async with both(clean_redis) as (intake, console, broker, key):
        incident_id, police_order, guard_order = await a_fight(clean_redis, intake, key, broker)
        await respond(broker, police_order, "acknowledged", "en_route", "on_scene", "resolved")

        async def ended() -> dict[str, Any] | None:
            r = await intake.get(f"/v1/incidents/{incident_id}", headers=key)
            assert r.status_code == 200, r.text
            return r.json() if r.json()["status"] == "resolved" else None

        mine = await poll_until(ended, "the 110 call's view of the resolved fight", 15)
        teams = {t["team_id"]: t for t in mine["teams"]}
        car = times(teams["pol"])
        assert None not in car[:5] and car[:5] == sorted(car[:5]), teams["pol"]
        assert car[5] is None
        # the guard on scene, stood down by the police's resolution: no resolution of its own
        post = times(teams["sec"])
        assert None not in (post[0], post[1], post[3]) and post[4:] == [None, None], teams["sec"]
        # as dispatch's own timeline has them
        r = await console.get(f"/v1/incidents/{incident_id}", headers=D_ADMIN)
        said = {(e.get("order_id"), e.get("detail")): when(e["at"])
                for e in r.json()["timeline"] if e["kind"] == "response"}
        assert car[3] == said[(police_order.order_id, "on_scene")]
        assert car[4] == said[(police_order.order_id, "resolved")]
        assert post[3] == said[(guard_order.order_id, "on_scene")]
