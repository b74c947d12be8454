"""A handed-over dispute's follow-up visit (its timer in dispatch:timers), in-process against
a real Redis: one order to the owning station's team, also when the first firing failed
after its offer."""

from __future__ import annotations

import time

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared.events import OrderIssued
from tests.helpers import poll_until

from .conftest import dispatch_with_teams, fail_a_write_once
from .test_engine import orders_for, report


def followups(url: str, incident_id: str) -> list[OrderIssued]:
    return [o for o in orders_for(url, incident_id) if o.kind == "followup"]


async def run_followup(url: str, publisher: RedisBroker) -> tuple[str, list[OrderIssued]]:
    """An incident whose station is ag-police, its follow-up made due now; the follow-ups
    issued once the timer fired (and, if it failed, fired again after its lease)."""
    async with dispatch_with_teams(url, publisher, {"guard": ("security", 22.8171),
                                                   "station-car": ("police", 22.8300)},
                                   timer_lease_s=0.5):
        incident_id = await report(publisher, "dispute", priority="P3")
        await poll_until(lambda: orders_for(url, incident_id), "the first order")
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            client.hset(f"dispatch:incident:{incident_id}", "station_agency_id", "ag-police")
            client.zadd(store.TIMERS, {f"followup:{incident_id}": time.time()})
            await poll_until(lambda: client.hget(f"dispatch:incident:{incident_id}",
                                                 "followup_order"), "the follow-up recorded", 8)
            await poll_until(lambda: client.zscore(store.TIMERS, f"followup:{incident_id}")
                             is None, "the timer finished")
        finally:
            client.close()
    return incident_id, followups(url, incident_id)


async def test_the_station_gets_one_follow_up_order(clean_redis: str,
                                                    publisher: RedisBroker) -> None:
    incident_id, orders = await run_followup(clean_redis, publisher)
    assert [(o.team_id, o.kind) for o in orders] == [("station-car", "followup")]
    assert orders[0].instructions and "Follow-up visit" in orders[0].instructions


async def test_a_firing_that_failed_after_its_offer_sends_no_second_order(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    failures = fail_a_write_once(monkeypatch, "followup_order")
    incident_id, orders = await run_followup(clean_redis, publisher)
    assert failures == ["failed"]
    assert [(o.team_id, o.kind) for o in orders] == [("station-car", "followup")]
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        recorded = client.hget(f"dispatch:incident:{incident_id}", "followup_order")
    finally:
        client.close()
    assert recorded == orders[0].order_id
