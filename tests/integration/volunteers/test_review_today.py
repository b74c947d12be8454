"""Today's changes to volunteers under review: points and penalties for those on the shift at
the event's time, when the events are read late (a restart, a backlog, dispatch catching up
after an outage)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from faststream.redis import RedisBroker

from services.volunteers.domain.status import (
    TeamState,
    end_shift,
    leave_shift,
    on_shift_at,
    start_shift,
)
from shared.events import (
    IncidentClosed,
    Location,
    OrderIssued,
    OrderResponded,
    OrderWithdrawn,
    UnitStatus,
)

from .conftest import ADMIN, DISTRICT, Volunteers


def vol_order(order_id: str, *, ack_by: datetime | None = None,
              category: str = "help_request") -> OrderIssued:
    return OrderIssued(district="d1", order_id=order_id, incident_id=f"inc_{order_id}",
                       team_id="t-vol", agency_kind="volunteer", category=category,
                       priority="P3", location=Location(lat=22.03, lon=108.03), ack_by=ack_by)


async def history(volunteers: Volunteers, device: dict[str, str]) -> list[tuple[str, float]]:
    r = await volunteers.client.get("/v1/me/points", headers=device)
    assert r.status_code == 200, r.text
    return sorted((e["reason"], e["points"]) for e in r.json()["history"])


# The three orders of arrival of an order's events that matter: its answer before its
# deadline's withdrawal, after it, and both before the order itself (its deadline learnt last).
ORDERS_OF_ARRIVAL = pytest.mark.parametrize("streams", [
    ("order.issued", "order.responded", "order.withdrawn"),
    ("order.issued", "order.withdrawn", "order.responded"),
    ("order.withdrawn", "order.responded", "order.issued"),
], ids=["answer-first", "timeout-first", "order-last"])


def answered_and_timed_out(
    answers: dict[str, tuple[str, datetime]], *, ack_by: datetime, withdrawn_at: datetime,
    withdrawn_ack_by: datetime | None = None,
) -> dict[str, list[Any]]:
    """Each order's events by stream: issued with its deadline `ack_by`, answered by Wang as
    `answers` says (response, when), and withdrawn for its deadline (`withdrawn_ack_by`:
    the one the withdrawal names, if any) at `withdrawn_at`."""
    events: dict[str, list[Any]] = {"order.issued": [], "order.responded": [],
                                    "order.withdrawn": []}
    for order_id, (response, at) in answers.items():
        events["order.issued"].append(vol_order(order_id, ack_by=ack_by))
        events["order.responded"].append(OrderResponded(
            district="d1", order_id=order_id, incident_id=f"inc_{order_id}", team_id="t-vol",
            member_id="m-wang", response=response, occurred_at=at))  # type: ignore[arg-type]
        events["order.withdrawn"].append(OrderWithdrawn(
            district="d1", order_id=order_id, incident_id=f"inc_{order_id}", team_id="t-vol",
            reason="timeout", delivered=True, ack_by=withdrawn_ack_by, occurred_at=withdrawn_at))
    return events


async def read_in_order(volunteers: Volunteers, publisher: RedisBroker,
                        streams: tuple[str, ...], events: dict[str, list[Any]]) -> None:
    """`events` read a stream at a time, in `streams`' order, each delivered twice; then all
    of them redelivered after the others."""
    for _ in range(2):
        for stream in streams:
            for event in events[stream]:
                await publisher.publish(event, stream=stream)
                await publisher.publish(event, stream=stream)
            await volunteers.consumed(stream)


async def test_a_deadline_judged_late_penalises_nobody_who_checked_in_after_it(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Wang is on shift when the order reaches the team's phones; its deadline passes with
    # no answer. Dispatch was down then: it withdraws the order (a routing timeout) only once
    # it is back, after Chen checked in. Chen joined a shift whose order was already past its
    # deadline: "an order nobody on the shift answered before its deadline" is not his.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    deadline = datetime.now(UTC)  # after Wang's check-in, before Chen's
    await publisher.publish(vol_order("ord_late", ack_by=deadline), stream="order.issued")
    await volunteers.consumed("order.issued")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200

    await publisher.publish(OrderWithdrawn(
        district="d1", order_id="ord_late", incident_id="inc_ord_late", team_id="t-vol",
        reason="timeout", delivered=True), stream="order.withdrawn")
    await volunteers.consumed("order.withdrawn")

    assert await history(volunteers, wang) == [("missed_order", -2)]
    assert await history(volunteers, chen) == []


async def test_a_deadline_judged_late_penalises_who_was_on_shift_then_also_back_and_gone_again(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Wang and Chen are on shift when the order's deadline passes unanswered. Dispatch was
    # down: before its withdrawal is read, Wang checked out, came back and checked out
    # again (Chen kept the shift and its order). Wang was on the shift at the deadline, as
    # Chen was; the same for his share of a resolution Chen gave then and read as late.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    for device in (wang, chen):
        assert (await volunteers.client.post("/v1/me/shift/start", headers=device)
                ).status_code == 200
    deadline = datetime.now(UTC)
    for order_id in ("ord_missed", "ord_done"):
        await publisher.publish(vol_order(order_id, ack_by=deadline), stream="order.issued")
    await volunteers.consumed("order.issued")
    for _ in range(2):
        for path in ("/v1/me/shift/end", "/v1/me/shift/start"):
            assert (await volunteers.client.post(path, headers=wang)).status_code == 200
    assert (await volunteers.client.post("/v1/me/shift/end", headers=wang)).status_code == 200

    await publisher.publish(OrderResponded(
        district="d1", order_id="ord_done", incident_id="inc_ord_done", team_id="t-vol",
        member_id="m-chen", response="resolved", occurred_at=deadline),
        stream="order.responded")
    await publisher.publish(OrderWithdrawn(
        district="d1", order_id="ord_missed", incident_id="inc_ord_missed", team_id="t-vol",
        reason="timeout", delivered=True, ack_by=deadline), stream="order.withdrawn")
    await volunteers.consumed("order.responded")
    await volunteers.consumed("order.withdrawn")

    for device in (wang, chen):
        assert await history(volunteers, device) == [("missed_order", -2),
                                                     ("resolved_order", 10)]


async def test_an_order_without_a_deadline_known_still_penalises_those_on_shift_by_its_withdrawal(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # An order recorded before deadlines were kept (or whose order.issued came after the
    # withdrawal): the withdrawal's own time is the bound, as before.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    await publisher.publish(vol_order("ord_old"), stream="order.issued")
    await volunteers.consumed("order.issued")
    await publisher.publish(OrderWithdrawn(
        district="d1", order_id="ord_old", incident_id="inc_ord_old", team_id="t-vol",
        reason="timeout", delivered=True), stream="order.withdrawn")
    await volunteers.consumed("order.withdrawn")
    assert await history(volunteers, wang) == [("missed_order", -2)]
    assert await history(volunteers, chen) == [("missed_order", -2)]


@ORDERS_OF_ARRIVAL
async def test_an_order_answered_by_its_deadline_and_timed_out_costs_the_shift_nothing(
    volunteers: Volunteers, publisher: RedisBroker, streams: tuple[str, ...],
) -> None:
    # Dispatch is back after an outage, its answers behind: its deadlines time out orders
    # Wang had acknowledged, declined or called backup to, in time (dispatch notes the
    # answer and counts no timeout of hers; the orders stay withdrawn). She missed nothing:
    # whichever event volunteers reads first, she keeps her points, a penalty already taken
    # is given back, and a redelivery of any of them takes or gives nothing again. An answer
    # after the deadline was too late: that order costs its 2 as before.
    await volunteers.import_district()
    wang = await volunteers.enrol("m-wang")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    answers = {"ord_ack": ("acknowledged", deadline - timedelta(seconds=30)),
               "ord_no": ("declined", deadline), "ord_late": ("acknowledged",
                                                          deadline + timedelta(seconds=1)),
               # "need backup" before acknowledging: an answer too (dispatch agrees)
               "ord_call": ("reinforce", deadline - timedelta(seconds=20))}
    await read_in_order(volunteers, publisher, streams, answered_and_timed_out(
        answers, ack_by=deadline, withdrawn_at=deadline + timedelta(minutes=2)))

    r = await volunteers.client.get("/v1/me/points", headers=wang)
    entries = [(e["entry_id"], e["reason"], e["points"]) for e in r.json()["history"]]
    assert r.json()["balance"] == -2
    assert ("missed:ord_late:m-wang", "missed_order", -2) in entries
    assert len(entries) == len({e[0] for e in entries})  # none twice
    for order_id in ("ord_ack", "ord_no", "ord_call"):
        of_it = sorted(e[1:] for e in entries if f":{order_id}:" in e[0])
        # read after the timeout, its penalty is given back; else none was taken
        assert of_it in ([], [("missed_order", -2), ("missed_order_reversed", 2)]), of_it
    if streams.index("order.withdrawn") < streams.index("order.responded"):
        assert ("missed_reversed:ord_ack:m-wang", "missed_order_reversed", 2) in entries


@ORDERS_OF_ARRIVAL
async def test_an_order_its_team_ended_after_the_deadline_and_timed_out_costs_the_shift_its_2(
    volunteers: Volunteers, publisher: RedisBroker, streams: tuple[str, ...],
) -> None:
    # Dispatch times the orders out at their deadline; Wang declines one, hands one over
    # and resolves one a second after it, before notify has read the withdrawal (then it
    # refuses any answer). Dispatch reads her answers after the timeout and ignores them:
    # the team's routing timeout stands (had it read them before its deadline fired, it
    # would have taken them and timed nothing out). Read first here, her answer ended the
    # order's record and the withdrawal found it ended and took nothing; read second, the
    # withdrawal took the 2. They stand whichever volunteers reads first, once.
    await volunteers.import_district()
    wang = await volunteers.enrol("m-wang")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    late = deadline + timedelta(seconds=1)
    answers = {"ord_no": ("declined", late), "ord_over": ("handover", late),
               "ord_done": ("resolved", late)}
    await read_in_order(volunteers, publisher, streams, answered_and_timed_out(
        answers, ack_by=deadline, withdrawn_at=deadline + timedelta(minutes=2)))

    r = await volunteers.client.get("/v1/me/points", headers=wang)
    entries = [(e["entry_id"], e["reason"], e["points"]) for e in r.json()["history"]]
    assert len(entries) == len({e[0] for e in entries})  # none twice
    for order_id in answers:
        missed = [e for e in entries if e[1].startswith("missed_order") and f":{order_id}:" in e[0]]
        assert missed == [(f"missed:{order_id}:m-wang", "missed_order", -2)], entries


@ORDERS_OF_ARRIVAL
async def test_an_order_its_team_resolved_and_dispatch_timed_out_pays_its_10_whichever_is_read_first(
    volunteers: Volunteers, publisher: RedisBroker, streams: tuple[str, ...],
) -> None:
    # Wang resolves one order by its deadline (dispatch, its answers behind, times it out all
    # the same) and one a second after it (before notify read the withdrawal, so it took her
    # answer). She went and resolved both: each pays its 10, as the resolution read before
    # the withdrawal always did; read after it, it paid nothing. The late one's 2 stand.
    await volunteers.import_district()
    wang = await volunteers.enrol("m-wang")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    answers = {"ord_in": ("resolved", deadline - timedelta(seconds=5)),
               "ord_late": ("resolved", deadline + timedelta(seconds=1))}
    await read_in_order(volunteers, publisher, streams, answered_and_timed_out(
        answers, ack_by=deadline, withdrawn_at=deadline + timedelta(minutes=2)))

    r = await volunteers.client.get("/v1/me/points", headers=wang)
    entries = [(e["entry_id"], e["points"]) for e in r.json()["history"]]
    assert len(entries) == len({e for e, _ in entries})  # none twice
    assert ("resolved:ord_in:m-wang", 10) in entries
    assert ("resolved:ord_late:m-wang", 10) in entries
    assert ("missed:ord_late:m-wang", -2) in entries
    assert r.json()["balance"] == 18, entries


@ORDERS_OF_ARRIVAL
async def test_the_sooner_deadline_of_a_raised_priority_is_the_one_a_timeout_is_judged_by(
    volunteers: Volunteers, publisher: RedisBroker, streams: tuple[str, ...],
) -> None:
    # A help request's order (P3: 120 s) is raised to P1 while unanswered: its deadline
    # comes sooner (order.amended, which volunteers does not read). Wang acknowledged after
    # that deadline, before the one order.issued gave; dispatch, back from an outage, timed
    # it out and counted her answer as late (not "answered in time"). Her 2 stand, as
    # dispatch's routing timeout does; Chen, who checked in after the sooner deadline,
    # missed nothing. An answer by the sooner deadline costs nothing, as before.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    sooner = datetime.now(UTC)  # after Wang's check-in, before Chen's
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    issued_by = sooner + timedelta(seconds=90)
    answers = {"ord_between": ("acknowledged", sooner + timedelta(seconds=10)),
               "ord_in_time": ("acknowledged", sooner - timedelta(seconds=10))}
    await read_in_order(volunteers, publisher, streams, answered_and_timed_out(
        answers, ack_by=issued_by, withdrawn_ack_by=sooner,
        withdrawn_at=issued_by + timedelta(minutes=2)))

    r = await volunteers.client.get("/v1/me/points", headers=wang)
    entries = sorted((e["entry_id"], e["points"]) for e in r.json()["history"])
    assert ("missed:ord_between:m-wang", -2) in entries
    assert all(not e.startswith("missed_reversed:ord_between") for e, _ in entries), entries
    assert r.json()["balance"] == -2, entries
    assert await history(volunteers, chen) == []


async def test_a_resolution_read_after_the_shift_ended_pays_everyone_who_was_on_it(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Volunteers restarts behind on its streams: Wang and Chen were on shift, were given a
    # hazard report, fenced it off (Wang answered resolved) and checked out; volunteers had
    # not yet read the order, so it let them. Chen checks in again for a new shift before
    # the backlog is read. Both were on the shift when Wang answered: both are paid, once,
    # and the new shift changes nothing.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    for device in (wang, chen):
        assert (await volunteers.client.post("/v1/me/shift/start", headers=device)
                ).status_code == 200
    answered_at = datetime.now(UTC)
    for device in (wang, chen):  # each checks out; Chen's, the last, ends the shift
        r = await volunteers.client.post("/v1/me/shift/end", headers=device)
        assert r.status_code == 200, r.text
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200

    await publisher.publish(vol_order("ord_h", category="hazard_report"), stream="order.issued")
    await volunteers.consumed("order.issued")
    answer = OrderResponded(district="d1", order_id="ord_h", incident_id="inc_ord_h",
                            team_id="t-vol", member_id="m-wang", response="resolved",
                            occurred_at=answered_at)
    for _ in range(2):  # and read twice: the same members, once
        await publisher.publish(answer, stream="order.responded")
        await volunteers.consumed("order.responded")
    await publisher.publish(IncidentClosed(  # dispatch's closing confirms the hazard report
        district="d1", incident_id="inc_ord_h", final_status="resolved", resolved_by=("t-vol",),
        category="hazard_report"), stream="incident.closed")
    await volunteers.consumed("incident.closed")

    paid = [("hazard_report", 3), ("resolved_order", 10)]
    assert [e for e in await history(volunteers, wang) if e[0] != "patrol"] == paid
    assert [e for e in await history(volunteers, chen) if e[0] != "patrol"] == paid


async def test_a_member_called_in_off_duty_is_paid_though_a_teammate_checked_in_meanwhile(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Nobody of the aunties is on shift; the command room assigns them by hand and rings
    # Wang at home. She acknowledges from her phone and goes. Chen checks in to come along.
    # Wang resolves it: she was called in off duty and did it, so she is paid, and Chen, on
    # the shift when it was resolved, is paid too. A check-in of a teammate must not take
    # the points of the member who answered.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    await publisher.publish(OrderIssued(
        district="d1", order_id="ord_m", incident_id="inc_ord_m", team_id="t-vol",
        agency_kind="volunteer", kind="manual", category="help_request", priority="P3",
        location=Location(lat=22.03, lon=108.03)), stream="order.issued")
    await volunteers.consumed("order.issued")

    def answer(response: str) -> OrderResponded:
        return OrderResponded(district="d1", order_id="ord_m", incident_id="inc_ord_m",
                              team_id="t-vol", member_id="m-wang", response=response)

    await publisher.publish(answer("acknowledged"), stream="order.responded")
    await volunteers.consumed("order.responded")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    for _ in range(2):  # redelivered: paid once
        await publisher.publish(answer("resolved"), stream="order.responded")
        await volunteers.consumed("order.responded")

    assert await history(volunteers, wang) == [("resolved_order", 10)]
    assert await history(volunteers, chen) == [("resolved_order", 10)]


async def test_a_member_off_shift_answering_an_order_of_a_team_on_shift_is_not_paid_for_it(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # The team is on shift (Chen); Wang, at home with the app open, taps "acknowledged".
    # The points of the resolution are the shift's: being called in off duty is not it.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=chen)).status_code == 200
    await publisher.publish(vol_order("ord_s"), stream="order.issued")
    await volunteers.consumed("order.issued")
    for member, response in (("m-wang", "acknowledged"), ("m-chen", "resolved")):
        await publisher.publish(OrderResponded(
            district="d1", order_id="ord_s", incident_id="inc_ord_s", team_id="t-vol",
            member_id=member, response=response), stream="order.responded")
        await volunteers.consumed("order.responded")
    assert await history(volunteers, wang) == []
    assert await history(volunteers, chen) == [("resolved_order", 10)]


async def test_a_member_moved_to_another_team_before_the_resolution_is_not_paid_for_it(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Wang, alone on the aunties' shift, acknowledges an order; the spreadsheet moves her
    # to t-vol2 while the order is out (the aunties keep their order, nobody on the shift).
    # Chen, at home, is rung and resolves it: he was called in and is paid. Wang left the
    # team before it was resolved: her acknowledgement earns her nothing of its resolution.
    await volunteers.import_district()
    doc = copy.deepcopy(DISTRICT)
    doc["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                         "mode": "foot"})
    await volunteers.import_district(doc)
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    await publisher.publish(vol_order("ord_mv"), stream="order.issued")
    await volunteers.consumed("order.issued")

    def answer(member_id: str, response: str) -> OrderResponded:
        return OrderResponded(district="d1", order_id="ord_mv", incident_id="inc_ord_mv",
                              team_id="t-vol", member_id=member_id, response=response)

    await publisher.publish(answer("m-wang", "acknowledged"), stream="order.responded")
    await volunteers.consumed("order.responded")
    for member in doc["members"]:
        if member["id"] == "m-wang":
            member["team_id"] = "t-vol2"
    await volunteers.import_district(doc)
    for _ in range(2):  # redelivered: changes nothing
        await publisher.publish(answer("m-chen", "resolved"), stream="order.responded")
        await volunteers.consumed("order.responded")

    assert await history(volunteers, chen) == [("resolved_order", 10)]
    assert [e for e in await history(volunteers, wang) if e[0] != "patrol"] == []


async def test_a_team_whose_shift_an_import_empties_under_its_order_ends_it_though_refilled(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # The spreadsheet swaps the aunties: Wang and Chen go to t-vol2, Zhou (new) and Sun (from
    # t-vol2) come to t-vol, in one import. Wang, the only one on t-vol's shift, answers for
    # t-vol2 now; Zhou and Sun are on its roster but never checked in. Nobody on the shift is
    # left to answer its order: the shift ends under it ("unmanned"), as when Wang's phone is
    # revoked, and dispatch takes back an offer or flags a taken order for the command room,
    # which decides (the order stays; a teammate may still answer it).
    await volunteers.import_district()
    doc = copy.deepcopy(DISTRICT)
    doc["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                         "mode": "foot"})
    doc["members"].append({"id": "m-sun", "name": "Sun", "agency_id": "v-red",
                           "team_id": "t-vol2", "role": "volunteer"})
    await volunteers.import_district(doc)
    wang = await volunteers.enrol("m-wang")
    assert (await volunteers.client.post("/v1/me/shift/start", headers=wang)).status_code == 200
    await publisher.publish(vol_order("ord_x"), stream="order.issued")
    await volunteers.consumed("order.issued")

    for member in doc["members"]:
        if member["id"] in ("m-wang", "m-chen"):
            member["team_id"] = "t-vol2"
        elif member["id"] == "m-sun":
            member["team_id"] = "t-vol"
    doc["members"].append({"id": "m-zhou", "name": "Zhou", "agency_id": "v-red",
                           "team_id": "t-vol", "role": "volunteer"})
    await volunteers.import_district(doc)
    state = (await volunteers.client.get("/v1/teams/t-vol", headers=ADMIN)).json()["state"]
    assert (state["on_shift"], state["shift_member_ids"]) == (False, [])
    assert state["open_orders"] == [{"order_id": "ord_x", "stage": "dispatched"}]
    last = [e for e in await volunteers.events("unit.status", UnitStatus)
            if e.unit_id == "t-vol"][-1]
    assert (last.status, last.on_shift, last.order_id) == ("dispatched", False, "ord_x")


async def test_a_member_removed_before_an_answer_is_read_is_not_paid_for_it(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Chen was on the shift when Wang answered, and was removed from the roster before the
    # answer was read: his balance and history went with him, and no award may bring them
    # (or a nameless line on the district's leaderboard) back.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    for device in (wang, chen):
        assert (await volunteers.client.post("/v1/me/shift/start", headers=device)
                ).status_code == 200
    await publisher.publish(vol_order("ord_d"), stream="order.issued")
    await volunteers.consumed("order.issued")
    answered_at = datetime.now(UTC)
    assert (await volunteers.client.delete("/v1/members/m-chen", headers=ADMIN)).status_code \
        == 204
    await publisher.publish(OrderResponded(
        district="d1", order_id="ord_d", incident_id="inc_ord_d", team_id="t-vol",
        member_id="m-wang", response="resolved", occurred_at=answered_at),
        stream="order.responded")
    await volunteers.consumed("order.responded")
    assert await history(volunteers, wang) == [("resolved_order", 10)]
    board = (await volunteers.client.get("/v1/points/leaderboard", params={"district": "d1"},
                                         headers=ADMIN)).json()["entries"]
    assert [e["member_id"] for e in board] == ["m-wang"]



def test_the_stints_a_team_remembers_are_those_of_its_last_shift_and_of_its_leavers() -> None:
    t0 = datetime(2026, 12, 6, 8, tzinfo=UTC)
    hour = timedelta(hours=1)
    state = TeamState()
    for day in range(3):  # a shift a day, with Wang and Chen; Chen moved away at noon
        start = t0 + 24 * hour * day
        state = start_shift(state, member_id="wang", now=start, shift_id=f"s{day}").state
        state = start_shift(state, member_id="chen", now=start, shift_id=f"s{day}").state
        state = leave_shift(state, member_id="chen", now=start + 4 * hour).state
        assert on_shift_at(state, start + 3 * hour) == ("chen", "wang")
        assert on_shift_at(state, start + 5 * hour) == ("wang",)
        state = end_shift(state, now=start + 10 * hour).state
        assert on_shift_at(state, start + 9 * hour) == ("wang",)  # read after the check-out
        assert on_shift_at(state, start + 10 * hour) == ("wang",)  # the same instant
        assert on_shift_at(state, start + 11 * hour) == ()
    assert state.left == {"wang": ((t0 + 48 * hour, t0 + 58 * hour),),
                          "chen": ((t0 + 48 * hour, t0 + 52 * hour),)}
    # as a state stored when a member's one stint was kept reads
    stored = '{"left": {"wang": ["2026-12-08T08:00:00Z", "2026-12-08T18:00:00Z"]}}'
    assert TeamState.model_validate_json(stored).left == {
        "wang": ((t0 + 48 * hour, t0 + 58 * hour),)}
