"""Steps on the paths that keep an incident going after its first order (a backup replaced,
a station's refusal, a team gone off shift, a follow-up with no station) handled again after
a failure, or by their timers: nothing written twice, nothing lost, no timer dropped or
left for ever."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from tests.helpers import poll_until

from .conftest import dispatch_with_teams, fail_a_write_once, fail_once
from .test_engine import orders_for, report, team, wait_for_units
from .test_handover import decline, hand_over
from .test_reinforcement import (
    BACKUP_TEAMS,
    answer,
    backup_sent,
    make_due,
    on_scene_asking_for_backup,
    timeline,
    timer_of,
)
from .test_take_back import ADMIN, respond

HANDOVER_NOTE_START = "the hand-over was"


def entries(url: str, incident_id: str) -> list[dict[str, Any]]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return [json.loads(e) for e in client.lrange(f"dispatch:timeline:{incident_id}", 0, -1)]
    finally:
        client.close()


def pending(url: str, stream: str) -> int:
    client = sync_redis.Redis.from_url(url)
    try:
        return client.xpending(stream, "dispatch")["pending"]
    finally:
        client.close()


# --- a timer rescheduled in its own firing: past its lease ----------------------------


async def test_a_backup_retry_that_finds_nobody_again_keeps_looking_past_its_lease(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The team on scene asked for backup with nobody free: `reinforce:{order}` is looked at
    # every 20 s. Its first firing finds nobody again and sets it 20 s on, inside its own
    # firing (then leased 30 s): finish_timer dropped it, and the backup was never looked
    # for again (a team freed later is never sent). A timer's end now acts only while its
    # score is still the lease.
    finished: list[str] = []
    real_finish = store.finish_timer

    async def finish(redis: Any, member: str, leased_until: float) -> None:
        await real_finish(redis, member, leased_until)
        finished.append(member)

    monkeypatch.setattr(store, "finish_timer", finish)
    await team(publisher, "alone", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id, order = await on_scene_asking_for_backup(dispatch, publisher)
    member = f"reinforce:{order.order_id}"
    await poll_until(lambda: timer_of(dispatch, member), "the backup's retry timer")
    make_due(dispatch, member)
    await poll_until(lambda: member in finished, "the retry fired (nobody free) and finished")
    assert timer_of(dispatch, member) is not None, (
        "the backup's retry timer was dropped: nobody looks for the backup again")


# --- a station's refusal or take-back made again: its note once -----------------------


async def test_a_station_refusal_handled_again_after_a_failure_writes_its_note_once(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The only station team declines its hand-over order: "no other team ... tried again
    # every 15 min" with the flag. The step fails at its end (the done mark) and the
    # refusal is handled again: the note must not be written a second time.
    url = clean_redis
    incident_id, orders = await hand_over(url, publisher)
    assert (orders[-1].team_id, orders[-1].kind) == ("station-car", "handover")
    failures = fail_once(monkeypatch, store, "end_step",
                         lambda *_a, **kw: str(kw.get("done", "")).startswith("responded:"))
    async with dispatch_with_teams(url, publisher, {"station-car": ("police", 22.8300)}):
        await decline(publisher, orders[-1], "busy filing another case")
        await poll_until(lambda: failures and pending(url, streams.ORDER_RESPONDED.name) == 0,
                         "the refusal handled again after the failure")
    notes = [e for e in entries(url, incident_id) if e["kind"] == "note"
             and e.get("detail", "").startswith(HANDOVER_NOTE_START)]
    assert len(notes) == 1, [n["detail"] for n in notes]


async def test_a_station_order_take_back_asked_again_writes_its_note_once(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The command room takes the station's hand-over order back; no other team of the
    # station is on shift (flag, note, retry). Its answer lost, it asks again: the take-back
    # "withdraws nothing more" (take_back's contract), but the note is written again.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "station-car", kind="police", lat=22.8300, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(clean_redis, incident_id), "the guard's order")
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "station_agency_id", "ag-police")
    finally:
        client.close()
    await respond(publisher, order, "acknowledged", "handover")
    [station] = await poll_until(lambda: [o for o in orders_for(clean_redis, incident_id)
                                          if o.kind == "handover"], "the station's order")
    for _ in range(2):  # asked again: its answer was lost
        r = await console.post(f"/v1/orders/{station.order_id}/withdraw", headers=ADMIN,
                               json={"note": "wrong team"})
        assert r.status_code == 200, r.text
    notes = [e for e in entries(clean_redis, incident_id) if e["kind"] == "note"
             and e.get("detail", "").startswith(HANDOVER_NOTE_START)]
    assert len(notes) == 1, [n["detail"] for n in notes]


# --- a backup's replacement made again: its timeline entry kept -----------------------


async def test_a_backup_replacement_handled_again_after_a_failure_keeps_its_entry(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The backup declines; its replacement's order goes out, then the step fails at the
    # replacement's "reinforcement" entry. The refusal is handled again: _backup_for finds
    # the live replacement and returns, never writing the entry _reinforce would have
    # written (its `sent` branch) - the command room never sees who was sent as backup.
    url = clean_redis
    async with dispatch_with_teams(url, publisher, BACKUP_TEAMS):
        incident_id, backup = await backup_sent(url, publisher)
        await poll_until(lambda: ("reinforcement", "backup") in timeline(url, incident_id),
                         "the first backup's entry")
        failures = fail_a_write_once(monkeypatch, "requested by")
        await answer(publisher, backup, "declined")
        await poll_until(lambda: len(orders_for(url, incident_id)) >= 3, "another backup")
        await poll_until(lambda: failures and pending(url, streams.ORDER_RESPONDED.name) == 0,
                         "the refusal handled again after the failure")
    assert [(o.team_id, o.kind) for o in orders_for(url, incident_id)] == [
        ("first", "dispatch"), ("backup", "reinforcement"), ("farther", "reinforcement")]
    assert timeline(url, incident_id).count(("reinforcement", "farther")) == 1


# --- a team gone off shift: its offer's take-back made again after a failure ----------


async def test_an_off_shift_take_back_that_failed_halfway_still_offers_the_next_team(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The withdrawal releases the team's claim before its write, and that write fails: the
    # `offshift:{order}` timer names the order and fires again after its lease, so the next
    # team is offered the incident then, not after the offer's deadline (5 min for a P4).
    from .test_take_back import off_shift

    url = clean_redis
    async with dispatch_with_teams(url, publisher, {"leaving": ("security", 22.8171),
                                                   "next": ("security", 22.8300)},
                                   timer_lease_s=0.5):
        incident_id = await report(publisher, "noise", priority="P4")
        [first] = await poll_until(lambda: orders_for(url, incident_id), "the first order")
        assert first.team_id == "leaving"
        failures = fail_a_write_once(monkeypatch, "withdrawn")
        await off_shift(publisher, "leaving")
        await poll_until(lambda: len(orders_for(url, incident_id)) == 2,
                         "the next team's order (not after the 5 min deadline)", timeout=5)
        assert failures


# --- a follow-up with no station: its timer ends --------------------------------------


async def test_a_follow_up_of_a_place_no_station_owns_is_looked_for_again_only_flagged(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dispute handed over while the district's zones could not be loaded: its follow-up is
    # scheduled "all the same" (the station is not known *yet*). Once the zones are back
    # and no station owns the place, the case still waits for a station (its hand-over is
    # tried again until one is given the ground), and so does its visit: looked for again
    # every followup_retry_h, but never unsaid, which kept the incident in the timers and
    # its caller's details for ever with nobody told. The case is flagged for the command
    # room, whose close ends both.
    from services.dispatch.engine import Dispatcher

    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "dispute", priority="P2")
    [order] = await poll_until(lambda: orders_for(dispatch, incident_id), "the guard's order")
    await respond(publisher, order, "acknowledged", "handover")
    member = f"followup:{incident_id}"
    await poll_until(lambda: timer_of(dispatch, member), "the follow-up, scheduled all the same")

    async def outside_every_zone(_self: Any, _district: str, _lat: float, _lon: float) -> None:
        return None  # the zones are back: the place is in none of them

    monkeypatch.setattr(Dispatcher, "_zone_of", outside_every_zone)
    finished: list[str] = []
    real_finish = store.finish_timer

    async def finish(redis: Any, name: str, leased_until: float) -> None:
        await real_finish(redis, name, leased_until)
        finished.append(name)

    monkeypatch.setattr(store, "finish_timer", finish)
    make_due(dispatch, member)
    await poll_until(lambda: member in finished, "the follow-up fired")
    assert timer_of(dispatch, member) is not None, "the visit no longer owed"
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        fields = client.hgetall(store.incident_key(incident_id))
    finally:
        client.close()
    assert fields["flagged"] == "1" and fields["followup_unstaffed"] == "1", fields


# --- two backups asked, one declines: replaced -----------------------------------------


async def test_of_two_backups_asked_one_that_declines_is_replaced(
        clean_redis: str, publisher: RedisBroker) -> None:
    # The team on scene asks for backup twice (two reinforce answers: two teams, as the
    # event ids make them). One backup declines: "replaced at once" - but _backup_for
    # returns while any other backup of the asker is live, so the team gets one, not two.
    url = clean_redis
    teams = {**BACKUP_TEAMS, "fourth": ("security", 22.8400)}
    async with dispatch_with_teams(url, publisher, teams):
        incident_id, first = await on_scene_asking_for_backup(url, publisher)
        await poll_until(lambda: len(orders_for(url, incident_id)) >= 2, "the first backup")
        await answer(publisher, first, "reinforce")  # and again: a second backup
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) >= 3 and
                                  orders_for(url, incident_id), "the second backup")
        assert [(o.team_id, o.kind) for o in orders][1:] == [
            ("backup", "reinforcement"), ("farther", "reinforcement")]
        await answer(publisher, orders[1], "declined")
        await poll_until(lambda: len(orders_for(url, incident_id)) >= 4,
                         "the declined backup replaced", timeout=5)
