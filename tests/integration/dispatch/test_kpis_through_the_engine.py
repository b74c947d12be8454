"""The command room's KPIs driven through the real engine: answers redelivered or handled
out of order, and the command room acting while a team answers, count as what happened."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared import streams
from shared.events import IncidentReported, Location, OrderResponded, UnitStatus, utcnow
from tests.helpers import poll_until
from tests.integration import stream_probes as probes
from tests.integration.stream_probes import ADMIN, DISTRICT


def answer(order_id: str, incident_id: str, team: str, response: str,
           at: datetime) -> OrderResponded:
    return OrderResponded(district=DISTRICT, order_id=order_id, incident_id=incident_id,
                          team_id=team, member_id="m1", device_id="dev1",
                          response=response, occurred_at=at)  # type: ignore[arg-type]


async def stored(svc: probes.Service, incident_id: str) -> dict[str, str]:
    raw = await svc.redis.hgetall(f"dispatch:incident:{incident_id}")
    return {k.decode(): v.decode() for k, v in raw.items()}


async def kpis(svc: probes.Service) -> dict[str, Any]:
    r = await svc.client.get("/v1/kpis", headers=ADMIN, params={"district": DISTRICT})
    assert r.status_code == 200, r.text
    return r.json()


async def test_answers_handled_out_of_order_count_the_earliest_acknowledgement_and_arrival(
        clean_redis: str) -> None:
    async with probes.running("dispatch", clean_redis) as svc:
        team, incident_id, order_id = await probes.assigned_in_dispatch(svc, "ooo")
        now = utcnow()
        taken, there, done = (now + timedelta(seconds=s) for s in (5, 20, 40))
        # the team's answers in the order it gave them; the first two handled last (their
        # first attempt failed and the reclaimer took them up after the resolution)
        await svc.publish(streams.ORDER_RESPONDED, answer(order_id, incident_id, team,
                                                          "resolved", done))
        await poll_until(lambda: probes._is(probes.dispatch_status(svc, incident_id),
                                            "resolved"), "resolved")
        late = [answer(order_id, incident_id, team, response, at)
                for response, at in (("on_scene", there), ("acknowledged", taken))]
        for event in (*late, *late):  # each delivered twice: the second changes nothing
            await svc.publish(streams.ORDER_RESPONDED, event)
        await poll_until(lambda: svc.drained(streams.ORDER_RESPONDED.name), "answers handled")
        inc = await stored(svc, incident_id)
        assert datetime.fromisoformat(inc["first_ack_at"]) == taken
        assert datetime.fromisoformat(inc["first_on_scene_at"]) == there
        assert inc["status"] == "resolved"
        r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        view = r.json()
        said = [e["detail"] for e in view["timeline"] if e["kind"] == "response"]
        assert sorted(said) == ["acknowledged", "on_scene", "resolved"]  # each once
        [order] = view["orders"]
        assert order["state"] == "resolved"
        assert datetime.fromisoformat(order["on_scene_at"]) == there
        k = await kpis(svc)
        start = min(datetime.fromisoformat(inc["reported_at"]),
                    datetime.fromisoformat(inc["received_at"]))
        assert k["time_to_acknowledge_s"]["p50"] == (taken - start).total_seconds()
        assert k["time_to_scene_s"]["p50"] == (there - start).total_seconds()


async def test_a_resolution_given_before_the_command_room_closed_counts_as_resolved_on_site(
        clean_redis: str) -> None:
    async with probes.running("dispatch", clean_redis) as svc:
        team, incident_id, order_id = await probes.assigned_in_dispatch(svc, "cr")
        # the team resolves it on site; the command room, not seeing that yet, closes it,
        # and dispatch handles the close first
        resolved = answer(order_id, incident_id, team, "resolved", utcnow())
        r = await svc.client.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
        assert r.status_code in (200, 202, 204), r.text
        for _ in range(2):  # delivered twice: counted once
            await svc.publish(streams.ORDER_RESPONDED, resolved)
        await poll_until(lambda: svc.drained(streams.ORDER_RESPONDED.name), "answer handled")
        inc = await stored(svc, incident_id)
        assert inc["status"] == "closed"  # the command room's close stands
        k = await kpis(svc)
        assert k["resolved_on_site"] == 1 and k["resolved_on_site_share"] == 1.0
        assert k["handled_by_force"]["police:patrol"]["resolved_on_site"] == 1
        assert k["time_to_scene_s"]["count"] == 1
        r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        said = [e["detail"] for e in r.json()["timeline"] if e["kind"] == "response"]
        assert said == ["resolved"]


async def test_a_hand_over_given_before_the_command_room_closed_counts_as_handed_over(
        clean_redis: str) -> None:
    # The team hands the case over; the command room, not seeing that yet, closes it, and
    # dispatch handles the close first. The team did hand it over: the KPIs count it among
    # the hand-overs and the force that handled it, as a resolution read so is counted
    # resolved on site (it was in neither, and the street patrol's on-site share counted
    # only the resolutions read late). The close stands: no station order, nothing owed.
    async with probes.running("dispatch", clean_redis) as svc:
        team, incident_id, order_id = await probes.assigned_in_dispatch(svc, "ch")
        handed = answer(order_id, incident_id, team, "handover", utcnow())
        r = await svc.client.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
        assert r.status_code in (200, 202, 204), r.text
        for _ in range(2):  # delivered twice: counted once
            await svc.publish(streams.ORDER_RESPONDED, handed)
        await poll_until(lambda: svc.drained(streams.ORDER_RESPONDED.name), "answer handled")
        inc = await stored(svc, incident_id)
        assert inc["status"] == "closed"  # the command room's close stands
        k = await kpis(svc)
        assert (k["handed_over"], k["resolved_on_site"], k["resolved_on_site_share"]) == (
            1, 0, 0.0)
        assert k["handled_by_force"]["police:patrol"]["handed_over"] == 1
        assert (k["filings_overdue"], k["filings_overdue_unfiled"]) == (0, 0)
        r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        view = r.json()
        assert [e["detail"] for e in view["timeline"] if e["kind"] == "response"] == [
            "handover"]
        assert [o["kind"] for o in view["orders"]] == ["dispatch"]  # no station order
        r = await svc.client.get("/v1/incidents", headers=ADMIN,
                                 params={"problem": "filing_overdue"})
        assert r.json()["incidents"] == []


async def test_a_resolution_given_after_the_close_is_not_counted(clean_redis: str) -> None:
    async with probes.running("dispatch", clean_redis) as svc:
        team, incident_id, order_id = await probes.assigned_in_dispatch(svc, "ca")
        r = await svc.client.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
        assert r.status_code in (200, 202, 204), r.text
        # notify took it before it read the withdrawal: given once the order was withdrawn
        await svc.publish(streams.ORDER_RESPONDED, answer(
            order_id, incident_id, team, "resolved", utcnow() + timedelta(seconds=1)))
        await poll_until(lambda: svc.drained(streams.ORDER_RESPONDED.name), "answer handled")
        k = await kpis(svc)
        assert k["resolved_on_site"] == 0 and k["time_to_scene_s"]["count"] == 0
        assert k["by_status"] == {"closed": 1}


async def test_a_joint_responses_earlier_acknowledgement_handled_second_is_the_first(
        clean_redis: str) -> None:
    async with probes.running("dispatch", clean_redis) as svc:
        for team, kind in (("jr-police", "police"), ("jr-security", "security")):
            await svc.publish(streams.UNIT_STATUS, UnitStatus(
                district=DISTRICT, unit_id=team, status="available", agency_id=f"a-{kind}",
                agency_kind=kind, agency_role="patrol" if kind == "police" else None,
                mode="car", on_shift=True))
            await svc.publish(streams.UNIT_POSITION, probes.unit_position(team))
        await poll_until(lambda: probes._is(_placed(svc), 2), "both teams placed")
        incident_id = "inc-joint"
        await svc.publish(streams.INCIDENT_REPORTED, IncidentReported(
            district=DISTRICT, incident_id=incident_id, system_id="s1",
            external_ref=incident_id, category="violence", priority="P1",
            location=Location(lat=probes.HERE[0], lon=probes.HERE[1]), reported_at=utcnow()))

        async def two_orders() -> list[dict[str, Any]]:
            inc = await probes.dispatch_incident(svc, incident_id) or {}
            return inc.get("orders") if len(inc.get("orders") or ()) == 2 else []

        orders = {o["team_id"]: o["order_id"] for o in await poll_until(two_orders, "2 orders")}
        now = utcnow()
        first, second = now + timedelta(seconds=3), now + timedelta(seconds=9)
        # the security team acknowledged first; its answer is handled after the police's
        for team, at in (("jr-police", second), ("jr-security", first)):
            await svc.publish(streams.ORDER_RESPONDED,
                              answer(orders[team], incident_id, team, "acknowledged", at))
            await poll_until(lambda: svc.drained(streams.ORDER_RESPONDED.name), "handled")
        inc = await stored(svc, incident_id)
        assert datetime.fromisoformat(inc["first_ack_at"]) == first


async def _placed(svc: probes.Service) -> int:
    return sum(1 for u in (await probes.dispatch_units(svc)).values() if u["position"])
