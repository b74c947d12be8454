"""Dispatch back after an outage: the deadlines that passed while it was down and the answers
that waited in its streams meanwhile. A team that answered in time is never timed out, taken
off its order or penalised because dispatch read its answer late."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from services.dispatch.engine import Dispatcher
from services.dispatch.main import create_app
from shared import streams
from shared.events import OrderIssued, OrderResponded, OrderWithdrawn, UnitStatus, utcnow
from tests.helpers import poll_until, read_stream

from .conftest import console_of, dispatch_with_teams, settings_for
from .test_engine import DISTRICT, orders_for, orders_once, report, team, wait_for_units
from .test_reinforcement import (
    BACKUP_TEAMS,
    BODY_CAMERA,
    KNIVES,
    answers_handled,
    call_read_late,
    calls_on_timeline,
    hash_of,
    make_due,
    order_state,
    timer_of,
)
from .test_station_orders_of_a_removed_team import STATION, incident
from .test_take_back import ADMIN, respond


def fast_deadlines(monkeypatch: pytest.MonkeyPatch, seconds: float = 2) -> None:
    """P3 orders to acknowledge within `seconds`, so the test does not wait two minutes."""
    from shared import policy as policy_module

    real = policy_module.load_policy()
    fast = real.model_copy(update={"deadlines_s": {**real.deadlines_s, "P3": seconds}})
    monkeypatch.setattr("services.dispatch.main.load_policy", lambda *_: fast)


def answers_held_until_a_timer_fired(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Dispatch's answers handled only once a timer's firing has ended, as when the answer
    sits behind a backlog of others (150 other answers ahead of it in the stream do the
    same without this hold, but not to the millisecond): the timers fired, in order."""
    fired: list[str] = []
    one_fired = asyncio.Event()
    real_fire: Callable[..., Awaitable[Any]] = Dispatcher.fire_timer
    real_answer: Callable[..., Awaitable[None]] = Dispatcher.on_order_responded

    async def fire(engine: Dispatcher, member: str) -> Any:
        try:
            return await real_fire(engine, member)
        finally:
            fired.append(member)
            one_fired.set()

    async def answer(engine: Dispatcher, event: OrderResponded) -> None:
        # bounded: a dispatch whose timer never fires fails the test's asserts, not hangs
        await asyncio.wait_for(one_fired.wait(), 10)
        await real_answer(engine, event)

    monkeypatch.setattr(Dispatcher, "fire_timer", fire)
    monkeypatch.setattr(Dispatcher, "on_order_responded", answer)
    return fired


async def offered_then_down(url: str, publisher: RedisBroker) -> tuple[str, OrderIssued]:
    """A help request offered to the nearest of two guard teams; dispatch stops right after."""
    app = create_app(settings_for(url, consumer_name="before"))
    async with app.router.lifespan_context(app):
        await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
        await team(publisher, "second", kind="security", lat=22.8190, lon=108.3665)
        await wait_for_units(url, 2)
        incident_id = await report(publisher, "help_request", priority="P3")
        (order,) = await poll_until(
            lambda: read_stream(url, streams.ORDER_ISSUED.name, OrderIssued), "the first order")
    return incident_id, order


@pytest.mark.parametrize("answered", ["in_time", "after_the_deadline"])
async def test_an_answer_given_while_dispatch_was_down_is_judged_before_the_deadline(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch,
        answered: str) -> None:
    # The guards acknowledge (notify takes the answer), but dispatch is down: when it is
    # back the deadline is long past and the answer waits in its stream. The deadline's
    # firing must not time the guards out, withdraw their order while they are on their
    # way, count a routing timeout or send a second team. Also an answer given after the
    # deadline, while dispatch was down: the phones still showed the order (nobody took it
    # back) and notify took the answer, as it does an answer dispatch reads before it
    # judges a deadline on time.
    fast_deadlines(monkeypatch)
    incident_id, order = await offered_then_down(clean_redis, publisher)
    assert order.team_id == "first" and order.ack_by is not None
    if answered == "after_the_deadline":
        await poll_until(lambda: utcnow() > order.ack_by, "the deadline passed while down", 5)
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=incident_id, team_id="first",
        member_id="m1", response="acknowledged"), stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: utcnow() > order.ack_by, "the deadline passed while down", 5)
    fired = answers_held_until_a_timer_fired(monkeypatch)
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        app = create_app(settings_for(clean_redis, consumer_name="after"))
        async with app.router.lifespan_context(app):
            await poll_until(lambda: client.hget(f"dispatch:order:{order.order_id}", "state")
                             not in (None, "offered"), "the order decided", 15)
            await poll_until(lambda: client.xpending(streams.ORDER_RESPONDED.name, "dispatch")
                             ["pending"] == 0 and client.zscore(
                                 "dispatch:timers", f"ack:{order.order_id}") is None,
                             "the answer handled and the deadline gone", 15)
            await asyncio.sleep(0.3)  # let any (wrong) second offer show up
            state = client.hget(f"dispatch:order:{order.order_id}", "state")
            incident = client.hgetall(f"dispatch:incident:{incident_id}")
    finally:
        client.close()
    assert fired and fired[0] == f"ack:{order.order_id}"  # the deadline came first
    assert state == "acknowledged"
    assert read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn) == []
    assert [o.team_id for o in read_stream(clean_redis, streams.ORDER_ISSUED.name,
                                           OrderIssued)] == ["first"]
    assert (incident["status"], incident.get("misses"), incident.get("timeouts")) == (
        "acknowledged", "0", None)


async def test_a_deadline_waits_for_unread_answers_only_so_long(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # An answer that never gets handled (stuck in the stream) must not hold the deadline
    # back for ever: past the catch-up the order times out and the next team is offered.
    from services.dispatch import engine as engine_module

    monkeypatch.setattr(engine_module, "ANSWERS_CATCH_UP", timedelta(seconds=1))
    fast_deadlines(monkeypatch)
    incident_id, order = await offered_then_down(clean_redis, publisher)
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=incident_id, team_id="first",
        member_id="m1", response="en_route"), stream=streams.ORDER_RESPONDED.name)
    assert order.ack_by is not None
    await poll_until(lambda: utcnow() > order.ack_by, "the deadline passed while down", 5)
    stuck = asyncio.Event()

    async def never_handled(_engine: Dispatcher, _event: OrderResponded) -> None:
        await stuck.wait()

    monkeypatch.setattr(Dispatcher, "on_order_responded", never_handled)
    app = create_app(settings_for(clean_redis, consumer_name="after"))
    try:
        async with app.router.lifespan_context(app):
            orders = await poll_until(
                lambda: (o := read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued))
                and len(o) == 2 and o, "the next team offered after the catch-up", 10)
            stuck.set()
    finally:
        stuck.set()
    assert [o.team_id for o in orders] == ["first", "second"]
    withdrawn = read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
    assert [(w.order_id, w.reason) for w in withdrawn] == [(order.order_id, "timeout")]


def held_until_released(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Dispatch's answers handled only once the event returned is set: as when they sit
    behind a backlog past the catch-up, with the deadlines firing meanwhile."""
    release = asyncio.Event()
    real_answer: Callable[..., Awaitable[None]] = Dispatcher.on_order_responded

    async def answer(engine: Dispatcher, event: OrderResponded) -> None:
        # bounded: a test that never releases it fails its asserts, not hangs
        await asyncio.wait_for(release.wait(), 20)
        await real_answer(engine, event)

    monkeypatch.setattr(Dispatcher, "on_order_responded", answer)
    return release


@pytest.mark.parametrize(("response", "in_time"), [("acknowledged", True), ("declined", True),
                                                   ("acknowledged", False)])
async def test_an_answer_given_in_time_and_read_after_its_order_timed_out_is_told_not_counted(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch,
        response: str, in_time: bool) -> None:
    # Dispatch's answers are behind past the catch-up: the deadline's firing times the
    # guards' order out (taken from their phones, the incident offered to the next team)
    # though they had answered before it. Their answer, read then, was dropped without a
    # word: the command room saw a routing timeout, counted towards the board's flag, of a
    # team that had answered. It is on the timeline as an answer in time read too late, and
    # no routing timeout of theirs (its miss stays towards the flag: which miss is whose
    # cannot be told once others raised or reset them); the order stays withdrawn, nor is it
    # sent them again. An answer given after the deadline stays a timeout, as before.
    from services.dispatch import engine as engine_module

    monkeypatch.setattr(engine_module, "ANSWERS_CATCH_UP", timedelta(seconds=1))
    fast_deadlines(monkeypatch)
    incident_id, order = await offered_then_down(clean_redis, publisher)
    assert order.ack_by is not None
    if not in_time:
        await poll_until(lambda: utcnow() > order.ack_by, "the deadline passed while down", 5)
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=incident_id, team_id="first",
        member_id="m1", response=response,
        occurred_at=order.ack_by - timedelta(seconds=1) if in_time else utcnow()),
        stream=streams.ORDER_RESPONDED.name)
    release = held_until_released(monkeypatch)
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        app = create_app(settings_for(clean_redis, consumer_name="after"))
        async with app.router.lifespan_context(app):
            await poll_until(
                lambda: len(read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued))
                == 2, "the next team offered after the catch-up", 15)
            release.set()
            await poll_until(lambda: client.xpending(streams.ORDER_RESPONDED.name, "dispatch")
                             ["pending"] == 0 and client.xinfo_groups(
                                 streams.ORDER_RESPONDED.name)[0]["lag"] == 0,
                             "the answer handled", 15)
            await asyncio.sleep(0.3)  # let any (wrong) order or withdrawal show up
            incident = client.hgetall(f"dispatch:incident:{incident_id}")
            state = client.hget(f"dispatch:order:{order.order_id}", "state")
            answered_at = client.hget(f"dispatch:order:{order.order_id}", "answered_in_time_at")
            timeline = [json.loads(e) for e in client.lrange(store.timeline_key(incident_id),
                                                             0, -1)]
    finally:
        release.set()
        client.close()
    assert state == "timed_out"
    assert [o.team_id for o in read_stream(clean_redis, streams.ORDER_ISSUED.name,
                                           OrderIssued)] == ["first", "second"]
    withdrawn = read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
    assert [(w.order_id, w.reason) for w in withdrawn] == [(order.order_id, "timeout")]
    told = [e for e in timeline if e.get("detail_code") == "answer_read_after_timeout"]
    if in_time:
        [note] = told
        assert (note["team_id"], note["order_id"]) == ("first", order.order_id)
        assert note["detail_args"] == {
            "team": "first", "response": response, "ack_by": order.ack_by.isoformat(),
            "at": (order.ack_by - timedelta(seconds=1)).isoformat()}
        assert (incident["timeouts"], incident["misses"]) == ("0", "1")
        # when the team answered, for the list of teams to send by hand (its turned_down)
        assert answered_at == (order.ack_by - timedelta(seconds=1)).isoformat()
        # a refusal given in time is the team's refusal: on the inspector's ?problem=declined
        assert incident.get("declines") == ("1" if response == "declined" else None)
    else:
        assert told == [] and answered_at is None
        assert (incident["timeouts"], incident["misses"]) == ("1", "1")


@pytest.mark.parametrize("in_time", [True, False], ids=["by_the_deadline", "after_it"])
async def test_a_call_for_backup_given_by_the_deadline_and_read_after_the_timeout_is_not_counted(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch,
        in_time: bool) -> None:
    # The guards pressed "need backup" before acknowledging: an answer (DESIGN: any
    # response), which takes the order when read in time. Dispatch timed the order out
    # before it read the press. As an acknowledgement by the deadline read after the
    # timeout, it is no routing timeout of theirs (nor, at volunteers, a missed order); the
    # call is on the timeline, the incident flagged and no backup sent, as before. A press
    # after the deadline, read after the timeout it came before, stays their timeout.
    url = clean_redis
    fast_deadlines(monkeypatch)
    async with dispatch_with_teams(url, publisher, BACKUP_TEAMS):
        incident_id = await report(publisher, "help_request", priority="P3")
        (first,) = await poll_until(lambda: orders_for(url, incident_id), "the first order")
        assert first.ack_by is not None
        pressed = utcnow()
        if in_time:
            make_due(url, f"ack:{first.order_id}")
        await poll_until(lambda: order_state(url, first.order_id) == "timed_out", "timed out", 10)
        timed_out_at = datetime.fromisoformat(
            hash_of(url, f"dispatch:order:{first.order_id}")["timed_out_at"])
        if not in_time:  # after the deadline, before the timeout (a call then counts)
            pressed = first.ack_by + (timed_out_at - first.ack_by) / 2
        await call_read_late(publisher, first, pressed)
        await poll_until(lambda: answers_handled(url), "the call and its redelivery handled")
        incident = hash_of(url, f"dispatch:incident:{incident_id}")
        order = hash_of(url, f"dispatch:order:{first.order_id}")
    assert (pressed <= first.ack_by) is in_time and pressed <= timed_out_at
    assert calls_on_timeline(url, incident_id) == [("first", KNIVES, BODY_CAMERA)]
    assert incident["flagged"] == "1"
    assert (incident["timeouts"], order.get("answered_in_time")) == (
        ("0", "reinforce") if in_time else ("1", None))


async def third_guards_after_two_timeouts(url: str, publisher: RedisBroker
                                          ) -> tuple[str, OrderIssued, OrderIssued]:
    """A noise whose first two guards' orders timed out, its station known (STATION), and
    its third guards' order: the incident's id, the first order and the third."""
    incident_id = await report(publisher, "noise", priority="P4")
    for n in (1, 2):
        order = (await orders_once(url, incident_id, n, f"order {n}"))[n - 1]
        make_due(url, f"ack:{order.order_id}")
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", STATION)
    finally:
        client.close()
    first, _, third = await orders_once(url, incident_id, 3, "the third guards' order")
    return incident_id, first, third


async def test_an_answer_read_after_its_timeout_keeps_the_flag_of_a_hand_over_nobody_took(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Two guards missed the noise's deadlines (flagged), a third took it and handed it over;
    # the station's hand-over order set its misses to nought, and its only car on shift
    # declined it: flagged again, a hand-over nobody of the station takes. The first guards'
    # acknowledgement, given in time, is read only now (its dead letter replayed): their
    # timeout is not theirs, but their miss was no longer counted. The hand-over lost its
    # flag: the command room was no longer told of a case nobody had.
    url = clean_redis
    async with dispatch_with_teams(url, publisher, {
            "a": ("security", 22.8171), "b": ("security", 22.8176),
            "c": ("security", 22.8181), "station-car": ("police", 22.8300)}):
        incident_id, first, third = await third_guards_after_two_timeouts(url, publisher)
        assert (first.team_id, third.team_id) == ("a", "c")
        await respond(publisher, third, "acknowledged", "handover")
        (station,) = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                               if o.kind == "handover"], "the station's order")
        await respond(publisher, station, "declined")
        await poll_until(lambda: incident(url, incident_id).get("station_noted")
                         == station.order_id, "the refusal with nobody left, flagged")
        assert incident(url, incident_id)["flagged"] == "1"

        await acknowledged_in_time(publisher, first)
        await poll_until(lambda: incident(url, incident_id).get("timeouts") == "1",
                         "the answer read, its timeout not counted")
    assert incident(url, incident_id)["flagged"] == "1"


async def acknowledged_in_time(publisher: RedisBroker, order: OrderIssued) -> None:
    """The order's team's acknowledgement, given a second before its deadline, read now
    (after the deadline timed the order out)."""
    assert order.ack_by is not None
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
        team_id=order.team_id, member_id="m1", response="acknowledged",
        occurred_at=order.ack_by - timedelta(seconds=1)), stream=streams.ORDER_RESPONDED.name)


async def test_an_answer_read_after_its_timeout_keeps_a_flag_raised_over_its_miss(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The first guards missed the noise's deadline, the second took it and handed it over;
    # the station's only car on shift took the hand-over (its misses set to nought) and
    # asked for backup, whose team missed its deadline: one miss. The command room then took
    # the hand-over back from the car (wanted elsewhere): no other car on shift, flagged (its
    # misses raised to the flag's), a hand-over nobody of the station has. The backup team's
    # acknowledgement, given in time, is read only now: its timeout is not theirs, but
    # taking its miss off dropped the flag raised over it, and the command room was no
    # longer told of a case nobody had.
    url = clean_redis
    async with console_of(url) as console:
        for team_id, kind, lat in (("a", "security", 22.8171), ("b", "security", 22.8176),
                                   ("c", "security", 22.8181), ("d", "security", 22.8186),
                                   ("station-car", "police", 22.8300)):
            await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
        await wait_for_units(url, 5)
        incident_id = await report(publisher, "noise", priority="P4")
        (first,) = await orders_once(url, incident_id, 1, "the first guards' order")
        make_due(url, f"ack:{first.order_id}")
        second = (await orders_once(url, incident_id, 2, "the second guards' order"))[1]
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            client.hset(store.incident_key(incident_id), "station_agency_id", STATION)
        finally:
            client.close()
        await respond(publisher, second, "acknowledged", "handover")
        (station,) = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                               if o.kind == "handover"], "the station's order")
        await respond(publisher, station, "reinforce")
        (backup,) = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                              if o.kind == "reinforcement"], "the backup")
        await poll_until(lambda: timer_of(url, f"ack:{backup.order_id}"), "its deadline")
        make_due(url, f"ack:{backup.order_id}")
        await poll_until(lambda: incident(url, incident_id).get("misses") == "1",
                         "the backup's miss")

        r = await console.post(f"/v1/orders/{station.order_id}/withdraw", headers=ADMIN,
                               json={"note": "wanted at a P1"})
        assert r.status_code == 200, r.text
        await poll_until(lambda: incident(url, incident_id).get("station_noted")
                         == station.order_id, "the take-back with nobody left, flagged")
        assert incident(url, incident_id)["flagged"] == "1"

        await acknowledged_in_time(publisher, backup)
        await poll_until(lambda: incident(url, incident_id).get("timeouts") == "1",
                         "the answer read, its timeout not counted")
    assert incident(url, incident_id)["flagged"] == "1"


async def test_an_answer_read_after_its_timeout_keeps_the_flag_of_a_station_with_nobody_on_shift(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Two guards missed the noise's deadlines (flagged by their misses), a third took it and
    # handed it over to a station with nobody on shift: flagged as such (its misses, at the
    # flag's already, stay). The first guards' acknowledgement, given in time, is read only
    # now: taking its miss off dropped the flag of a hand-over nobody had.
    url = clean_redis
    async with dispatch_with_teams(url, publisher, {
            "a": ("security", 22.8171), "b": ("security", 22.8176),
            "c": ("security", 22.8181)}):
        incident_id, first, third = await third_guards_after_two_timeouts(url, publisher)
        await respond(publisher, third, "acknowledged", "handover")
        await poll_until(lambda: incident(url, incident_id).get("handover_unstaffed") == "1",
                         "the hand-over waiting for a car of the station, flagged")
        assert incident(url, incident_id)["flagged"] == "1"

        await acknowledged_in_time(publisher, first)
        await poll_until(lambda: incident(url, incident_id).get("timeouts") == "1",
                         "the answer read, its timeout not counted")
    assert incident(url, incident_id)["flagged"] == "1"


async def test_a_team_that_missed_an_incidents_deadline_runs_no_search_for_it_at_each_fix(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # Notify is down: the order never reaches a phone and its deadline passes. The incident,
    # with nobody else to try, waits unassigned (flagged); its team, free again, is never
    # offered it again (a team that missed an incident is not asked twice). Each of that
    # team's position fixes must not run a search under the incident's lock for it: after
    # an outage of notify that is every free team, for every incident of the district.
    from .test_engine import count_fills

    fast_deadlines(monkeypatch, 1)
    fills = count_fills(monkeypatch)
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    app = create_app(settings_for(clean_redis))
    try:
        async with app.router.lifespan_context(app):
            await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
            await wait_for_units(clean_redis, 1)
            incident_id = await report(publisher, "help_request", priority="P3")
            await poll_until(lambda: client.hget(f"dispatch:incident:{incident_id}", "status")
                             == "unassigned", "the incident unassigned after the deadline", 10)
            await poll_until(lambda: client.get("dispatch:claim:first") is None,
                             "the team free again")
            await asyncio.sleep(0.3)  # the deadline's own offer to the waiting incidents
            fills.clear()
            for n in range(3):  # the team, free, reports where it is
                await team(publisher, "first", kind="security", lat=22.8171 + n * 0.0001,
                           lon=108.3665)
            await poll_until(lambda: client.xpending(streams.UNIT_POSITION.name, "dispatch")
                             ["pending"] == 0 and client.xinfo_groups(
                                 streams.UNIT_POSITION.name)[0]["lag"] == 0,
                             "the fixes handled")
            await asyncio.sleep(0.3)
            incident = client.hgetall(f"dispatch:incident:{incident_id}")
    finally:
        client.close()
    assert fills.count(incident_id) == 0
    assert (incident["status"], incident["flagged"]) == ("unassigned", "1")


async def test_an_order_dispatch_died_before_sending_gets_its_whole_deadline_once_sent(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fight wants police and security. Dispatch writes the police team's order, then dies
    # before the security team's and before announcing either; it is back after the
    # police order's deadline. The police team never had that order: it must not be timed
    # out for it (a routing timeout, a miss towards the board's flag), nor be sent it with
    # a deadline already past; it gets it now, with the whole time to acknowledge.
    from shared import policy as policy_module

    real_policy = policy_module.load_policy()
    fast = real_policy.model_copy(update={"deadlines_s": {**real_policy.deadlines_s, "P1": 2}})
    monkeypatch.setattr("services.dispatch.main.load_policy", lambda *_: fast)
    real_offer = Dispatcher._offer
    offers: list[str] = []

    async def dies_at_the_second(engine: Dispatcher, inc: dict[str, str], unit: Any,
                                 **kwargs: Any) -> Any:
        offers.append(unit.team_id)
        if len(offers) == 2:
            await asyncio.Event().wait()  # the process is gone from here on
        return await real_offer(engine, inc, unit, **kwargs)

    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        with monkeypatch.context() as dying:
            dying.setattr(Dispatcher, "_offer", dies_at_the_second)
            app = create_app(settings_for(clean_redis, consumer_name="before"))
            async with app.router.lifespan_context(app):
                await team(publisher, "pol", kind="police", lat=22.8180, lon=108.3665)
                await team(publisher, "sec", kind="security", lat=22.8175, lon=108.3665)
                await wait_for_units(clean_redis, 2)
                incident_id = await report(publisher, "violence", priority="P1")
                await poll_until(lambda: len(offers) == 2, "the first order written")
        [first_id] = client.lrange(f"dispatch:orders:{incident_id}", 0, -1)
        first = client.hgetall(f"dispatch:order:{first_id}")
        assert first["published"] == "0"
        client.delete(f"dispatch:lock:{incident_id}")  # its TTL would free it
        await poll_until(lambda: utcnow().isoformat() > first["ack_by"],
                         "the first order's deadline passed while dispatch was down", 5)
        app = create_app(settings_for(clean_redis, consumer_name="after"))
        async with app.router.lifespan_context(app):
            orders = await poll_until(
                lambda: (o := read_stream(clean_redis, streams.ORDER_ISSUED.name, OrderIssued))
                and len(o) == 2 and o, "both orders sent after the restart", 10)
            await asyncio.sleep(0.5)  # let any (wrong) timeout show up
            entries = sync_redis.Redis.from_url(clean_redis).xrange(streams.ORDER_ISSUED.name)
            incident = client.hgetall(f"dispatch:incident:{incident_id}")
            first_state = client.hget(f"dispatch:order:{first_id}", "state")
    finally:
        client.close()
    assert sorted(o.team_id for o in orders) == ["pol", "sec"]
    for order, (entry_id, _) in zip(orders, entries, strict=True):
        sent_at = int(entry_id.split(b"-")[0]) / 1000
        assert order.ack_by is not None and order.ack_by.timestamp() > sent_at + 1, order
    assert first_state == "offered"
    assert read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn) == []
    assert (incident.get("misses"), incident.get("timeouts")) == ("0", None)



async def test_a_team_that_finished_and_checked_out_while_dispatch_was_down_is_not_replaced(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # While dispatch is down (a shift change), the guards take their order, resolve it and
    # check out. Back, dispatch reads their check-out before their answers (two streams):
    # the order must not be taken back as "nobody will acknowledge it" and the incident,
    # resolved on the spot, sent to another team; nor flagged for the command room.
    incident_id, order = await offered_then_down(clean_redis, publisher)
    for response in ("acknowledged", "resolved"):
        await publisher.publish(OrderResponded(
            district=DISTRICT, order_id=order.order_id, incident_id=incident_id,
            team_id="first", member_id="m1", response=response),
            stream=streams.ORDER_RESPONDED.name)
    await publisher.publish(UnitStatus(
        district=DISTRICT, unit_id="first", status="off_duty", name="first",
        agency_id="ag-security", agency_kind="security", mode="car", on_shift=False),
        stream=streams.UNIT_STATUS.name)
    fired = answers_held_until_a_timer_fired(monkeypatch)
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        app = create_app(settings_for(clean_redis, consumer_name="after"))
        async with app.router.lifespan_context(app):
            await poll_until(lambda: client.xpending(streams.ORDER_RESPONDED.name, "dispatch")
                             ["pending"] == 0 and client.xinfo_groups(
                                 streams.ORDER_RESPONDED.name)[0]["lag"] == 0,
                             "the answers handled", 15)
            await poll_until(lambda: client.zscore("dispatch:timers", f"offshift:{order.order_id}")
                             is None, "the off-shift check done", 5)
            await asyncio.sleep(0.3)  # let any (wrong) second offer show up
            incident = client.hgetall(f"dispatch:incident:{incident_id}")
            state = client.hget(f"dispatch:order:{order.order_id}", "state")
    finally:
        client.close()
    assert fired and fired[0] == f"offshift:{order.order_id}"  # the check-out came first
    assert state == "resolved"
    assert read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn) == []
    assert [o.team_id for o in read_stream(clean_redis, streams.ORDER_ISSUED.name,
                                           OrderIssued)] == ["first"]
    assert (incident["status"], incident["flagged"], incident["misses"]) == ("resolved", "0", "0")


async def test_a_backup_is_not_sent_to_an_incident_its_team_resolved_while_dispatch_was_down(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The guards on scene asked for backup with nobody free: looked for again every 20 s.
    # Dispatch goes down; meanwhile the guards resolve the incident, and another team comes
    # on shift. Back, the backup's retry is due before the guards' answer is read: no team
    # may be sent as backup to an incident already resolved.
    from .test_reinforcement import on_scene_asking_for_backup

    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        app = create_app(settings_for(clean_redis, consumer_name="before"))
        async with app.router.lifespan_context(app):
            await team(publisher, "alone", kind="security", lat=22.8171, lon=108.3665)
            await wait_for_units(clean_redis, 1)
            incident_id, order = await on_scene_asking_for_backup(clean_redis, publisher)
            retry = f"reinforce:{order.order_id}"
            await poll_until(lambda: client.zscore("dispatch:timers", retry),
                             "the backup looked for again later: nobody free")
        await publisher.publish(OrderResponded(
            district=DISTRICT, order_id=order.order_id, incident_id=incident_id,
            team_id="alone", member_id="m1", response="resolved"),
            stream=streams.ORDER_RESPONDED.name)
        await team(publisher, "helper", kind="security", lat=22.8190, lon=108.3665)
        client.zadd("dispatch:timers", {retry: 0})  # due while dispatch was down
        fired = answers_held_until_a_timer_fired(monkeypatch)
        app = create_app(settings_for(clean_redis, consumer_name="after"))
        async with app.router.lifespan_context(app):
            await poll_until(lambda: client.hget(f"dispatch:incident:{incident_id}", "status")
                             == "resolved", "the incident resolved", 15)
            await poll_until(lambda: client.zscore("dispatch:timers", retry) is None,
                             "the backup's retry done", 5)
            await asyncio.sleep(0.3)  # let any (wrong) backup show up
    finally:
        client.close()
    assert fired and fired[0] == retry  # the retry came first
    assert [o.team_id for o in read_stream(clean_redis, streams.ORDER_ISSUED.name,
                                           OrderIssued)] == ["alone"]
    assert read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn) == []
