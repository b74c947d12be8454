"""A command-room action that leaves an incident short of a unit (a P1 given one team by
hand, volunteers sent by hand to a P1, a team taken back, a priority raised to P1) while a
team that may go is free: dispatch sends that team in the same step, by the time the
action answers, not at the waiting sweep (WAITING_SWEEP_S, 30 s) or the team's next
position fix. In-process, real Redis; the sweep off, so that only the step sends it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from shared.events import IncidentReported, UnitStatus, new_id, utcnow
from tests.helpers import poll_until

from .conftest import console_of, fail_once
from .test_assign import waiting_in
from .test_engine import DISTRICT, SCENE, orders_for, report, team, wait_for_units
from .test_linked import status

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
async def room(clean_redis: str) -> AsyncIterator[httpx.AsyncClient]:
    """The command room's API, with no waiting sweep: what is sent, the step sent."""
    async with console_of(clean_redis, waiting_sweep_s=0) as client:
        yield client


async def busy(publisher: RedisBroker, team_id: str, *, kind: str,
               skills: tuple[str, ...] = ()) -> None:
    """A team on shift that volunteers says busy (on a task of its own): only the command
    room may send it."""
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id=team_id, status="busy", name=team_id,
        agency_id=f"ag-{kind}", agency_kind=kind, skills=skills, mode="car", on_shift=True),
        stream=streams.UNIT_STATUS.name)


def sent(url: str, incident_id: str) -> list[tuple[str, str]]:
    return [(o.team_id, o.kind) for o in orders_for(url, incident_id)]


async def unassigned(url: str, incident_id: str) -> None:
    await poll_until(lambda: status(url, incident_id) == "unassigned",
                     "the incident waiting, nobody sent")


async def test_volunteers_sent_by_hand_to_a_p1_get_the_free_police_escort_at_once(
        clean_redis: str, room: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # A collapse (P1, first aid): the only first-aid team is a volunteer team busy on
    # something of its own; a police car without first aid is free (it cannot answer the
    # collapse, it may escort volunteers there). The command room sends the volunteers by
    # hand: they are alone on a P1, and the free police car goes with them at once.
    # Before: the collapse joined the queue and the car waited for the sweep (30 s).
    await busy(publisher, "vol", kind="volunteer", skills=("first_aid",))
    await team(publisher, "pol", kind="police", lat=22.8175, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    collapse = await report(publisher, "medical", priority="P1")
    await unassigned(clean_redis, collapse)
    assert sent(clean_redis, collapse) == []

    r = await room.post(f"/v1/incidents/{collapse}/assign", headers=ADMIN,
                        json={"team_id": "vol"})
    assert r.status_code == 200, r.text
    assert sent(clean_redis, collapse) == [("vol", "manual"), ("pol", "dispatch")]
    [escort] = [o for o in orders_for(clean_redis, collapse) if o.team_id == "pol"]
    assert escort.escort is None  # the police car's own phone: no escort to wait for
    assert not waiting_in(clean_redis, collapse)

    # asked again: the same order, nothing more sent
    again = await room.post(f"/v1/incidents/{collapse}/assign", headers=ADMIN,
                            json={"team_id": "vol"})
    assert again.status_code == 200, again.text
    assert again.json()["order_id"] == r.json()["order_id"]
    assert sent(clean_redis, collapse) == [("vol", "manual"), ("pol", "dispatch")]


async def test_a_linked_fight_given_one_team_by_hand_gets_its_second_unit_at_once(
        clean_redis: str, room: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # A second fight 150 m from the first, linked to it by intake: nobody was searched
    # for it. The command room judges it another fight and sends a police car by hand; a
    # fight wants two units and a guard is free nearby: it goes at once.
    await team(publisher, "t0", kind="police", lat=22.8170, lon=108.3665)
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    first = await report(publisher, "violence", priority="P1")
    await poll_until(lambda: len(orders_for(clean_redis, first)) == 2,
                     "the first fight's two units")
    await team(publisher, "pol", kind="police", lat=22.8180, lon=108.3665)
    await team(publisher, "sec", kind="security", lat=22.8185, lon=108.3665)
    await wait_for_units(clean_redis, 4)
    fight = new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=fight, system_id="sys", external_ref=fight,
        category="violence", priority="P1", location=SCENE, reported_at=utcnow(),
        linked_to=first), stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: status(clean_redis, fight) == "linked", "the report linked")

    r = await room.post(f"/v1/incidents/{fight}/assign", headers=ADMIN,
                        json={"team_id": "pol"})
    assert r.status_code == 200, r.text
    assert sent(clean_redis, fight) == [("pol", "manual"), ("sec", "dispatch")]
    assert not waiting_in(clean_redis, fight)


async def test_a_team_moved_by_hand_to_a_p1_has_its_escort_sent_at_once(
        clean_redis: str, room: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The first-aid volunteers are on a hazard report (P4); the command room moves them
    # to a collapse (reassign). The free police car escorts them there at once; the
    # hazard report waits for its next team.
    await team(publisher, "vol", kind="volunteer", lat=22.8172, lon=108.3665,
               skills=("first_aid",))
    await wait_for_units(clean_redis, 1)
    hazard = await report(publisher, "hazard_report", priority="P4")
    await poll_until(lambda: orders_for(clean_redis, hazard), "the volunteers' order")
    await team(publisher, "pol", kind="police", lat=22.8175, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    collapse = await report(publisher, "medical", priority="P1")
    await unassigned(clean_redis, collapse)

    r = await room.post(f"/v1/incidents/{collapse}/assign", headers=ADMIN,
                        json={"team_id": "vol", "reassign": True})
    assert r.status_code == 200, r.text
    assert sent(clean_redis, collapse) == [("vol", "manual"), ("pol", "dispatch")]
    assert waiting_in(clean_redis, hazard)  # nobody free that may go: it waits


async def test_a_p1_s_unit_taken_back_is_replaced_by_a_free_team_at_once(
        clean_redis: str, room: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # Checked as the by-hand case is: a take-back refills in its own step.
    await team(publisher, "pol", kind="police", lat=22.8172, lon=108.3665)
    await team(publisher, "sec", kind="security", lat=22.8174, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    fight = await report(publisher, "violence", priority="P1")
    orders = await poll_until(lambda: len(orders_for(clean_redis, fight)) == 2
                              and orders_for(clean_redis, fight), "the fight's two units")
    await team(publisher, "sec2", kind="security", lat=22.8176, lon=108.3665)
    await wait_for_units(clean_redis, 3)
    [guard] = [o for o in orders if o.team_id == "sec"]

    r = await room.post(f"/v1/orders/{guard.order_id}/withdraw", headers=ADMIN, json={})
    assert r.status_code == 200, r.text
    assert ("sec2", "dispatch") in sent(clean_redis, fight)


async def test_a_revision_raising_volunteers_incident_to_p1_sends_the_free_escort_at_once(
        clean_redis: str, room: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # Checked as the by-hand case is: a revision fills in its own step.
    await team(publisher, "vol", kind="volunteer", lat=22.8172, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    hazard = await report(publisher, "hazard_report", priority="P4")
    await poll_until(lambda: orders_for(clean_redis, hazard), "the volunteers' order")
    await team(publisher, "sec", kind="security", lat=22.8175, lon=108.3665)
    await wait_for_units(clean_redis, 2)

    r = await room.patch(f"/v1/incidents/{hazard}", headers=ADMIN, json={"priority": "P1"})
    assert r.status_code == 200, r.text
    assert ("sec", "dispatch") in sent(clean_redis, hazard)


async def test_a_search_for_the_missing_unit_that_failed_is_made_when_the_room_asks_again(
        clean_redis: str, room: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Redis away for the search after the volunteers' order and its entry: the assignment
    # fails; asked again, the same order, and the escort's search is made then.
    await busy(publisher, "vol", kind="volunteer", skills=("first_aid",))
    await team(publisher, "pol", kind="police", lat=22.8175, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    collapse = await report(publisher, "medical", priority="P1")
    await unassigned(clean_redis, collapse)
    failed = fail_once(monkeypatch, store, "candidates")

    r = await room.post(f"/v1/incidents/{collapse}/assign", headers=ADMIN,
                        json={"team_id": "vol"})
    assert failed and r.status_code != 200
    assert sent(clean_redis, collapse) == [("vol", "manual")]
    assert waiting_in(clean_redis, collapse)  # left to the next freed team, not to nobody

    again = await room.post(f"/v1/incidents/{collapse}/assign", headers=ADMIN,
                            json={"team_id": "vol"})
    assert again.status_code == 200, again.text
    assert sent(clean_redis, collapse) == [("vol", "manual"), ("pol", "dispatch")]
    assert not waiting_in(clean_redis, collapse)
