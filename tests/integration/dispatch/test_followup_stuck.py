"""A follow-up visit the station cannot make: due while no team of the station is on shift,
refused by its last team on shift, or ordered and left unanswered past the policy's
`followup_retry_h`. As a hand-over waiting for a station team is, the incident is flagged
for the command room with one timeline note, also once the case is filed (resolved), until
a team takes the visit; the visit is ordered again meanwhile."""

from __future__ import annotations

import time

import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared.events import OrderIssued
from tests.helpers import poll_until

from .test_engine import orders_for, report, team, wait_for_units
from .test_followup import followups, kinds_and_details
from .test_removed_team import all_read
from .test_station_orders_of_a_removed_team import (
    STATION,
    incident,
    station_team_off_shift,
    timer_due,
)
from .test_take_back import respond

NOBODY = ("note", "follow-up visit due: no team of the station on shift; ordered again in "
          "an hour until one is", None)
UNANSWERED = ("note", "station-car has not answered the follow-up visit order within an "
              "hour: flagged until a team takes it", None)


def make_due(url: str, timer: str) -> None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.zadd(store.TIMERS, {timer: time.time()})
    finally:
        client.close()


def order_state(url: str, order_id: str) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(store.order_key(order_id), "state")
    finally:
        client.close()


async def fired(url: str, timer: str) -> None:
    """The timer made due now has fired and set itself again, about an hour on."""
    await poll_until(lambda: (timer_due(url, timer) or 0) > time.time() + 59 * 60,
                     f"{timer} fired and set again", timeout=20)


async def filed_dispute(url: str, publisher: RedisBroker) -> str:
    """A dispute of the station ag-police: the guard handed it over, the station's car filed
    it (resolved); a week on, its follow-up visit is due."""
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "station-car", kind="police", lat=22.8300, lon=108.3665)
    await wait_for_units(url, 2)
    incident_id = await report(publisher, "dispute", priority="P3")
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
    assert order.team_id == "guard"
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", STATION)
    finally:
        client.close()
    await respond(publisher, order, "acknowledged", "handover")
    (station,) = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                           if o.kind == "handover"], "the station's order")
    await respond(publisher, station, "acknowledged", "resolved")
    await poll_until(lambda: incident(url, incident_id).get("status") == "resolved",
                     "the case filed")
    return incident_id


async def visit_ordered(url: str, incident_id: str) -> OrderIssued:
    make_due(url, f"followup:{incident_id}")
    (visit,) = await poll_until(lambda: followups(url, incident_id), "the visit ordered")
    await poll_until(lambda: incident(url, incident_id).get("followup_order")
                     == visit.order_id, "the visit recorded")
    return visit


async def test_a_visit_due_with_nobody_of_the_station_on_shift_is_flagged_until_one_is(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id = await filed_dispute(dispatch, publisher)
    await station_team_off_shift(publisher, "station-car")
    await poll_until(lambda: all_read(dispatch), "the check-out read", timeout=20)

    make_due(dispatch, f"followup:{incident_id}")
    await poll_until(lambda: incident(dispatch, incident_id).get("flagged") == "1",
                     "the board's flag", timeout=20)
    assert incident(dispatch, incident_id)["status"] == "resolved"
    assert NOBODY in kinds_and_details(dispatch, incident_id)
    await fired(dispatch, f"followup:{incident_id}")

    make_due(dispatch, f"followup:{incident_id}")  # an hour on: still nobody
    await fired(dispatch, f"followup:{incident_id}")
    assert kinds_and_details(dispatch, incident_id).count(NOBODY) == 1
    assert incident(dispatch, incident_id)["flagged"] == "1"
    assert not followups(dispatch, incident_id)

    await team(publisher, "station-car", kind="police", lat=22.8300, lon=108.3665)
    await poll_until(lambda: all_read(dispatch), "the check-in read", timeout=20)
    visit = await visit_ordered(dispatch, incident_id)
    assert visit.team_id == "station-car"
    assert incident(dispatch, incident_id)["flagged"] == "0"


async def test_a_visit_its_last_team_on_shift_declines_is_flagged_until_a_team_has_it(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id = await filed_dispute(dispatch, publisher)
    visit = await visit_ordered(dispatch, incident_id)
    assert incident(dispatch, incident_id)["flagged"] == "0"

    await respond(publisher, visit, "declined")
    declined = ("note", "follow-up visit declined; no other team of the station on shift: "
                "ordered again in an hour", None)
    await poll_until(lambda: declined in kinds_and_details(dispatch, incident_id),
                     "the note", timeout=20)
    assert incident(dispatch, incident_id)["flagged"] == "1"
    assert NOBODY not in kinds_and_details(dispatch, incident_id)  # one note, not two

    make_due(dispatch, f"followup:{incident_id}")  # an hour on, every team asked again
    await poll_until(lambda: len(followups(dispatch, incident_id)) == 2, "asked again",
                     timeout=20)
    await poll_until(lambda: incident(dispatch, incident_id).get("flagged") == "0",
                     "the flag gone with the order", timeout=20)


async def test_a_visit_nobody_answers_is_flagged_until_its_team_takes_it(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id = await filed_dispute(dispatch, publisher)
    visit = await visit_ordered(dispatch, incident_id)
    due = timer_due(dispatch, f"visit:{visit.order_id}")
    assert due is not None and due > time.time() + 59 * 60  # an hour to answer it

    make_due(dispatch, f"visit:{visit.order_id}")
    await poll_until(lambda: incident(dispatch, incident_id).get("flagged") == "1",
                     "the board's flag", timeout=20)
    assert UNANSWERED in kinds_and_details(dispatch, incident_id)
    await poll_until(lambda: timer_due(dispatch, f"visit:{visit.order_id}") is None,
                     "the timer gone", timeout=20)
    make_due(dispatch, f"visit:{visit.order_id}")  # fired again (a failure after its write)
    await poll_until(lambda: timer_due(dispatch, f"visit:{visit.order_id}") is None,
                     "the timer gone again", timeout=20)
    assert kinds_and_details(dispatch, incident_id).count(UNANSWERED) == 1

    await respond(publisher, visit, "acknowledged")
    await poll_until(lambda: incident(dispatch, incident_id).get("flagged") == "0",
                     "the flag gone with the answer", timeout=20)
    assert incident(dispatch, incident_id)["status"] == "resolved"


async def test_a_visit_answered_in_time_is_not_flagged(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id = await filed_dispute(dispatch, publisher)
    visit = await visit_ordered(dispatch, incident_id)
    await respond(publisher, visit, "acknowledged")
    await poll_until(lambda: order_state(dispatch, visit.order_id) == "acknowledged",
                     "the answer read", timeout=20)
    # its timer now the verdict's: a day from the answer, not the hour to answer
    await poll_until(lambda: (timer_due(dispatch, f"visit:{visit.order_id}") or 0)
                     > time.time() + 23 * 3600, "the time to the verdict", timeout=20)
    assert incident(dispatch, incident_id)["flagged"] == "0"
    assert UNANSWERED not in kinds_and_details(dispatch, incident_id)

    await respond(publisher, visit, "resolved")  # the agreement holds
    await poll_until(lambda: timer_due(dispatch, f"visit:{visit.order_id}") is None,
                     "the timer gone with the verdict", timeout=20)
    assert incident(dispatch, incident_id)["flagged"] == "0"


NO_VERDICT = ("note", "station-car took the follow-up visit order but has given no verdict "
              "(holds, or does not) within 24 h: flagged until it does", None)


async def test_a_visit_taken_but_given_no_verdict_is_flagged_until_it_is(
        dispatch: str, publisher: RedisBroker) -> None:
    # Revisits go on until the agreement holds (DOMAIN.md): a visit acknowledged and never
    # answered "holds" or "does not hold" left the case with no next visit, and nobody was
    # told (the station's desk showed it acknowledged for ever).
    incident_id = await filed_dispute(dispatch, publisher)
    visit = await visit_ordered(dispatch, incident_id)
    await respond(publisher, visit, "acknowledged")
    await poll_until(lambda: (timer_due(dispatch, f"visit:{visit.order_id}") or 0)
                     > time.time() + 23 * 3600, "the time to the verdict", timeout=20)

    make_due(dispatch, f"visit:{visit.order_id}")
    await poll_until(lambda: incident(dispatch, incident_id).get("flagged") == "1",
                     "the board's flag", timeout=20)
    assert NO_VERDICT in kinds_and_details(dispatch, incident_id)
    assert UNANSWERED not in kinds_and_details(dispatch, incident_id)
    await poll_until(lambda: timer_due(dispatch, f"visit:{visit.order_id}") is None,
                     "the timer gone", timeout=20)
    make_due(dispatch, f"visit:{visit.order_id}")  # fired again (a failure after its write)
    await poll_until(lambda: timer_due(dispatch, f"visit:{visit.order_id}") is None,
                     "the timer gone again", timeout=20)
    assert kinds_and_details(dispatch, incident_id).count(NO_VERDICT) == 1

    await respond(publisher, visit, "handover")  # the agreement does not hold
    await poll_until(lambda: incident(dispatch, incident_id).get("flagged") == "0",
                     "the flag gone with the verdict", timeout=20)
    assert timer_due(dispatch, f"followup:{incident_id}") is not None  # the next visit
