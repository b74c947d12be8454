"""A volunteer team sent to a P1 is told on its order whether police or security goes with
it (order.issued's `escort`), and told again by order.amended when that changes: the
volunteers who arrive first wait for their escort at a safe distance."""

from __future__ import annotations

from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderAmended, OrderIssued
from tests.helpers import poll_until, read_stream

from .test_engine import orders_for, orders_once, report, team, wait_for_units
from .test_units_and_alongside import answer


def amended(url: str, order: OrderIssued) -> list[OrderAmended]:
    return [a for a in read_stream(url, streams.ORDER_AMENDED.name, OrderAmended)
            if a.order_id == order.order_id]


async def test_volunteers_sent_alone_to_a_p1_are_told_no_escort_is_on_the_way_then_that_one_is(
        dispatch: str, publisher: RedisBroker) -> None:
    # A collapse (medical, P1) only first-aid volunteers are free for: their order says no
    # police or security is on the way; a guard comes on shift and joins them: their order
    # is amended to say so.
    await team(publisher, "aunties", kind="volunteer", lat=22.8172, lon=108.3665,
               skills=("first_aid",))
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "medical", priority="P1")
    (volunteers,) = await orders_once(dispatch, incident_id, 1, "the volunteers' order")
    assert (volunteers.team_id, volunteers.escort) == ("aunties", "awaited")
    await team(publisher, "guard", kind="security", lat=22.8180, lon=108.3665)
    _, escort = await orders_once(dispatch, incident_id, 2, "the escort's order")
    assert (escort.team_id, escort.escort) == ("guard", None)  # its own order: no news
    (news,) = await poll_until(lambda: amended(dispatch, volunteers), "the volunteers told")
    assert (news.escort, news.priority, news.ack_by) == ("sent", "P1", volunteers.ack_by)
    assert amended(dispatch, escort) == []


async def test_volunteers_sent_with_their_escort_are_told_it_is_on_the_way(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot",
               skills=("first_aid",))
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "medical", priority="P1")
    orders = await orders_once(dispatch, incident_id, 2, "the volunteers' and escort's orders")
    assert sorted((o.team_id, o.escort) for o in orders) == [("aunties", "sent"), ("pol", None)]
    assert [a for o in orders for a in amended(dispatch, o)] == []


async def test_volunteers_whose_escort_declines_are_told_none_is_on_the_way_any_more(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot",
               skills=("first_aid",))
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "medical", priority="P1")
    orders = await orders_once(dispatch, incident_id, 2, "the volunteers' and escort's orders")
    volunteers = next(o for o in orders if o.team_id == "aunties")
    escort = next(o for o in orders if o.team_id == "pol")
    await answer(publisher, escort, "declined")
    (news,) = await poll_until(lambda: amended(dispatch, volunteers),
                               "the volunteers told their escort is not coming")
    assert news.escort == "awaited"


async def test_volunteers_are_told_nothing_of_an_escort_below_p1(
        dispatch: str, publisher: RedisBroker) -> None:
    # a lost person (P2, police and volunteers): volunteers may search on their own
    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665)
    await team(publisher, "riders", kind="volunteer", lat=22.8175, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "lost_person")
    orders = await orders_once(dispatch, incident_id, 2, "the volunteers' orders")
    assert [o.escort for o in orders] == [None, None]
    assert [a for o in orders_for(dispatch, incident_id) for a in amended(dispatch, o)] == []


async def test_volunteers_whose_escort_went_off_shift_on_its_order_are_told_none_is_coming(
        dispatch: str, publisher: RedisBroker) -> None:
    # The guard post escorting the aunties to a P1 took its order and set off; then its
    # last guard was taken off the roster (the security company's contract ended at 07:00,
    # HR removed its guards mid-shift). Its order stays for the command room to decide,
    # but nobody of the team will come: the aunties' phones said "police/security sent, on
    # their way to you" until the command room took the order back, and they walked in.
    from .test_take_back import off_shift

    await team(publisher, "aunties", kind="volunteer", lat=22.8171, lon=108.3665, mode="foot",
               skills=("first_aid",))
    await team(publisher, "guard", kind="security", lat=22.8180, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "medical", priority="P1")
    orders = await orders_once(dispatch, incident_id, 2, "the volunteers' and escort's orders")
    volunteers = next(o for o in orders if o.team_id == "aunties")
    escort = next(o for o in orders if o.team_id == "guard")
    assert volunteers.escort == "sent"
    await answer(publisher, escort, "acknowledged")
    await answer(publisher, escort, "en_route")
    await off_shift(publisher, "guard")
    (news,) = await poll_until(lambda: amended(dispatch, volunteers),
                               "the volunteers told their escort is not coming")
    assert news.escort == "awaited"
