"""A duplicate report linked to an incident dispatch does not know: that incident's own report
is being handled at the same moment (it joins it once there), or it was dead-lettered and
never comes (the report is sent out as its own after LINKED_WAIT_S, flagged; the next reports
of the event join it). Without this, every report of the lost event for ten minutes waited,
linked, with no team, for ever."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.dispatch import store
from services.dispatch.engine import Dispatcher
from shared import dead_letters, streams
from shared.events import IncidentReported, new_id, utcnow
from tests.helpers import poll_until

from .conftest import dead_lettered, fail_once
from .test_engine import DISTRICT, SCENE, orders_for, team, wait_for_units
from .test_linked import duplicate_of, resolve, status, updates

ADMIN = {"Authorization": "Bearer test-admin-token"}


def fields(url: str, incident_id: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hgetall(f"dispatch:incident:{incident_id}")
    finally:
        client.close()


def timer_set(url: str, member: str) -> bool:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.zscore(store.TIMERS, member) is not None
    finally:
        client.close()


def counted_under(url: str, incident_id: str) -> tuple[list[str], dict[str, str]]:
    """The reports counted as linked to the incident (its view lists them, its board row
    counts them), and its sources' counts."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return (client.zrange(store.linked_key(incident_id), 0, -1),
                client.hgetall(store.linked_sources_key(incident_id)))
    finally:
        client.close()


async def judged_linked(url: str, linked: str) -> None:
    """The report linked to an incident dispatch does not know, its link judged: its wait's
    timer set. Not its status: `linked` is written with the record, a step before the
    judgement that sets the timer (a test that went on at the status found no timer now and
    then, under load)."""
    await poll_until(lambda: status(url, linked) == "linked" and timer_set(url, f"link:{linked}"),
                     "the report linked, its link to be judged again after the wait")


def due_now(url: str, member: str, *, set_again: bool = False) -> None:
    """The timer `member` made due now (as LINKED_WAIT_S passing would); it must be set,
    unless `set_again` (a timer handled, then firing again)."""
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        changed = client.zadd(store.TIMERS, {member: time.time()}, xx=not set_again, ch=True)
    finally:
        client.close()
    assert changed == 1, f"no timer {member}: the report waits on nothing"


async def linked_to_a_lost_incident(url: str, broker: RedisBroker) -> tuple[str, str]:
    """A guard team on shift and a report linked by intake to an incident whose own report
    never reaches dispatch (dead-lettered): (that incident, the report) once linked."""
    await team(broker, "t1", kind="security", lat=22.8171, lon=108.3665)
    await team(broker, "t2", kind="security", lat=22.8175, lon=108.3665)
    await wait_for_units(url, 2)
    lost = new_id("inc")
    linked = await duplicate_of(broker, lost)
    await judged_linked(url, linked)
    return lost, linked


async def test_a_report_linked_to_an_incident_dispatch_never_got_is_sent_out_after_the_wait(
        dispatch: str, publisher: RedisBroker) -> None:
    lost, linked = await linked_to_a_lost_incident(dispatch, publisher)
    # meanwhile: a linked report (the board shows it so, not flagged), judged again later
    assert fields(dispatch, linked)["flagged"] == "0"
    due_now(dispatch, f"link:{linked}")
    orders = await poll_until(lambda: orders_for(dispatch, linked), "an order of its own")
    assert len(orders) == 1
    after = fields(dispatch, linked)
    assert after["status"] == "assigned"
    assert after["flagged"] == "1"  # the command room is told: an incident went missing
    notes = [u.entry.detail or "" for u in updates(dispatch, linked) if u.entry.kind == "note"]
    assert any(f"duplicate of {lost}" in n and "dispatch never received" in n for n in notes)
    # never counted among the reports of an incident dispatch does not know (no key left
    # for an incident whose record, and its sweep, never come)
    assert counted_under(dispatch, lost) == ([], {})
    await poll_until(lambda: not timer_set(dispatch, f"link:{linked}"), "the timer done")
    # fired again (a replica that died before removing it): nothing more
    due_now(dispatch, f"link:{linked}", set_again=True)
    await poll_until(lambda: not timer_set(dispatch, f"link:{linked}"), "fired again")
    assert len(orders_for(dispatch, linked)) == 1
    assert len([u for u in updates(dispatch, linked) if u.entry.kind == "note"]) == len(notes)


async def test_the_next_report_of_the_lost_incident_joins_the_one_sent_out(
        dispatch: str, publisher: RedisBroker) -> None:
    # A third caller about the same event, linked by intake to the same lost incident: one
    # team for the event, not one per caller after each one's wait.
    lost, first = await linked_to_a_lost_incident(dispatch, publisher)
    due_now(dispatch, f"link:{first}")
    await poll_until(lambda: orders_for(dispatch, first), "the first sent out")
    second = await duplicate_of(publisher, lost)
    joined = await poll_until(lambda: [u for u in updates(dispatch, second)
                                       if u.status == "linked"], "the second report linked")
    assert joined[0].linked_to == first
    assert f"duplicate report of {first}" in (joined[0].entry.detail or "")
    assert not timer_set(dispatch, f"link:{second}")  # it joined a known incident
    assert counted_under(dispatch, first) == ([second], {"sys": "1"})
    assert orders_for(dispatch, second) == []
    assert len(orders_for(dispatch, first)) == 1


async def test_a_report_whose_incident_comes_after_it_joins_that_incident(
        dispatch: str, publisher: RedisBroker) -> None:
    # The first report's step is slower than the second's (reads are handled concurrently):
    # the duplicate is judged first, then its incident arrives and gets the team.
    parent, linked = await linked_to_a_lost_incident(dispatch, publisher)
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=parent, system_id="sys", external_ref=parent,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow()),
        stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: orders_for(dispatch, parent), "the incident's own order")
    due_now(dispatch, f"link:{linked}")
    await poll_until(lambda: not timer_set(dispatch, f"link:{linked}"), "the timer fired")
    assert orders_for(dispatch, linked) == []
    assert status(dispatch, linked) == "linked"
    assert fields(dispatch, linked)["linked_to"] == parent
    # counted among its reports once known (its view lists it, its board row counts it)
    assert counted_under(dispatch, parent) == ([linked], {"sys": "1"})


async def test_a_report_whose_incident_is_still_being_handled_waits_for_it(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The wait passes while the incident's own report is still in dispatch's hands (a slow
    # step; or failed once and waiting for its reclaimer): the duplicate waits on for it,
    # and is not sent a second team.
    parent, linked = await linked_to_a_lost_incident(dispatch, publisher)
    release = asyncio.Event()
    real_first_step: Callable[..., Awaitable[Any]] = store.first_step

    async def held_back(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("incident_id") == parent:
            await asyncio.wait_for(release.wait(), 20)
        return await real_first_step(*args, **kwargs)

    fired: list[str] = []
    real_fire: Callable[..., Awaitable[Any]] = Dispatcher.fire_timer

    async def fire(engine: Dispatcher, member: str) -> Any:
        try:
            return await real_fire(engine, member)
        finally:
            fired.append(member)

    monkeypatch.setattr(store, "first_step", held_back)
    monkeypatch.setattr(Dispatcher, "fire_timer", fire)
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=parent, system_id="sys", external_ref=parent,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow()),
        stream=streams.INCIDENT_REPORTED.name)
    due_now(dispatch, f"link:{linked}")
    await poll_until(lambda: f"link:{linked}" in fired, "the wait over")
    assert orders_for(dispatch, linked) == []
    release.set()
    await poll_until(lambda: orders_for(dispatch, parent), "the incident's own order")
    await poll_until(lambda: not timer_set(dispatch, f"link:{linked}"), "the timer done")
    assert orders_for(dispatch, linked) == []
    assert status(dispatch, linked) == "linked"


async def test_what_a_report_judged_before_its_incident_knows_reaches_that_incident(
        dispatch: str, publisher: RedisBroker) -> None:
    # The second caller ("he has a knife") is handled a moment before the first caller's
    # report: the incident, once there, still learns it (P1, `weapon`: the volunteers taken
    # off and a guard sent), as it does from a report linked after it.
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot")
    await wait_for_units(dispatch, 1)
    parent, linked = new_id("inc"), new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=linked, system_id="sys", external_ref=linked,
        category="help_request", priority="P1", flags=("Weapon",), location=SCENE,
        reported_at=utcnow(), linked_to=parent), stream=streams.INCIDENT_REPORTED.name)
    await judged_linked(dispatch, linked)
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=parent, system_id="sys", external_ref=parent,
        category="help_request", priority="P3", location=SCENE, reported_at=utcnow()),
        stream=streams.INCIDENT_REPORTED.name)
    [first] = await poll_until(lambda: orders_for(dispatch, parent), "the volunteers' order")
    assert first.team_id == "aunties"
    await team(publisher, "guard", kind="security", lat=22.8200, lon=108.3665)
    await wait_for_units(dispatch, 2)
    due_now(dispatch, f"link:{linked}")
    orders = await poll_until(lambda: orders_for(dispatch, parent)[1:], "the guard's order")
    assert [o.team_id for o in orders] == ["guard"]
    after = fields(dispatch, parent)
    assert (after["priority"], after["flags"]) == ("P1", '["weapon"]')
    await poll_until(lambda: not timer_set(dispatch, f"link:{linked}"), "the timer done")
    told = [u for u in updates(dispatch, parent)
            if u.entry.detail == f"another report linked: {linked}"]
    assert len(told) == 1
    # fired again (a replica that died before removing it): nothing more
    due_now(dispatch, f"link:{linked}", set_again=True)
    await poll_until(lambda: not timer_set(dispatch, f"link:{linked}"), "fired again")
    assert len([u for u in updates(dispatch, parent)
                if u.entry.detail == f"another report linked: {linked}"]) == 1
    assert len(orders_for(dispatch, parent)) == 2
    assert orders_for(dispatch, linked) == []


def reported(incident_id: str, **more: Any) -> IncidentReported:
    return IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow(), **more)


async def sent_out_in_place_of_a_dead_letter(
        url: str, broker: RedisBroker, monkeypatch: pytest.MonkeyPatch, **lost_report: Any,
) -> tuple[str, str, Callable[[], Awaitable[str]]]:
    """Two guard teams on shift; the first caller's report dead-lettered (a bug), the second
    caller's, linked to it by intake, sent out after the wait with the nearest team: (the
    lost incident, the report sent out, the lost report's replay)."""
    await team(broker, "t1", kind="security", lat=22.8171, lon=108.3665)
    await team(broker, "t2", kind="security", lat=22.8175, lon=108.3665)
    await wait_for_units(url, 2)
    lost = new_id("inc")
    replay = await dead_lettered(url, broker, reported(lost, **lost_report), monkeypatch)
    linked = await duplicate_of(broker, lost)
    await judged_linked(url, linked)
    due_now(url, f"link:{linked}")
    await poll_until(lambda: orders_for(url, linked), "an order of its own")
    return lost, linked, replay


async def test_a_lost_incident_replayed_after_its_report_was_sent_out_gets_no_second_team(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first report, replayed once its bug is fixed, is of the event the second was sent
    # out for: it joins that one, and the second guard team is not sent too.
    lost, linked, replay = await sent_out_in_place_of_a_dead_letter(
        dispatch, publisher, monkeypatch)
    [sent] = orders_for(dispatch, linked)
    await replay()
    await poll_until(lambda: status(dispatch, lost) not in (None, "dispatching"),
                     "the replayed report handled")
    assert orders_for(dispatch, lost) == []
    assert status(dispatch, lost) == "linked"
    [joined] = [u for u in updates(dispatch, lost) if u.status == "linked"]
    assert joined.linked_to == linked
    assert f"duplicate report of {linked}" in (joined.entry.detail or "")
    assert fields(dispatch, lost)["linked_to"] == linked
    assert orders_for(dispatch, linked) == [sent]
    assert any(u.entry.detail == f"another report linked: {lost}"
               for u in updates(dispatch, linked))


async def test_a_lost_incident_replayed_whose_step_stopped_before_its_link_is_linked_again(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # Created, then the step failed before the link was written: the redelivered report
    # finds it `dispatching` with nothing done, and links it then, not sends a team.
    lost, linked, replay = await sent_out_in_place_of_a_dead_letter(
        dispatch, publisher, monkeypatch)
    failed = fail_once(monkeypatch, Dispatcher, "_judge_link",
                       lambda _engine, incident_id, *_, **__: incident_id == lost)
    await replay()
    await poll_until(lambda: status(dispatch, lost) not in (None, "dispatching"),
                     "the replayed report handled when it came again", 15)
    assert failed == ["failed"]
    assert status(dispatch, lost) == "linked"
    assert orders_for(dispatch, lost) == []
    assert len(orders_for(dispatch, linked)) == 1


async def test_a_lost_incident_replayed_after_the_report_sent_out_was_resolved_joins_it(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its event was seen to by the team of the report sent out in its place: no team again.
    lost, linked, replay = await sent_out_in_place_of_a_dead_letter(
        dispatch, publisher, monkeypatch)
    await resolve(dispatch, publisher, linked)
    await replay()
    await poll_until(lambda: status(dispatch, lost) not in (None, "dispatching"),
                     "the replayed report handled")
    assert status(dispatch, lost) == "linked"
    assert fields(dispatch, lost)["linked_to"] == linked
    assert orders_for(dispatch, lost) == []


async def test_a_lost_incident_dead_lettered_again_before_its_link_gets_no_second_team(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # Replayed, its step fails on a bug before the link each time, and it is dead-lettered
    # again: flagged with the given-up note (which the link's retry must not take for a
    # step that went past the link). Replayed once the bug is fixed, it joins the report
    # sent out in its place, and the second guard team is not sent.
    lost, linked, replay = await sent_out_in_place_of_a_dead_letter(
        dispatch, publisher, monkeypatch)
    real = Dispatcher._judge_link
    broken = [True]

    async def buggy(engine: Dispatcher, incident_id: str, *args: Any, **kwargs: Any) -> bool:
        if broken[0] and incident_id == lost:
            raise RuntimeError("a bug")
        return await real(engine, incident_id, *args, **kwargs)

    monkeypatch.setattr(Dispatcher, "_judge_link", buggy)
    await replay()
    client = aioredis.Redis.from_url(dispatch)
    try:
        [(letter_id, _)] = await poll_until(
            lambda: client.xrange(streams.INCIDENT_REPORTED.dead_letters),
            "the replayed report dead-lettered again", 30)
        assert fields(dispatch, lost).get("report_given_up") == "1"
        # its note names the incident that has the team, and asks for no second one
        notes = [json.loads(e) for e in sync_redis.Redis.from_url(dispatch).lrange(
            store.timeline_key(lost), 0, -1)]
        [note] = [n for n in notes if n.get("detail_code", "").startswith("report_not_handled")]
        assert note["detail_code"] == "report_not_handled_sent_on"
        assert note["detail_args"] == {"onward": linked}
        broken[0] = False
        await dead_letters.replay(client, streams.INCIDENT_REPORTED.name, letter_id.decode())
    finally:
        await client.aclose()
    await poll_until(lambda: status(dispatch, lost) != "dispatching"
                     or orders_for(dispatch, lost), "the replayed report handled", 15)
    assert orders_for(dispatch, lost) == []
    assert status(dispatch, lost) == "linked"
    assert len(orders_for(dispatch, linked)) == 1


async def test_a_remark_on_a_report_whose_link_step_is_failing_does_not_skip_its_judgement(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The report is recorded `linked`, and its step fails before the link is judged. The
    # command room writes on it meanwhile (a remark: "the caller called again"). The retry
    # must judge the link all the same: its incident is lost, so without the judgement no
    # `link:` timer exists and the report stays linked, unflagged, with no team, for good
    # (the retry took any write since its creation for the judgement's).
    url = clean_redis
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    real = Dispatcher._judge_link
    broken, failures = [True], []

    async def failing(engine: Dispatcher, incident_id: str, *args: Any, **kwargs: Any) -> bool:
        if broken[0]:
            failures.append(incident_id)
            raise RuntimeError("Redis went away")
        return await real(engine, incident_id, *args, **kwargs)

    monkeypatch.setattr(Dispatcher, "_judge_link", failing)
    lost = new_id("inc")
    linked = await duplicate_of(publisher, lost)
    await poll_until(lambda: failures, "the report's step failing before its link's judgement")
    r = await console.post(f"/v1/incidents/{linked}/remarks", headers=ADMIN,
                           json={"note": "the caller rang again: still shouting"})
    assert r.status_code == 201, r.text
    broken[0] = False
    await judged_linked(url, linked)
    due_now(url, f"link:{linked}")
    await poll_until(lambda: orders_for(url, linked), "the report sent out as its own")
