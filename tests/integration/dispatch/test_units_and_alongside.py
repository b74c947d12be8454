"""Incidents with several orders over their whole life, in-process against a real Redis: the
teams that answer, their escorts and backups, and what each end of an order leaves."""

from __future__ import annotations

import redis as sync_redis
from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderIssued, OrderResponded
from tests.helpers import poll_until

from .test_engine import DISTRICT, orders_once, report, team, wait_for_units


async def answer(publisher: RedisBroker, order: OrderIssued, response: str) -> None:
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
        team_id=order.team_id, member_id="m1", response=response,
        note="on another call" if response == "declined" else None),  # type: ignore[arg-type]
        stream=streams.ORDER_RESPONDED.name)


def waiting(url: str) -> list[str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.zrange(f"dispatch:waiting:{DISTRICT}", 0, -1)
    finally:
        client.close()


async def test_a_medical_p1_whose_volunteers_decline_gets_another_first_aider(
        dispatch: str, publisher: RedisBroker) -> None:
    # Someone collapsed (medical, P1: one team with first aid). The nearest first-aiders are
    # volunteers; a police car without first aid goes with them as their escort. The
    # volunteers decline: the escort cannot give first aid, so the next first-aider (a
    # security team) is offered the incident; the escort stays.
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot",
               skills=("first_aid",))
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await team(publisher, "guards", kind="security", lat=22.8260, lon=108.3665,
               skills=("first_aid",))
    await wait_for_units(dispatch, 3)
    incident_id = await report(publisher, "medical", priority="P1")
    orders = await orders_once(dispatch, incident_id, 2, "the volunteers' and escort's orders")
    assert sorted(o.team_id for o in orders) == ["aunties", "pol"]
    volunteers = next(o for o in orders if o.team_id == "aunties")
    await answer(publisher, volunteers, "declined")
    orders = await orders_once(dispatch, incident_id, 3, "the next first-aider's order")
    assert [o.team_id for o in orders][2:] == ["guards"]


async def test_an_escort_left_without_its_volunteers_waits_with_them_for_a_first_aider(
        dispatch: str, publisher: RedisBroker) -> None:
    # As above, with no other first-aider on shift: the call waits, its escort on the way,
    # and the first first-aider to come on shift is sent.
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot",
               skills=("first_aid",))
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "medical", priority="P1")
    orders = await orders_once(dispatch, incident_id, 2, "the volunteers' and escort's orders")
    volunteers = next(o for o in orders if o.team_id == "aunties")
    await answer(publisher, volunteers, "declined")
    await poll_until(lambda: waiting(dispatch) == [incident_id], "the call waiting")
    await team(publisher, "guards", kind="security", lat=22.8260, lon=108.3665,
               skills=("first_aid",))
    orders = await orders_once(dispatch, incident_id, 3, "the first-aider's order")
    assert [o.team_id for o in orders][2:] == ["guards"]


async def test_a_joint_response_keeps_its_second_kind_when_it_declines_after_a_backup_came(
        dispatch: str, publisher: RedisBroker) -> None:
    # A fight (P1: police and security). The police on scene ask for backup, and another
    # police car comes. Then the security post declines: the backup is extra, not the
    # security unit the joint response sends, so the next security team is offered it.
    await team(publisher, "pol", kind="police", lat=22.8180, lon=108.3665)
    await team(publisher, "sec", kind="security", lat=22.8172, lon=108.3665, mode="foot")
    await team(publisher, "pol2", kind="police", lat=22.8190, lon=108.3665)
    await team(publisher, "sec2", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(dispatch, 4)
    incident_id = await report(publisher, "violence", priority="P1")
    orders = await orders_once(dispatch, incident_id, 2, "the joint response")
    police, security = sorted(orders, key=lambda o: o.agency_kind)
    assert (police.team_id, security.team_id) == ("pol", "sec")
    for response in ("acknowledged", "on_scene", "reinforce"):
        await answer(publisher, police, response)
    orders = await orders_once(dispatch, incident_id, 3, "the backup's order")
    assert (orders[2].team_id, orders[2].kind) == ("pol2", "reinforcement")
    await answer(publisher, security, "declined")
    orders = await orders_once(dispatch, incident_id, 4, "the next security team's order")
    assert [o.team_id for o in orders][3:] == ["sec2"]
