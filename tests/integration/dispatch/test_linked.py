"""Duplicate reports: linked to the open incident intake found, or dispatched as their own
when that incident had ended by the time dispatch came to them (intake judges on its own
view, a moment behind dispatch's)."""

from __future__ import annotations

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch.engine import Dispatcher
from shared import streams
from shared.events import (
    IncidentReported,
    IncidentUpdated,
    OrderAmended,
    OrderResponded,
    new_id,
    utcnow,
)
from tests.helpers import poll_until, read_stream

from .conftest import dead_lettered, fail_a_write_once, fail_once
from .test_engine import DISTRICT, SCENE, orders_for, report, team, wait_for_units


async def duplicate_of(broker: RedisBroker, parent: str) -> str:
    incident_id = new_id("inc")
    await broker.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow(),
        linked_to=parent), stream=streams.INCIDENT_REPORTED.name)
    return incident_id


def updates(url: str, incident_id: str) -> list[IncidentUpdated]:
    return [u for u in read_stream(url, streams.INCIDENT_UPDATED.name, IncidentUpdated)
            if u.incident_id == incident_id]


def status(url: str, incident_id: str) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(f"dispatch:incident:{incident_id}", "status")
    finally:
        client.close()


async def resolve(url: str, broker: RedisBroker, incident_id: str) -> None:
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "the first order")
    for response in ("acknowledged", "resolved"):
        await broker.publish(OrderResponded(
            district=DISTRICT, order_id=order.order_id, incident_id=incident_id,
            team_id=order.team_id, member_id="m1", response=response),
            stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: status(url, incident_id) == "resolved", "the incident resolved")


async def test_a_duplicate_of_an_open_incident_is_linked_and_gets_no_order(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "t2", kind="security", lat=22.8175, lon=108.3665)
    await wait_for_units(dispatch, 2)
    parent = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: orders_for(dispatch, parent), "the first incident's order")
    linked = await duplicate_of(publisher, parent)
    await poll_until(lambda: [u for u in updates(dispatch, linked) if u.status == "linked"],
                     "the report linked")
    await poll_until(lambda: [u for u in updates(dispatch, parent)
                              if u.entry.detail == f"another report linked: {linked}"],
                     "the open incident told of it")
    assert orders_for(dispatch, linked) == []
    assert status(dispatch, linked) == "linked"


async def duplicate_of_a_resolved_incident(url: str, broker: RedisBroker) -> tuple[str, str]:
    """An incident resolved by its team, a second team free, then a report linked to the
    first: (the first, the report)."""
    await team(broker, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    parent = await report(broker, "noise", priority="P4")
    await resolve(url, broker, parent)
    await team(broker, "t2", kind="security", lat=22.8175, lon=108.3665)
    return parent, await duplicate_of(broker, parent)


async def test_a_duplicate_of_an_incident_that_had_ended_is_dispatched_as_its_own(
        dispatch: str, publisher: RedisBroker) -> None:
    # Intake linked it on its view, which had not yet seen the first incident resolved:
    # the report is of something still going on, and gets a team.
    parent, linked = await duplicate_of_a_resolved_incident(dispatch, publisher)
    orders = await poll_until(lambda: orders_for(dispatch, linked), "an order of its own")
    assert len(orders) == 1
    seen = updates(dispatch, linked)
    assert "linked" not in [u.status for u in seen]
    assert seen[0].status == "dispatching" and seen[0].linked_to == parent
    assert f"duplicate of {parent}, which had ended (resolved)" in (seen[0].entry.detail or "")
    assert status(dispatch, linked) == "assigned"


async def test_a_second_duplicate_of_an_ended_incident_is_linked_to_the_first_sent_out(
        dispatch: str, publisher: RedisBroker) -> None:
    # Two more callers about the same event, both linked by intake to the incident that had
    # just ended: the first is sent out as its own, the second joins it; not a second team
    # sent to one event.
    parent, first = await duplicate_of_a_resolved_incident(dispatch, publisher)
    await team(publisher, "t3", kind="security", lat=22.8179, lon=108.3665)
    await wait_for_units(dispatch, 3)
    await poll_until(lambda: orders_for(dispatch, first), "the first sent out with a team")
    second = await duplicate_of(publisher, parent)
    await poll_until(lambda: [u for u in updates(dispatch, second) if u.status == "linked"],
                     "the second report linked")
    linked = [u for u in updates(dispatch, second) if u.status == "linked"]
    assert f"duplicate report of {first}" in (linked[0].entry.detail or "")
    assert linked[0].linked_to == first  # what intake's view and the board show
    assert orders_for(dispatch, second) == []
    assert len(orders_for(dispatch, first)) == 1


async def test_a_linked_report_replayed_after_its_incident_ended_joins_it(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # A second caller's report, linked by intake to the open incident, is dead-lettered; the
    # incident's team resolves it; the report, replayed once its bug is fixed, was made
    # while the incident was open: it is of the event that team saw to, not of something
    # still going on after it. It joins the ended incident; no team is sent again.
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    parent = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: orders_for(dispatch, parent), "the incident's order")
    linked = new_id("inc")
    replay = await dead_lettered(dispatch, publisher, IncidentReported(
        district=DISTRICT, incident_id=linked, system_id="sys", external_ref=linked,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow(),
        linked_to=parent), monkeypatch)
    await resolve(dispatch, publisher, parent)
    await team(publisher, "t2", kind="security", lat=22.8175, lon=108.3665)
    await wait_for_units(dispatch, 2)
    await replay()
    # created `linked`, then judged: linked (one update) or sent out (its order follows)
    await poll_until(lambda: updates(dispatch, linked)
                     and status(dispatch, linked) != "dispatching", "the replayed report judged")
    assert orders_for(dispatch, linked) == []
    assert status(dispatch, linked) == "linked"
    [joined] = [u for u in updates(dispatch, linked) if u.status == "linked"]
    assert joined.linked_to == parent
    assert f"duplicate report of {parent}" in (joined.entry.detail or "")
    assert len(orders_for(dispatch, parent)) == 1


async def test_a_link_whose_judgement_failed_is_judged_when_the_report_comes_again(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The report's incident was created, then the step stopped before judging the link:
    # the redelivered report judges it (before, it stayed "linked" with no order, for good).
    failed = fail_once(monkeypatch, Dispatcher, "_record_link")
    _, linked = await duplicate_of_a_resolved_incident(dispatch, publisher)
    await poll_until(lambda: orders_for(dispatch, linked), "an order once redelivered", 15)
    assert failed == ["failed"]


async def test_a_linked_report_that_says_weapon_revises_the_open_incident(
        dispatch: str, publisher: RedisBroker) -> None:
    # A help request goes to a volunteer patrol; a second caller reports the same at the
    # same place and says the man has a knife. Intake links it (category, 200 m, 10 min);
    # what it says must reach the open incident as the command room's revision would: P1,
    # `weapon`, the volunteers taken off and a guard sent.
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot")
    await wait_for_units(dispatch, 1)
    parent = await report(publisher, "help_request", priority="P3")
    [first] = await poll_until(lambda: orders_for(dispatch, parent), "the volunteers' order")
    assert first.team_id == "aunties"
    await team(publisher, "guard", kind="security", lat=22.8200, lon=108.3665)
    await wait_for_units(dispatch, 2)
    linked = new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=linked, system_id="sys", external_ref=linked,
        category="help_request", priority="P1", flags=("Weapon",), location=SCENE,
        reported_at=utcnow(), linked_to=parent), stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: status(dispatch, linked) == "linked", "the second report linked")
    orders = await poll_until(lambda: orders_for(dispatch, parent)[1:], "the guard's order")
    assert [o.team_id for o in orders] == ["guard"]
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        fields = client.hgetall(f"dispatch:incident:{parent}")
        withdrawn = client.hget(f"dispatch:order:{first.order_id}", "state")
    finally:
        client.close()
    assert (fields["priority"], fields["flags"]) == ("P1", '["weapon"]')
    assert withdrawn == "withdrawn"
    revised = [u.entry for u in updates(dispatch, parent) if u.entry.kind == "revised"]
    assert [e.detail for e in revised] == [
        f"priority P3 → P1; flags added: weapon by a linked report ({linked})"]
    assert updates(dispatch, linked)[-1].status == "linked"  # and no order of its own
    assert orders_for(dispatch, linked) == []


async def test_a_camera_s_repeat_that_sees_a_weapon_brings_it_to_the_incident_and_its_teams(
        dispatch: str, publisher: RedisBroker) -> None:
    # A camera reports a suspicious crowd (P2): the guard post next door is sent, the police
    # far off are not. A minute on, the same camera's alert again, now flagged `weapon`:
    # intake links it as a repeat (the same system, place and category). The weapon must
    # not stay on the repeat's own row, which nobody looks at: the incident is flagged
    # `weapon` and P1, the guard's phone told (its order amended), and the police sent too
    # (a P1 wants two units: the best of each of the category's first two kinds).
    await team(publisher, "guard", kind="security", lat=22.8175, lon=108.3665, mode="foot")
    await team(publisher, "police", kind="police", lat=22.8600, lon=108.3665)
    await wait_for_units(dispatch, 2)
    parent = new_id("inc")
    alert = {"district": DISTRICT, "system_id": "sys_cam", "system_name": "Skynet video",
             "category": "suspicious", "location": SCENE}
    await publisher.publish(IncidentReported(
        incident_id=parent, external_ref=parent, priority="P2", flags=("crowding",),
        reported_at=utcnow(), **alert), stream=streams.INCIDENT_REPORTED.name)
    [first] = await poll_until(lambda: orders_for(dispatch, parent), "the guard's order")
    assert first.team_id == "guard"
    repeat = new_id("inc")
    await publisher.publish(IncidentReported(
        incident_id=repeat, external_ref=repeat, priority="P1", flags=("crowding", "weapon"),
        reported_at=utcnow(), linked_to=parent, **alert), stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: status(dispatch, repeat) == "linked", "the repeat linked")
    [police] = await poll_until(lambda: orders_for(dispatch, parent)[1:], "the police's order")
    assert police.team_id == "police"
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        fields = client.hgetall(f"dispatch:incident:{parent}")
    finally:
        client.close()
    assert (fields["priority"], fields["flags"]) == ("P1", '["crowding", "weapon"]')
    amended = [a for a in read_stream(dispatch, streams.ORDER_AMENDED.name, OrderAmended)
               if a.order_id == first.order_id]
    assert [(a.priority, a.flags) for a in amended] == [("P1", ("crowding", "weapon"))]
    assert orders_for(dispatch, repeat) == []


async def test_a_linked_report_whose_revision_failed_midway_finishes_it_when_redelivered(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # As above, but the step fails after writing the revision (P1, weapon) and before the
    # volunteers' order is withdrawn. The redelivered report finds nothing new to revise:
    # the volunteers stayed sent to a man with a knife, alone, and no guard went.
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot")
    await wait_for_units(dispatch, 1)
    parent = await report(publisher, "help_request", priority="P3")
    [first] = await poll_until(lambda: orders_for(dispatch, parent), "the volunteers' order")
    await team(publisher, "guard", kind="security", lat=22.8200, lon=108.3665)
    await wait_for_units(dispatch, 2)
    failures = fail_a_write_once(monkeypatch, "order.withdrawn")  # the take-off's write
    linked = new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=linked, system_id="sys", external_ref=linked,
        category="help_request", priority="P1", flags=("weapon",), location=SCENE,
        reported_at=utcnow(), linked_to=parent), stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: status(dispatch, linked) == "linked", "the report linked", 15)
    orders = await poll_until(lambda: orders_for(dispatch, parent)[1:], "the guard's order")
    assert failures == ["failed"]
    assert [o.team_id for o in orders] == ["guard"]
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        assert client.hget(f"dispatch:order:{first.order_id}", "state") == "withdrawn"
    finally:
        client.close()
    revised = [u.entry for u in updates(dispatch, parent) if u.entry.kind == "revised"]
    assert len(revised) == 1  # written once


async def test_a_linked_report_that_adds_nothing_changes_nothing(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    parent = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: orders_for(dispatch, parent), "the order")
    linked = await duplicate_of(publisher, parent)
    await poll_until(lambda: status(dispatch, linked) == "linked", "linked")
    assert [u.entry.kind for u in updates(dispatch, parent)].count("revised") == 0


async def test_the_kpis_count_an_incident_reported_twice_once_in_every_figure(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """A fight two callers reported is one incident for the review: `incidents`,
    `by_status` (which adds up to it) and who handled it count it once; the duplicate is
    counted apart. `by_status` had it as `linked` besides: its statuses added up to one
    more than the district's incidents."""
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    parent = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: orders_for(clean_redis, parent), "the incident's order")
    linked = await duplicate_of(publisher, parent)
    await poll_until(lambda: status(clean_redis, linked) == "linked", "the report linked")
    await resolve(clean_redis, publisher, parent)
    r = await console.get("/v1/kpis", headers={"Authorization": "Bearer test-admin-token"},
                          params={"district": DISTRICT})
    assert r.status_code == 200, r.text
    kpis = r.json()
    assert kpis["incidents"] == 1 and kpis["by_category"] == {"noise": 1}
    assert kpis["by_status"] == {"resolved": 1}
    assert sum(kpis["by_status"].values()) == kpis["incidents"]
    assert kpis["linked_reports"] == 1
    assert kpis["resolved_on_site"] == 1
    assert kpis["handled_by_force"]["security"]["handled"] == 1
    assert sum(kpis["by_hour"]) == 1
