"""A team refuses its order: dispatch offers the incident to the next team, in-process
against a real Redis; also when the first attempt failed after writing the refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch.engine import Dispatcher
from shared import streams
from shared.events import OrderIssued, OrderResponded
from tests.helpers import poll_until

from .conftest import dispatch_with_teams, fail_once, fill_holding
from .test_engine import DISTRICT, orders_for, report


async def declined(url: str, publisher: RedisBroker) -> tuple[str, list[OrderIssued]]:
    """An incident whose nearest team refuses it; its orders once a second team has one."""
    async with dispatch_with_teams(url, publisher, {"near": ("security", 22.8171),
                                                   "next": ("security", 22.8190)}):
        incident_id = await report(publisher, "noise", priority="P4")
        (order,) = await poll_until(lambda: orders_for(url, incident_id), "the first order")
        await publisher.publish(OrderResponded(
            district=DISTRICT, order_id=order.order_id, incident_id=incident_id,
            team_id=order.team_id, member_id="m1", response="declined"),
            stream=streams.ORDER_RESPONDED.name)
        await poll_until(lambda: len(orders_for(url, incident_id)) >= 2, "the second offer", 8)
        client = sync_redis.Redis.from_url(url)
        try:
            await poll_until(lambda: client.xpending(streams.ORDER_RESPONDED.name,
                                                     "dispatch")["pending"] == 0,
                             "the refusal handled")
        finally:
            client.close()
    return incident_id, orders_for(url, incident_id)


def timeline_and_claims(url: str, incident_id: str) -> tuple[list[str], dict[str, Any]]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        entries = [json.loads(e) for e in client.lrange(f"dispatch:timeline:{incident_id}", 0, -1)]
        claims = {t: client.get(f"dispatch:claim:{t}") for t in ("near", "next")}
    finally:
        client.close()
    return [f"{e['kind']}:{e.get('detail') or e.get('status')}" for e in entries], claims


async def test_a_refused_order_goes_to_the_next_team(clean_redis: str,
                                                     publisher: RedisBroker) -> None:
    incident_id, orders = await declined(clean_redis, publisher)
    assert [o.team_id for o in orders] == ["near", "next"]
    entries, claims = timeline_and_claims(clean_redis, incident_id)
    assert entries.count("response:declined") == 1
    assert claims == {"near": None, "next": orders[1].order_id}


async def test_a_refusal_handled_again_after_a_failure_writes_it_once(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The refusal written, then the offer to the next team failed (Redis away): the answer
    # is handled again, and must offer the incident without writing the refusal twice.
    failures = fail_once(monkeypatch, Dispatcher, "_fill", fill_holding("declined"))
    incident_id, orders = await declined(clean_redis, publisher)
    assert failures == ["failed"]
    assert [o.team_id for o in orders] == ["near", "next"]
    entries, _ = timeline_and_claims(clean_redis, incident_id)
    assert entries.count("response:declined") == 1
