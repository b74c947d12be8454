"""Each team's record of the orders it was given over a period: the volunteer coordinator
(and the command room) finds the team that keeps declining or missing its orders without
opening every incident's timeline."""

from __future__ import annotations

from typing import Any

from shared import streams
from shared.events import UnitPosition, UnitStatus, utcnow
from tests.helpers import poll_until
from tests.integration import stream_probes as probes
from tests.integration.stream_probes import ADMIN, DISTRICT, HERE

from .test_reinforcement import make_due


def volunteers(team_id: str, lat: float) -> tuple[UnitStatus, UnitPosition]:
    return (UnitStatus(district=DISTRICT, unit_id=team_id, status="available", name=team_id,
                       agency_id="red-armbands", agency_kind="volunteer", mode="foot",
                       on_shift=True),
            UnitPosition(district=DISTRICT, unit_id=team_id, lat=lat, lon=HERE[1], at=utcnow()))


async def record(svc: probes.Service, **params: Any) -> dict[str, Any]:
    r = await svc.client.get("/v1/kpis/teams", headers=ADMIN,
                             params={"district": DISTRICT, **params})
    assert r.status_code == 200, r.text
    return r.json()


async def order_of(svc: probes.Service, incident_id: str, count: int) -> dict[str, Any]:
    async def made() -> dict[str, Any] | None:
        inc = await probes.dispatch_incident(svc, incident_id) or {}
        orders = inc.get("orders") or []
        return orders[count - 1] if len(orders) >= count else None

    return await poll_until(made, f"order {count} of {incident_id}")


async def ended(svc: probes.Service, incident_id: str, order_id: str, state: str) -> None:
    async def done() -> bool:
        inc = await probes.dispatch_incident(svc, incident_id) or {}
        return any(o["order_id"] == order_id and o["state"] == state
                   for o in inc.get("orders") or [])

    await poll_until(done, f"order {order_id} {state}")


async def test_a_teams_declines_and_missed_deadlines_are_counted_against_it(
        clean_redis: str) -> None:
    async with probes.running("dispatch", clean_redis) as svc:
        # the aunties' team nearest, the uncles' next: a hazard report goes to the nearest
        for team_id, lat in (("t-aunties", HERE[0] + 0.001), ("t-uncles", HERE[0] + 0.004)):
            status, position = volunteers(team_id, lat)
            await svc.publish(streams.UNIT_STATUS, status)
            await svc.publish(streams.UNIT_POSITION, position)

        async def placed() -> bool:
            units = await probes.dispatch_units(svc)
            return all(units.get(t, {}).get("position") for t in ("t-aunties", "t-uncles"))

        await poll_until(placed, "both teams placed")

        async def hazard(tag: str) -> tuple[str, dict[str, Any]]:
            incident_id = f"inc-{tag}"
            await svc.publish(streams.INCIDENT_REPORTED,
                              probes.incident_reported(incident_id, "hazard_report"))
            return incident_id, await order_of(svc, incident_id, 1)

        async def answer(incident_id: str, order: dict[str, Any], response: str) -> None:
            await svc.publish(streams.ORDER_RESPONDED, probes.order_responded(
                order["order_id"], incident_id, order["team_id"], response))

        # the aunties decline one, let another's deadline pass, and resolve a third; each
        # time the uncles take what they left
        first, order = await hazard("1")
        assert order["team_id"] == "t-aunties"
        await answer(first, order, "declined")
        await ended(svc, first, order["order_id"], "declined")
        uncles = await order_of(svc, first, 2)
        await answer(first, uncles, "resolved")
        await ended(svc, first, uncles["order_id"], "resolved")

        second, order = await hazard("2")
        assert order["team_id"] == "t-aunties"
        make_due(clean_redis, f"ack:{order['order_id']}")
        await ended(svc, second, order["order_id"], "timed_out")
        uncles = await order_of(svc, second, 2)
        await answer(second, uncles, "resolved")
        await ended(svc, second, uncles["order_id"], "resolved")

        third, order = await hazard("3")
        assert order["team_id"] == "t-aunties"
        await answer(third, order, "resolved")
        await ended(svc, third, order["order_id"], "resolved")

        answer_ = await record(svc)
        assert answer_["district"] == DISTRICT
        teams = {t["team_id"]: t for t in answer_["teams"]}
        assert [t["team_id"] for t in answer_["teams"]] == ["t-aunties", "t-uncles"]  # worst first
        aunties = teams["t-aunties"]
        assert (aunties["agency_kind"], aunties["agency_id"]) == ("volunteer", "red-armbands")
        assert {k: aunties[k] for k in ("orders", "declined", "timed_out", "resolved",
                                        "handed_over", "withdrawn", "open")} == {
            "orders": 3, "declined": 1, "timed_out": 1, "resolved": 1, "handed_over": 0,
            "withdrawn": 0, "open": 0}
        assert aunties["incidents"] == [first, second, third]
        assert {k: teams["t-uncles"][k] for k in ("orders", "declined", "timed_out",
                                                  "resolved")} == {
            "orders": 2, "declined": 0, "timed_out": 0, "resolved": 2}
        only = await record(svc, agency_kind="security")
        assert only["teams"] == []
        wrong = await svc.client.get("/v1/kpis/teams", headers=ADMIN,
                                     params={"district": DISTRICT, "agency_kind": "army"})
        assert (wrong.status_code, wrong.json()["error"]["field"]) == (422, "agency_kind")
