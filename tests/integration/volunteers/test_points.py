"""Volunteer points from events: awarded once per event even when it is delivered twice."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream.redis import RedisBroker

from services.volunteers.domain.status import TeamState
from shared.events import IncidentClosed, Location, OrderIssued, OrderResponded, OrderWithdrawn

from .conftest import ADMIN, DISTRICT, Volunteers


def hazard_order(order_id: str = "ord_h", team_id: str = "t-vol",
                 category: str = "hazard_report") -> OrderIssued:
    return OrderIssued(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                       team_id=team_id, agency_kind="volunteer", category=category,
                       priority="P4", location=Location(lat=22.03, lon=108.03))


def resolved(order_id: str = "ord_h", team_id: str = "t-vol",
             member_id: str = "m-wang") -> OrderResponded:
    return OrderResponded(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                          team_id=team_id, member_id=member_id, response="resolved")


async def points_of(volunteers: Volunteers, device: dict[str, str]) -> dict:
    response = await volunteers.client.get("/v1/me/points", headers=device)
    assert response.status_code == 200
    return response.json()


async def backdate(volunteers: Volunteers, team_id: str, member_id: str, hours: float) -> None:
    """Move a member's check-in to `hours` ago (as if that much time had passed)."""
    key = f"roster:state:{team_id}"
    state = TeamState.model_validate_json(await volunteers.redis.hget(key, "state"))
    members = {**state.shift_members, member_id: datetime.now(UTC) - timedelta(hours=hours)}
    await volunteers.redis.hset(key, "state", state.model_copy(
        update={"shift_members": members}).model_dump_json())


async def wang_and_chen(volunteers: Volunteers, *, chen_on_shift: bool
                       ) -> tuple[dict[str, str], dict[str, str]]:
    """The district imported, two volunteers of t-vol enrolled, Wang (and Chen) on shift."""
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    for device in (wang, chen) if chen_on_shift else (wang,):
        await volunteers.client.post("/v1/me/shift/start", headers=device)
    return wang, chen


async def test_a_resolved_order_earns_points_once_even_when_delivered_twice(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    wang, chen = await wang_and_chen(volunteers, chen_on_shift=True)

    await publisher.publish(hazard_order(), stream="order.issued")
    await volunteers.consumed("order.issued")
    event = resolved()
    await publisher.publish(event, stream="order.responded")
    await publisher.publish(event, stream="order.responded")  # the same event_id again
    await volunteers.consumed("order.responded")
    # and dispatch's closing of the incident confirms the same hazard report
    await publisher.publish(IncidentClosed(district="d1", incident_id="inc_ord_h",
                                           final_status="resolved", resolved_by=("t-vol",),
                                           category="hazard_report"), stream="incident.closed")
    await volunteers.consumed("incident.closed")

    for device, member_id in ((wang, "m-wang"), (chen, "m-chen")):
        mine = await points_of(volunteers, device)
        assert mine["member_id"] == member_id and mine["balance"] == 13
        assert sorted((e["reason"], e["points"]) for e in mine["history"]) == [
            ("hazard_report", 3), ("resolved_order", 10)]
        assert {e["entry_id"] for e in mine["history"]} == {
            f"resolved:ord_h:{member_id}", f"hazard:inc_ord_h:{member_id}"}

    board = await volunteers.client.get("/v1/points/leaderboard", params={"district": "d1"},
                                        headers=ADMIN)
    assert [(e["member_id"], e["points"]) for e in board.json()["entries"]] == [
        ("m-wang", 13), ("m-chen", 13)] or [
        (e["member_id"], e["points"]) for e in board.json()["entries"]] == [
        ("m-chen", 13), ("m-wang", 13)]
    assert await volunteers.redis.llen("roster:points:history:m-wang") == 2


async def test_only_members_on_shift_of_a_volunteer_team_earn_points(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    officer = await volunteers.enrol("m-officer")
    await volunteers.client.post("/v1/me/shift/start", headers=wang)
    await volunteers.client.post("/v1/me/shift/start", headers=officer)

    await publisher.publish(hazard_order("ord_n", category="noise"), stream="order.issued")
    await publisher.publish(hazard_order("ord_p", "t-patrol", "noise"), stream="order.issued")
    await volunteers.consumed("order.issued")
    await publisher.publish(resolved("ord_n"), stream="order.responded")
    await publisher.publish(resolved("ord_p", "t-patrol", "m-officer"), stream="order.responded")
    await volunteers.consumed("order.responded")

    assert (await points_of(volunteers, wang))["balance"] == 10
    assert (await points_of(volunteers, chen))["balance"] == 0  # not checked in
    assert (await points_of(volunteers, officer))["balance"] == 0  # police earn no points
    board = await volunteers.client.get("/v1/points/leaderboard", params={"district": "d1"},
                                        headers=ADMIN)
    assert [e["member_id"] for e in board.json()["entries"]] == ["m-wang"]
    assert board.json()["entries"][0]["name"] == "Auntie Wang"


async def test_points_endpoints_are_for_their_callers(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    device = await volunteers.enrol("m-wang")
    assert (await volunteers.client.get("/v1/me/points", headers=ADMIN)).status_code == 403
    board = await volunteers.client.get("/v1/points/leaderboard", params={"district": "d1"},
                                        headers=device)
    assert board.status_code == 403
    missing = await volunteers.client.get("/v1/points/leaderboard", headers=ADMIN)
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "district"


async def test_an_order_a_phone_had_and_nobody_answered_in_time_costs_the_shift_two_points(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    wang, chen = await wang_and_chen(volunteers, chen_on_shift=False)
    # timed out on a phone; timed out before reaching any phone; closed by the command room
    for order_id, reason, delivered in (("ord_t", "timeout", True), ("ord_u", "timeout", False),
                                        ("ord_c", "closed", True)):
        await publisher.publish(hazard_order(order_id), stream="order.issued")
        await volunteers.consumed("order.issued")
        withdrawn = OrderWithdrawn(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                                   team_id="t-vol", reason=reason,  # type: ignore[arg-type]
                                   delivered=delivered)
        await publisher.publish(withdrawn, stream="order.withdrawn")
        await publisher.publish(withdrawn, stream="order.withdrawn")  # delivered twice
        await volunteers.consumed("order.withdrawn")

    mine = await points_of(volunteers, wang)
    assert mine["balance"] == -2  # the delivered timeout only
    assert [(e["entry_id"], e["reason"]) for e in mine["history"]] == [
        ("missed:ord_t:m-wang", "missed_order")]
    assert (await points_of(volunteers, chen))["balance"] == 0  # not on the shift


async def test_an_order_the_team_resolved_late_is_penalised_once_when_its_deadline_passed(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # dispatch's deadline fired as the team's late "resolved" came: both events exist, on
    # two streams, read in either order. Dispatch timed the order out before it read the
    # resolution, and ignores it: the routing timeout is the team's, and so are its 2,
    # once, whichever volunteers reads first (test_review_today.py: any answer ending it).
    wang, _ = await wang_and_chen(volunteers, chen_on_shift=False)
    for order_id, first in (("ord_r", "order.responded"), ("ord_w", "order.withdrawn")):
        await publisher.publish(hazard_order(order_id), stream="order.issued")
        await volunteers.consumed("order.issued")
        answer = resolved(order_id)
        timeout = OrderWithdrawn(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                                 team_id="t-vol", reason="timeout", delivered=True)
        events = [(answer, "order.responded"), (timeout, "order.withdrawn")]
        for event, stream in events if first == "order.responded" else events[::-1]:
            await publisher.publish(event, stream=stream)
            await volunteers.consumed(stream)
    history = {e["entry_id"]: e["points"] for e in (await points_of(volunteers, wang))["history"]}
    assert history.get("missed:ord_r:m-wang") == history.get("missed:ord_w:m-wang") == -2


async def test_the_coordinator_rewards_and_penalises_by_hand_once_per_key(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    wang = await volunteers.enrol("m-wang")
    url = "/v1/members/m-wang/points"
    reward = {"points": 20, "note": "found the lost child at the market",
              "adjustment_id": "coord-2026-12-05-1"}
    r = await volunteers.client.post(url, headers=ADMIN, json=reward)
    assert r.status_code == 201, r.text
    assert (r.json()["recorded"], r.json()["entry"]["entry_id"]) == (True, "adjust:coord-2026-12-05-1")
    again = await volunteers.client.post(url, headers=ADMIN, json=reward)  # a retry
    assert (again.status_code, again.json()["recorded"]) == (200, False)
    r = await volunteers.client.post(url, headers=ADMIN,
                                     json={"points": -5, "note": "missed the briefing"})
    assert r.status_code == 201, r.text

    mine = await points_of(volunteers, wang)
    assert mine["balance"] == 15
    assert [(e["reason"], e["points"], e["note"]) for e in mine["history"]] == [
        ("adjustment", -5, "missed the briefing"),
        ("adjustment", 20, "found the lost child at the market")]
    board = await volunteers.client.get("/v1/points/leaderboard", params={"district": "d1"},
                                        headers=ADMIN)
    assert [(e["member_id"], e["points"]) for e in board.json()["entries"]] == [("m-wang", 15)]

    for body, field in (({"points": 0, "note": "x"}, "points"),
                        ({"points": 101, "note": "x"}, "points"),
                        ({"points": 5, "note": " "}, "note"),
                        ({"points": 5, "note": "x", "adjustment_id": "a b"}, "adjustment_id")):
        r = await volunteers.client.post(url, headers=ADMIN, json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, (body, r.text)
    r = await volunteers.client.post(url, headers=ADMIN, json={**reward, "points": 30})
    assert r.status_code == 409  # that key was used for another adjustment
    r = await volunteers.client.post("/v1/members/m-officer/points", headers=ADMIN,
                                     json={"points": 5, "note": "x"})
    assert r.status_code == 409  # police earn no points
    r = await volunteers.client.post("/v1/members/m-nobody/points", headers=ADMIN,
                                     json={"points": 5, "note": "x"})
    assert r.status_code == 404
    r = await volunteers.client.post(url, headers=wang, json={"points": 100, "note": "me"})
    assert r.status_code == 403  # a member's device token gives no points
    audit = await volunteers.client.get("/v1/admin/audit", headers=ADMIN)
    adjusted = [e for e in audit.json()["entries"] if e["action"] == "points.adjust"]
    assert len(adjusted) == 2 and all("lost child" not in e["detail"] for e in adjusted)


async def test_a_confirmed_hazard_pays_its_reporting_volunteer_once_and_nobody_else(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    wang, chen = await wang_and_chen(volunteers, chen_on_shift=False)
    officer = await volunteers.enrol("m-officer")
    closings = [("inc_a", "resolved", "m-chen"), ("inc_a", "resolved", "m-chen"),  # twice
                ("inc_b", "closed", "m-chen"),  # closed by the command room: not confirmed
                ("inc_c", "resolved", "m-officer")]  # police earn no points
    for incident_id, final, reporter in closings:
        await publisher.publish(IncidentClosed(
            district="d1", incident_id=incident_id, final_status=final,  # type: ignore[arg-type]
            category="hazard_report", reported_by_member=reporter), stream="incident.closed")
    await volunteers.consumed("incident.closed")

    mine = await points_of(volunteers, chen)
    assert [(e["entry_id"], e["points"]) for e in mine["history"]] == [("hazard:inc_a:m-chen", 3)]
    assert (await points_of(volunteers, officer))["balance"] == 0
    assert (await points_of(volunteers, wang))["balance"] == 0  # on shift, but not the reporter


async def test_hazard_points_go_to_the_shift_that_resolved_it_when_the_answer_overtook_the_order(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Wang's team resolved the hazard before volunteers had read the order (two streams), so
    # the resolution alone could not know it was a hazard report; she checked out and Chen
    # checked in before dispatch's closing confirmed it. The 3 are Wang's, not Chen's.
    wang, chen = await wang_and_chen(volunteers, chen_on_shift=False)
    await publisher.publish(resolved(), stream="order.responded")
    await volunteers.consumed("order.responded")
    await publisher.publish(hazard_order(), stream="order.issued")
    await volunteers.consumed("order.issued")
    assert (await volunteers.client.post("/v1/me/shift/end", headers=wang)).status_code == 200
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    closed = IncidentClosed(district="d1", incident_id="inc_ord_h", final_status="resolved",
                            resolved_by=("t-vol",), category="hazard_report")
    await publisher.publish(closed, stream="incident.closed")
    await publisher.publish(closed, stream="incident.closed")  # delivered twice
    await volunteers.consumed("incident.closed")

    mine = await points_of(volunteers, wang)
    assert sorted((e["entry_id"], e["points"]) for e in mine["history"]) == [
        ("hazard:inc_ord_h:m-wang", 3), ("resolved:ord_h:m-wang", 10)]
    assert mine["balance"] == 13
    assert (await points_of(volunteers, chen))["history"] == []


async def test_a_hazard_closed_before_its_resolution_was_read_pays_the_shift_that_resolved_it(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # incident.closed read before the team's "resolved" (and the order itself never read):
    # the closing finds no resolution yet, so the resolution pays when it comes, to those
    # on the shift then (Chen checked in in between).
    wang, chen = await wang_and_chen(volunteers, chen_on_shift=False)
    await publisher.publish(IncidentClosed(
        district="d1", incident_id="inc_ord_h", final_status="resolved", resolved_by=("t-vol",),
        category="hazard_report"), stream="incident.closed")
    await volunteers.consumed("incident.closed")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    answer = resolved()
    await publisher.publish(answer, stream="order.responded")
    await publisher.publish(answer, stream="order.responded")  # delivered twice
    await volunteers.consumed("order.responded")

    for device, member_id in ((wang, "m-wang"), (chen, "m-chen")):
        mine = await points_of(volunteers, device)
        assert sorted((e["entry_id"], e["points"]) for e in mine["history"]) == [
            (f"hazard:inc_ord_h:{member_id}", 3), (f"resolved:ord_h:{member_id}", 10)]


async def test_a_member_moved_away_and_back_within_one_shift_is_paid_for_both_stints(
        volunteers: Volunteers) -> None:
    """Uncle Chen patrols 2 h with t-vol, is moved to t-vol2 by an import (paid 10 for those
    2 h), is moved back the same day, checks in again to the same, still running shift and
    patrols 1 h more: the check-out pays that second stint too (5 more), not just the first
    (both once had the id `patrol:<shift>:<member>`, and the ledger kept only the first)."""
    wang, chen = await wang_and_chen(volunteers, chen_on_shift=True)
    client = volunteers.client
    await backdate(volunteers, "t-vol", "m-chen", 2)
    moved: dict[str, Any] = copy.deepcopy(DISTRICT)
    moved["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                           "mode": "foot"})
    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)
    assert (await points_of(volunteers, chen))["balance"] == 10
    await volunteers.import_district(DISTRICT)  # back to t-vol, whose shift still runs
    assert (await client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    await backdate(volunteers, "t-vol", "m-chen", 1)
    assert (await client.post("/v1/me/shift/end", headers=chen)).status_code == 200
    points = await points_of(volunteers, chen)
    assert points["balance"] == 15, [(e["reason"], e.get("minutes")) for e in points["history"]]
    assert [e["minutes"] for e in points["history"]] == [60, 120]


async def test_a_device_token_is_told_of_a_wrong_field_before_it_is_refused(
    volunteers: Volunteers,
) -> None:
    # DESIGN: 400/422 before 403. Adjustments are the admin's: a member's phone is refused,
    # once what it sent is right.
    await volunteers.import_district()
    wang = await volunteers.enrol("m-wang")
    url, wrong = "/v1/members/m-wang/points", {"points": 101, "note": "me"}
    assert (await volunteers.client.post(url, json=wrong)).status_code == 401
    for who in (wang, ADMIN):
        r = await volunteers.client.post(url, headers=who, json=wrong)
        assert (r.status_code, r.json()["error"].get("field")) == (422, "points"), r.text
        # neither a reward nor a penalty: wrong input as well, though within the bounds
        r = await volunteers.client.post(url, headers=who, json={"points": 0, "note": "me"})
        assert (r.status_code, r.json()["error"]) == (422, {
            "code": "invalid_field", "message": "points must not be 0", "field": "points"}), r.text
    r = await volunteers.client.post(url, headers=wang, json={"points": 100, "note": "me"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    assert (await points_of(volunteers, wang))["balance"] == 0


async def test_a_hazard_resolution_read_after_its_timeout_pays_its_shift_the_3_as_read_before(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Wang resolves the hazard by the deadline with Chen on the shift; dispatch, its answers
    # behind, times the order out and sends the aunties again (Chen has gone home), and
    # Wang's second "resolved" closes the incident. Volunteers reads her first resolution
    # last: Chen was on the shift that resolved it, and is paid its 10 and the hazard's 3,
    # as he would be had volunteers read it before the timeout.
    wang, chen = await wang_and_chen(volunteers, chen_on_shift=True)
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    first = hazard_order().model_copy(update={"ack_by": deadline})
    await publisher.publish(first, stream="order.issued")
    await volunteers.consumed("order.issued")
    in_time = resolved().model_copy(update={"occurred_at": datetime.now(UTC)})
    await publisher.publish(OrderWithdrawn(
        district="d1", order_id="ord_h", incident_id="inc_ord_h", team_id="t-vol",
        reason="timeout", delivered=True, occurred_at=deadline + timedelta(minutes=2)),
        stream="order.withdrawn")
    await volunteers.consumed("order.withdrawn")
    assert (await volunteers.client.post("/v1/me/shift/end", headers=chen)).status_code == 200
    again = hazard_order("ord_h2").model_copy(update={"incident_id": "inc_ord_h"})
    await publisher.publish(again, stream="order.issued")
    await volunteers.consumed("order.issued")
    await publisher.publish(resolved("ord_h2").model_copy(update={"incident_id": "inc_ord_h"}),
                            stream="order.responded")
    await volunteers.consumed("order.responded")
    await publisher.publish(IncidentClosed(
        district="d1", incident_id="inc_ord_h", final_status="resolved", resolved_by=("t-vol",),
        category="hazard_report"), stream="incident.closed")
    await volunteers.consumed("incident.closed")
    for _ in range(2):  # read last, and again
        await publisher.publish(in_time, stream="order.responded")
        await volunteers.consumed("order.responded")

    mine = await points_of(volunteers, chen)
    assert sorted((e["entry_id"], e["points"]) for e in mine["history"]
                  if e["reason"] != "patrol") == [
        ("hazard:inc_ord_h:m-chen", 3), ("missed:ord_h:m-chen", -2),
        ("missed_reversed:ord_h:m-chen", 2), ("resolved:ord_h:m-chen", 10)]


async def test_the_coordinator_reads_a_volunteers_points_to_answer_a_dispute(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    """A volunteer who disputes their balance calls the coordinator, who holds the admin
    token, not their phone: the coordinator reads the same balance and history as the
    member's own page, page by page, with the reason of each entry."""
    wang, _ = await wang_and_chen(volunteers, chen_on_shift=False)
    await publisher.publish(hazard_order(), stream="order.issued")
    await volunteers.consumed("order.issued")
    await publisher.publish(resolved(), stream="order.responded")
    await volunteers.consumed("order.responded")
    for n, (points, note) in enumerate(((5, "anti-fraud leaflets"), (-3, "late for briefing"))):
        r = await volunteers.client.post("/v1/members/m-wang/points", headers=ADMIN, json={
            "points": points, "note": note, "adjustment_id": f"dispute-{n}"})
        assert r.status_code == 201, r.text

    url = "/v1/members/m-wang/points"
    r = await volunteers.client.get(url, headers=ADMIN)
    assert r.status_code == 200, r.text
    theirs = r.json()
    mine = await points_of(volunteers, wang)
    assert (theirs["member_id"], theirs["name"], theirs["team_id"]) == (
        "m-wang", "Auntie Wang", "t-vol")
    assert theirs["balance"] == mine["balance"] == 12
    assert theirs["history"] == mine["history"]
    assert [(e["reason"], e["points"]) for e in theirs["history"]] == [
        ("adjustment", -3), ("adjustment", 5), ("resolved_order", 10)]
    assert sum(e["points"] for e in theirs["history"]) == theirs["balance"]
    assert (theirs["brought_forward"], theirs["count"]) == (0, 3)  # nothing older dropped
    first = (await volunteers.client.get(url, headers=ADMIN, params={"limit": 2})).json()
    rest = (await volunteers.client.get(url, headers=ADMIN,
                                        params={"limit": 2, "before": first["next"]})).json()
    assert first["history"] + rest["history"] == theirs["history"] and rest["next"] is None

    assert (await volunteers.client.get(url, headers=wang)).status_code == 403
    r = await volunteers.client.get("/v1/members/m-nobody/points", headers=ADMIN)
    assert r.status_code == 404
    r = await volunteers.client.get(url, headers=ADMIN, params={"limit": 0})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "limit")
