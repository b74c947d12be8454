"""A team's order withdrawn because the incident ended without it (another team resolved it
or handed it over, the command room closed it, the order it came to back ended) is on the
incident's timeline: the board, the morning review and the archive read who was stood
down, when and why, not only the order's state. One entry per withdrawal, written with it
once: also when the step is made again after a failure, or redis-py sends the write again
after losing its reply. In-process against a real Redis."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from shared.events import OrderIssued, OrderWithdrawn, TimelineEntry
from tests.helpers import poll_until, read_stream

from .conftest import console_of, fail_a_write_once, fail_once
from .test_engine import DISTRICT, orders_once, report, team, wait_for_units
from .test_followup_answers import answer, backup_for, filed, handed_over_dispute, order_in
from .test_steps_again import pending
from .test_writes_once import ReplyEater

ADMIN = {"Authorization": "Bearer test-admin-token"}


def entries(url: str, incident_id: str) -> list[dict[str, Any]]:
    with sync_redis.Redis.from_url(url, decode_responses=True) as client:
        return [json.loads(e) for e in client.lrange(store.timeline_key(incident_id), 0, -1)]


def withdrawn_entries(url: str, incident_id: str, order_id: str) -> list[dict[str, Any]]:
    return [e for e in entries(url, incident_id)
            if e["kind"] == "withdrawn" and e.get("order_id") == order_id]


def withdrawals(url: str, order_id: str) -> list[OrderWithdrawn]:
    return [w for w in read_stream(url, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
            if w.order_id == order_id]


def carried(url: str, incident_id: str, order_id: str) -> list[TimelineEntry | None]:
    """What order.withdrawn told the other services of the order's withdrawal entry (intake
    shows it the reporting system): the timeline's own, when no incident.updated has it."""
    return [w.entry for w in withdrawals(url, order_id)]


def written(url: str, incident_id: str, order_id: str) -> list[TimelineEntry]:
    return [TimelineEntry.model_validate(e) for e in withdrawn_entries(url, incident_id, order_id)]


def incident_fields(url: str, incident_id: str) -> dict[str, str]:
    with sync_redis.Redis.from_url(url, decode_responses=True) as client:
        return client.hgetall(store.incident_key(incident_id))


async def fight(url: str, publisher: RedisBroker,
                priority: str = "P1") -> tuple[str, OrderIssued, OrderIssued]:
    """A fight (P1, or as `priority` says): the police car's order and the guard's, the car
    on its way, the guard on scene."""
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await team(publisher, "sec", kind="security", lat=22.8172, lon=108.3665, mode="foot")
    await wait_for_units(url, 2)
    incident_id = await report(publisher, "violence", priority=priority)
    orders = await orders_once(url, incident_id, 2, "the police car's and the guard's orders")
    police = next(o for o in orders if o.team_id == "pol")
    guard = next(o for o in orders if o.team_id == "sec")
    await answer(publisher, police, "acknowledged")
    await answer(publisher, police, "en_route")
    await answer(publisher, guard, "acknowledged")
    await answer(publisher, guard, "on_scene")
    await order_in(url, police, "en_route")
    await order_in(url, guard, "on_scene")
    return incident_id, police, guard


STOOD_DOWN = {
    "resolved": ("stood_down_resolved", "stood down: the incident was resolved by sec"),
    "handover": ("stood_down_handed_over",
                 "stood down: the incident was handed over to the station by sec"),
}


@pytest.mark.parametrize("ending", ["resolved", "handover"])
async def test_the_other_team_stood_down_by_an_answer_is_on_the_timeline(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        ending: str) -> None:
    # The guard resolves the fight (or hands it over) while the police car is on its way:
    # the car's order is withdrawn ("no need to go") and the timeline says so, and why. A
    # fight the 110 system gave P2: a P1's resolution or hand-over by the guard leaves it to
    # the police (test_left_to_police.py, test_handover_left_to_police.py).
    url = clean_redis
    incident_id, police, guard = await fight(url, publisher, "P2")
    await answer(publisher, guard, ending)
    await order_in(url, police, "withdrawn")
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    timeline = r.json()["timeline"]
    stood_down = [e for e in timeline if e["kind"] == "withdrawn"]
    code, detail = STOOD_DOWN[ending]
    assert [(e["order_id"], e["team_id"], e["detail_code"], e["detail_args"], e["detail"])
            for e in stood_down] == [(police.order_id, "pol", code, {"team": "sec"}, detail)]
    assert stood_down[0]["status"] is None  # the answer's entry names the status it moved to
    answered = next(i for i, e in enumerate(timeline)
                    if e["kind"] == "response" and e["detail"] == ending)
    assert timeline.index(stood_down[0]) > answered
    # order.withdrawn carries the entry (no incident.updated does)
    assert carried(url, incident_id, police.order_id) == written(url, incident_id,
                                                                 police.order_id)
    # neither a routing timeout nor a refusal: no figure changes for it
    inc = incident_fields(url, incident_id)
    assert int(inc.get("timeouts") or 0) == 0 and int(inc.get("declines") or 0) == 0
    k = (await console.get("/v1/kpis", headers=ADMIN, params={"district": DISTRICT})).json()
    assert (k["routing_timeouts"], k["routing_timeout_incidents"], k["declines"]) == (0, 0, 0)


async def test_a_resolution_handled_again_after_a_failure_stands_the_other_down_once(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The police car's withdrawal is written, then the resolution's last write fails: the
    # answer is handled again and finds the car stood down already (a P2 fight: a P1's the
    # guard leaves to the police).
    url = clean_redis
    incident_id, police, guard = await fight(url, publisher, "P2")
    failures = fail_once(monkeypatch, store, "end_step",
                         lambda *_a, **kw: str(kw.get("done", "")).startswith("responded:"))
    await answer(publisher, guard, "resolved")
    await poll_until(lambda: failures and pending(url, streams.ORDER_RESPONDED.name) == 0
                     and incident_fields(url, incident_id).get("status") == "resolved",
                     "the resolution handled again after the failure")
    assert [e["detail_code"] for e in withdrawn_entries(url, incident_id, police.order_id)] == [
        "stood_down_resolved"]
    withdrawals = [w for w in read_stream(url, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
                   if w.order_id == police.order_id]
    assert [w.reason for w in withdrawals] == ["closed"]


async def test_a_withdrawal_sent_again_after_its_reply_was_lost_writes_its_entry_once(
        clean_redis: str, publisher: RedisBroker) -> None:
    # Redis ran the withdrawal and its reply was lost (Redis restarted after it): redis-py
    # sends the same script again, which must not put the entry on the timeline twice.
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url, console_of(proxy_url):
        incident_id, police, guard = await fight(clean_redis, publisher, "P2")
        proxy.marker = streams.ORDER_WITHDRAWN.name.encode()  # in the withdrawal's script only
        await answer(publisher, guard, "resolved")
        await poll_until(lambda: incident_fields(clean_redis, incident_id).get("status")
                         == "resolved", "the fight resolved")
    assert proxy.eaten == 1
    assert len(withdrawn_entries(clean_redis, incident_id, police.order_id)) == 1
    withdrawals = [w for w in read_stream(clean_redis, streams.ORDER_WITHDRAWN.name,
                                          OrderWithdrawn) if w.order_id == police.order_id]
    assert len(withdrawals) == 1


async def test_a_close_says_each_order_it_withdrew_once_also_made_again(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The command room closes the fight with both teams on it; the close's own write fails
    # (503) after the withdrawals, and the command room closes it again.
    url = clean_redis
    incident_id, police, guard = await fight(url, publisher)
    failures = fail_a_write_once(monkeypatch, holding="closed_by")
    first = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    assert first.status_code == 503 and failures == ["failed"]
    second = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    assert second.status_code == 200, second.text
    for order in (police, guard):
        said = withdrawn_entries(url, incident_id, order.order_id)
        assert [(e["team_id"], e["detail_code"], e["detail_args"], e["detail"])
                for e in said] == [(order.team_id, "stood_down_closed", {"by": "admin:admin"},
                                    "stood down: the incident was closed by admin:admin")]
        assert carried(url, incident_id, order.order_id) == written(url, incident_id,
                                                                    order.order_id)
    assert [e["kind"] for e in entries(url, incident_id)].count("closed") == 1


async def test_a_backup_withdrawn_with_the_station_order_it_backed_is_on_the_timeline(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The station car asked for backup on its hand-over order; the command room takes the
    # car's order back: the backup on its way is stood down, the order it came for ended.
    url = clean_redis
    incident_id, handover = await handed_over_dispute(url, publisher)
    backup = await backup_for(url, publisher, handover)
    await answer(publisher, backup, "acknowledged")
    await order_in(url, backup, "acknowledged")
    r = await console.post(f"/v1/orders/{handover.order_id}/withdraw", headers=ADMIN,
                           json={"note": "called to another case"})
    assert r.status_code == 200, r.text
    await order_in(url, backup, "withdrawn")
    said = withdrawn_entries(url, incident_id, backup.order_id)
    assert [(e["team_id"], e["detail_code"], e["detail_args"], e["detail"]) for e in said] == [
        (backup.team_id, "stood_down_backed_order_ended",
         {"team": "station-car", "state": "withdrawn"},
         "stood down: station-car's order it came to back ended (withdrawn)")]
    assert carried(url, incident_id, backup.order_id) == written(url, incident_id,
                                                                 backup.order_id)
    # the car's own take-back keeps its entry, the command room's, which its incident.updated
    # carries: its order.withdrawn none
    assert [e["detail_code"] for e in withdrawn_entries(url, incident_id, handover.order_id)] == [
        "taken_back"]
    assert carried(url, incident_id, handover.order_id) == [None]


async def test_a_backup_still_on_its_way_when_the_station_files_is_stood_down_by_the_filing(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, handover = await handed_over_dispute(url, publisher)
    backup = await backup_for(url, publisher, handover)
    await answer(publisher, backup, "acknowledged")
    await order_in(url, backup, "acknowledged")
    await filed(url, publisher, incident_id, handover)
    await order_in(url, backup, "withdrawn")
    said = withdrawn_entries(url, incident_id, backup.order_id)
    assert [(e["detail_code"], e["detail_args"]) for e in said] == [
        ("stood_down_resolved", {"team": "station-car"})]
