"""A linked report's own view at intake (`GET /v1/incidents/{id}`, `linked_incident`): where
the incident it joined stands (status, priority, the teams sent and their times, when it
ended), kept current from dispatch's events, and never the other system's or anyone's words;
on a real Redis, intake in-process (and dispatch, for the whole journey)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from services.intake.api import REPORT_PATH
from shared import streams
from shared.events import Assignment, Evidence, IncidentUpdated, TimelineEntry, utcnow
from tests.helpers import poll_until
from tests.integration.dispatch.test_engine import DISTRICT as D
from tests.integration.dispatch.test_engine import team, wait_for_units
from tests.integration.stream_probes import ADMIN, DISTRICT, HERE, Service, running
from tests.integration.test_dispatch_event_readers import (
    D_ADMIN,
    SCENE,
    both,
    orders_for,
    post,
    respond,
)

NEAR = {"lat": HERE[0], "lon": HERE[1] + 0.0005}  # 50 m away: a duplicate report
CALLER = {"phone": "13800138000", "name": "Wang Wei"}
DESCRIPTION = "Wang Wei says a man with a crowbar is at unit 3"
TEAM_SAID = "suspect held, his brother Li Ming on the stairs"
ROOM_SAID = "caller is the landlord, 13800138000"


async def a_system(svc: Service, name: str) -> dict[str, str]:
    r = await svc.client.post("/v1/systems", headers=ADMIN,
                              json={"name": name, "districts": [DISTRICT]})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


async def report(svc: Service, key: dict[str, str], ref: str,
                 location: dict[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    r = await svc.client.post(REPORT_PATH, headers=key, json={
        "external_ref": ref, "category": "suspicious", "district": DISTRICT,
        "location": location or {"lat": HERE[0], "lon": HERE[1]}, **extra})
    assert r.status_code == 202, r.text
    return dict(r.json())


async def view(svc: Service, key: dict[str, str], incident_id: str) -> dict[str, Any]:
    r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=key)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def read_all(svc: Service) -> None:
    for stream in (streams.INCIDENT_UPDATED.name, streams.INCIDENT_CLOSED.name):
        await poll_until(lambda s=stream: svc.drained(s), f"{stream} read")


T0 = utcnow().replace(microsecond=0) - timedelta(minutes=30)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def guard(status: str, order_id: str = "ord-1", team_id: str = "guard-7") -> Assignment:
    return Assignment(order_id=order_id, team_id=team_id, team_name="Guard post 7",
                      agency_kind="security", status=status, eta_s=120.0)


def updated(incident_id: str, seq: int, status: str, entry: TimelineEntry, *,
            assignments: tuple[Assignment, ...] = (), priority: str = "P2") -> IncidentUpdated:
    return IncidentUpdated(district=DISTRICT, incident_id=incident_id, seq=seq, status=status,
                           priority=priority, assignments=assignments, entry=entry)


def guard_goes(incident_id: str) -> list[IncidentUpdated]:
    """Dispatch's updates of an incident one guard post answers and resolves, in order."""
    return [
        updated(incident_id, 1, "assigned", TimelineEntry(
            at=at(1), kind="offer", team_id="guard-7", order_id="ord-1",
            detail="dispatch order to Guard post 7 (security), ETA 2.0 min"),
            assignments=(guard("offered"),)),
        updated(incident_id, 2, "acknowledged", TimelineEntry(
            at=at(2), kind="response", team_id="guard-7", order_id="ord-1",
            detail="acknowledged"), assignments=(guard("acknowledged"),)),
        updated(incident_id, 3, "on_scene", TimelineEntry(
            at=at(5), kind="response", team_id="guard-7", order_id="ord-1", detail="on_scene",
            note=TEAM_SAID, evidence=(Evidence(kind="video", ref="bwc-li-ming.mp4"),)),
            assignments=(guard("on_scene"),)),
        updated(incident_id, 4, "resolved", TimelineEntry(
            at=at(9), kind="response", team_id="guard-7", order_id="ord-1", detail="resolved",
            note=TEAM_SAID), assignments=(guard("resolved"),)),
        updated(incident_id, 5, "resolved", TimelineEntry(
            at=at(12), kind="remark", detail="remark by admin:duty", note=ROOM_SAID),
            assignments=(guard("resolved"),)),
    ]


async def a_call_and_a_door_alarm(svc: Service) -> tuple[dict[str, str], dict[str, str],
                                                          str, str]:
    """A 110 call (with its caller and words) and a door-access alarm 50 m away, linked."""
    call_110 = await a_system(svc, "110")
    doors = await a_system(svc, "door access")
    parent = (await report(svc, call_110, "110-20261205-0042", caller=CALLER,
                           description=DESCRIPTION))["incident_id"]
    linked = await report(svc, doors, "door-17", NEAR, description="forced entry, gate 2")
    assert linked["status"] == "linked" and linked["linked_to"] == parent
    return call_110, doors, parent, linked["incident_id"]


def leaks(text: str) -> list[str]:
    said = ("Wang", "13800138000", "crowbar", "110-20261205-0042", "Li Ming", "bwc-li-ming",
            "landlord", "remark by")
    return [s for s in said if s in text]


async def test_a_door_alarm_linked_to_a_110_call_shows_who_went_and_how_it_ended(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        _, doors, parent, child = await a_call_and_a_door_alarm(svc)
        await svc.publish(streams.INCIDENT_UPDATED, updated(child, 1, "linked", TimelineEntry(
            at=at(0.5), kind="linked", detail=f"duplicate report of {parent}")))
        for event in guard_goes(parent):
            await svc.publish(streams.INCIDENT_UPDATED, event)
        await read_all(svc)

        mine = await view(svc, doors, child)
        assert mine["status"] == "linked" and mine["linked_to"] == parent
        assert mine["external_ref"] == "door-17"  # its own ref, never the 110 call's
        joined = mine["linked_incident"]
        assert joined["incident_id"] == parent
        assert (joined["status"], joined["priority"]) == ("resolved", "P2")
        assert when(joined["ended_at"]) == at(9)
        [team] = joined["teams"]
        assert (team["team_id"], team["team_name"], team["agency_kind"], team["status"]) == (
            "guard-7", "Guard post 7", "security", "resolved")
        assert when(team["assigned_at"]) == at(1) and when(team["acknowledged_at"]) == at(2)
        assert when(team["on_scene_at"]) == at(5) and when(team["resolved_at"]) == at(9)
        assert team["en_route_at"] is None
        assert leaks(json.dumps(mine)) == [], mine
        # the other incident itself stays the 110 call's
        r = await svc.client.get(f"/v1/incidents/{parent}", headers=doors)
        assert r.status_code == 403


async def test_events_read_out_of_order_or_twice_show_the_newest_state_and_first_times(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        _, doors, parent, child = await a_call_and_a_door_alarm(svc)
        events = guard_goes(parent)
        # the remark after the end first, then the rest backwards, each twice
        for event in [events[4], *reversed(events[:4]), *events]:
            await svc.publish(streams.INCIDENT_UPDATED, event)
        await read_all(svc)
        joined = (await view(svc, doors, child))["linked_incident"]
        assert joined["status"] == "resolved" and when(joined["ended_at"]) == at(9)
        [team] = joined["teams"]
        assert team["status"] == "resolved"
        assert [when(team[f]) for f in ("assigned_at", "acknowledged_at", "on_scene_at",
                                        "resolved_at")] == [at(1), at(2), at(5), at(9)]


async def test_a_revision_a_hand_over_and_a_close_are_each_seen_by_the_linked_report(
        clean_redis: str) -> None:
    station = Assignment(order_id="ord-2", team_id="station-3", team_name="Xinzhu station",
                         agency_kind="police", status="offered")
    async with running("intake", clean_redis) as svc:
        _, doors, parent, child = await a_call_and_a_door_alarm(svc)

        async def seen(seq: int, status: str, entry: TimelineEntry, priority: str,
                       *teams: Assignment) -> dict[str, Any]:
            await svc.publish(streams.INCIDENT_UPDATED, updated(
                parent, seq, status, entry, assignments=teams, priority=priority))
            await read_all(svc)
            joined = (await view(svc, doors, child))["linked_incident"]
            assert (joined["status"], joined["priority"]) == (status, priority), joined
            return dict(joined)

        await seen(1, "assigned", TimelineEntry(at=at(1), kind="offer", team_id="guard-7",
                                                order_id="ord-1"), "P2", guard("offered"))
        # the caller rings back: a weapon (the command room's revision, with its note)
        joined = await seen(2, "assigned", TimelineEntry(
            at=at(2), kind="revised", detail="priority P1; flags weapon by admin:duty",
            note=ROOM_SAID), "P1", guard("offered"))
        assert joined["ended_at"] is None
        await seen(3, "on_scene", TimelineEntry(
            at=at(4), kind="response", team_id="guard-7", order_id="ord-1", detail="on_scene"),
            "P1", guard("on_scene"))
        joined = await seen(4, "handed_over", TimelineEntry(
            at=at(8), kind="response", team_id="guard-7", order_id="ord-1", detail="handover",
            note=TEAM_SAID), "P1", guard("handover"), station)
        assert when(joined["ended_at"]) == at(8)
        first, second = joined["teams"]
        assert first["status"] == "handover" and when(first["handed_over_at"]) == at(8)
        assert when(first["acknowledged_at"]) == at(4)  # on scene without acknowledging
        assert second["team_id"] == "station-3" and second["status"] == "offered"
        joined = await seen(5, "closed", TimelineEntry(
            at=at(20), kind="closed", detail="closed by admin:duty"), "P1",
            guard("handover"), station.model_copy(update={"status": "withdrawn"}))
        assert when(joined["ended_at"]) == at(20)
        mine = await view(svc, doors, child)
        assert mine["status"] == "linked" and leaks(json.dumps(mine)) == [], mine


async def test_reports_of_several_systems_linked_to_one_incident_each_see_it_and_no_more(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        call_110, doors, parent, child = await a_call_and_a_door_alarm(svc)
        cameras = await a_system(svc, "video analytics")
        other = await report(svc, cameras, "cam-88", {"lat": HERE[0] + 0.0003, "lon": HERE[1]},
                             description="loitering near gate 2")
        assert other["linked_to"] == parent
        for event in guard_goes(parent)[:2]:
            await svc.publish(streams.INCIDENT_UPDATED, event)
        await read_all(svc)
        for key, own, ref in ((doors, child, "door-17"),
                              (cameras, other["incident_id"], "cam-88")):
            mine = await view(svc, key, own)
            assert mine["external_ref"] == ref
            assert mine["linked_incident"]["status"] == "acknowledged"
            assert [t["team_id"] for t in mine["linked_incident"]["teams"]] == ["guard-7"]
            assert leaks(json.dumps(mine)) == [] and "gate 2" not in json.dumps(mine)
            for theirs in {parent, child, other["incident_id"]} - {own}:
                r = await svc.client.get(f"/v1/incidents/{theirs}", headers=key)
                assert r.status_code == 403, (own, theirs)
        # the 110 call's own view is as it was; the admin sees the linked view too
        assert (await view(svc, call_110, parent))["linked_incident"] is None
        assert (await view(svc, call_110, parent))["external_ref"] == "110-20261205-0042"
        admin = await view(svc, ADMIN, child)
        assert admin["linked_incident"] == (await view(svc, doors, child))["linked_incident"]


async def test_a_report_dispatch_sent_out_as_its_own_shows_its_own_teams_only(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        _, doors, parent, child = await a_call_and_a_door_alarm(svc)
        await svc.publish(streams.INCIDENT_UPDATED, guard_goes(parent)[3])  # it had ended
        await svc.publish(streams.INCIDENT_UPDATED, updated(child, 1, "assigned", TimelineEntry(
            at=at(10), kind="offer", team_id="guard-9", order_id="ord-9"),
            assignments=(guard("offered", "ord-9", "guard-9"),)))
        await read_all(svc)
        mine = await view(svc, doors, child)
        assert mine["status"] == "assigned" and mine["linked_incident"] is None
        assert [t["team_id"] for t in mine["teams"]] == ["guard-9"]


async def test_once_the_joined_incident_is_no_longer_kept_the_report_says_so(
        clean_redis: str) -> None:
    # Dispatch's word on the door alarm never came (a dead letter): its record is kept
    # RECORDS_DAYS + RETENTION_DAYS, longer than the 110 call's after that one ended.
    async with running("intake", clean_redis, records_days=1 / 86400, retention_days=3) as svc:
        call_110, doors, parent, child = await a_call_and_a_door_alarm(svc)
        await svc.publish(streams.INCIDENT_UPDATED, guard_goes(parent)[3])
        await read_all(svc)

        async def parent_gone() -> bool:
            r = await svc.client.get(f"/v1/incidents/{parent}", headers=call_110)
            return r.status_code == 404

        await poll_until(parent_gone, "the ended 110 incident's record expired")
        mine = await view(svc, doors, child)
        assert mine["status"] == "linked" and mine["linked_to"] == parent
        assert mine["linked_incident"] is None


async def test_the_endpoint_documents_the_linked_view(clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        spec = (await svc.client.get("/openapi.json")).json()
        get = spec["paths"]["/v1/incidents/{incident_id}"]["get"]
        assert "linked_incident" in get["description"]
        schemas = spec["components"]["schemas"]
        view_schema = schemas["IncidentView"]["properties"]
        for name in ("incident_id", "external_ref", "status", "priority", "linked_to", "teams",
                     "timeline", "flagged", "reported_at", "trace_id", "linked_incident"):
            assert name in view_schema, name
        team = schemas["LinkedTeam"]["properties"]
        for name in ("assigned_at", "acknowledged_at", "on_scene_at", "resolved_at"):
            assert name in team, name
        assert "ended_at" in schemas["LinkedIncident"]["properties"]


async def test_with_dispatch_a_door_alarm_linked_to_a_110_call_follows_the_guard_it_sent(
        clean_redis: str) -> None:
    async with both(clean_redis) as (intake, console, broker, call_110):
        r = await intake.post("/v1/systems", headers=ADMIN,
                              json={"name": "door access", "districts": [D]})
        doors = {"Authorization": f"Bearer {r.json()['api_key']}"}
        await team(broker, "guard-7", kind="security", lat=22.8171, lon=108.3665)
        await wait_for_units(clean_redis, 1)
        r = await intake.post(REPORT_PATH, headers=call_110, json={
            "external_ref": "110-20261205-0042", "category": "suspicious", "district": D,
            "location": SCENE, "caller": CALLER, "description": DESCRIPTION})
        assert r.status_code == 202, r.text
        parent = r.json()["incident_id"]
        [order] = await poll_until(lambda: orders_for(clean_redis, parent), "the guard's order")
        linked = await post(intake, doors, "door-17", "suspicious")
        assert linked["status"] == "linked" and linked["linked_to"] == parent
        await respond(broker, order, "acknowledged", "on_scene")
        await respond(broker, order, "resolved", note=TEAM_SAID)

        async def ended() -> dict[str, Any] | None:
            r = await intake.get(f"/v1/incidents/{linked['incident_id']}", headers=doors)
            assert r.status_code == 200, r.text
            joined = r.json()["linked_incident"]
            return r.json() if joined and joined["status"] == "resolved" else None

        mine = await poll_until(ended, "the door alarm's view of the resolved incident", 15)
        joined = mine["linked_incident"]
        [guard_team] = joined["teams"]
        assert (guard_team["team_id"], guard_team["status"]) == ("guard-7", "resolved")
        times = [when(guard_team[f]) for f in ("assigned_at", "acknowledged_at", "on_scene_at",
                                               "resolved_at")]
        assert None not in times and times == sorted(times), guard_team
        assert when(joined["ended_at"]) == times[-1]
        assert mine["status"] == "linked" and leaks(json.dumps(mine)) == [], mine
        r = await intake.get(f"/v1/incidents/{parent}", headers=doors)
        assert r.status_code == 403


async def test_a_door_alarm_the_command_room_unlinks_is_an_incident_of_its_own_at_intake(
        clean_redis: str) -> None:
    # The door alarm was at the next building: the command room sends it a team of its own.
    # The door system then sees its own incident and team, not "linked" to the 110 call.
    async with both(clean_redis) as (intake, console, broker, call_110):
        r = await intake.post("/v1/systems", headers=ADMIN,
                              json={"name": "door access", "districts": [D]})
        doors = {"Authorization": f"Bearer {r.json()['api_key']}"}
        await team(broker, "guard-7", kind="security", lat=22.8171, lon=108.3665)
        await wait_for_units(clean_redis, 1)
        parent = (await post(intake, call_110, "110-20261205-0042", "suspicious"))["incident_id"]
        await poll_until(lambda: orders_for(clean_redis, parent), "the guard's order")
        linked = await post(intake, doors, "door-17", "suspicious")
        assert linked["status"] == "linked" and linked["linked_to"] == parent
        door = linked["incident_id"]
        await team(broker, "guard-8", kind="security", lat=22.8180, lon=108.3665)
        await wait_for_units(clean_redis, 2)

        async def judged() -> bool:
            r = await console.get(f"/v1/incidents/{door}", headers=D_ADMIN)
            return r.status_code == 200 and r.json()["status"] == "linked"

        await poll_until(judged, "dispatch's link of the door alarm")
        r = await console.post(f"/v1/incidents/{door}/assign", headers=D_ADMIN,
                               json={"team_id": "guard-8"})
        assert r.status_code == 200, r.text

        async def own() -> dict[str, Any] | None:
            r = await intake.get(f"/v1/incidents/{door}", headers=doors)
            assert r.status_code == 200, r.text
            return r.json() if r.json()["status"] == "assigned" else None

        mine = await poll_until(own, "the door alarm's own incident at intake", 15)
        assert (mine["linked_to"], mine["linked_incident"]) == (None, None), mine
        assert [t["team_id"] for t in mine["teams"]] == ["guard-8"]
        assert any(e["kind"] == "unlinked" and parent in e["detail"] for e in mine["timeline"])
        # its retry is answered as its own incident, not as a duplicate
        r = await intake.post(REPORT_PATH, headers=doors, json={
            "external_ref": "door-17", "category": "suspicious", "district": D,
            "location": SCENE, "flags": []})
        assert r.status_code == 200 and "linked_to" not in r.json(), r.text
