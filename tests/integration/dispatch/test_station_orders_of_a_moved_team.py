"""A police station's team that a roster import moves to another agency (a security company,
another police station) while it holds the station's hand-over or follow-up order: the case
would stay with a team that is no longer the station's (a security company holding a police
filing). Dispatch hands the order on as it does a removed team's: withdrawn with a timeline
entry saying why, the case to another of the station's teams on shift (the station's
`filing_due` kept), or flagged and tried again; once, however often the move is read."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch import store
from services.dispatch.domain import Unit
from shared import streams
from shared.events import UnitStatus, utcnow
from tests.helpers import poll_until

from .test_engine import DISTRICT, orders_for, report, team, wait_for_units
from .test_followup import followups, kinds_and_details
from .test_handover import handover_orders, last_update
from .test_removed_team import all_read
from .test_station_orders_of_a_removed_team import (
    STATION,
    handed_over_to,
    incident,
    station_orders_of,
    timer_due,
    withdrawn,
)


async def moved(publisher: RedisBroker, team_id: str, *, agency_id: str = "ag-guards",
                kind: str = "security", role: str | None = None,
                at: datetime | None = None, skills: tuple[str, ...] = ()) -> None:
    """volunteers' word for a roster import that puts the team under another agency (or
    gives it other skills): its profile, on shift as it was."""
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id=team_id, status="available", name=team_id,
        agency_id=agency_id, agency_kind=kind, agency_role=role,  # type: ignore[arg-type]
        mode="car", skills=skills, on_shift=True,
        occurred_at=at or utcnow() + timedelta(milliseconds=5)),
        stream=streams.UNIT_STATUS.name)


MOVED_ENTRY = ("withdrawn", "station-car is no longer a team of station ag-police (now of "
               "ag-guards): the station's order goes to another of its teams", None)


def filing_due(url: str, incident_id: str) -> list[datetime | None]:
    return [o.filing_due for o in orders_for(url, incident_id) if o.kind == "handover"]


async def test_a_hand_over_of_a_station_team_moved_to_a_security_company_goes_to_the_station(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id, station = await handed_over_to(dispatch, publisher, ("station-car", 22.8300),
                                                ("station-car-2", 22.8400))
    assert station.team_id == "station-car"

    await moved(publisher, "station-car")
    await poll_until(lambda: len(handover_orders(dispatch, incident_id)) == 2,
                     "the hand-over handed on", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn"),
                                                      ("station-car-2", "offered")]
    [gone] = withdrawn(dispatch, station.order_id)
    assert gone.reason == "reassigned"
    first, second = filing_due(dispatch, incident_id)
    assert first is not None and second == first  # passed on within the station: same due
    fields = incident(dispatch, incident_id)
    assert fields["status"] == "handed_over"
    assert fields["handover_order"] == orders_for(dispatch, incident_id)[-1].order_id
    assert fields["flagged"] == "0"
    assert MOVED_ENTRY in kinds_and_details(dispatch, incident_id)
    last = last_update(dispatch, incident_id)
    assert (last.entry.kind, last.entry.team_id) == ("handover", "station-car-2")


async def test_a_redelivered_move_hands_the_order_on_once(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id, _ = await handed_over_to(dispatch, publisher, ("station-car", 22.8300),
                                          ("station-car-2", 22.8400),
                                          ("station-car-3", 22.8500))
    at = utcnow()
    await moved(publisher, "station-car", at=at)
    await poll_until(lambda: len(handover_orders(dispatch, incident_id)) == 2,
                     "the hand-over handed on", timeout=20)
    await moved(publisher, "station-car", at=at)  # read again
    await moved(publisher, "station-car")  # and its next word in the company (same agency)
    await poll_until(lambda: all_read(dispatch), "the statuses read", timeout=20)
    await poll_until(lambda: timer_due(dispatch, f"handover:{incident_id}") is None
                     and not any(timer_due(dispatch, f"{kind}:{o.order_id}") is not None
                                 for o in orders_for(dispatch, incident_id)
                                 for kind in ("removed", "moved")),
                     "no timer of the case left", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn"),
                                                      ("station-car-2", "offered")]
    assert kinds_and_details(dispatch, incident_id).count(MOVED_ENTRY) == 1


async def test_a_hand_over_of_a_moved_team_with_nobody_else_on_shift_is_flagged_and_retried(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id, _ = await handed_over_to(dispatch, publisher, ("station-car", 22.8300))

    await moved(publisher, "station-car", agency_id="ag-police-2", kind="police")
    await poll_until(lambda: incident(dispatch, incident_id).get("flagged") == "1",
                     "the board's flag", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn")]
    fields = incident(dispatch, incident_id)
    assert (fields["status"], fields["handover_order"]) == ("handed_over", "")
    assert ("note", "the hand-over was withdrawn (its team is no longer the station's) and "
            "no other team of the station is on shift: tried again every 15 min until one "
            "takes it", None) in kinds_and_details(dispatch, incident_id)
    assert timer_due(dispatch, f"handover:{incident_id}") is not None


async def test_a_follow_up_visit_of_a_team_moved_to_another_station_goes_to_its_station(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "station-car", kind="police", lat=22.8300, lon=108.3665)
    await team(publisher, "station-foot", kind="police", lat=22.8310, lon=108.3665)
    await wait_for_units(dispatch, 3)
    incident_id = await report(publisher, "dispute", priority="P3")
    await poll_until(lambda: orders_for(dispatch, incident_id), "the first order")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", STATION)
        client.zadd(store.TIMERS, {f"followup:{incident_id}": time.time()})
    finally:
        client.close()
    (visit,) = await poll_until(lambda: followups(dispatch, incident_id), "the visit ordered")
    assert visit.team_id == "station-car"
    await poll_until(lambda: incident(dispatch, incident_id).get("followup_order")
                     == visit.order_id, "the visit recorded")

    await moved(publisher, "station-car", agency_id="ag-police-2", kind="police",
                role="station")
    others = await poll_until(lambda: followups(dispatch, incident_id)[1:],
                              "the visit handed on", timeout=20)
    assert [o.team_id for o in others] == ["station-foot"]
    await poll_until(lambda: incident(dispatch, incident_id).get("followup_order")
                     == others[0].order_id, "the new visit recorded")
    assert withdrawn(dispatch, visit.order_id)
    assert ("withdrawn", "station-car is no longer a team of station ag-police (now of "
            "ag-police-2): the station's order goes to another of its teams",
            None) in kinds_and_details(dispatch, incident_id)


async def test_a_station_team_whose_status_changes_within_its_station_keeps_its_hand_over(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id, station = await handed_over_to(dispatch, publisher, ("station-car", 22.8300),
                                                ("station-car-2", 22.8400))
    await moved(publisher, "station-car", agency_id=STATION, kind="police")  # busy, renamed…
    await poll_until(lambda: all_read(dispatch), "the status read", timeout=20)
    await poll_until(lambda: timer_due(dispatch, f"moved:{station.order_id}") is None,
                     "no timer of the order", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "offered")]
    assert not withdrawn(dispatch, station.order_id)
    assert station_orders_of(dispatch, "station-car") == {station.order_id}


async def test_a_hand_over_given_to_a_team_moved_meanwhile_goes_to_another_of_its_teams(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The step read the station's teams, then the move was handled, then the step wrote its
    # order to the team it had chosen: the move found no order of the team to hand on.
    real = store.units_of_agency
    raced: list[str] = []

    async def moved_after_the_read(redis: Redis, **kwargs: str) -> list[Unit]:
        units = await real(redis, **kwargs)
        if not raced and any(u.team_id == "station-car" for u in units):
            raced.append("moved")
            await store.save_unit_status(redis, at=utcnow(), fields={
                "team_id": "station-car", "district": DISTRICT, "status": "available",
                "name": "station-car", "agency_id": "ag-guards", "agency_kind": "security",
                "agency_role": "", "mode": "car", "skills": "[]", "home_zone_id": "",
                "on_shift": "1"})
        return units

    monkeypatch.setattr(store, "units_of_agency", moved_after_the_read)
    incident_id, station = await handed_over_to(dispatch, publisher, ("station-car", 22.8300),
                                                ("station-car-2", 22.8400))
    assert (raced, station.team_id) == (["moved"], "station-car")
    await poll_until(lambda: len(handover_orders(dispatch, incident_id)) == 2,
                     "the hand-over handed on", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn"),
                                                      ("station-car-2", "offered")]


async def test_a_hand_over_of_a_station_made_a_street_patrol_is_not_its_teams_to_keep(
        dispatch: str, publisher: RedisBroker) -> None:
    # The import made the station a street patrol (its zones another station's): its teams,
    # the same agency still, are no station's; not given the case again at the retry either.
    incident_id, _ = await handed_over_to(dispatch, publisher, ("station-car", 22.8300))

    await moved(publisher, "station-car", agency_id=STATION, kind="police", role="patrol")
    await poll_until(lambda: incident(dispatch, incident_id).get("flagged") == "1",
                     "the board's flag", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn")]
    assert ("withdrawn", "station-car is no longer a team of station ag-police (its agency "
            "is no longer a police station): the station's order goes to another of its "
            "teams", None) in kinds_and_details(dispatch, incident_id)
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        client.zadd(store.TIMERS, {f"handover:{incident_id}": time.time()})  # 15 min on
    finally:
        client.close()
    await poll_until(lambda: timer_due(dispatch, f"handover:{incident_id}") is not None
                     and timer_due(dispatch, f"handover:{incident_id}") > time.time() + 60,
                     "retried", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn")]
