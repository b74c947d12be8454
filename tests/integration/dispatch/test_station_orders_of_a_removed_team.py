"""A police station's team removed from the roster while it holds the station's hand-over or
follow-up order (such orders do not hold a team, so volunteers lets it go): nobody will ever
answer that order. Dispatch hands it on as the command room's take-back does: withdrawn
with a timeline entry saying why, the case to another of the station's teams on shift, or
flagged and tried again when the station has nobody on shift; once, however often the
removal is read. The backups its team asked for go with the order, free for the incidents
waiting at once."""

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
from shared.events import OrderIssued, OrderWithdrawn, UnitStatus, utcnow
from tests.helpers import poll_until, read_stream

from .conftest import console_of
from .test_engine import DISTRICT, orders_for, report, team, wait_for_units
from .test_followup import followups, kinds_and_details
from .test_followup_answers import a_backup_wanted_elsewhere, order_in
from .test_handover import handover_orders, last_update
from .test_removed_team import all_read
from .test_take_back import respond

STATION = "ag-police"


async def station_team_removed(publisher: RedisBroker, team_id: str, *,
                               at: datetime | None = None) -> None:
    """volunteers' word for `DELETE /v1/teams/{id}` of a police station's team (its members
    removed first): off duty, and removed."""
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id=team_id, status="off_duty", agency_id=STATION,
        agency_kind="police", mode="car", on_shift=False, removed=True,
        occurred_at=at or utcnow() + timedelta(milliseconds=5)),
        stream=streams.UNIT_STATUS.name)


async def station_team_off_shift(publisher: RedisBroker, team_id: str) -> None:
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id=team_id, status="off_duty", agency_id=STATION,
        agency_kind="police", mode="car", on_shift=False,
        occurred_at=utcnow() + timedelta(milliseconds=5)), stream=streams.UNIT_STATUS.name)


async def handed_over_to(url: str, publisher: RedisBroker, *station_teams: tuple[str, float]
                         ) -> tuple[str, OrderIssued]:
    """A noise incident of the station ag-police that the guard hands over; the station's
    teams on shift at the given latitudes (the first nearest). The incident and the
    station's hand-over order."""
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    for team_id, lat in station_teams:
        await team(publisher, team_id, kind="police", lat=lat, lon=108.3665)
    await wait_for_units(url, 1 + len(station_teams))
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", STATION)
    finally:
        client.close()
    await respond(publisher, order, "acknowledged", "handover")
    stations = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                         if o.kind == "handover"], "the station's order")
    return incident_id, stations[0]


def withdrawn(url: str, order_id: str) -> list[OrderWithdrawn]:
    return [e for e in read_stream(url, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
            if e.order_id == order_id]


def incident(url: str, incident_id: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hgetall(store.incident_key(incident_id))
    finally:
        client.close()


def timer_due(url: str, member: str) -> float | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.zscore(store.TIMERS, member)
    finally:
        client.close()


REMOVED_ENTRY = ("withdrawn", "station-car was removed from the roster: the station's order "
                 "goes to another of its teams", None)


async def test_a_hand_over_of_a_removed_station_team_goes_to_another_of_its_teams(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id, station = await handed_over_to(dispatch, publisher, ("station-car", 22.8300),
                                                ("station-car-2", 22.8400))
    assert station.team_id == "station-car"

    await station_team_removed(publisher, "station-car")
    await poll_until(lambda: len(handover_orders(dispatch, incident_id)) == 2,
                     "the hand-over handed on", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn"),
                                                      ("station-car-2", "offered")]
    [gone] = withdrawn(dispatch, station.order_id)
    assert gone.reason == "reassigned"
    fields = incident(dispatch, incident_id)
    assert fields["status"] == "handed_over"
    assert fields["handover_order"] == orders_for(dispatch, incident_id)[-1].order_id
    assert fields["flagged"] == "0"
    assert REMOVED_ENTRY in kinds_and_details(dispatch, incident_id)
    last = last_update(dispatch, incident_id)
    assert (last.entry.kind, last.entry.team_id) == ("handover", "station-car-2")


async def test_a_redelivered_removal_hands_the_order_on_once(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id, _ = await handed_over_to(dispatch, publisher, ("station-car", 22.8300),
                                          ("station-car-2", 22.8400),
                                          ("station-car-3", 22.8500))
    removal = utcnow()
    await station_team_removed(publisher, "station-car", at=removal)
    await poll_until(lambda: len(handover_orders(dispatch, incident_id)) == 2,
                     "the hand-over handed on", timeout=20)
    await station_team_removed(publisher, "station-car", at=removal)  # read again
    await poll_until(lambda: all_read(dispatch), "the removal read again", timeout=20)
    await poll_until(lambda: timer_due(dispatch, f"handover:{incident_id}") is None
                     and not any(timer_due(dispatch, f"removed:{o.order_id}") is not None
                                 for o in orders_for(dispatch, incident_id)),
                     "no timer of the case left", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn"),
                                                      ("station-car-2", "offered")]
    assert kinds_and_details(dispatch, incident_id).count(REMOVED_ENTRY) == 1


async def test_a_hand_over_of_a_removed_team_with_nobody_else_on_shift_is_flagged_and_retried(
        dispatch: str, publisher: RedisBroker) -> None:
    incident_id, station = await handed_over_to(dispatch, publisher, ("station-car", 22.8300))

    await station_team_removed(publisher, "station-car")
    await poll_until(lambda: incident(dispatch, incident_id).get("flagged") == "1",
                     "the board's flag", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn")]
    fields = incident(dispatch, incident_id)
    assert (fields["status"], fields["handover_order"]) == ("handed_over", "")
    assert REMOVED_ENTRY in kinds_and_details(dispatch, incident_id)
    assert ("note", "the hand-over was withdrawn (its team was removed from the roster) and "
            "no other team of the station is on shift: tried again every 15 min until one "
            "takes it", None) in kinds_and_details(dispatch, incident_id)
    due = timer_due(dispatch, f"handover:{incident_id}")
    assert due is not None and due > time.time() + 14 * 60

    # a team of the station comes on shift; 15 minutes on, the retry gives it the case
    await team(publisher, "station-foot", kind="police", lat=22.8310, lon=108.3665)
    await wait_for_units(dispatch, 2)
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        client.zadd(store.TIMERS, {f"handover:{incident_id}": time.time()})
    finally:
        client.close()
    await poll_until(lambda: len(handover_orders(dispatch, incident_id)) == 2, "asked again",
                     timeout=20)
    assert handover_orders(dispatch, incident_id)[-1] == ("station-foot", "offered")
    await poll_until(lambda: incident(dispatch, incident_id).get("flagged") == "0",
                     "the flag gone with the order")


async def test_a_follow_up_visit_of_a_removed_station_team_goes_to_another_of_its_teams(
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

    await station_team_removed(publisher, "station-car")
    others = await poll_until(lambda: followups(dispatch, incident_id)[1:],
                              "the visit handed on", timeout=20)
    assert [o.team_id for o in others] == ["station-foot"]
    await poll_until(lambda: incident(dispatch, incident_id).get("followup_order")
                     == others[0].order_id, "the new visit recorded")
    assert withdrawn(dispatch, visit.order_id)
    assert REMOVED_ENTRY in kinds_and_details(dispatch, incident_id)


async def test_a_station_team_that_only_goes_off_shift_keeps_its_hand_over(
        dispatch: str, publisher: RedisBroker) -> None:
    # The station's filing is a task for its next shift, not an emergency: only a team gone
    # from the roster, which nobody will ever answer for, has it handed on.
    incident_id, station = await handed_over_to(dispatch, publisher, ("station-car", 22.8300),
                                                ("station-car-2", 22.8400))
    await station_team_off_shift(publisher, "station-car")
    await poll_until(lambda: all_read(dispatch), "the check-out read", timeout=20)
    await poll_until(lambda: not any(timer_due(dispatch, f"{kind}:{station.order_id}")
                                     for kind in ("removed", "offshift")),
                     "no timer of the order left", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "offered")]
    assert not withdrawn(dispatch, station.order_id)


async def test_a_hand_over_made_before_station_orders_were_indexed_is_handed_on_too(
        dispatch: str, publisher: RedisBroker) -> None:
    import redis.asyncio as aioredis

    from services.dispatch import records

    incident_id, station = await handed_over_to(dispatch, publisher, ("station-car", 22.8300),
                                                ("station-car-2", 22.8400))
    client = aioredis.Redis.from_url(dispatch, decode_responses=True)
    try:
        # as an earlier version left it: no team's index of its station orders
        await client.delete("dispatch:station-orders:station-car")
        assert await records.index_station_orders_before(client) == 1
        assert await records.index_station_orders_before(client) == 0  # once per Redis
    finally:
        await client.aclose()

    await station_team_removed(publisher, "station-car")
    await poll_until(lambda: len(handover_orders(dispatch, incident_id)) == 2,
                     "the hand-over handed on", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn"),
                                                      ("station-car-2", "offered")]


def station_orders_of(url: str, team_id: str) -> set[str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.smembers(f"dispatch:station-orders:{team_id}")
    finally:
        client.close()


async def test_a_team_s_index_of_station_orders_keeps_only_its_live_ones(
        dispatch: str, publisher: RedisBroker) -> None:
    # Read at the team's removal only: what it holds of orders long done must not pile up.
    first_id, first = await handed_over_to(dispatch, publisher, ("station-car", 22.8300))
    assert station_orders_of(dispatch, "station-car") == {first.order_id}
    await respond(publisher, first, "acknowledged", "resolved")  # the station files it
    await poll_until(lambda: incident(dispatch, first_id).get("status") == "resolved",
                     "the case filed")

    incident_id = await report(publisher, "noise", priority="P4")
    [order] = await poll_until(lambda: [o for o in orders_for(dispatch, incident_id)
                                        if o.kind == "dispatch"], "the guard's order")
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", STATION)
    finally:
        client.close()
    await respond(publisher, order, "acknowledged", "handover")
    [second] = await poll_until(lambda: [o for o in orders_for(dispatch, incident_id)
                                         if o.kind == "handover"], "the second hand-over")
    assert station_orders_of(dispatch, "station-car") == {second.order_id}

    await station_team_removed(publisher, "station-car")
    await poll_until(lambda: handover_orders(dispatch, incident_id)
                     == [("station-car", "withdrawn")], "the hand-over withdrawn", timeout=20)
    assert station_orders_of(dispatch, "station-car") == set()


async def test_a_hand_over_given_to_a_team_removed_meanwhile_goes_to_another_of_its_teams(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The step read the station's teams, then the removal was handled, then the step wrote
    # its order to the team it had chosen: the removal found no order of the team to hand on.
    real = store.units_of_agency
    raced: list[str] = []

    async def removed_after_the_read(redis: Redis, **kwargs: str) -> list[Unit]:
        units = await real(redis, **kwargs)
        if not raced and any(u.team_id == "station-car" for u in units):
            raced.append("removed")
            await store.save_unit_status(redis, at=utcnow(), fields={
                "team_id": "station-car", "district": DISTRICT, "status": "off_duty",
                "name": "", "agency_id": STATION, "agency_kind": "police", "agency_role": "",
                "mode": "car", "skills": "[]", "home_zone_id": "", "on_shift": "0"},
                removed=True, removed_kept_s=3600)
        return units

    monkeypatch.setattr(store, "units_of_agency", removed_after_the_read)
    incident_id, station = await handed_over_to(dispatch, publisher, ("station-car", 22.8300),
                                                ("station-car-2", 22.8400))
    assert (raced, station.team_id) == (["removed"], "station-car")
    await poll_until(lambda: len(handover_orders(dispatch, incident_id)) == 2,
                     "the hand-over handed on", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn"),
                                                      ("station-car-2", "offered")]
    assert station_orders_of(dispatch, "station-car") == set()


async def test_the_backup_of_a_removed_station_team_goes_at_once_to_an_incident_waiting(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The station car that asked for backup is removed from the roster: its hand-over order
    # is handed on, and the backup that came for it withdrawn. The removed team is nobody to
    # offer; the backup's team is free, and the collapse waiting for a first-aider gets it
    # at once, not at the sweep (off here) or the team's next position fix.
    url = clean_redis
    async with console_of(url, waiting_sweep_s=0):
        handover, backup, collapse = await a_backup_wanted_elsewhere(url, publisher)
        await station_team_removed(publisher, handover.team_id)
        await order_in(url, handover, "withdrawn")
        await order_in(url, backup, "withdrawn")
        (order,) = await poll_until(lambda: orders_for(url, collapse),
                                    "the collapse given the first-aider freed")
        assert order.team_id == backup.team_id


def back_on_the_roster() -> UnitStatus:
    """volunteers' word for station-car imported again under its id, on shift."""
    return UnitStatus(
        district=DISTRICT, unit_id="station-car", status="available", name="station-car",
        agency_id=STATION, agency_kind="police", mode="car", on_shift=True,
        occurred_at=utcnow() + timedelta(milliseconds=5))


@pytest.mark.parametrize("again", ["after", "while"],
                         ids=["removed_again_later", "removed_again_while_judged"])
async def test_a_team_removed_again_after_an_import_brought_it_back_hands_its_order_on(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch,
        again: str) -> None:
    # Removed, imported again before its removal was judged (nothing to do: its phones get
    # the order), then removed again: later, or while that `removed:` timer still fires. The
    # second removal hands the order on, as the first would have: the first had dropped the
    # team's index of station orders, which the import does not rebuild, and a second
    # removal read meanwhile set the timer only if absent, a no-op on the leased one, then
    # removed as handled: the hand-over stayed with a team nobody could answer for.
    from services.dispatch.engine import Dispatcher

    real = Dispatcher.on_removed_team_order_due
    raced: list[str] = []

    async def imported_again_first(engine: Dispatcher, order_id: str, **kwargs: object
                                   ) -> object:
        if raced:
            return await real(engine, order_id, **kwargs)
        raced.append(order_id)
        await engine.on_unit_status(back_on_the_roster())
        result = await real(engine, order_id, **kwargs)  # imported again: nothing to do
        if again == "while":
            await engine.on_unit_status(UnitStatus(
                district=DISTRICT, unit_id="station-car", status="off_duty",
                agency_id=STATION, agency_kind="police", mode="car", on_shift=False,
                removed=True, occurred_at=utcnow() + timedelta(milliseconds=5)))
        return result

    monkeypatch.setattr(Dispatcher, "on_removed_team_order_due", imported_again_first)
    incident_id, station = await handed_over_to(dispatch, publisher, ("station-car", 22.8300),
                                                ("station-car-2", 22.8400))
    assert station.team_id == "station-car"
    await station_team_removed(publisher, "station-car")
    await poll_until(lambda: raced, "the first removal judged", timeout=20)
    if again == "after":
        await poll_until(lambda: timer_due(dispatch, f"removed:{station.order_id}") is None,
                         "the first removal's timer done", timeout=20)
        assert handover_orders(dispatch, incident_id) == [("station-car", "offered")]
        await station_team_removed(publisher, "station-car")
    await poll_until(lambda: len(handover_orders(dispatch, incident_id)) == 2,
                     "the hand-over handed on", timeout=20)
    assert handover_orders(dispatch, incident_id) == [("station-car", "withdrawn"),
                                                      ("station-car-2", "offered")]
    assert kinds_and_details(dispatch, incident_id).count(REMOVED_ENTRY) == 1
