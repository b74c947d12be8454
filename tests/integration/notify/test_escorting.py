"""A police or security team escorting volunteers on a P1 reads it on its order (order.issued's
`escorting`) and on each order_update when that changes (order.amended's): the volunteer
teams by name, on the way or on scene, and that it escorts nobody any more. The phones that
have the order, and those that connect later, show it as it stands."""

from __future__ import annotations

from contextlib import AsyncExitStack

from faststream.redis import RedisBroker

from shared import streams
from shared.events import EscortedTeam, OrderAmended, OrderIssued, utcnow

from .conftest import Volunteers, an_order, device, devices, issue


async def amend(broker: RedisBroker, order: OrderIssued, event_id: str,
                escorting: tuple[EscortedTeam, ...] | None,
                flags: tuple[str, ...] = ("injury",)) -> None:
    await broker.publish(OrderAmended(
        event_id=event_id, district=order.district, order_id=order.order_id,
        incident_id=order.incident_id, team_id=order.team_id, priority="P1",
        flags=flags, occurred_at=utcnow(), escorting=escorting),
        stream=streams.ORDER_AMENDED.name)


async def test_guards_escorting_volunteers_read_whom_and_where_and_when_no_longer(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    a, b = (volunteers.enrol("t-guard", agency_kind="security"),
            volunteers.enrol("t-guard", agency_kind="security"))
    aunties = EscortedTeam(team="aunties", state="sent")
    async with AsyncExitStack() as exits:
        [phone_a] = await devices(exits, notify, a)
        order = an_order("t-guard", agency_kind="security", category="medical", priority="P1",
                         flags=("injury",), escorting=(aunties,))
        await issue(broker, order)
        assert (await phone_a.next_of("order"))["escorting"] == [
            {"team": "aunties", "state": "sent"}]
        on_scene = EscortedTeam(team="aunties", state="on_scene")
        riders = EscortedTeam(team="riders", state="en_route")
        await amend(broker, order, "escorting-1", (on_scene, riders))
        update = await phone_a.next_of("order_update")
        assert update["escorting"] == [{"team": "aunties", "state": "on_scene"},
                                       {"team": "riders", "state": "en_route"}]
        [phone_b] = await devices(exits, notify, b)  # a teammate's phone, connecting now
        assert (await phone_b.next_of("order"))["escorting"] == update["escorting"]
        # an amendment that says nothing of it (a revision of flags) leaves it as it was
        await amend(broker, order, "flags", None, flags=("injury", "in_progress"))
        assert (await phone_a.next_of("order_update"))["escorting"] == update["escorting"]
        # the volunteers withdrawn: it escorts nobody now
        await amend(broker, order, "escorting-2", (), flags=("injury", "in_progress"))
        assert (await phone_a.next_of("order_update"))["escorting"] == []
    async with device(notify, volunteers.enrol("t-guard", agency_kind="security")) as phone:
        assert (await phone.next_of("order"))["escorting"] == []


async def test_an_order_escorting_nobody_says_nothing_of_it(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    async with device(notify, volunteers.enrol("t-pol", agency_kind="police")) as phone:
        await issue(broker, an_order("t-pol", agency_kind="police", priority="P1"))
        assert "escorting" not in await phone.next_of("order")
