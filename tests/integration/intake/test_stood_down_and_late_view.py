"""What a reporting system's own view of its incident (intake's `GET /v1/incidents/{id}`)
says of two things dispatch writes on its timeline with no incident.updated of their own: a
team stood down because what its order was for ended (another team resolved the incident or
handed it over, the command room closed it, the order it backed ended), and a report that
reached dispatch late (`received_at`, `late_by_s` and the `reported_late` note, as dispatch's
own view has them). The first from order.withdrawn, which carries the withdrawal's entry, the
second from the incident's first incident.updated. On a real Redis: intake alone, fed
dispatch's events; and intake with dispatch, for the whole journey."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared import streams
from shared.events import Evidence, IncidentUpdated, OrderWithdrawn, TimelineEntry, utcnow
from tests.helpers import poll_until
from tests.integration.dispatch.test_engine import DISTRICT as D
from tests.integration.dispatch.test_engine import team, wait_for_units
from tests.integration.intake.test_linked_view import a_system, report, view
from tests.integration.stream_probes import DISTRICT, Service, running
from tests.integration.test_dispatch_event_readers import (
    D_ADMIN,
    SCENE,
    both,
    orders_for,
    respond,
)


async def read_all(svc: Service) -> None:
    for stream in (streams.INCIDENT_UPDATED, streams.ORDER_WITHDRAWN):
        await poll_until(lambda s=stream.name: svc.drained(s), f"{stream.name} read")


def stood_down(incident_id: str, order_id: str, **entry: Any) -> OrderWithdrawn:
    return OrderWithdrawn(
        district=DISTRICT, order_id=order_id, incident_id=incident_id, team_id="pol-3",
        reason="closed", entry=TimelineEntry(
            kind="withdrawn", team_id="pol-3", order_id=order_id,
            detail="stood down: the incident was resolved by Guard post 7",
            detail_code="stood_down_resolved", detail_args={"team": "Guard post 7"}, **entry))


async def test_a_team_stood_down_is_on_the_reporting_system_s_timeline_once(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        key = await a_system(svc, "110")
        incident_id = (await report(svc, key, "110-1"))["incident_id"]
        # its team's words and evidence are never a reporting system's (as for updates)
        event = stood_down(incident_id, "ord-1", note="his brother Li Ming on the stairs",
                           evidence=(Evidence(kind="video", ref="bwc-li-ming.mp4"),))
        for _ in range(2):  # delivered again: once on the timeline
            await svc.publish(streams.ORDER_WITHDRAWN, event)
        # a withdrawal its own update says (a routing timeout, a take-back) carries none
        await svc.publish(streams.ORDER_WITHDRAWN, OrderWithdrawn(
            district=DISTRICT, order_id="ord-2", incident_id=incident_id, team_id="pol-4",
            reason="timeout"))
        # nor is an incident intake does not keep made by one
        await svc.publish(streams.ORDER_WITHDRAWN, stood_down("inc_elsewhere", "ord-9"))
        await read_all(svc)
        timeline = (await view(svc, key, incident_id))["timeline"]
        said = [e for e in timeline if e["kind"] == "withdrawn"]
        assert [datetime.fromisoformat(e.pop("at")) for e in said] == [event.entry.at]
        assert said == [{
            "kind": "withdrawn", "status": None, "team_id": "pol-3", "order_id": "ord-1",
            "detail": "stood down: the incident was resolved by Guard post 7",
            "detail_code": "stood_down_resolved", "detail_args": {"team": "Guard post 7"}}]
        assert not await svc.redis.exists("intake:timeline:inc_elsewhere")


async def test_a_late_report_s_arrival_at_dispatch_is_in_the_reporting_system_s_view(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        key = await a_system(svc, "110")
        reported_at = utcnow() - timedelta(minutes=51)
        incident_id = (await report(svc, key, "110-1",
                                    reported_at=reported_at.isoformat()))["incident_id"]
        before = await view(svc, key, incident_id)
        assert (before["received_at"], before["late_by_s"]) == (None, None)
        received_at = reported_at + timedelta(minutes=50, seconds=4)
        note = TimelineEntry(at=received_at, kind="note", detail="reported at 20:10, 50 min "
                             "before it reached dispatch: the scene may have changed since",
                             detail_code="reported_late",
                             detail_args={"minutes": "50", "reported_at": reported_at.isoformat()})
        first = IncidentUpdated(
            district=DISTRICT, incident_id=incident_id, seq=1, status="assigned", priority="P2",
            entry=TimelineEntry(at=received_at + timedelta(seconds=1), kind="offer",
                                team_id="pol-3", order_id="ord-1"),
            received_at=received_at, late_by_s=3004, late_note=note)
        later = IncidentUpdated(
            district=DISTRICT, incident_id=incident_id, seq=2, status="acknowledged",
            priority="P2", entry=TimelineEntry(kind="response", team_id="pol-3",
                                               order_id="ord-1", detail="acknowledged"))
        for event in (later, first, first):  # out of order, and again: the same view
            await svc.publish(streams.INCIDENT_UPDATED, event)
        await read_all(svc)
        seen = await view(svc, key, incident_id)
        assert datetime.fromisoformat(seen["received_at"]) == received_at
        assert seen["late_by_s"] == 3004
        notes = [e for e in seen["timeline"] if e["kind"] == "note"]
        assert [(e["detail_code"], e["detail_args"]["minutes"]) for e in notes] == [
            ("reported_late", "50")]
        assert seen["status"] == "acknowledged"
        assert [e["kind"] for e in seen["timeline"]] == ["note", "offer", "response"]


# --- the whole journey: dispatch's events, intake's view -------------------------------------


async def a_fight(url: str, intake: Any, key: dict[str, str], broker: Any,
                  **extra: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A P1 fight: a police car and a guard post's order, the guard on scene."""
    await team(broker, "pol", kind="police", lat=22.8200, lon=108.3665)
    await team(broker, "sec", kind="security", lat=22.8172, lon=108.3665, mode="foot")
    await wait_for_units(url, 2)
    r = await intake.post("/v1/incidents", headers=key, json={
        "external_ref": "110-fight", "category": "violence", "district": D,
        "location": SCENE, **extra})
    assert r.status_code == 202, r.text
    incident_id = r.json()["incident_id"]
    orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 2
                              and orders_for(url, incident_id), "the car's and the guard's")
    police = next(o for o in orders if o.team_id == "pol")
    guard = next(o for o in orders if o.team_id == "sec")
    await respond(broker, guard, "acknowledged", "on_scene")
    return incident_id, police, guard


async def seen_stood_down(intake: Any, key: dict[str, str], incident_id: str,
                          count: int) -> dict[str, Any]:
    async def settled() -> dict[str, Any] | None:
        r = await intake.get(f"/v1/incidents/{incident_id}", headers=key)
        assert r.status_code == 200, r.text
        v = r.json()
        said = [e for e in v["timeline"] if (e.get("detail_code") or "").startswith("stood_down")]
        return v if len(said) >= count and v["status"] in ("resolved", "closed") else None

    return await poll_until(settled, "intake's view of the teams stood down", 15)


async def test_a_team_stood_down_by_another_team_s_resolution_is_seen_by_the_reporting_system(
        clean_redis: str) -> None:
    async with both(clean_redis) as (intake, console, broker, key):
        incident_id, police, guard = await a_fight(clean_redis, intake, key, broker)
        # the police resolve the P1 (a guard's resolution would leave it to them:
        # test_left_to_police.py), the guard on scene is stood down
        await respond(broker, police, "resolved")
        v = await seen_stood_down(intake, key, incident_id, 1)
        said = [e for e in v["timeline"] if e["kind"] == "withdrawn"]
        assert [(e["team_id"], e["order_id"], e["detail_code"], e["detail_args"], e["detail"])
                for e in said] == [(guard.team_id, guard.order_id, "stood_down_resolved",
                                    {"team": "pol"},
                                    "stood down: the incident was resolved by pol")]
        assert all("note" not in e and "evidence" not in e for e in v["timeline"])
        # as dispatch's own timeline says it, when it says it
        r = await console.get(f"/v1/incidents/{incident_id}", headers=D_ADMIN)
        theirs = [e for e in r.json()["timeline"] if e["kind"] == "withdrawn"]
        assert [datetime.fromisoformat(e["at"]) for e in theirs] == [
            datetime.fromisoformat(e["at"]) for e in said]
        assert {t["team_id"]: t["status"] for t in v["teams"]} == {"pol": "resolved",
                                                                   "sec": "withdrawn"}


async def test_the_teams_stood_down_by_the_command_room_s_close_are_seen_by_the_reporting_system(
        clean_redis: str) -> None:
    async with both(clean_redis) as (intake, console, broker, key):
        incident_id, police, guard = await a_fight(clean_redis, intake, key, broker)
        r = await console.post(f"/v1/incidents/{incident_id}/close", headers=D_ADMIN)
        assert r.status_code == 200, r.text
        v = await seen_stood_down(intake, key, incident_id, 2)
        said = sorted((e["team_id"], e["detail_code"], e["detail"])
                      for e in v["timeline"] if e["kind"] == "withdrawn")
        assert said == [(t, "stood_down_closed",
                         "stood down: the incident was closed by admin:admin")
                        for t in ("pol", "sec")]
        # the close's own entry names who closed it as it did before
        assert [e["detail"] for e in v["timeline"] if e["kind"] == "closed"] == [
            "closed by admin:admin"]


async def test_a_report_that_reached_dispatch_late_says_so_to_its_reporting_system(
        clean_redis: str) -> None:
    async with both(clean_redis) as (intake, console, broker, key):
        reported_at = utcnow() - timedelta(minutes=50)
        incident_id, _, _ = await a_fight(clean_redis, intake, key, broker,
                                          reported_at=reported_at.isoformat())

        async def arrival() -> dict[str, Any] | None:
            r = await intake.get(f"/v1/incidents/{incident_id}", headers=key)
            return r.json() if r.json()["received_at"] else None

        v = await poll_until(arrival, "dispatch's receipt in intake's view", 15)
        r = await console.get(f"/v1/incidents/{incident_id}", headers=D_ADMIN)
        theirs = r.json()
        assert datetime.fromisoformat(v["received_at"]) == datetime.fromisoformat(
            theirs["received_at"])
        assert v["late_by_s"] == theirs["late_by_s"]
        assert 50 * 60 <= v["late_by_s"] < 51 * 60
        [note] = [e for e in v["timeline"] if e.get("detail_code") == "reported_late"]
        [their_note] = [e for e in theirs["timeline"] if e.get("detail_code") == "reported_late"]
        assert {k: note[k] for k in ("kind", "detail", "detail_args")} == {
            k: their_note[k] for k in ("kind", "detail", "detail_args")}
        assert datetime.fromisoformat(note["at"]) == datetime.fromisoformat(their_note["at"])

        # one reported in time: when dispatch received it, and nothing late said
        r = await intake.post("/v1/incidents", headers=key, json={
            "external_ref": "110-noise", "category": "noise", "district": D,
            "location": {"lat": SCENE["lat"] + 0.05, "lon": SCENE["lon"]}})
        assert r.status_code == 202, r.text
        fresh = r.json()["incident_id"]

        async def fresh_arrival() -> dict[str, Any] | None:
            r = await intake.get(f"/v1/incidents/{fresh}", headers=key)
            return r.json() if r.json()["received_at"] else None

        v = await poll_until(fresh_arrival, "dispatch's receipt of the noise", 15)
        assert v["late_by_s"] is None
        assert not [e for e in v["timeline"] if e.get("detail_code") == "reported_late"]
