"""A team on scene asks for backup: dispatch sends the nearest free team, or tells the
command room that none is free; never a silent nothing."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from services.dispatch.engine import Dispatcher
from services.dispatch.main import create_app
from shared import streams
from shared.events import (
    Evidence,
    IncidentUpdated,
    OrderEscalated,
    OrderIssued,
    OrderResponded,
    OrderWithdrawn,
    utcnow,
)
from tests.helpers import poll_until, read_stream

from .conftest import dispatch_with_teams, fail_a_write_once, settings_for
from .test_engine import DISTRICT, orders_for, report, team, wait_for_units

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def on_scene_asking_for_backup(url: str, publisher: RedisBroker, *,
                                     note: str | None = None,
                                     evidence: tuple[Evidence, ...] | None = None,
                                     delivered: int = 1) -> tuple[str, OrderIssued]:
    """An incident whose first team is on scene and has just asked for reinforcement (in
    `note`'s words, with `evidence`; the call delivered `delivered` times)."""
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "the first order")
    for response in ("acknowledged", "on_scene", "reinforce"):
        event = OrderResponded(
            district=DISTRICT, order_id=order.order_id, incident_id=incident_id,
            team_id=order.team_id, member_id="m1", response=response,
            **({"note": note, "evidence": evidence} if response == "reinforce" else {}))
        for _ in range(delivered if response == "reinforce" else 1):
            await publisher.publish(event, stream=streams.ORDER_RESPONDED.name)
    return incident_id, order


async def answer(publisher: RedisBroker, order: OrderIssued, response: str) -> None:
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
        team_id=order.team_id, member_id="m1", response=response),
        stream=streams.ORDER_RESPONDED.name)


def updates(url: str, incident_id: str) -> list[IncidentUpdated]:
    return [u for u in read_stream(url, streams.INCIDENT_UPDATED.name, IncidentUpdated)
            if u.incident_id == incident_id]


def timer_of(url: str, member: str) -> float | None:
    client = sync_redis.Redis.from_url(url)
    try:
        return client.zscore(store.TIMERS, member)
    finally:
        client.close()


def make_due(url: str, member: str) -> None:
    """The timer's time has come (its wait is not what these tests are about)."""
    client = sync_redis.Redis.from_url(url)
    try:
        client.zadd(store.TIMERS, {member: time.time()})
    finally:
        client.close()


def timeline(url: str, incident_id: str) -> list[tuple[str, str | None]]:
    return [(u.entry.kind, u.entry.team_id) for u in read_stream(
        url, streams.INCIDENT_UPDATED.name, IncidentUpdated) if u.incident_id == incident_id]


async def test_backup_goes_to_the_nearest_free_team(dispatch: str,
                                                    publisher: RedisBroker) -> None:
    await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "backup", kind="security", lat=22.8190, lon=108.3665)
    await team(publisher, "farther", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(dispatch, 3)
    incident_id, first = await on_scene_asking_for_backup(dispatch, publisher)
    assert first.team_id == "first"
    orders = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 2 and
                              orders_for(dispatch, incident_id), "the reinforcement")
    assert [(o.team_id, o.kind) for o in orders] == [("first", "dispatch"),
                                                     ("backup", "reinforcement")]
    await poll_until(lambda: ("reinforcement", "backup") in timeline(dispatch, incident_id),
                     "the reinforcement on the incident's timeline")
    assert read_stream(dispatch, streams.ORDER_ESCALATED.name, OrderEscalated) == []


async def test_no_free_team_for_backup_flags_the_incident_and_the_next_free_team_goes(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "alone", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id, order = await on_scene_asking_for_backup(dispatch, publisher)
    (escalated,) = await poll_until(
        lambda: read_stream(dispatch, streams.ORDER_ESCALATED.name, OrderEscalated),
        "the escalation")
    assert (escalated.order_id, escalated.reason) == (order.order_id, "no reinforcement available")
    last = (await poll_until(lambda: [u for u in updates(dispatch, incident_id)
                                      if u.entry.kind == "note"], "the note"))[-1]
    assert (last.status, last.flagged) == ("on_scene", True)  # the board's alarm, not a grey line
    assert len(orders_for(dispatch, incident_id)) == 1
    # A team comes free: the next look (every REINFORCE_RETRY) sends it.
    await team(publisher, "later", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(dispatch, 2)
    make_due(dispatch, f"reinforce:{order.order_id}")
    orders = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 2 and
                              orders_for(dispatch, incident_id), "the backup, once a team is free")
    assert [(o.team_id, o.kind) for o in orders] == [("alone", "dispatch"),
                                                     ("later", "reinforcement")]
    assert len(read_stream(dispatch, streams.ORDER_ESCALATED.name, OrderEscalated)) == 1


async def test_the_flag_for_a_backup_nobody_was_free_for_goes_once_one_is_sent(
        dispatch: str, publisher: RedisBroker) -> None:
    # The board's alarm said "backup wanted, nobody free"; once the retry sent a team, the
    # incident no longer calls the command room (it stayed flagged until it ended).
    await team(publisher, "alone", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id, order = await on_scene_asking_for_backup(dispatch, publisher)
    await poll_until(lambda: [u for u in updates(dispatch, incident_id)
                              if u.entry.kind == "note" and u.flagged], "the flagged note")
    await team(publisher, "later", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(dispatch, 2)
    make_due(dispatch, f"reinforce:{order.order_id}")
    sent = await poll_until(lambda: [u for u in updates(dispatch, incident_id)
                                     if u.entry.kind == "reinforcement"], "the backup sent")
    assert (sent[-1].entry.team_id, sent[-1].status, sent[-1].flagged) == (
        "later", "on_scene", False)


async def test_no_backup_is_looked_for_once_the_team_that_asked_is_done(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "alone", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id, order = await on_scene_asking_for_backup(dispatch, publisher)
    await poll_until(lambda: read_stream(dispatch, streams.ORDER_ESCALATED.name, OrderEscalated),
                     "the escalation")
    await answer(publisher, order, "resolved")
    await poll_until(lambda: updates(dispatch, incident_id)[-1].status == "resolved", "resolved")
    await team(publisher, "later", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(dispatch, 2)
    make_due(dispatch, f"reinforce:{order.order_id}")
    await poll_until(lambda: not timer_of(dispatch, f"reinforce:{order.order_id}"),
                     "the retry fired and ended")
    assert len(orders_for(dispatch, incident_id)) == 1


# A lost person (lost_person lists police and volunteers; two units): two volunteer
# teams go, and no police team is free.
VOLUNTEERS = {"vol": ("volunteer", 22.8171), "vol-2": ("volunteer", 22.8172)}


async def volunteers_asking_for_backup(url: str, publisher: RedisBroker
                                      ) -> tuple[str, OrderIssued]:
    """A lost person whose two volunteer teams are on it; "vol", on scene, asks for backup."""
    incident_id = await report(publisher, "lost_person")
    orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 2 and
                              orders_for(url, incident_id), "the volunteers' orders")
    assert [(o.team_id, o.agency_kind) for o in orders] == [("vol", "volunteer"),
                                                            ("vol-2", "volunteer")]
    order = orders[0]
    for response in ("acknowledged", "on_scene", "reinforce"):
        await answer(publisher, order, response)
    return incident_id, order


async def test_a_volunteer_team_s_call_for_backup_goes_to_a_security_team(
        clean_redis: str, publisher: RedisBroker) -> None:
    # lost_person lists police and volunteers, not security: the volunteers' call found
    # nobody while a guard was free nearby. Volunteers are never alone in what made them
    # call: a security team may answer it, as it may escort volunteers to a P1.
    url = clean_redis
    async with dispatch_with_teams(url, publisher, {**VOLUNTEERS,
                                                    "guard": ("security", 22.8190)}):
        incident_id, asking = await volunteers_asking_for_backup(url, publisher)
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 3 and
                                  orders_for(url, incident_id), "the reinforcement")
        await poll_until(lambda: ("reinforcement", "guard") in timeline(url, incident_id),
                         "the reinforcement on the incident's timeline")
        backup = hash_of(url, f"dispatch:order:{orders[2].order_id}")
    assert [(o.team_id, o.kind, o.agency_kind) for o in orders] == [
        ("vol", "dispatch", "volunteer"), ("vol-2", "dispatch", "volunteer"),
        ("guard", "reinforcement", "security")]
    # sent whatever the category lists: never judged against it (taken off at a roster edit)
    assert (backup["for_order"], backup["escort"]) == (asking.order_id, "1")
    assert read_stream(url, streams.ORDER_ESCALATED.name, OrderEscalated) == []
    assert not updates(url, incident_id)[-1].flagged


async def test_a_police_team_s_call_for_backup_goes_to_a_guard_the_category_does_not_list(
        clean_redis: str, publisher: RedisBroker) -> None:
    # lost_person lists police and volunteers. The police team searching with the
    # volunteers calls for backup (a hostile crowd): the guard 200 m away goes, as one would
    # for the volunteers' call; it was flagged "no backup available", looked for again every
    # 20 s, while the guard stood free (a station officer's fraud warning visit, which lists
    # only the station and volunteers, the same with a patrol car at hand).
    url = clean_redis
    async with dispatch_with_teams(url, publisher, {"pol": ("police", 22.8171),
                                                    "vol": ("volunteer", 22.8172),
                                                    "guard": ("security", 22.8190)}):
        incident_id = await report(publisher, "lost_person")
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 2 and
                                  orders_for(url, incident_id), "the two teams' orders")
        asking = next(o for o in orders if o.team_id == "pol")
        for response in ("acknowledged", "on_scene", "reinforce"):
            await answer(publisher, asking, response)
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 3 and
                                  orders_for(url, incident_id), "the reinforcement")
        await poll_until(lambda: ("reinforcement", "guard") in timeline(url, incident_id),
                         "the reinforcement on the incident's timeline")
        backup = hash_of(url, f"dispatch:order:{orders[2].order_id}")
    assert (orders[2].team_id, orders[2].kind) == ("guard", "reinforcement")
    # sent whatever the category lists: never judged against it (taken off at a roster edit)
    assert (backup["for_order"], backup["escort"]) == (asking.order_id, "1")
    assert read_stream(url, streams.ORDER_ESCALATED.name, OrderEscalated) == []
    assert not updates(url, incident_id)[-1].flagged


async def test_a_volunteer_team_s_backup_is_police_or_security_before_nearer_volunteers(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Another volunteer team at the corner adds hands, not what the call is for: the
    # guard 1.4 km away goes, not the volunteers 100 m away.
    url = clean_redis
    async with dispatch_with_teams(url, publisher, {**VOLUNTEERS,
                                                    "vol-near": ("volunteer", 22.8180),
                                                    "guard": ("security", 22.8300)}):
        incident_id, _ = await volunteers_asking_for_backup(url, publisher)
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 3 and
                                  orders_for(url, incident_id), "the reinforcement")
    assert [(o.team_id, o.kind) for o in orders] == [
        ("vol", "dispatch"), ("vol-2", "dispatch"), ("guard", "reinforcement")]


async def test_a_volunteer_team_s_backup_is_a_volunteer_team_only_with_no_guard_or_police_free(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    async with dispatch_with_teams(url, publisher, {**VOLUNTEERS,
                                                    "vol-near": ("volunteer", 22.8180)}):
        incident_id, _ = await volunteers_asking_for_backup(url, publisher)
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 3 and
                                  orders_for(url, incident_id), "the reinforcement")
    assert [(o.team_id, o.kind) for o in orders] == [
        ("vol", "dispatch"), ("vol-2", "dispatch"), ("vol-near", "reinforcement")]


async def test_a_volunteer_team_nobody_could_back_up_gets_the_next_freed_security_team(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The retry and the flag as for any team: the guard who comes on shift later goes.
    url = clean_redis
    async with dispatch_with_teams(url, publisher, VOLUNTEERS):
        incident_id, asking = await volunteers_asking_for_backup(url, publisher)
        (escalated,) = await poll_until(
            lambda: read_stream(url, streams.ORDER_ESCALATED.name, OrderEscalated),
            "the escalation")
        assert escalated.order_id == asking.order_id
        await poll_until(lambda: updates(url, incident_id)[-1].flagged, "the flag")
        await team(publisher, "guard", kind="security", lat=22.8300, lon=108.3665)
        await wait_for_units(url, 3)
        make_due(url, f"reinforce:{asking.order_id}")
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 3 and
                                  orders_for(url, incident_id), "the backup, once a guard is free")
        sent = await poll_until(lambda: [u for u in updates(url, incident_id)
                                         if u.entry.kind == "reinforcement"], "the backup sent")
    assert [(o.team_id, o.kind) for o in orders] == [
        ("vol", "dispatch"), ("vol-2", "dispatch"), ("guard", "reinforcement")]
    assert (sent[-1].entry.team_id, sent[-1].flagged) == ("guard", False)


BACKUP_TEAMS = {"first": ("security", 22.8171), "backup": ("security", 22.8190),
                "farther": ("security", 22.8300)}


async def backup_sent(url: str, publisher: RedisBroker) -> tuple[str, OrderIssued]:
    incident_id, _ = await on_scene_asking_for_backup(url, publisher)
    _, backup = await poll_until(lambda: len(orders_for(url, incident_id)) >= 2 and
                                 orders_for(url, incident_id), "the reinforcement")
    assert (backup.team_id, backup.kind) == ("backup", "reinforcement")
    return incident_id, backup


async def test_a_backup_team_that_declines_is_replaced_by_the_next(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    async with dispatch_with_teams(url, publisher, BACKUP_TEAMS):
        incident_id, backup = await backup_sent(url, publisher)
        await answer(publisher, backup, "declined")
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 3 and
                                  orders_for(url, incident_id), "another backup")
    assert [(o.team_id, o.kind) for o in orders] == [
        ("first", "dispatch"), ("backup", "reinforcement"), ("farther", "reinforcement")]


async def test_a_backup_team_that_misses_its_deadline_is_replaced_by_the_next(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    async with dispatch_with_teams(url, publisher, BACKUP_TEAMS):
        incident_id, backup = await backup_sent(url, publisher)
        await poll_until(lambda: timer_of(url, f"ack:{backup.order_id}"), "the deadline")
        make_due(url, f"ack:{backup.order_id}")
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 3 and
                                  orders_for(url, incident_id), "another backup")
    assert [(o.team_id, o.kind) for o in orders] == [
        ("first", "dispatch"), ("backup", "reinforcement"), ("farther", "reinforcement")]


async def test_backup_is_sent_after_many_claims_lost_while_a_team_is_free(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # Other incidents taking the chosen team first, eight times over (a burst at one spot):
    # each lost claim is a new search, not a "no team available" while one is free.
    real = Dispatcher._offer_and_announce
    lost = {"left": 8}

    async def contended(self: Dispatcher, inc: dict[str, str], unit: Any, *, kind: str,
                        **options: Any) -> dict[str, str] | None:
        if kind == "reinforcement" and lost["left"]:
            lost["left"] -= 1
            return None
        return await real(self, inc, unit, kind=kind, **options)

    monkeypatch.setattr(Dispatcher, "_offer_and_announce", contended)
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
        await team(publisher, "backup", kind="security", lat=22.8190, lon=108.3665)
        await wait_for_units(clean_redis, 2)
        incident_id, _ = await on_scene_asking_for_backup(clean_redis, publisher)
        orders = await poll_until(lambda: len(orders_for(clean_redis, incident_id)) >= 2 and
                                  orders_for(clean_redis, incident_id), "the reinforcement")
        assert [(o.team_id, o.kind) for o in orders][1] == ("backup", "reinforcement")
        assert lost["left"] == 0
        assert read_stream(clean_redis, streams.ORDER_ESCALATED.name, OrderEscalated) == []


async def test_a_request_handled_again_after_a_failure_sends_no_second_team(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The backup's order went out, then the step failed before its end (the entry on the
    # timeline): the answer is handled again and must find that order, not send "farther",
    # and write the entry.
    failures = fail_a_write_once(monkeypatch, '"kind":"reinforcement"')
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
        await team(publisher, "backup", kind="security", lat=22.8190, lon=108.3665)
        await team(publisher, "farther", kind="security", lat=22.8300, lon=108.3665)
        await wait_for_units(clean_redis, 3)
        incident_id, _ = await on_scene_asking_for_backup(clean_redis, publisher)
        client = sync_redis.Redis.from_url(clean_redis)
        try:
            await poll_until(lambda: failures and client.xpending(
                streams.ORDER_RESPONDED.name, "dispatch")["pending"] == 0,
                "the answer handled again after the failure")
        finally:
            client.close()
    orders = orders_for(clean_redis, incident_id)
    assert [(o.team_id, o.kind) for o in orders] == [("first", "dispatch"),
                                                     ("backup", "reinforcement")]
    # the entry the failed attempt did not write, written once by the second
    assert timeline(clean_redis, incident_id).count(("reinforcement", "backup")) == 1


KNIVES = "three men with knives, one injured"
BODY_CAMERA = (Evidence(kind="video", ref="bodycam-17/0042"),)


def calls_on_timeline(url: str, incident_id: str) -> list[tuple[str | None, str | None, Any]]:
    """The team's calls for backup on the incident's timeline: who, in what words, with what."""
    return [(u.entry.team_id, u.entry.note, u.entry.evidence) for u in updates(url, incident_id)
            if u.entry.kind == "response" and u.entry.detail == "reinforce"]


async def test_the_team_s_words_with_its_call_for_backup_reach_the_timeline_once(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The command room reads why the team asked (how many, armed, hurt) and what it filmed;
    # before, a call on an order already acknowledged left only "reinforcement sent".
    url = clean_redis
    async with dispatch_with_teams(url, publisher, BACKUP_TEAMS):
        incident_id, _ = await on_scene_asking_for_backup(url, publisher, note=KNIVES,
                                                          evidence=BODY_CAMERA, delivered=2)
        await poll_until(lambda: ("reinforcement", "backup") in timeline(url, incident_id),
                         "the backup on the timeline")
        await poll_until(lambda: answers_handled(url), "the call and its redelivery handled")
    assert calls_on_timeline(url, incident_id) == [("first", KNIVES, BODY_CAMERA)]
    assert [(o.team_id, o.kind) for o in orders_for(url, incident_id)] == [
        ("first", "dispatch"), ("backup", "reinforcement")]


async def test_the_team_s_words_are_on_the_timeline_once_when_no_team_is_free(
        clean_redis: str, publisher: RedisBroker) -> None:
    url = clean_redis
    async with dispatch_with_teams(url, publisher, {"alone": ("security", 22.8171)}):
        incident_id, _ = await on_scene_asking_for_backup(url, publisher, note=KNIVES,
                                                          delivered=2)
        await poll_until(lambda: read_stream(url, streams.ORDER_ESCALATED.name,
                                             OrderEscalated), "the escalation")
        await poll_until(lambda: answers_handled(url), "the call and its redelivery handled")
    assert calls_on_timeline(url, incident_id) == [("alone", KNIVES, None)]
    assert updates(url, incident_id)[-1].flagged


async def test_a_call_for_backup_handled_again_after_a_failure_has_its_words_once(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The call's words went on the timeline, the backup's order out, then the step failed
    # at the backup's entry: made again, it writes neither the words nor a team twice.
    failures = fail_a_write_once(monkeypatch, '"kind":"reinforcement"')
    url = clean_redis
    async with dispatch_with_teams(url, publisher, BACKUP_TEAMS):
        incident_id, _ = await on_scene_asking_for_backup(url, publisher, note=KNIVES)
        await poll_until(lambda: failures and answers_handled(url),
                         "the call handled again after the failure")
    assert calls_on_timeline(url, incident_id) == [("first", KNIVES, None)]
    assert timeline(url, incident_id).count(("reinforcement", "backup")) == 1
    assert len(orders_for(url, incident_id)) == 2


def answers_handled(url: str, stream: str = streams.ORDER_RESPONDED.name) -> bool:
    """Every order.responded entry (or `stream`'s) read and acknowledged by dispatch's group."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        group = next(g for g in client.xinfo_groups(stream) if g["name"] == "dispatch")
        return group["pending"] == 0 and group["lag"] == 0
    finally:
        client.close()


def hash_of(url: str, key: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hgetall(key)
    finally:
        client.close()


async def asking_before_acknowledging(url: str, publisher: RedisBroker,
                                      ) -> tuple[str, OrderIssued, OrderResponded]:
    """A fight in progress: the first team's guard presses "need backup" before
    "acknowledged" (the answer delivered twice, as a redelivery would)."""
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "the first order")
    asking = OrderResponded(district=DISTRICT, order_id=order.order_id,
                            incident_id=incident_id, team_id=order.team_id, member_id="m1",
                            response="reinforce", note="fight in progress")
    for _ in range(2):
        await publisher.publish(asking, stream=streams.ORDER_RESPONDED.name)
    return incident_id, order, asking


async def test_a_team_asking_for_backup_before_acknowledging_keeps_its_order(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Notify takes the call for backup as the team's answer (no more SMS, no more alarms):
    # dispatch must too. Before, the order stayed offered, and at its deadline it was taken
    # from the phones of a team on its way, counted as a routing timeout and offered to the
    # next team.
    url = clean_redis
    async with dispatch_with_teams(url, publisher, BACKUP_TEAMS):
        incident_id, first, asking = await asking_before_acknowledging(url, publisher)
        await poll_until(lambda: len(orders_for(url, incident_id)) >= 2, "the backup")
        await poll_until(lambda: answers_handled(url), "the answers handled")
        make_due(url, f"ack:{first.order_id}")  # the deadline comes (or would have)
        await poll_until(lambda: timer_of(url, f"ack:{first.order_id}") is None,
                         "the deadline's timer handled")
        assert [(o.team_id, o.kind) for o in orders_for(url, incident_id)] == [
            ("first", "dispatch"), ("backup", "reinforcement")]
        assert read_stream(url, streams.ORDER_WITHDRAWN.name, OrderWithdrawn) == []
        assert read_stream(url, streams.ORDER_ESCALATED.name, OrderEscalated) == []
        order = hash_of(url, f"dispatch:order:{first.order_id}")
        incident = hash_of(url, f"dispatch:incident:{incident_id}")
    assert order["state"] == "acknowledged"
    assert order["acknowledged_at"] == asking.occurred_at.isoformat()
    assert incident["first_ack_at"] == asking.occurred_at.isoformat()  # time to acknowledge
    assert (incident.get("misses") or "0", incident.get("timeouts") or "0") == ("0", "0")
    entries = [u.entry for u in updates(url, incident_id)]
    said = [e for e in entries if e.kind == "response"]
    assert [(e.detail, e.status, e.note, e.team_id) for e in said] == [
        ("reinforce", "acknowledged", "fight in progress", "first")]
    assert [e.team_id for e in entries if e.kind == "reinforcement"] == ["backup"]
    assert not any(e.kind == "timeout" for e in entries)
    assert updates(url, incident_id)[-1].status == "acknowledged"


async def test_an_acknowledgement_handled_after_the_call_for_backup_changes_only_its_time(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Answers handled out of order: the guard's acknowledgement given before the call for
    # backup but read after it (a reclaimed entry) keeps the earlier time; one given after
    # it (a teammate's, or a replay) changes nothing.
    url = clean_redis
    async with dispatch_with_teams(url, publisher, BACKUP_TEAMS):
        incident_id, first, asking = await asking_before_acknowledging(url, publisher)
        await poll_until(lambda: len(orders_for(url, incident_id)) >= 2, "the backup")
        await poll_until(lambda: answers_handled(url), "the call for backup handled")
        for at in (asking.occurred_at + timedelta(seconds=5),
                   asking.occurred_at - timedelta(seconds=5)):
            await publisher.publish(OrderResponded(
                district=DISTRICT, order_id=first.order_id, incident_id=incident_id,
                team_id=first.team_id, member_id="m2", response="acknowledged",
                occurred_at=at), stream=streams.ORDER_RESPONDED.name)
        await poll_until(lambda: answers_handled(url), "the acknowledgements handled")
        order = hash_of(url, f"dispatch:order:{first.order_id}")
        incident = hash_of(url, f"dispatch:incident:{incident_id}")
    earlier = (asking.occurred_at - timedelta(seconds=5)).isoformat()
    assert (order["state"], order["acknowledged_at"]) == ("acknowledged", earlier)
    assert incident["first_ack_at"] == earlier
    said = [(e.detail, e.at) for e in (u.entry for u in updates(url, incident_id))
            if e.kind == "response"]
    assert said == [("reinforce", asking.occurred_at),
                    ("acknowledged", asking.occurred_at - timedelta(seconds=5))]
    assert len(orders_for(url, incident_id)) == 2


def order_state(url: str, order_id: str) -> str | None:
    return hash_of(url, f"dispatch:order:{order_id}").get("state")


async def call_read_late(publisher: RedisBroker, order: OrderIssued, at: datetime) -> None:
    """The team's call for backup, made at `at` while its order was live, read by dispatch
    only after the order ended (delivered twice, as a redelivery would)."""
    asking = OrderResponded(district=DISTRICT, order_id=order.order_id,
                            incident_id=order.incident_id, team_id=order.team_id,
                            member_id="m1", response="reinforce", note=KNIVES,
                            evidence=BODY_CAMERA, occurred_at=at)
    for _ in range(2):
        await publisher.publish(asking, stream=streams.ORDER_RESPONDED.name)


def sent_backups(url: str, incident_id: str) -> list[str]:
    return [o.team_id for o in orders_for(url, incident_id) if o.kind == "reinforcement"]


async def test_a_call_for_backup_read_after_the_order_timed_out_is_on_the_timeline_flagged(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The guard pressed "need backup" (which takes the order) just as the deadline came;
    # dispatch timed the order out before it read the press. The order is no longer the
    # team's, so no backup goes on it; but the command room sees the call and decides.
    url = clean_redis
    async with dispatch_with_teams(url, publisher, BACKUP_TEAMS):
        incident_id = await report(publisher, "noise", priority="P4")
        (first,) = await poll_until(lambda: orders_for(url, incident_id), "the first order")
        pressed = utcnow()
        make_due(url, f"ack:{first.order_id}")
        await poll_until(lambda: order_state(url, first.order_id) == "timed_out", "timed out")
        await poll_until(lambda: len(orders_for(url, incident_id)) == 2, "the next team's offer")
        await call_read_late(publisher, first, pressed)
        await poll_until(lambda: answers_handled(url), "the call and its redelivery handled")
        before, last = updates(url, incident_id)[-2:]
    assert calls_on_timeline(url, incident_id) == [("first", KNIVES, BODY_CAMERA)]
    assert (last.entry.detail, last.entry.at, last.flagged) == ("reinforce", pressed, True)
    assert not before.flagged  # one miss does not flag: the call does
    assert sent_backups(url, incident_id) == []
    assert order_state(url, first.order_id) == "timed_out"


async def test_a_call_for_backup_read_after_the_command_room_took_the_order_back_is_flagged(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    url = clean_redis
    for team_id, (kind, lat) in BACKUP_TEAMS.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
    await wait_for_units(url, len(BACKUP_TEAMS))
    incident_id = await report(publisher, "noise", priority="P4")
    (first,) = await poll_until(lambda: orders_for(url, incident_id), "the first order")
    await answer(publisher, first, "acknowledged")
    await poll_until(lambda: order_state(url, first.order_id) == "acknowledged", "acknowledged")
    pressed = utcnow()
    r = await console.post(f"/v1/orders/{first.order_id}/withdraw", headers=ADMIN,
                           json={"note": "needed at a P1"})
    assert r.status_code == 200, r.text
    await poll_until(lambda: len(orders_for(url, incident_id)) == 2, "the next team's offer")
    await call_read_late(publisher, first, pressed)
    await poll_until(lambda: answers_handled(url), "the call and its redelivery handled")
    before, last = updates(url, incident_id)[-2:]
    assert calls_on_timeline(url, incident_id) == [("first", KNIVES, BODY_CAMERA)]
    assert (last.entry.detail, last.flagged) == ("reinforce", True)
    assert not before.flagged
    assert sent_backups(url, incident_id) == []
    assert order_state(url, first.order_id) == "withdrawn"


async def test_a_call_for_backup_read_after_the_close_is_on_the_closed_incident_s_timeline(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    url = clean_redis
    await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "backup", kind="security", lat=22.8190, lon=108.3665)
    await wait_for_units(url, 2)
    incident_id = await report(publisher, "noise", priority="P4")
    (first,) = await poll_until(lambda: orders_for(url, incident_id), "the first order")
    await answer(publisher, first, "acknowledged")
    await poll_until(lambda: order_state(url, first.order_id) == "acknowledged", "acknowledged")
    pressed = utcnow()
    r = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    assert r.status_code == 200, r.text
    await call_read_late(publisher, first, pressed)
    await poll_until(lambda: answers_handled(url), "the call and its redelivery handled")
    last = updates(url, incident_id)[-1]
    assert calls_on_timeline(url, incident_id) == [("first", KNIVES, BODY_CAMERA)]
    assert (last.entry.detail, last.status) == ("reinforce", "closed")
    assert sent_backups(url, incident_id) == []


async def test_a_call_for_backup_read_after_the_team_resolved_it_is_history_not_an_alarm(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Pressed, then "resolved" (the fight broke up); the press read last (a reclaimed entry).
    url = clean_redis
    async with dispatch_with_teams(url, publisher, BACKUP_TEAMS):
        incident_id = await report(publisher, "noise", priority="P4")
        (first,) = await poll_until(lambda: orders_for(url, incident_id), "the first order")
        pressed = utcnow()
        await publisher.publish(OrderResponded(
            district=DISTRICT, order_id=first.order_id, incident_id=incident_id,
            team_id=first.team_id, member_id="m1", response="resolved",
            occurred_at=pressed + timedelta(seconds=30)), stream=streams.ORDER_RESPONDED.name)
        await poll_until(lambda: order_state(url, first.order_id) == "resolved", "resolved")
        await call_read_late(publisher, first, pressed)
        await poll_until(lambda: answers_handled(url), "the call and its redelivery handled")
        last = updates(url, incident_id)[-1]
    assert calls_on_timeline(url, incident_id) == [("first", KNIVES, BODY_CAMERA)]
    assert (last.entry.detail, last.status, last.flagged) == ("reinforce", "resolved", False)
    assert sent_backups(url, incident_id) == []


async def flagged_for(console: httpx.AsyncClient, incident_id: str) -> list[str]:
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return list(r.json()["flagged_for"])


async def volunteers_backed_up_by_volunteers(
        url: str, publisher: RedisBroker, teams: dict[str, tuple[str, float]],
) -> tuple[str, OrderIssued]:
    """The lost person's volunteers ("vol") ask for backup with no police or security team
    free: "vol-near", another volunteer team, goes."""
    for team_id, (kind, lat) in teams.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
    await wait_for_units(url, len(teams))
    incident_id, asking = await volunteers_asking_for_backup(url, publisher)
    await poll_until(lambda: ("reinforcement", "vol-near") in timeline(url, incident_id),
                     "the volunteers' backup on the timeline")
    return incident_id, asking


async def test_a_volunteer_team_backed_up_by_volunteers_stays_flagged_till_a_guard_goes(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # Volunteers call for backup when the scene has gone beyond them; another volunteer team
    # adds hands, not that. The command room must go on seeing the call, and dispatch go on
    # looking for police or security, not take the volunteers for the answer.
    url = clean_redis
    incident_id, asking = await volunteers_backed_up_by_volunteers(
        url, publisher, {**VOLUNTEERS, "vol-near": ("volunteer", 22.8180),
                         "vol-far": ("volunteer", 22.8250)})
    sent = [u for u in updates(url, incident_id) if u.entry.kind == "reinforcement"]
    assert sent[-1].flagged
    assert await flagged_for(console, incident_id) == ["backup_volunteers_only"]
    retry = f"reinforce:{asking.order_id}"
    assert timer_of(url, retry) is not None
    # looked for again with still no police or security free: no more volunteers go
    # ("vol-far" is free), the call stays open
    make_due(url, retry)
    await poll_until(lambda: (timer_of(url, retry) or 0) > time.time() + 1,
                     "the retry looked and set again")
    assert sent_backups(url, incident_id) == ["vol-near"]
    assert await flagged_for(console, incident_id) == ["backup_volunteers_only"]
    # a guard comes on shift: the next look sends them, and the flag goes
    await team(publisher, "guard", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(url, 5)
    make_due(url, retry)
    await poll_until(lambda: ("reinforcement", "guard") in timeline(url, incident_id),
                     "the guard sent as backup")
    await poll_until(lambda: timer_of(url, retry) is None, "the retry done with")
    assert sent_backups(url, incident_id) == ["vol-near", "guard"]
    last = [u for u in updates(url, incident_id) if u.entry.kind == "reinforcement"][-1]
    assert (last.entry.team_id, last.flagged) == ("guard", False)
    assert await flagged_for(console, incident_id) == []
    guard = next(o for o in orders_for(url, incident_id) if o.team_id == "guard")
    assert hash_of(url, f"dispatch:order:{guard.order_id}")["for_order"] == asking.order_id
    # somebody was sent each time: never "no reinforcement available"
    assert read_stream(url, streams.ORDER_ESCALATED.name, OrderEscalated) == []


async def test_a_guard_backing_up_volunteers_who_declines_leaves_the_call_open_for_another(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The guard sent at the retry declines: the volunteers' call is again answered by
    # volunteers only (flagged), and no further volunteer team goes in the guard's place.
    url = clean_redis
    incident_id, asking = await volunteers_backed_up_by_volunteers(
        url, publisher, {**VOLUNTEERS, "vol-near": ("volunteer", 22.8180),
                         "vol-far": ("volunteer", 22.8250)})
    retry = f"reinforce:{asking.order_id}"
    await team(publisher, "guard", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(url, 5)
    make_due(url, retry)
    guard = next(o for o in await poll_until(
        lambda: len(orders_for(url, incident_id)) >= 4 and orders_for(url, incident_id),
        "the guard's order") if o.team_id == "guard")
    await poll_until(lambda: timer_of(url, retry) is None, "the retry done with")
    await answer(publisher, guard, "declined")
    await poll_until(lambda: order_state(url, guard.order_id) == "declined", "declined")
    await poll_until(lambda: timer_of(url, retry) is not None, "the call looked for again")
    await poll_until(lambda: updates(url, incident_id)[-1].flagged, "flagged again")
    assert await flagged_for(console, incident_id) == ["backup_volunteers_only"]
    assert sent_backups(url, incident_id) == ["vol-near", "guard"]


async def test_a_guard_sent_at_a_retry_that_failed_after_its_offer_is_sent_once(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The retry offered the guard, then failed at the backup's entry: fired again, it finds
    # the guard's order, writes the entry once and sends no other team.
    url = clean_redis
    async with dispatch_with_teams(url, publisher, {**VOLUNTEERS,
                                                    "vol-near": ("volunteer", 22.8180)}):
        incident_id, asking = await volunteers_asking_for_backup(url, publisher)
        await poll_until(lambda: ("reinforcement", "vol-near") in timeline(url, incident_id),
                         "the volunteers' backup on the timeline")
        retry = f"reinforce:{asking.order_id}"
        failures = fail_a_write_once(monkeypatch, '"kind":"reinforcement"')
        await team(publisher, "guard", kind="security", lat=22.8300, lon=108.3665)
        await team(publisher, "guard-2", kind="security", lat=22.8310, lon=108.3665)
        await wait_for_units(url, 5)
        make_due(url, retry)
        await poll_until(lambda: failures, "the retry failed after the guard's offer")
        make_due(url, retry)  # its lease is not what this test waits for
        await poll_until(lambda: ("reinforcement", "guard") in timeline(url, incident_id),
                         "the guard's backup on the timeline")
        await poll_until(lambda: timer_of(url, retry) is None, "the retry done with")
    assert sent_backups(url, incident_id) == ["vol-near", "guard"]
    assert timeline(url, incident_id).count(("reinforcement", "guard")) == 1
    assert not updates(url, incident_id)[-1].flagged
