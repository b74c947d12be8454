"""A team hands its incident over to the owning police station, in-process against a real
Redis: one order to the station's team, also when the first attempt failed after it."""

from __future__ import annotations

import json

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderIssued, OrderResponded
from tests.helpers import poll_until

from .conftest import dispatch_with_teams, fail_a_write_once
from .test_engine import DISTRICT, orders_for, report


async def hand_over(url: str, publisher: RedisBroker) -> tuple[str, list[OrderIssued]]:
    """An incident of the station ag-police that its guard answers, then hands over; its
    orders once the station's team has one."""
    async with dispatch_with_teams(url, publisher, {"guard": ("security", 22.8171),
                                                   "station-car": ("police", 22.8300)}):
        incident_id = await report(publisher, "noise", priority="P4")
        (order,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
        client = sync_redis.Redis.from_url(url, decode_responses=True)
        try:
            client.hset(f"dispatch:incident:{incident_id}", "station_agency_id", "ag-police")
            for response in ("acknowledged", "handover"):
                await publisher.publish(OrderResponded(
                    district=DISTRICT, order_id=order.order_id, incident_id=incident_id,
                    team_id="guard", member_id="m1", response=response),
                    stream=streams.ORDER_RESPONDED.name)
            await poll_until(lambda: client.hget(f"dispatch:incident:{incident_id}",
                                                 "handover_order"), "the handover recorded", 8)
        finally:
            client.close()
    return incident_id, orders_for(url, incident_id)


def kinds_of_entries(url: str, incident_id: str) -> list[str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        entries = [json.loads(e) for e in client.lrange(f"dispatch:timeline:{incident_id}", 0, -1)]
    finally:
        client.close()
    return [e["kind"] if e["kind"] != "status" else f"status:{e['status']}" for e in entries]


async def test_the_station_gets_the_handed_over_incident(clean_redis: str,
                                                         publisher: RedisBroker) -> None:
    incident_id, orders = await hand_over(clean_redis, publisher)
    assert [(o.team_id, o.kind) for o in orders] == [("guard", "dispatch"),
                                                     ("station-car", "handover")]
    assert orders[1].filing_due is not None
    entries = kinds_of_entries(clean_redis, incident_id)
    assert entries.count("handover") == 1 and entries.count("response") == 2


async def test_a_handover_that_failed_after_the_station_order_sends_no_second(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    failures = fail_a_write_once(monkeypatch, "handover_order")
    incident_id, orders = await hand_over(clean_redis, publisher)
    assert failures == ["failed"]  # the response was handled again after it
    assert [(o.team_id, o.kind) for o in orders] == [("guard", "dispatch"),
                                                     ("station-car", "handover")]
    entries = kinds_of_entries(clean_redis, incident_id)
    assert entries.count("handover") == 1
    assert entries.count("response") == 2  # the handover's own entry not written twice
