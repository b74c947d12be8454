"""A P1 with a police team's order live is the police's, also when a security or volunteer
team answers "hand over" (the guard first on scene at a knife fight): the guard's order ends
as handed over, the incident is not handed over to the station but stays with the police,
who resolve it or hand it over themselves, and what the guard said goes with it (the
timeline's note, the station's instructions should the police hand it over). On a P2-P4 the
guard's hand-over ends the incident as before. In-process against a real Redis (the
resolved answer's rule: test_left_to_police.py)."""

from __future__ import annotations

import time

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from shared.events import (
    Evidence,
    IncidentHandedOver,
    OrderIssued,
    OrderResponded,
    UnitStatus,
)
from shared.timezones import parse_timezone
from tests.helpers import poll_until, read_stream

from .conftest import fail_once
from .test_engine import DISTRICT, orders_for, team, wait_for_units
from .test_followup_answers import answer, claim_of, order_fields, order_in
from .test_left_to_police import answers_of, answers_read, closings, withdrawals
from .test_steps_again import pending
from .test_stood_down import ADMIN, entries, fight, incident_fields

LEFT = "handover_left_to_police"
GUARD_SAYS = "two men with a knife ran towards the market"
RECORD = Evidence(kind="video", ref="bwc-0417.mp4")


def left_entries(url: str, incident_id: str) -> list[dict[str, object]]:
    return [e for e in entries(url, incident_id) if e.get("detail_code") == LEFT]


def handed_over(url: str, incident_id: str) -> list[IncidentHandedOver]:
    return [e for e in read_stream(url, streams.INCIDENT_HANDED_OVER.name, IncidentHandedOver)
            if e.incident_id == incident_id]


def station_orders(url: str, incident_id: str) -> list[OrderIssued]:
    return [o for o in orders_for(url, incident_id) if o.kind == "handover"]


def owned_by(url: str, incident_id: str, station: str) -> None:
    """The incident's place owned by `station` (no zones loaded: as its report said)."""
    with sync_redis.Redis.from_url(url, decode_responses=True) as client:
        client.hset(store.incident_key(incident_id), "station_agency_id", station)


def guards_hand_over(guard: OrderIssued) -> OrderResponded:
    return OrderResponded(district=DISTRICT, order_id=guard.order_id,
                          incident_id=guard.incident_id, team_id=guard.team_id,
                          member_id="m1", response="handover", note=GUARD_SAYS,
                          evidence=(RECORD,))


async def guard_hands_over(publisher: RedisBroker, guard: OrderIssued) -> None:
    await publisher.publish(guards_hand_over(guard), stream=streams.ORDER_RESPONDED.name)


def filing_by(order: OrderIssued) -> str:
    assert order.filing_due is not None
    return f"{order.filing_due.astimezone(parse_timezone('Asia/Shanghai')):%Y-%m-%d %H:%M}"


async def test_a_guards_hand_over_of_a_p1_fight_leaves_it_with_the_police(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The guard on scene at a P1 fight answers "hand over" while the police car is on its
    # way: the guard's order ends (its team free), the car is not stood down, the station is
    # not sent the case, and the incident is open, en route, until the police's own answer.
    url = clean_redis
    incident_id, police, guard = await fight(url, publisher)
    owned_by(url, incident_id, "ag-police")
    await guard_hands_over(publisher, guard)
    await order_in(url, guard, "handover")
    await poll_until(lambda: left_entries(url, incident_id), "the timeline's entry")
    assert order_fields(url, police.order_id)["state"] == "en_route"
    assert withdrawals(url, police) == []
    assert claim_of(url, "sec") is None and claim_of(url, "pol") == police.order_id
    inc = incident_fields(url, incident_id)
    assert inc["status"] == "en_route"
    # the guard's part is done: not "short of a unit", nobody sent in the guard's place
    assert inc["flagged"] == "0"
    assert not inc.get("handed_over_at") and not inc.get("handover_note")
    assert handed_over(url, incident_id) == [] and closings(url, incident_id) == []
    assert sorted((o.team_id, o.kind) for o in orders_for(url, incident_id)) == [
        ("pol", "dispatch"), ("sec", "dispatch")]
    body = (await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)).json()
    assert body["status"] == "en_route"
    timeline = body["timeline"]
    # what the guard said and recorded, with its answer and with the note
    (answered,) = [e for e in timeline if e["kind"] == "response"
                   and e["order_id"] == guard.order_id and e["detail"] == "handover"]
    assert (answered["note"], answered["evidence"]) == (
        GUARD_SAYS, [RECORD.model_dump(mode="json")])
    (left,) = [e for e in timeline if e.get("detail_code") == LEFT]
    assert (left["kind"], left["team_id"], left["order_id"], left["detail_args"],
            left["note"]) == ("note", "sec", guard.order_id, {"team": "sec", "police": "pol"},
                              GUARD_SAYS)
    assert left["detail"] == ("sec answered hand over: the incident is a P1 and stays with "
                              "the police (pol), who resolve it or hand it over to the station")
    assert timeline.index(left) > timeline.index(answered)
    assert not [e for e in timeline if e["kind"] in ("withdrawn", "handover")]

    # the police's hand-over hands it over, with the guard's words and record for the station
    await answer(publisher, police, "on_scene")
    await answer(publisher, police, "handover", "the victim knows them; needs a case")
    await poll_until(lambda: handed_over(url, incident_id), "the police's hand-over")
    (station,) = await poll_until(lambda: station_orders(url, incident_id),
                                  "the station's order")
    assert station.instructions == (
        "Handed over by pol. They say: the victim knows them; needs a case. "
        f"Earlier sec handed it over to the police: {GUARD_SAYS}. "
        f"Records: video bwc-0417.mp4. File the case by {filing_by(station)} (Asia/Shanghai).")
    inc = incident_fields(url, incident_id)
    assert (inc["status"], inc["handled_by_force"]) == ("handed_over", "police")
    assert inc["handover_note"] == "the victim knows them; needs a case"
    assert order_fields(url, guard.order_id)["state"] == "handover"  # not stood down after
    assert len(left_entries(url, incident_id)) == 1 and len(handed_over(url, incident_id)) == 1


async def test_the_police_resolve_what_the_guard_would_have_handed_over(
        dispatch: str, publisher: RedisBroker) -> None:
    # The police on scene judge otherwise: their resolution ends it on site, the station is
    # sent nothing, and the guard's words stay on the timeline.
    url = dispatch
    incident_id, police, guard = await fight(url, publisher)
    owned_by(url, incident_id, "ag-police")
    await guard_hands_over(publisher, guard)
    await poll_until(lambda: left_entries(url, incident_id), "the guard's note")
    await answer(publisher, police, "resolved")
    await poll_until(lambda: incident_fields(url, incident_id).get("status") == "resolved",
                     "the police's resolution")
    inc = incident_fields(url, incident_id)
    assert (inc["resolved_by_force"], inc["handled_by_force"]) == ("police", "police")
    assert not inc.get("handed_over_at")
    assert [c.resolved_by for c in closings(url, incident_id)] == [("pol",)]
    assert handed_over(url, incident_id) == [] and station_orders(url, incident_id) == []
    assert [e["note"] for e in left_entries(url, incident_id)] == [GUARD_SAYS]


async def test_a_guards_hand_over_handled_again_writes_its_entries_once(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The answer's last write fails (Redis away): handled again, and then delivered a
    # second time (notify's outbox sends it again), it writes one answer and one note, and
    # hands nothing over.
    url = dispatch
    incident_id, police, guard = await fight(url, publisher)
    owned_by(url, incident_id, "ag-police")
    failures = fail_once(monkeypatch, store, "end_step",
                         lambda *_a, **kw: str(kw.get("done", "")).startswith("responded:"))
    event = guards_hand_over(guard)
    await publisher.publish(event, stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: failures and answers_read(url) and left_entries(url, incident_id),
                     "the guard's answer handled again after the failure")
    await publisher.publish(event, stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: answers_read(url), "the same answer read a second time")
    assert len(left_entries(url, incident_id)) == 1
    assert len(answers_of(url, incident_id, guard, "handover")) == 1
    assert order_fields(url, police.order_id)["state"] == "en_route"
    inc = incident_fields(url, incident_id)
    assert inc["status"] == "en_route" and not inc.get("handed_over_at")
    assert handed_over(url, incident_id) == [] and station_orders(url, incident_id) == []
    assert pending(url, streams.ORDER_RESPONDED.name) == 0


async def test_a_guards_hand_over_handled_again_after_the_police_handed_it_over_only_adds_its_note(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard's answer is written, its step's last write (the note) fails, and the police
    # car's own hand-over is handled before the guard's answer again: the answer handled
    # again finds no police order live, and must neither hand the incident over a second
    # time (a second station order) nor leave its note out.
    url = dispatch
    incident_id, police, guard = await fight(url, publisher)
    owned_by(url, incident_id, "ag-police")
    real = store.end_step
    event = guards_hand_over(guard)
    failing = [True]
    failures: list[str] = []

    async def fails_while_failing(*args: object, **kwargs: object) -> object:
        if failing[0] and kwargs.get("done") == f"responded:{event.event_id}":
            failures.append("failed")
            raise ConnectionError("Redis went away")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "end_step", fails_while_failing)
    await publisher.publish(event, stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: failures, "the guard's note failing")
    await answer(publisher, police, "handover")
    await poll_until(lambda: station_orders(url, incident_id), "the police's hand-over")
    failing[0] = False
    await poll_until(lambda: left_entries(url, incident_id), "the guard's note, handled again")
    await poll_until(lambda: answers_read(url), "every answer read")
    assert len(handed_over(url, incident_id)) == 1
    assert [o.team_id for o in station_orders(url, incident_id)] == ["pol"]
    assert incident_fields(url, incident_id)["handled_by_force"] == "police"
    assert len(answers_of(url, incident_id, guard, "handover")) == 1
    (left,) = left_entries(url, incident_id)
    assert (left["detail_args"], left["note"]) == ({"team": "sec", "police": "pol"}, GUARD_SAYS)


async def test_the_backup_the_guard_called_goes_with_its_hand_over_but_a_police_backup_stays(
        dispatch: str, publisher: RedisBroker) -> None:
    # The guard called for backup twice: a second guard and a second police car came. The
    # guard's hand-over stands its own backup down; the police car it called stays.
    url = dispatch
    incident_id, police, guard = await fight(url, publisher)
    await team(publisher, "sec2", kind="security", lat=22.8180, lon=108.3665)
    await wait_for_units(url, 3)
    await answer(publisher, guard, "reinforce", "two of them, a knife")
    (sec2,) = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                        if o.team_id == "sec2"], "the guard's first backup")
    await team(publisher, "pol2", kind="police", lat=22.8190, lon=108.3665)
    await wait_for_units(url, 4)
    await answer(publisher, guard, "reinforce", "more of them")
    (pol2,) = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                        if o.team_id == "pol2"], "the guard's second backup")
    await answer(publisher, pol2, "acknowledged")
    await order_in(url, pol2, "acknowledged")
    await guard_hands_over(publisher, guard)
    await order_in(url, guard, "handover")
    await order_in(url, sec2, "withdrawn")
    assert [(e["detail_code"], e["detail_args"]) for e in entries(url, incident_id)
            if e["kind"] == "withdrawn"] == [
        ("stood_down_backed_order_ended", {"team": "sec", "state": "handover"})]
    assert order_fields(url, pol2.order_id)["state"] == "acknowledged"
    assert order_fields(url, police.order_id)["state"] == "en_route"
    (left,) = await poll_until(lambda: left_entries(url, incident_id), "the guard's note")
    assert left["detail_args"] == {"team": "sec", "police": "pol, pol2"}
    inc = incident_fields(url, incident_id)
    assert inc["status"] == "en_route" and not inc.get("handed_over_at")


async def test_a_station_given_the_police_hand_over_later_reads_who_handed_it_over(
        dispatch: str, publisher: RedisBroker) -> None:
    # The station (ag-station) has nobody on shift when the police hand over: the case
    # waits, and the station's car that comes on shift later is told the police handed it
    # over, and what the guard had said before them (not that the guard handed it over).
    url = dispatch
    incident_id, police, guard = await fight(url, publisher)
    owned_by(url, incident_id, "ag-station")
    await guard_hands_over(publisher, guard)
    await poll_until(lambda: left_entries(url, incident_id), "the guard's note")
    await answer(publisher, police, "handover", "needs a case")
    await poll_until(lambda: handed_over(url, incident_id), "the police's hand-over")
    assert station_orders(url, incident_id) == []
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id="stn", status="available", name="stn",
        agency_id="ag-station", agency_kind="police", mode="car", on_shift=True),
        stream=streams.UNIT_STATUS.name)
    with sync_redis.Redis.from_url(url, decode_responses=True) as client:
        await poll_until(lambda: client.hget("dispatch:unit:stn", "agency_kind"),
                         "the station's car known to dispatch")
        client.zadd(store.TIMERS, {f"handover:{incident_id}": time.time()})
    (station,) = await poll_until(lambda: station_orders(url, incident_id),
                                  "the station's order")
    assert station.team_id == "stn"
    assert station.instructions == (
        "Handed over by pol. They say: needs a case. "
        f"Earlier sec handed it over to the police: {GUARD_SAYS}. "
        f"Records: video bwc-0417.mp4. File the case by {filing_by(station)} (Asia/Shanghai).")


async def test_a_guards_hand_over_of_a_p2_joint_response_hands_it_over_as_before(
        dispatch: str, publisher: RedisBroker) -> None:
    # A fight the 110 system gave P2: the guard's hand-over stands the police car down and
    # hands the case to the station, as it always did.
    url = dispatch
    incident_id, police, guard = await fight(url, publisher, "P2")
    owned_by(url, incident_id, "ag-police")
    await guard_hands_over(publisher, guard)
    await poll_until(lambda: handed_over(url, incident_id), "the guard's hand-over")
    await order_in(url, police, "withdrawn")
    inc = incident_fields(url, incident_id)
    assert (inc["status"], inc["handled_by_force"], inc["handover_note"]) == (
        "handed_over", "security", GUARD_SAYS)
    assert left_entries(url, incident_id) == []
    assert [(e["detail_code"], e["detail_args"]) for e in entries(url, incident_id)
            if e["kind"] == "withdrawn"] == [("stood_down_handed_over", {"team": "sec"})]
    (station,) = await poll_until(lambda: station_orders(url, incident_id),
                                  "the station's order")
    assert station.instructions is not None
    assert station.instructions.startswith(f"Handed over by sec. They say: {GUARD_SAYS}. "
                                           "Records: ")
