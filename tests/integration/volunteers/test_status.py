"""Team status: check-in/out and device choices, dispatch's orders, UnitStatus for each change."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from faststream.redis import RedisBroker

from shared.events import (
    Location,
    OrderIssued,
    OrderResponded,
    OrderWithdrawn,
    UnitStatus,
    utcnow,
)

from .conftest import ADMIN, DISTRICT, Volunteers

# DISTRICT with a team of the police station that owns the territory: it takes hand-overs
# and follow-ups.
STATION = copy.deepcopy(DISTRICT)
STATION["teams"].append({"id": "t-station", "agency_id": "p-station", "name": "Station desk",
                         "mode": "car", "skills": [], "home_zone_id": "z-territory"})
STATION["members"].append({"id": "m-desk", "name": "Officer Sun", "agency_id": "p-station",
                           "team_id": "t-station", "role": "officer"})


def issued(order_id: str = "ord_1", team_id: str = "t-patrol", category: str = "noise",
           kind: str = "police", order_kind: str = "dispatch") -> OrderIssued:
    return OrderIssued(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                       team_id=team_id, agency_kind=kind, category=category,  # type: ignore[arg-type]
                       kind=order_kind,  # type: ignore[arg-type]
                       priority="P4", location=Location(lat=22.05, lon=108.05))


def responded(response: str, order_id: str = "ord_1", team_id: str = "t-patrol",
              member_id: str = "m-officer") -> OrderResponded:
    return OrderResponded(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                          team_id=team_id, member_id=member_id,
                          response=response)  # type: ignore[arg-type]


async def team_status(volunteers: Volunteers, team_id: str = "t-patrol") -> str:
    team = (await volunteers.client.get(f"/v1/teams/{team_id}", headers=ADMIN)).json()
    return team["state"]["status"]


async def statuses(volunteers: Volunteers, team_id: str = "t-patrol") -> list[tuple[str, bool]]:
    return [(e.status, e.on_shift) for e in await volunteers.events("unit.status", UnitStatus)
            if e.unit_id == team_id]


async def test_the_device_drives_shift_and_status_and_each_change_is_published(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    device = await volunteers.enrol("m-officer")
    client = volunteers.client

    start = await client.post("/v1/me/shift/start", headers=device)
    assert start.status_code == 200 and start.json()["status"] == "available"
    assert (await client.put("/v1/me/status", json={"status": "busy"},
                             headers=device)).json()["status"] == "busy"
    same = await client.put("/v1/me/status", json={"status": "busy"}, headers=device)
    assert same.status_code == 200 and same.json()["status"] == "busy"
    assert (await client.put("/v1/me/status", json={"status": "available"},
                             headers=device)).status_code == 200
    end = await client.post("/v1/me/shift/end", headers=device)
    assert end.status_code == 200 and end.json()["status"] == "off_duty"

    refused = await client.put("/v1/me/status", json={"status": "busy"}, headers=device)
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == (
        "the team is off_duty; allowed from off_duty: available")
    invalid = await client.put("/v1/me/status", json={"status": "on_scene"}, headers=device)
    assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "status"

    assert await statuses(volunteers) == [("off_duty", False), ("available", True),
                                          ("busy", True), ("available", True),
                                          ("off_duty", False)]
    last = (await volunteers.events("unit.status", UnitStatus))[-1]
    assert (last.name, last.agency_id, last.agency_kind, last.agency_role, last.mode) == (
        "Patrol 1", "p-street", "police", "patrol", "car")
    assert (last.skills, last.home_zone_id) == (("first_aid",), "z-territory")

    me = (await client.get("/v1/me", headers=device)).json()
    assert (me["member"]["id"], me["team"]["id"], me["state"]["status"]) == (
        "m-officer", "t-patrol", "off_duty")


async def test_orders_drive_the_team_and_check_out_is_refused_while_one_is_open(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    await volunteers.import_district()
    device = await volunteers.enrol("m-officer")
    client = volunteers.client
    await client.post("/v1/me/shift/start", headers=device)

    await publisher.publish(issued(), stream="order.issued")
    await volunteers.consumed("order.issued")
    assert await team_status(volunteers) == "dispatched"
    last = (await volunteers.events("unit.status", UnitStatus))[-1]
    assert (last.status, last.order_id, last.on_shift) == ("dispatched", "ord_1", True)

    refused = await client.post("/v1/me/shift/end", headers=device)
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert "dispatched" in message and "ord_1" in message
    busy = await client.put("/v1/me/status", json={"status": "busy"}, headers=device)
    assert busy.status_code == 409 and "ord_1" in busy.json()["error"]["message"]

    for response, expected in (("acknowledged", "dispatched"), ("en_route", "en_route"),
                               ("on_scene", "on_scene"), ("resolved", "available")):
        await publisher.publish(responded(response), stream="order.responded")
        await volunteers.consumed("order.responded")
        assert await team_status(volunteers) == expected, response
    assert (await client.post("/v1/me/shift/end", headers=device)).status_code == 200
    assert await statuses(volunteers) == [
        ("off_duty", False), ("available", True), ("dispatched", True), ("en_route", True),
        ("on_scene", True), ("available", True), ("off_duty", False)]


async def test_redelivered_order_events_change_nothing(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    await volunteers.import_district()
    device = await volunteers.enrol("m-officer")
    await volunteers.client.post("/v1/me/shift/start", headers=device)
    order = issued()
    resolution = responded("resolved")
    for event, stream in ((order, "order.issued"), (order, "order.issued"),
                          (resolution, "order.responded"), (resolution, "order.responded"),
                          (order, "order.issued")):
        await publisher.publish(event, stream=stream)
        await volunteers.consumed(stream)
    assert await team_status(volunteers) == "available"
    assert await statuses(volunteers) == [("off_duty", False), ("available", True),
                                          ("dispatched", True), ("available", True)]


async def test_a_withdrawn_order_frees_the_team_and_an_order_outlasting_the_shift_ends_off_duty(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    await volunteers.import_district()
    device = await volunteers.enrol("m-guard")
    await volunteers.client.post("/v1/me/shift/start", headers=device)
    await publisher.publish(issued("ord_w", "t-guards", kind="security"), stream="order.issued")
    await volunteers.consumed("order.issued")
    await publisher.publish(OrderWithdrawn(district="d1", order_id="ord_w",
                                           incident_id="inc_ord_w", team_id="t-guards",
                                           reason="timeout"), stream="order.withdrawn")
    await volunteers.consumed("order.withdrawn")
    assert await team_status(volunteers, "t-guards") == "available"

    # an order reaching a team that is off duty (dispatch's view was stale) still holds it,
    # and when it is declined the team goes back off duty, not available
    await publisher.publish(issued("ord_x", "t-vol", kind="volunteer"), stream="order.issued")
    await volunteers.consumed("order.issued")
    assert await team_status(volunteers, "t-vol") == "dispatched"
    await publisher.publish(responded("declined", "ord_x", "t-vol", "m-wang"),
                            stream="order.responded")
    await volunteers.consumed("order.responded")
    assert await team_status(volunteers, "t-vol") == "off_duty"


async def test_orders_for_teams_not_on_the_roster_are_acknowledged_and_ignored(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    await volunteers.import_district()
    await publisher.publish(issued("ord_z", "t-ghost"), stream="order.issued")
    await volunteers.consumed("order.issued")
    assert await volunteers.redis.xlen("dlq.order.issued") == 0
    assert await volunteers.redis.xlen("unit.status") == 3


@pytest.mark.parametrize("order_kind", ["handover", "followup"])
async def test_a_station_hand_over_or_follow_up_leaves_the_team_available_to_dispatch(
        volunteers: Volunteers, publisher: RedisBroker, order_kind: str) -> None:
    """A hand-over (24 h to file it) or a follow-up visit (days) is the station's paperwork:
    dispatch does not claim the team for it, and volunteers must not tell dispatch the team
    is dispatched either, or dispatch's projection offers the station team no emergency (a
    dispute falling back to the station, a fraud warning only the zone's own station may
    take) until it is filed; its officers must also be able to check out."""
    await volunteers.import_district(STATION)
    desk = await volunteers.enrol("m-desk")
    client = volunteers.client
    assert (await client.post("/v1/me/shift/start", headers=desk)).status_code == 200
    task = issued("ord_ho", "t-station", category="dispute", order_kind=order_kind)
    task = task.model_copy(update={"instructions": "file the mediation",
                                   "filing_due": utcnow() + timedelta(hours=24)})
    visiting = responded("on_scene", "ord_ho", "t-station", "m-desk")
    for stream, event in (("order.issued", task), ("order.responded", visiting)):
        await publisher.publish(event, stream=stream)
        await volunteers.consumed(stream)
    last = [e for e in await volunteers.events("unit.status", UnitStatus)
            if e.unit_id == "t-station"][-1]
    assert (last.status, last.on_shift, last.order_id) == ("available", True, None), (
        f"dispatch is told the station team is {last.status} for a filing task")
    team = (await client.get("/v1/teams/t-station", headers=ADMIN)).json()
    assert (team["state"]["status"], team["state"]["open_orders"]) == ("available", [])

    # It is still an order: its resolution is recorded once (a redelivery changes nothing).
    for _ in range(2):
        await publisher.publish(responded("resolved", "ord_ho", "t-station", "m-desk"),
                                stream="order.responded")
        await volunteers.consumed("order.responded")
    record = await volunteers.redis.get("roster:order:ord_ho")
    assert b'"final":"resolved"' in record and f'"kind":"{order_kind}"'.encode() in record
    # Nor does it hold the shift: an open one does not refuse the check-out.
    await publisher.publish(issued("ord_ho2", "t-station", order_kind=order_kind),
                            stream="order.issued")
    await volunteers.consumed("order.issued")
    assert (await client.post("/v1/me/shift/end", headers=desk)).status_code == 200
    assert await statuses(volunteers, "t-station") == [
        ("off_duty", False), ("available", True), ("off_duty", False)]
