"""Who answered: the team's other phones hear the answering member's name with the order's
new state (over HTTP or the socket), and a phone connecting later has it in the replay."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
from faststream.redis import RedisBroker

from .conftest import Volunteers, device, devices
from .test_responses import issued_to


def _name(member_id: str) -> str:
    return f"Member {member_id[-4:]}"  # the fake volunteers' introspection (conftest)


async def test_the_team_hears_who_answered_and_a_later_phone_too(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    member, order = await issued_to("t1", volunteers, broker, http, notify)
    leader = volunteers.enrol("t1")
    async with AsyncExitStack() as exits:
        mine, theirs = await devices(exits, notify, member, leader)
        r = await http.post(f"{notify}/v1/orders/{order.order_id}/responses",
                            headers=member.bearer, json={"response": "acknowledged"})
        assert r.status_code == 200, r.text
        heard = await theirs.next_of("order_state", where=lambda f: f.get("state") == "acknowledged")
        assert heard["member_name"] == _name(member.member_id)

        await theirs.send({"type": "response", "order_id": order.order_id,
                           "response": "en_route"})
        told = await mine.next_of("order_state", where=lambda f: f.get("state") == "en_route")
        assert told["member_name"] == _name(leader.member_id)

    async with device(notify, member) as again:  # reconnected: the replay names them too
        replayed = await again.next_of("order_state",
                                       where=lambda f: f.get("order_id") == order.order_id)
        assert replayed["state"] == "en_route"
        assert replayed["member_name"] == _name(leader.member_id)
