"""The command room's hand racing the automatic flow: a revision, a take-back, a close or an
assignment made while teams answer, offers are out, backups are looked for and timers run.
Whatever comes first, no team is left without what it asked for, and nothing is sent to an
incident done with."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker
from redis.exceptions import ConnectionError as RedisConnectionError

from services.dispatch import store
from services.dispatch.engine import Dispatcher
from shared import streams
from shared.events import IncidentReported, OrderIssued, UnitPosition, new_id, utcnow
from tests.helpers import poll_until

from .test_assign import ADMIN, timeline
from .test_engine import DISTRICT, SCENE, orders_for, orders_once, report, team, wait_for_units
from .test_reinforcement import answer


def state_of(url: str, order_id: str) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(store.order_key(order_id), "state")
    finally:
        client.close()


async def guard_backed_by_volunteers(url: str, publisher: RedisBroker
                                     ) -> tuple[str, OrderIssued, OrderIssued]:
    """A medical P1 whose guard, on scene, asked for backup and got the first-aid volunteers
    (a police car farther off is free too): the incident, the guard's order, the backup's."""
    first_aid = ("first_aid",)
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665, skills=first_aid)
    await team(publisher, "aunties", kind="volunteer", lat=22.8180, lon=108.3665,
               skills=first_aid)
    await team(publisher, "police-car", kind="police", lat=22.8300, lon=108.3665,
               skills=first_aid)
    await wait_for_units(url, 3)
    incident_id = await report(publisher, "medical", priority="P1")
    [guard] = await orders_once(url, incident_id, 1, "the guard's order")
    assert guard.team_id == "guard"
    for response in ("acknowledged", "on_scene", "reinforce"):
        await answer(publisher, guard, response)
    [_, backup] = await orders_once(url, incident_id, 2, "the backup")
    assert (backup.kind, backup.team_id) == ("reinforcement", "aunties")
    return incident_id, guard, backup


async def test_a_volunteer_backup_taken_off_by_a_weapon_is_replaced_for_the_team_that_asked(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # A guard trained in first aid is on scene at a medical call and asks for backup: the
    # nearest free first-aid team is a volunteer team. The caller rings back: a man with a
    # knife. The weapon takes the volunteers off (never sent into violence), and the guard,
    # who is still there, must still get a backup: a police car, as after a take-back or
    # a refusal. (A medical call is P1 with one unit: the guard is all it wants, so nothing
    # else would send anyone.)
    incident_id, guard, backup = await guard_backed_by_volunteers(clean_redis, publisher)

    r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN, json={
        "add_flags": ["weapon"], "note": "the caller rang back: a man with a knife"})
    assert r.status_code == 200, r.text
    assert r.json()["withdrawn"] == [backup.order_id]
    orders = await orders_once(clean_redis, incident_id, 3, "another backup for the guard")
    assert [(o.kind, o.team_id) for o in orders] == [
        ("dispatch", "guard"), ("reinforcement", "aunties"), ("reinforcement", "police-car")]
    assert state_of(clean_redis, orders[2].order_id) == "offered"
    kinds = [e["kind"] for e in timeline(clean_redis, incident_id)]
    assert kinds.count("reinforcement") == 2


async def test_a_follow_up_whose_timer_fired_as_the_incident_was_closed_orders_no_visit(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A handed-over dispute's follow-up visit comes due as the command room closes it: the
    # timer loop has leased the timer and its firing waits for the incident's lock, which
    # the close holds (the close's cancel of the timer cannot stop a firing under way).
    # Once the close is done, the firing must find the incident closed: no station team is
    # sent to revisit a case the command room closed.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "station-car", kind="police", lat=22.8300, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    incident_id = await report(publisher, "dispute", priority="P2")
    [guard] = await orders_once(clean_redis, incident_id, 1, "the guard's order")
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    member = f"followup:{incident_id}"
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", "ag-police")
        await answer(publisher, guard, "acknowledged")
        await answer(publisher, guard, "handover")
        await orders_once(clean_redis, incident_id, 2, "the station's hand-over order")
        await poll_until(lambda: client.zscore(store.TIMERS, member), "the follow-up's timer")

        fired = asyncio.Event()
        real_fire = Dispatcher.fire_timer

        async def fire_timer(engine: Dispatcher, what: str) -> Any:
            try:
                return await real_fire(engine, what)
            finally:
                if what == member:
                    fired.set()

        monkeypatch.setattr(Dispatcher, "fire_timer", fire_timer)
        real_cancel = store.cancel

        async def cancel(redis: Any, what: str) -> None:
            if what == member:  # the close, under the incident's lock: the visit comes due
                client.zadd(store.TIMERS, {member: time.time()})
                await poll_until(lambda: (client.zscore(store.TIMERS, member) or 0)
                                 > time.time() + 1, "the timer leased by the timer loop")
            await real_cancel(redis, what)

        monkeypatch.setattr(store, "cancel", cancel)
        r = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
        assert r.status_code == 200, r.text
        await asyncio.wait_for(fired.wait(), 10)
        assert client.hget(store.incident_key(incident_id), "status") == "closed"
        assert client.hget(store.incident_key(incident_id), "followup_order") in (None, "")
    finally:
        client.close()
    assert [o.kind for o in orders_for(clean_redis, incident_id)] == ["dispatch", "handover"]
    # the visit planned by the hand-over is on the timeline; none ordered
    assert [e.get("detail_code") for e in timeline(clean_redis, incident_id)
            if e["kind"] == "followup"] == ["followup_planned"]


async def test_a_team_moved_by_hand_as_it_is_offered_another_incident_is_moved_all_the_same(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The command room sends the guard to a medical call nobody free could take (no team
    # has first aid) with "reassign": take it off whatever it is on. The guard is free
    # when the assignment looks, and a noise complaint reported at that moment is offered
    # the guard automatically before the assignment claims it. The guard must still be
    # moved, as asked (the complaint goes to its next team), not a 409 that tells the
    # dispatcher to send "reassign": true, which they did.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "station-car", kind="police", role="station", lat=22.8300,
               lon=108.3665)
    await wait_for_units(clean_redis, 2)
    medical = await report(publisher, "medical", priority="P1")
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        await poll_until(lambda: client.hget(store.incident_key(medical), "status")
                         == "unassigned", "the medical call waiting")
    finally:
        client.close()
    noise: list[str] = []
    real_claim_of = store.claim_of

    async def claim_of(redis: Any, team_id: str) -> str | None:
        holder = await real_claim_of(redis, team_id)
        if team_id == "guard" and not noise:  # looked at: free; then the complaint comes
            noise.append(await report(publisher, "noise", priority="P4"))
            await orders_once(clean_redis, noise[0], 1, "the complaint's offer to the guard")
        return holder

    monkeypatch.setattr(store, "claim_of", claim_of)
    r = await console.post(f"/v1/incidents/{medical}/assign", headers=ADMIN,
                           json={"team_id": "guard", "reassign": True})
    assert r.status_code == 200, r.text
    [order] = orders_for(clean_redis, medical)
    assert (order.kind, order.team_id, order.order_id) == ("manual", "guard",
                                                           r.json()["order_id"])
    [taken] = orders_for(clean_redis, noise[0])[:1]
    assert taken.team_id == "guard"
    assert state_of(clean_redis, taken.order_id) == "withdrawn"
    orders = await orders_once(clean_redis, noise[0], 2, "the complaint's next team")
    assert orders[1].team_id == "station-car"


async def test_an_incident_a_team_is_moved_off_is_refilled_when_a_third_claimed_the_team_between(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard is moved by hand from a noise complaint to a medical call. Between its
    # take-back from the complaint and the medical call's claim, the guard's position fix
    # offers it, free, to a hazard report waiting for a team. The complaint must get its
    # next team (the station's car, free) at once, not wait in the queue for the car's next
    # fix; and the move is made as asked.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    medical = await report(publisher, "medical", priority="P1")  # nobody has first aid
    noise = await report(publisher, "noise", priority="P4")
    [first] = await orders_once(clean_redis, noise, 1, "the guard's order")
    assert first.team_id == "guard"
    hazard = await report(publisher, "hazard_report", priority="P3")  # nobody free: waits
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        await poll_until(lambda: client.hget(store.incident_key(hazard), "status")
                         == "unassigned", "the hazard report waiting")
        await team(publisher, "station-car", kind="police", role="station", lat=22.8300,
                   lon=108.3665)  # free; answers the complaint, not the hazard report
        await wait_for_units(clean_redis, 2)
    finally:
        client.close()
    real_assign = Dispatcher._assign
    fixes: list[str] = []

    async def assign(engine: Dispatcher, incident_id: str, team_id: str, *,
                     reassigning: bool = False) -> dict[str, str]:
        if reassigning and not fixes:  # taken off the complaint; its fix comes now
            fixes.append("guard")
            await publisher.publish(UnitPosition(district=DISTRICT, unit_id="guard",
                                                 lat=22.8171, lon=108.3665, at=utcnow()),
                                    stream=streams.UNIT_POSITION.name)
            await orders_once(clean_redis, hazard, 1, "the hazard report's offer to the guard")
        return await real_assign(engine, incident_id, team_id, reassigning=reassigning)

    monkeypatch.setattr(Dispatcher, "_assign", assign)
    r = await console.post(f"/v1/incidents/{medical}/assign", headers=ADMIN,
                           json={"team_id": "guard", "reassign": True})
    assert fixes == ["guard"]
    assert r.status_code == 200, r.text
    assert [(o.kind, o.team_id) for o in orders_for(clean_redis, medical)] == [
        ("manual", "guard")]
    assert [o.team_id for o in orders_for(clean_redis, noise)] == ["guard", "station-car"]
    [offered] = orders_for(clean_redis, hazard)
    assert state_of(clean_redis, offered.order_id) == "withdrawn"


async def test_a_remark_on_an_archived_incident_goes_with_its_record(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The command room remarks on an incident whose record was archived (a review of an
    # old case): its remark is a new timeline, which must be deleted with the rest of the
    # record once it is forgotten (KPI_DAYS), not kept in Redis for ever.
    import redis.asyncio as aioredis

    from services.dispatch import records
    from services.dispatch.locks import IncidentLocks

    from .test_records import resolved_incident

    incident_id = await resolved_incident(clean_redis, publisher)
    redis = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    locks = IncidentLocks(redis)
    try:
        assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 1
        r = await console.post(f"/v1/incidents/{incident_id}/remarks", headers=ADMIN,
                               json={"note": "reviewed: the caller withdrew the complaint"})
        assert r.status_code == 201, r.text
        assert await redis.exists(store.timeline_key(incident_id))
        assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 0
        assert await records.forget_archived(redis, locks, reported_before=time.time() + 1) == 1
        assert not await redis.exists(store.incident_key(incident_id))
        assert not await redis.exists(store.timeline_key(incident_id))
    finally:
        await locks.close()
        await redis.aclose()


async def test_what_the_command_room_learnt_is_kept_when_a_linked_report_made_the_same_change(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The dispatcher on the phone with a caller ticks "weapon" and writes what they heard;
    # a moment before, a second caller's report (linked by intake) flagged the incident with
    # a weapon already. The revision changes nothing then, but what the dispatcher learnt
    # must still reach the timeline (the console clears the form on the 200), once, also
    # when the revision is asked again.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    parent = await report(publisher, "noise", priority="P4")
    await orders_once(clean_redis, parent, 1, "the guard's order")
    linked = new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=linked, system_id="sys", external_ref=linked,
        category="noise", priority="P4", flags=("weapon",), location=SCENE,
        reported_at=utcnow(), linked_to=parent), stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: any(e["kind"] == "revised" for e in timeline(clean_redis, parent)),
                     "the linked report's revision")
    heard = "two men, the taller one with a knife, running north towards the market"
    for _ in range(2):  # and asked again (its answer lost)
        r = await console.patch(f"/v1/incidents/{parent}", headers=ADMIN,
                                json={"add_flags": ["weapon"], "note": heard})
        assert r.status_code == 200, r.text
        assert (r.json()["priority"], r.json()["flags"]) == ("P1", ["weapon"])
    notes = [e for e in timeline(clean_redis, parent) if e.get("note") == heard]
    assert len(notes) == 1
    assert notes[0]["kind"] == "revised" and "admin:admin" in notes[0]["detail"]


@pytest.mark.parametrize("meanwhile", ["closed", "filed"])
async def test_a_hand_over_handled_again_after_the_case_moved_on_sends_the_station_nothing(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch, meanwhile: str) -> None:
    # The guard hands a dispute over; dispatch writes the hand-over and the station car's
    # order, then loses Redis before recording it (the answer stays pending, handled again
    # once Redis answers). Meanwhile the command room closes the case, or the car files it.
    # The answer handled again must make no second hand-over order: for a closed case, one
    # live for ever (nobody may close the case again) with its filing owed; for a filed
    # case, the station asked to file it twice. A filed dispute keeps its follow-up visit.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "station-car", kind="police", role="station", lat=22.8300,
               lon=108.3665)
    await wait_for_units(clean_redis, 2)
    incident_id = await report(publisher, "dispute", priority="P2")
    [guard] = await orders_once(clean_redis, incident_id, 1, "the guard's order")
    assert guard.team_id == "guard"
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    away = [True]
    tries: list[str] = []
    real_record = Dispatcher._record_station_order

    async def record_station_order(engine: Dispatcher, *args: Any, **kwargs: Any) -> None:
        if away[0]:
            tries.append("failed")
            raise RedisConnectionError("Redis went away")
        await real_record(engine, *args, **kwargs)

    monkeypatch.setattr(Dispatcher, "_record_station_order", record_station_order)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", "ag-police")
        await answer(publisher, guard, "acknowledged")
        await answer(publisher, guard, "handover")
        await poll_until(lambda: tries, "the station order's record failing")
        [_, station] = await orders_once(clean_redis, incident_id, 2, "the station's order")
        assert (station.kind, station.team_id) == ("handover", "station-car")
        if meanwhile == "closed":
            r = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
            assert r.status_code == 200, r.text
        else:
            await answer(publisher, station, "resolved")
            await poll_until(lambda: client.hget(store.incident_key(incident_id), "status")
                             == "resolved", "the case filed")
        away[0] = False  # Redis answers again: the hand-over is handled again
        await poll_until(lambda: not client.xpending(streams.ORDER_RESPONDED.name,
                                                     "dispatch")["pending"],
                         "the hand-over handled again")
        assert client.hget(store.incident_key(incident_id), "status") == (
            "closed" if meanwhile == "closed" else "resolved")
        states = [client.hget(store.order_key(order_id), "state")
                  for order_id in client.lrange(store.orders_key(incident_id), 0, -1)]
        followup = client.zscore(store.TIMERS, f"followup:{incident_id}")
    finally:
        client.close()
    assert states == ["handover", "withdrawn" if meanwhile == "closed" else "resolved"]
    assert [(o.kind, o.team_id) for o in orders_for(clean_redis, incident_id)] == [
        ("dispatch", "guard"), ("handover", "station-car")]
    assert (followup is None) == (meanwhile == "closed")
