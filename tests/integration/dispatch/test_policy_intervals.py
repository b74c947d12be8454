"""The retry intervals a station tunes in its policy file (a hand-over nobody is on shift
for, a visit nobody could be given, a backup nobody was free for, the revisit of a category
the file gives no interval) are the ones dispatch sets its timers by: each read as the
timer's score in dispatch:timers, not waited for."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis as sync_redis
import yaml
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from shared.events import OrderIssued, OrderResponded
from shared.policy import DEFAULT_POLICY
from tests.helpers import poll_until

from .conftest import dispatch_with_teams
from .test_engine import DISTRICT, orders_for, report

GUARD = {"guard": ("security", 22.8171)}
GUARD_AND_STATION = {**GUARD, "station-car": ("police", 22.8300)}


def policy_file(tmp_path: Path, **settings: Any) -> str:
    """The shipped policy with `settings` changed, where POLICY_FILE would name it."""
    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    data.update(settings)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def timer_in_s(url: str, member: str) -> float | None:
    """How far ahead of now the timer `member` is due (None: no such timer)."""
    client = sync_redis.Redis.from_url(url)
    try:
        due = client.zscore(store.TIMERS, member)
    finally:
        client.close()
    return None if due is None else due - time.time()


def make_due(url: str, member: str) -> None:
    client = sync_redis.Redis.from_url(url)
    try:
        client.zadd(store.TIMERS, {member: time.time()})
    finally:
        client.close()


def incident(url: str, incident_id: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hgetall(store.incident_key(incident_id))
    finally:
        client.close()


def of_station(url: str, incident_id: str) -> None:
    """The incident's place belongs to the police station ag-police."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", "ag-police")
    finally:
        client.close()


def notes(url: str, incident_id: str) -> list[str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        entries = [json.loads(e) for e in client.lrange(store.timeline_key(incident_id), 0, -1)]
    finally:
        client.close()
    return [e.get("detail") or "" for e in entries if e["kind"] == "note"]


async def answer(publisher: RedisBroker, order: OrderIssued, *responses: str,
                 note: str | None = None) -> None:
    for response in responses:
        await publisher.publish(OrderResponded(
            district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
            team_id=order.team_id, member_id="m1", response=response,  # type: ignore[arg-type]
            note=note if response in ("handover", "declined") else None),
            stream=streams.ORDER_RESPONDED.name)


async def guards_noise_handed_over(url: str, publisher: RedisBroker) -> str:
    """A noise complaint in ag-police's territory, answered by the guard and handed over."""
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
    assert order.team_id == "guard"
    of_station(url, incident_id)
    await answer(publisher, order, "acknowledged", "handover", note="needs the station")
    await poll_until(lambda: incident(url, incident_id).get("handed_over_at"), "the hand-over")
    return incident_id


async def dispute_visit_ordered(url: str, publisher: RedisBroker) -> tuple[str, OrderIssued]:
    """A dispute of ag-police's territory whose follow-up visit came due: the visit's order
    to the station's car."""
    incident_id = await report(publisher, "dispute", priority="P3")
    await poll_until(lambda: orders_for(url, incident_id), "the first order")
    of_station(url, incident_id)
    make_due(url, f"followup:{incident_id}")
    [visit] = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                        if o.kind == "followup"], "the visit's order")
    assert visit.team_id == "station-car"
    return incident_id, visit


# --- the hand-over retry (DESIGN: every 15 minutes) -------------------------------------


async def test_a_hand_over_with_nobody_on_shift_is_tried_again_after_the_files_interval(
        clean_redis: str, publisher: RedisBroker, tmp_path: Path) -> None:
    path = policy_file(tmp_path, handover_retry_min=45)
    async with dispatch_with_teams(clean_redis, publisher, GUARD, policy_file=path):
        incident_id = await guards_noise_handed_over(clean_redis, publisher)
        member = f"handover:{incident_id}"
        due_in = await poll_until(lambda: timer_in_s(clean_redis, member), "the retry's timer")
    assert 40 * 60 < due_in <= 45 * 60, due_in / 60  # not the built-in 15 minutes
    assert any(n.endswith("tried again every 45 min until one is")
               for n in notes(clean_redis, incident_id)), notes(clean_redis, incident_id)


async def test_a_hand_over_the_only_station_team_declines_is_tried_again_after_the_files_interval(
        clean_redis: str, publisher: RedisBroker, tmp_path: Path) -> None:
    path = policy_file(tmp_path, handover_retry_min=45)
    async with dispatch_with_teams(clean_redis, publisher, GUARD_AND_STATION, policy_file=path):
        incident_id = await guards_noise_handed_over(clean_redis, publisher)
        [order] = await poll_until(lambda: [o for o in orders_for(clean_redis, incident_id)
                                            if o.kind == "handover"], "the station's order")
        await answer(publisher, order, "declined", note="busy filing another case")
        await poll_until(lambda: incident(clean_redis, incident_id).get("station_noted"),
                         "the refusal's note")
        due_in = timer_in_s(clean_redis, f"handover:{incident_id}")
    assert due_in is not None and 40 * 60 < due_in <= 45 * 60, due_in
    assert ("the hand-over was declined and no other team of the station is on shift: tried "
            "again every 45 min until one takes it") in notes(clean_redis, incident_id)


# --- the follow-up visit retry (an hour) -------------------------------------------------


async def test_a_visit_the_only_station_team_declines_is_ordered_again_after_the_files_interval(
        clean_redis: str, publisher: RedisBroker, tmp_path: Path) -> None:
    path = policy_file(tmp_path, followup_retry_h=3)
    async with dispatch_with_teams(clean_redis, publisher, GUARD_AND_STATION, policy_file=path,
                                   timer_lease_s=0.5):
        incident_id, visit = await dispute_visit_ordered(clean_redis, publisher)
        await answer(publisher, visit, "declined", note="no officer free today")
        await poll_until(lambda: incident(clean_redis, incident_id).get("station_noted"),
                         "the refusal's note")
        due_in = timer_in_s(clean_redis, f"followup:{incident_id}")
    assert due_in is not None and 2.5 * 3600 < due_in <= 3 * 3600, due_in / 3600
    assert ("follow-up visit declined; no other team of the station on shift: ordered again "
            "in 3 h") in notes(clean_redis, incident_id)


async def test_a_visit_due_with_nobody_of_the_station_on_shift_waits_the_files_interval(
        clean_redis: str, publisher: RedisBroker, tmp_path: Path) -> None:
    path = policy_file(tmp_path, followup_retry_h=3)
    async with dispatch_with_teams(clean_redis, publisher, GUARD, policy_file=path,
                                   timer_lease_s=0.5):
        incident_id = await report(publisher, "dispute", priority="P3")
        await poll_until(lambda: orders_for(clean_redis, incident_id), "the guard's order")
        of_station(clean_redis, incident_id)
        member = f"followup:{incident_id}"
        make_due(clean_redis, member)
        # fired, found nobody of the station on shift, and set again (past its lease)
        due_in = await poll_until(lambda: (s := timer_in_s(clean_redis, member)) is not None
                                  and s > 60 and s, "the visit set again")
    assert 2.5 * 3600 < due_in <= 3 * 3600, due_in / 3600  # not the built-in hour
    assert not [o for o in orders_for(clean_redis, incident_id) if o.kind == "followup"]


# --- the revisit of a category the file gives no interval (7 days) ----------------------


async def test_a_revisit_of_a_category_without_its_own_interval_is_due_after_the_files_default(
        clean_redis: str, publisher: RedisBroker, tmp_path: Path) -> None:
    # The station dropped disputes from followup_days while a visit was under way; the
    # visit finds the agreement broken: the next is due after the file's default interval.
    path = policy_file(tmp_path, followup_days={}, followup_default_days=3)
    async with dispatch_with_teams(clean_redis, publisher, GUARD_AND_STATION, policy_file=path,
                                   timer_lease_s=0.5):
        incident_id, visit = await dispute_visit_ordered(clean_redis, publisher)
        await poll_until(lambda: timer_in_s(clean_redis, f"followup:{incident_id}") is None,
                         "the visit's timer finished")
        await answer(publisher, visit, "acknowledged", "handover", note="quarrelling again")
        await poll_until(lambda: incident(clean_redis, incident_id).get("followup_visits")
                         == "2", "the second visit planned")
        due_in = timer_in_s(clean_redis, f"followup:{incident_id}")
    assert due_in is not None and 2.9 < due_in / 86400 <= 3, due_in / 86400  # not 7 days


# --- the backup retry (20 seconds) ------------------------------------------------------


async def test_a_backup_nobody_was_free_for_is_looked_for_again_after_the_files_interval(
        clean_redis: str, publisher: RedisBroker, tmp_path: Path) -> None:
    path = policy_file(tmp_path, reinforce_retry_s=300)
    async with dispatch_with_teams(clean_redis, publisher, {"alone": ("security", 22.8171)},
                                   policy_file=path):
        incident_id = await report(publisher, "noise", priority="P4")
        (order,) = await poll_until(lambda: orders_for(clean_redis, incident_id),
                                    "the first order")
        await answer(publisher, order, "acknowledged", "on_scene", "reinforce")
        member = f"reinforce:{order.order_id}"
        due_in = await poll_until(lambda: timer_in_s(clean_redis, member), "the backup's retry")
        assert 200 < due_in <= 300, due_in  # not the built-in 20 s
        await poll_until(lambda: any("looked for again every 300 s" in n
                                     for n in notes(clean_redis, incident_id)), "the note")
        # looked for again, nobody free again: set the file's interval on once more
        make_due(clean_redis, member)
        again = await poll_until(lambda: (s := timer_in_s(clean_redis, member)) is not None
                                 and s > 60 and s, "the backup's retry set again")
    assert 200 < again <= 300, again
