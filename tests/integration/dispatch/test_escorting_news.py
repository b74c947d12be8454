"""The police or security team escorting volunteers on a P1 is told so on its own order
(order.issued's `escorting`: the volunteer teams' names and whether they are on the way or
on scene), and told again by order.amended when that changes (volunteers sent later, on the
way, on scene, withdrawn: an empty `escorting`, no longer). A guard reading a plain P1 of
its category does not hurry, nor look for the volunteers waiting at a safe distance."""

from __future__ import annotations

import httpx
from faststream.redis import RedisBroker

from shared.events import EscortedTeam
from tests.helpers import poll_until

from .test_assign import ADMIN
from .test_engine import orders_for, orders_once, report, team, wait_for_units
from .test_escort_news import amended
from .test_units_and_alongside import answer


async def test_an_escort_sent_to_volunteers_already_there_is_told_whom_it_escorts(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "aunties", kind="volunteer", lat=22.8172, lon=108.3665,
               skills=("first_aid",))
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "medical", priority="P1")
    (volunteers,) = await orders_once(dispatch, incident_id, 1, "the volunteers' order")
    assert volunteers.escorting is None  # volunteers escort nobody
    await answer(publisher, volunteers, "on_scene")
    await team(publisher, "guard", kind="security", lat=22.8180, lon=108.3665)
    _, escort = await orders_once(dispatch, incident_id, 2, "the escort's order")
    assert escort.team_id == "guard"
    assert escort.escorting == (EscortedTeam(team="aunties", state="on_scene"),)
    assert amended(dispatch, escort) == []  # said in its order.issued, once


async def test_an_escort_sent_with_volunteers_is_told_whom_it_escorts_and_how_they_move(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot",
               skills=("first_aid",))
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "medical", priority="P1")
    orders = await orders_once(dispatch, incident_id, 2, "the volunteers' and escort's orders")
    volunteers = next(o for o in orders if o.team_id == "aunties")
    escort = next(o for o in orders if o.team_id == "pol")
    assert escort.escorting == (EscortedTeam(team="aunties", state="sent"),)
    assert volunteers.escorting is None
    await answer(publisher, volunteers, "en_route")
    (news,) = await poll_until(lambda: amended(dispatch, escort), "the escort told they move")
    assert news.escorting == (EscortedTeam(team="aunties", state="en_route"),)
    assert (news.escort, news.priority, news.ack_by) == (None, "P1", escort.ack_by)
    await answer(publisher, volunteers, "on_scene")
    news = await poll_until(lambda: len(amended(dispatch, escort)) == 2
                            and amended(dispatch, escort)[-1], "the escort told they arrived")
    assert news.escorting == (EscortedTeam(team="aunties", state="on_scene"),)


async def test_an_escort_whose_volunteers_are_withdrawn_is_told_it_escorts_nobody_now(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot",
               skills=("first_aid",))
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "medical", priority="P1")
    orders = await orders_once(dispatch, incident_id, 2, "the volunteers' and escort's orders")
    volunteers = next(o for o in orders if o.team_id == "aunties")
    escort = next(o for o in orders if o.team_id == "pol")
    await answer(publisher, volunteers, "declined")
    (news,) = await poll_until(lambda: amended(dispatch, escort), "the escort told: no longer")
    assert news.escorting == ()


async def test_a_p1_without_volunteers_says_nothing_of_an_escort(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await team(publisher, "guard", kind="security", lat=22.8180, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "violence", priority="P1")
    orders = await orders_once(dispatch, incident_id, 2, "the joint response's orders")
    assert [o.escorting for o in orders] == [None, None]
    await answer(publisher, orders[0], "en_route")
    await poll_until(lambda: len(orders_for(dispatch, incident_id)) == 2, "no more orders")
    assert [a for o in orders for a in amended(dispatch, o)] == []


async def test_an_escort_whose_volunteers_a_weapon_takes_off_is_told_it_escorts_nobody_now(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot",
               skills=("first_aid",))
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    incident_id = await report(publisher, "medical", priority="P1")
    orders = await orders_once(clean_redis, incident_id, 2, "the volunteers' and escort's orders")
    escort = next(o for o in orders if o.team_id == "pol")
    assert escort.escorting == (EscortedTeam(team="aunties", state="sent"),)
    r = await console.patch(f"/v1/incidents/{incident_id}", headers=ADMIN,
                            json={"add_flags": ["weapon"]})
    assert r.status_code == 200, r.text
    said = await poll_until(lambda: [a.escorting for a in amended(clean_redis, escort)
                                     if a.escorting is not None], "the escort told: no longer")
    assert said == [()]
