"""A team hands its incident over to the owning police station, in-process against a real
Redis: one order to the station's team, also when the first attempt failed after it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from services.dispatch.engine import Dispatcher
from shared import streams
from shared.events import (
    Evidence,
    IncidentHandedOver,
    IncidentUpdated,
    OrderIssued,
    OrderResponded,
    UnitPosition,
    UnitStatus,
    utcnow,
)
from shared.timezones import parse_timezone
from tests.helpers import poll_until, read_stream

from .conftest import dispatch_with_teams, fail_a_write_once, fail_once
from .test_engine import DISTRICT, SCENE, orders_for, report, wait_for_units

HANDOVER_NOTE = "parties agreed to mediation; revisit needed"


async def hand_over(url: str, publisher: RedisBroker, *, station_team: bool = True
                    ) -> tuple[str, list[OrderIssued]]:
    """An incident of the station ag-police that its guard answers, then hands over; its
    orders once incident.handed_over is out. `station_team`: whether the station has a
    team on shift."""
    teams = {"guard": ("security", 22.8171)}
    if station_team:
        teams["station-car"] = ("police", 22.8300)
    async with dispatch_with_teams(url, publisher, teams):
        incident_id = await report(publisher, "noise", priority="P4")
        (order,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            client.hset(f"dispatch:incident:{incident_id}", "station_agency_id", "ag-police")
        finally:
            client.close()
        for response in ("acknowledged", "handover"):
            await publisher.publish(OrderResponded(
                district=DISTRICT, order_id=order.order_id, incident_id=incident_id,
                team_id="guard", member_id="m1", response=response,
                note=HANDOVER_NOTE if response == "handover" else None,
                evidence=RECORDS[response]),
                stream=streams.ORDER_RESPONDED.name)
        await poll_until(lambda: handed_over(url, incident_id), "incident.handed_over", 8)
    return incident_id, orders_for(url, incident_id)


async def guard_hands_over(publisher: RedisBroker, order: OrderIssued) -> None:
    """The guard's answers to `order`: acknowledged, then handover ("needs the station")."""
    for response in ("acknowledged", "handover"):
        await publisher.publish(OrderResponded(
            district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
            team_id="guard", member_id="m1", response=response,
            note="needs the station" if response == "handover" else None),
            stream=streams.ORDER_RESPONDED.name)


# the photo with the first answer, the body camera's video with the hand-over (and the photo
# again: the station reads each record once)
RECORDS = {"acknowledged": (Evidence(kind="photo", ref="img-0031.jpg"),),
           "handover": (Evidence(kind="video", ref="bwc-0417.mp4"),
                        Evidence(kind="photo", ref="img-0031.jpg"))}


def handed_over(url: str, incident_id: str) -> list[IncidentHandedOver]:
    return [e for e in read_stream(url, streams.INCIDENT_HANDED_OVER.name, IncidentHandedOver)
            if e.incident_id == incident_id]


def last_update(url: str, incident_id: str) -> IncidentUpdated:
    return [u for u in read_stream(url, streams.INCIDENT_UPDATED.name, IncidentUpdated)
            if u.incident_id == incident_id][-1]


def kinds_of_entries(url: str, incident_id: str) -> list[str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        entries = [json.loads(e) for e in client.lrange(f"dispatch:timeline:{incident_id}", 0, -1)]
    finally:
        client.close()
    return [e["kind"] if e["kind"] != "status" else f"status:{e['status']}" for e in entries]


async def test_the_station_gets_the_handed_over_incident(clean_redis: str,
                                                         publisher: RedisBroker) -> None:
    incident_id, orders = await hand_over(clean_redis, publisher)
    assert [(o.team_id, o.kind) for o in orders] == [("guard", "dispatch"),
                                                     ("station-car", "handover")]
    assert orders[1].filing_due is not None
    entries = kinds_of_entries(clean_redis, incident_id)
    assert entries.count("handover") == 1 and entries.count("response") == 2
    # the station's officers read what the team said and when to file, in local time
    due = orders[1].filing_due.astimezone(parse_timezone("Asia/Shanghai"))
    assert orders[1].instructions == (
        f"Handed over by guard. They say: {HANDOVER_NOTE}. "
        f"Records: photo img-0031.jpg; video bwc-0417.mp4. "
        f"File the case by {due:%Y-%m-%d %H:%M} (Asia/Shanghai).")


async def test_the_command_room_reads_what_the_team_said_with_its_answer(
        clean_redis: str, publisher: RedisBroker) -> None:
    incident_id, _ = await hand_over(clean_redis, publisher)
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        entries = [json.loads(e) for e in client.lrange(f"dispatch:timeline:{incident_id}", 0, -1)]
    finally:
        client.close()
    answers = [(e["detail"], e.get("note")) for e in entries if e["kind"] == "response"]
    assert answers == [("acknowledged", None), ("handover", HANDOVER_NOTE)]


async def test_a_handover_that_failed_after_the_station_order_sends_no_second(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    failures = fail_a_write_once(monkeypatch, "handover_order")
    incident_id, orders = await hand_over(clean_redis, publisher)
    assert failures == ["failed"]  # the response was handled again after it
    assert [(o.team_id, o.kind) for o in orders] == [("guard", "dispatch"),
                                                     ("station-car", "handover")]
    entries = kinds_of_entries(clean_redis, incident_id)
    assert entries.count("handover") == 1
    assert entries.count("response") == 2  # the handover's own entry not written twice


async def test_a_station_with_no_team_on_shift_gets_the_incident_flagged(
        clean_redis: str, publisher: RedisBroker) -> None:
    incident_id, orders = await hand_over(clean_redis, publisher, station_team=False)
    assert [(o.team_id, o.kind) for o in orders] == [("guard", "dispatch")]
    assert [(e.station_agency_id, e.order_id) for e in handed_over(clean_redis, incident_id)] == [
        ("ag-police", None)]
    update = last_update(clean_redis, incident_id)
    assert update.status == "handed_over" and update.flagged  # the command room must act
    assert update.entry.kind == "note"
    assert kinds_of_entries(clean_redis, incident_id).count("note") == 1


async def test_a_handover_to_a_station_with_no_team_made_again_writes_its_note_once(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The step fails after its note (at incident.handed_over) and is made again.
    failures = fail_once(monkeypatch, Dispatcher, "_publish",
                         lambda _engine, stream, _event: stream == streams.INCIDENT_HANDED_OVER)
    incident_id, _ = await hand_over(clean_redis, publisher, station_team=False)
    assert failures == ["failed"]
    assert len(handed_over(clean_redis, incident_id)) == 1
    entries = kinds_of_entries(clean_redis, incident_id)
    assert entries.count("note") == 1 and entries.count("response") == 2
    assert last_update(clean_redis, incident_id).flagged


async def test_a_station_with_no_team_on_shift_gets_the_order_once_one_is(
        clean_redis: str, publisher: RedisBroker) -> None:
    incident_id, _ = await hand_over(clean_redis, publisher, station_team=False)
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        due = client.zscore(store.TIMERS, f"handover:{incident_id}")
        assert due is not None and 14 * 60 < due - time.time() <= 15 * 60  # tried again
        # a quarter of an hour later, the station's car has come on shift
        async with dispatch_with_teams(clean_redis, publisher,
                                       {"station-car": ("police", 22.8300)}):
            client.zadd(store.TIMERS, {f"handover:{incident_id}": time.time()})
            await poll_until(lambda: client.hget(f"dispatch:incident:{incident_id}",
                                                 "handover_order"), "the station's order", 8)
            await poll_until(lambda: client.zscore(store.TIMERS, f"handover:{incident_id}")
                             is None, "the timer finished")
            # fired again (a lost lease, a second replica): no second order
            client.zadd(store.TIMERS, {f"handover:{incident_id}": time.time()})
            await poll_until(lambda: client.zscore(store.TIMERS, f"handover:{incident_id}")
                             is None, "the timer finished again")
    finally:
        client.close()
    station_orders = [o for o in orders_for(clean_redis, incident_id) if o.kind == "handover"]
    assert [o.team_id for o in station_orders] == ["station-car"]
    assert station_orders[0].instructions is not None
    assert station_orders[0].instructions.startswith(f"Handed over by guard. They say: "
                                                     f"{HANDOVER_NOTE}. Records: ")
    assert kinds_of_entries(clean_redis, incident_id).count("handover") == 1
    assert last_update(clean_redis, incident_id).status == "handed_over"


async def station_team_sent(url: str, publisher: RedisBroker,
                            station: dict[str, tuple[float, float] | None]) -> list[str]:
    """A guard's noise complaint handed over to the station ag-police, whose teams on
    shift are `station` ({team id: (latitude, age of its fix in seconds), or None: it never
    sent a position}, all at the scene's longitude): the teams of the station's orders."""
    async with dispatch_with_teams(url, publisher, {"guard": ("security", 22.8171)}):
        incident_id = await report(publisher, "noise", priority="P4")
        (order,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
        assert order.team_id == "guard"
        # the station's teams come on shift (too late to be this incident's first)
        for team_id, placed in station.items():
            await publisher.publish(UnitStatus(
                district=DISTRICT, unit_id=team_id, status="available", name=team_id,
                agency_id="ag-police", agency_kind="police", mode="car", on_shift=True),
                stream=streams.UNIT_STATUS.name)
            if placed is not None:
                lat, age_s = placed
                await publisher.publish(UnitPosition(
                    district=DISTRICT, unit_id=team_id, lat=lat, lon=SCENE.lon,
                    at=utcnow() - timedelta(seconds=age_s)), stream=streams.UNIT_POSITION.name)
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            client.hset(f"dispatch:incident:{incident_id}", "station_agency_id", "ag-police")
            for team_id, placed in station.items():
                await poll_until(lambda t=team_id, p=placed: client.hget(
                    f"dispatch:unit:{t}", "fix_ts" if p is not None else "agency_kind"),
                    f"{team_id} known to dispatch")
        finally:
            client.close()
        await guard_hands_over(publisher, order)
        await poll_until(lambda: handed_over(url, incident_id), "incident.handed_over")
    return [o.team_id for o in orders_for(url, incident_id) if o.kind == "handover"]


async def test_the_handover_goes_to_the_station_team_nearest_the_scene_not_one_with_no_position(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The station has a car on shift 50 m from the scene and a desk team on shift that
    # never sent a position: nobody knows where the desk team is, so it is not "nearest".
    sent = await station_team_sent(clean_redis, publisher, {
        "station-desk": None, "station-car": (22.8175, 60)})
    assert sent == ["station-car"]


async def test_the_handover_prefers_a_station_team_with_a_fresh_fix_to_a_nearer_stale_one(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The walker's last fix, 30 minutes old, was on the scene; the car 1.5 km away sent
    # its own a minute ago: where the walker is now nobody knows.
    sent = await station_team_sent(clean_redis, publisher, {
        "station-walker": (22.8170, 1800), "station-car": (22.8300, 60)})
    assert sent == ["station-car"]


async def test_the_handover_goes_to_a_station_team_with_no_position_when_none_has_one(
        clean_redis: str, publisher: RedisBroker) -> None:
    sent = await station_team_sent(clean_redis, publisher, {"station-desk": None})
    assert sent == ["station-desk"]


async def decline(publisher: RedisBroker, order: OrderIssued, note: str) -> None:
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
        team_id=order.team_id, member_id="m1", response="declined", note=note),
        stream=streams.ORDER_RESPONDED.name)


def handover_orders(url: str, incident_id: str) -> list[tuple[str, str]]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return [(o.team_id, client.hget(store.order_key(o.order_id), "state") or "")
                for o in orders_for(url, incident_id) if o.kind == "handover"]
    finally:
        client.close()


async def test_a_hand_over_the_station_team_declines_goes_to_another_of_its_teams(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher)
    assert (orders[-1].team_id, orders[-1].kind) == ("station-car", "handover")
    async with dispatch_with_teams(url, publisher, {"station-car": ("police", 22.8300),
                                                   "station-foot": ("police", 22.8310)}):
        await wait_for_units(url, 3)  # the guard of the first part too
        await decline(publisher, orders[-1], "busy filing another case")
        await poll_until(lambda: len(handover_orders(url, incident_id)) == 2, "another order")
    assert handover_orders(url, incident_id) == [("station-car", "declined"),
                                                 ("station-foot", "offered")]
    last = last_update(url, incident_id)
    assert (last.status, last.flagged) == ("handed_over", False)
    assert last.entry.kind == "handover" and last.entry.team_id == "station-foot"


async def test_a_hand_over_passed_to_another_station_team_keeps_its_filing_due(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The station's first team leaves the hand-over unanswered for 23 h, then declines it:
    # the colleague who gets it has the hour the station had left, not another 24 h (the
    # case would never show as filing overdue, however late the station filed it).
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher)
    first = orders[-1]
    assert first.filing_due is not None
    due = datetime.now(UTC) + timedelta(hours=1)  # the 24 h nearly gone
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.hset(store.order_key(first.order_id), "filing_due", due.isoformat())
    finally:
        client.close()
    async with dispatch_with_teams(url, publisher, {"station-car": ("police", 22.8300),
                                                   "station-foot": ("police", 22.8310)}):
        await wait_for_units(url, 3)
        await decline(publisher, first, "busy filing another case")
        await poll_until(lambda: len(handover_orders(url, incident_id)) == 2, "another order")
    second = [o for o in orders_for(url, incident_id) if o.kind == "handover"][-1]
    assert second.team_id == "station-foot"
    assert second.filing_due == due


async def test_a_hand_over_every_station_team_declined_is_flagged_and_offered_again_later(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher)
    async with dispatch_with_teams(url, publisher, {"station-car": ("police", 22.8300)},
                                   timer_lease_s=0.5):
        await decline(publisher, orders[-1], "busy filing another case")
        await poll_until(lambda: last_update(url, incident_id).flagged, "the board's flag")
        assert last_update(url, incident_id).entry.detail == (
            "the hand-over was declined and no other team of the station is on shift: tried "
            "again every 15 min until one takes it")
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            due = client.zscore(store.TIMERS, f"handover:{incident_id}")
            assert due is not None and due > time.time() + 14 * 60
            client.zadd(store.TIMERS, {f"handover:{incident_id}": time.time()})  # 15 min on
        finally:
            client.close()
        await poll_until(lambda: len(handover_orders(url, incident_id)) == 2, "asked again")
    assert handover_orders(url, incident_id) == [("station-car", "declined"),
                                                 ("station-car", "offered")]


async def test_a_hand_over_that_waited_for_a_station_team_is_due_a_day_after_the_hand_over(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The guard hands the dispute over at 20:00; nobody of the station is on shift in the
    # app until a car checks in 30 h later. The station owed the filing from the hand-over:
    # the car's order is due already (a day after the hand-over), and the inspector sees it
    # overdue; it is not given a fresh 24 h from its check-in.
    from .test_supervision import board, overdue_on_board

    url = clean_redis
    incident_id, _ = await hand_over(url, publisher, station_team=False)
    handed_at = datetime.now(UTC) - timedelta(hours=30)
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "handed_over_at", handed_at.isoformat())
        async with dispatch_with_teams(url, publisher, {"station-car": ("police", 22.8300)}):
            client.zadd(store.TIMERS, {f"handover:{incident_id}": time.time()})  # retried
            await poll_until(lambda: client.hget(store.incident_key(incident_id),
                                                 "handover_order"), "the station's order", 8)
    finally:
        client.close()
    (order,) = [o for o in orders_for(url, incident_id) if o.kind == "handover"]
    assert order.filing_due == handed_at + timedelta(hours=24)
    async with board(url) as console:
        assert await overdue_on_board(console) == [incident_id]
