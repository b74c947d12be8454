"""A team refuses its order: dispatch offers the incident to the next team, in-process
against a real Redis; also when the first attempt failed after writing the refusal, and
the command room told when no next team is left for an incident short of a unit."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch.engine import Dispatcher
from shared import streams
from shared.events import OrderIssued, OrderResponded
from tests.helpers import poll_until

from .conftest import dispatch_with_teams, fail_once, fill_holding
from .test_engine import DISTRICT, orders_for, orders_once, report, team, wait_for_units
from .test_handover import last_update
from .test_reinforcement import make_due
from .test_reports_given_up import flagged_ids
from .test_take_back import ADMIN, respond


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


async def short_of_security(url: str, publisher: RedisBroker, console: httpx.AsyncClient, *,
                            lost_by: str) -> tuple[str, OrderIssued]:
    """A fight (P1: police and security) whose police took it and whose security post, the
    only security team on shift, declined or let its deadline pass: it is passed over for the
    fight for good, and no other team is free to be the second unit. The fight and the
    security post's order, once the fight is flagged (on incident.updated and the board)."""
    await team(publisher, "pol", kind="police", lat=22.8180, lon=108.3665)
    await team(publisher, "sec", kind="security", lat=22.8172, lon=108.3665, mode="foot")
    await wait_for_units(url, 2)
    fight = await report(publisher, "violence", priority="P1")
    police, security = sorted(await orders_once(url, fight, 2, "the joint response"),
                              key=lambda o: o.agency_kind)
    await respond(publisher, police, "acknowledged")
    await poll_until(lambda: last_update(url, fight).status == "acknowledged",
                     "the police on their way")
    if lost_by == "declined":
        await respond(publisher, security, "declined")
    else:
        make_due(url, f"ack:{security.order_id}")
    ended = "declined" if lost_by == "declined" else "timed_out"
    await poll_until(lambda: [a.status for a in last_update(url, fight).assignments] == [
        "acknowledged", ended], "the security post's order ended")
    last = last_update(url, fight)
    assert last.status == "acknowledged"
    assert last.flagged, "short of its security unit with nobody to send: not flagged"
    assert fight in await flagged_ids(console)
    return fight, security


@pytest.mark.parametrize("lost_by", ["declined", "missed its deadline"])
async def test_a_fight_whose_only_security_team_is_lost_is_flagged_until_another_comes_free(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        lost_by: str) -> None:
    # A refusal, or one missed deadline (below the policy's flag_after_misses), left the
    # fight short of its second unit with no team left to send: the command room is told,
    # as for an incident no team was found for; a security team coming on shift joins, and
    # the flag goes.
    fight, _ = await short_of_security(clean_redis, publisher, console, lost_by=lost_by)
    await team(publisher, "sec2", kind="security", lat=22.8300, lon=108.3665)
    orders = await orders_once(clean_redis, fight, 3, "the next security team's order")
    assert [o.team_id for o in orders][2:] == ["sec2"]
    await poll_until(lambda: not last_update(clean_redis, fight).flagged, "the flag gone")
    assert fight not in await flagged_ids(console)


async def test_a_fight_short_of_its_security_unit_is_not_flagged_once_the_room_sends_one(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The command room phones the guards who declined and sends them by hand: the fight
    # has both its units, and the flag goes.
    fight, security = await short_of_security(clean_redis, publisher, console,
                                              lost_by="declined")
    r = await console.post(f"/v1/incidents/{fight}/assign", headers=ADMIN,
                           json={"team_id": security.team_id})
    assert r.status_code == 200, r.text
    assert not last_update(clean_redis, fight).flagged
    assert fight not in await flagged_ids(console)
