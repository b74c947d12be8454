"""A follow-up visit owed by a resolution, not a hand-over (policy followup_resolved_days), in
-process against a real Redis: a dispute mediated on site by the street's team and a fraud
warning given (DOMAIN.md: 回访, "later visit after mediation or a fraud warning") get the
owning station's visit after the policy's days, once however often the resolution is read."""

from __future__ import annotations

import time

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from shared.events import OrderIssued, OrderResponded
from tests.helpers import poll_until

from .conftest import dispatch_with_teams
from .test_assign import timeline
from .test_engine import DISTRICT, orders_for, report, wait_for_units
from .test_followup import followup_due_in_days, followups, incident_fields
from .test_zone_pending import zones_back


def resolution(order: OrderIssued, response: str = "resolved") -> OrderResponded:
    return OrderResponded(district=DISTRICT, order_id=order.order_id,
                          incident_id=order.incident_id, team_id=order.team_id,
                          member_id="m1", response=response)  # type: ignore[arg-type]


async def answered(publisher: RedisBroker, event: OrderResponded) -> None:
    await publisher.publish(event, stream=streams.ORDER_RESPONDED.name)


def fire_followup(url: str, incident_id: str) -> None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        client.zadd(store.TIMERS, {f"followup:{incident_id}": time.time()})
    finally:
        client.close()


async def test_a_dispute_resolved_on_site_gets_one_visit_of_its_station_after_seven_days(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    url = clean_redis
    zones_back(monkeypatch)  # the scene's zone is ag-police's
    async with dispatch_with_teams(url, publisher, {"guard": ("security", 22.8171),
                                                   "station-car": ("police", 22.8300)},
                                   timer_lease_s=0.5):
        incident_id = await report(publisher, "dispute")
        [guard] = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
        assert guard.team_id == "guard"
        resolved = resolution(guard)
        await answered(publisher, resolved)  # mediated on site: not handed over
        await poll_until(lambda: followup_due_in_days(url, incident_id), "the visit planned")
        assert 6.9 < (followup_due_in_days(url, incident_id) or 0) <= 7
        assert incident_fields(url, incident_id)["status"] == "resolved"

        fire_followup(url, incident_id)  # a week later
        [visit] = await poll_until(lambda: followups(url, incident_id), "the visit ordered")
        assert visit.team_id == "station-car"
        assert visit.instructions == ("Follow-up visit: check that the mediated agreement "
                                      "holds.")
        await poll_until(lambda: followup_due_in_days(url, incident_id) is None,
                         "the timer finished")

        # the resolution read again: as redelivered, and as a second event of the same
        # answer (a step made again): no second visit is planned
        await answered(publisher, resolved)
        again = resolution(guard)
        await answered(publisher, again)
        await poll_until(lambda: _handled(url, again), "the second resolution handled")
    assert followup_due_in_days(url, incident_id) is None
    assert len(followups(url, incident_id)) == 1


def _handled(url: str, event: OrderResponded) -> bool:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return bool(client.exists(f"dispatch:seen:responded:{event.event_id}"))
    finally:
        client.close()


def _order_state(url: str, order_id: str) -> str | None:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hget(store.order_key(order_id), "state")
    finally:
        client.close()


async def test_a_fraud_warning_given_gets_a_visit_of_its_station(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    url = clean_redis
    zones_back(monkeypatch)
    async with dispatch_with_teams(url, publisher, {"own-station": ("police", 22.8300),
                                                   "helpers": ("volunteer", 22.8180)},
                                   timer_lease_s=0.5):
        incident_id = await report(publisher, "fraud_warning", priority="P4")
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) == 2
                                  and orders_for(url, incident_id), "the station and volunteers")
        assert {o.team_id for o in orders} == {"own-station", "helpers"}
        volunteers = next(o for o in orders if o.team_id == "helpers")
        await answered(publisher, resolution(volunteers))  # the case's end: the other withdrawn
        await poll_until(lambda: followup_due_in_days(url, incident_id), "the visit planned")
        assert 6.9 < (followup_due_in_days(url, incident_id) or 0) <= 7

        fire_followup(url, incident_id)
        [visit] = await poll_until(lambda: followups(url, incident_id), "the visit ordered")
    assert visit.team_id == "own-station"
    assert visit.instructions == ("Follow-up visit: check on those warned of the fraud (no "
                                  "further contact from the fraudsters, no money sent).")


async def test_a_fraud_warning_handed_over_gets_its_visit_once_the_station_files_it(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # followup_days gives fraud warnings no visit from their hand-over: the filing owes it
    url = clean_redis
    zones_back(monkeypatch)
    async with dispatch_with_teams(url, publisher, {"own-station": ("police", 22.8300),
                                                   "helpers": ("volunteer", 22.8180)},
                                   timer_lease_s=0.5):
        incident_id = await report(publisher, "fraud_warning", priority="P4")
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) == 2
                                  and orders_for(url, incident_id), "the station and volunteers")
        volunteers = next(o for o in orders if o.team_id == "helpers")
        await answered(publisher, resolution(volunteers, "handover"))
        handover = (await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                              if o.kind == "handover"], "the hand-over"))[0]
        assert followup_due_in_days(url, incident_id) is None
        await answered(publisher, resolution(handover))  # filed
        await poll_until(lambda: followup_due_in_days(url, incident_id), "the visit planned")
    assert 6.9 < (followup_due_in_days(url, incident_id) or 0) <= 7


async def test_a_dispute_handed_over_keeps_the_visit_its_hand_over_planned(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    url = clean_redis
    zones_back(monkeypatch)
    async with dispatch_with_teams(url, publisher, {"guard": ("security", 22.8171),
                                                   "station-car": ("police", 22.8300)},
                                   timer_lease_s=0.5):
        await wait_for_units(url, 2)
        incident_id = await report(publisher, "dispute")
        [guard] = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
        await answered(publisher, resolution(guard, "handover"))
        handover = (await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                              if o.kind == "handover"], "the hand-over"))[0]
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            planned = client.zscore(store.TIMERS, f"followup:{incident_id}")
            assert planned is not None
            client.zadd(store.TIMERS, {f"followup:{incident_id}": planned - 3600})
            await answered(publisher, resolution(handover))  # filed an hour later
            await poll_until(lambda: incident_fields(url, incident_id)["status"] == "resolved",
                             "the case filed")
            # one visit, when the hand-over planned it: the filing neither moves nor adds one
            assert client.zscore(store.TIMERS, f"followup:{incident_id}") == planned - 3600
        finally:
            client.close()


async def test_a_case_of_a_category_without_visits_resolved_on_site_gets_none(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    url = clean_redis
    zones_back(monkeypatch)
    async with dispatch_with_teams(url, publisher, {"guard": ("security", 22.8171)}):
        incident_id = await report(publisher, "noise", priority="P4")
        [guard] = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
        await answered(publisher, resolution(guard))
        await poll_until(lambda: incident_fields(url, incident_id)["status"] == "resolved",
                         "resolved")
    assert followup_due_in_days(url, incident_id) is None


async def test_a_fraud_warning_visit_finding_them_at_risk_says_so_not_an_agreement(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # the visit's `handover` is "visit again": for a fraud warning, those warned are still
    # at risk (no mediated agreement was ever made)
    url = clean_redis
    zones_back(monkeypatch)
    async with dispatch_with_teams(url, publisher, {"own-station": ("police", 22.8300),
                                                   "helpers": ("volunteer", 22.8180)},
                                   timer_lease_s=0.5):
        incident_id = await report(publisher, "fraud_warning", priority="P4")
        orders = await poll_until(lambda: len(orders_for(url, incident_id)) == 2
                                  and orders_for(url, incident_id), "the station and volunteers")
        volunteers = next(o for o in orders if o.team_id == "helpers")
        await answered(publisher, resolution(volunteers))
        await poll_until(lambda: followup_due_in_days(url, incident_id), "the visit planned")
        fire_followup(url, incident_id)
        [visit] = await poll_until(lambda: followups(url, incident_id), "the visit ordered")
        await answered(publisher, resolution(visit, "handover"))
        await poll_until(lambda: incident_fields(url, incident_id).get("followup_visits") == "2",
                         "the second visit planned")
    [verdict] = [e for e in timeline(url, incident_id) if e["kind"] == "followup"
                 and e.get("order_id") == visit.order_id
                 and e["detail_code"] != "followup_ordered"]
    assert verdict["detail_code"] == "warning_revisit"
    assert "agreement" not in verdict["detail"]
    assert verdict["detail"].startswith("those warned of the fraud are still at risk: visit 2 by ")
