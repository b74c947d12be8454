"""An order's `allowed` (GET /v1/orders/{id}) is exactly what its responses endpoint takes,
for every kind of order in every state: a page draws its buttons from it."""

from __future__ import annotations

import asyncio
import itertools

import httpx
from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderResponded
from tests.helpers import poll_until, read_stream

from .conftest import ADMIN, Volunteers, an_order, issue, withdraw

KINDS = ("dispatch", "reinforcement", "handover", "followup")  # offer, backup, station tasks
STATES = ("issued", "acknowledged", "en_route", "on_scene", "resolved", "handover", "declined",
          "withdrawn")
RESPONSES = ("acknowledged", "declined", "en_route", "on_scene", "resolved", "handover",
             "reinforce")


async def test_allowed_lists_exactly_the_responses_the_order_takes_in_every_kind_and_state(
        notify: str, volunteers: Volunteers, broker: RedisBroker, http: httpx.AsyncClient,
        clean_redis: str) -> None:
    # one order per (kind, state, response), each answered by a member of its own (a
    # token's requests are rate-limited)
    cases = {}
    for kind, state, response in itertools.product(KINDS, STATES, RESPONSES):
        if kind == "handover" and state == "handover":
            continue  # a state the station's own hand-over never reaches
        order = an_order("t1", kind=kind)
        cases[order.order_id] = (kind, state, response, order, volunteers.enrol("t1"))
        await issue(broker, order)

    async def all_stored() -> bool:
        for order_id in cases:
            r = await http.get(f"{notify}/v1/orders/{order_id}", headers=ADMIN)
            if r.status_code != 200:
                return False
        return True

    await poll_until(all_stored, "notify has stored every order", timeout=60)

    def body(response: str) -> dict[str, str]:
        return {"response": response, "note": "why"} if response == "declined" else {
            "response": response}

    async def into_state(kind: str, state: str, order_id: str) -> None:
        if state == "issued":
            return
        if state == "withdrawn":
            await withdraw(broker, cases[order_id][3])

            async def withdrawn() -> bool:
                r = await http.get(f"{notify}/v1/orders/{order_id}", headers=ADMIN)
                return r.json()["withdrawn"]

            await poll_until(withdrawn, f"{order_id} withdrawn", timeout=30)
            return
        async def answered() -> httpx.Response | None:
            r = await http.post(f"{notify}/v1/orders/{order_id}/responses",
                                headers=cases[order_id][4].bearer, json=body(state))
            # all the answers at once: on a loaded machine volunteers may not check a token
            # in time, and notify says "retry" (503), as a phone then does
            return None if r.status_code == 503 else r

        r = await poll_until(answered, f"{order_id} answered {state}", timeout=30,
                             interval=0.5)
        assert r.status_code == 200, (kind, state, r.text)

    await asyncio.gather(*(into_state(kind, state, order_id)
                           for order_id, (kind, state, *_) in cases.items()))
    before = {order_id: [e.response for e in read_stream(
        clean_redis, streams.ORDER_RESPONDED.name, OrderResponded) if e.order_id == order_id]
        for order_id in cases}

    offered: dict[str, list[str]] = {}
    answers: dict[str, int] = {}
    for order_id, (_, _, response, _, member) in cases.items():
        r = await http.get(f"{notify}/v1/orders/{order_id}", headers=member.bearer)
        offered[order_id] = r.json()["allowed"]
        r = await http.post(f"{notify}/v1/orders/{order_id}/responses", headers=member.bearer,
                            json=body(response))
        answers[order_id] = r.status_code

    after = read_stream(clean_redis, streams.ORDER_RESPONDED.name, OrderResponded)
    wrong = []
    for order_id, (kind, state, response, *_) in cases.items():
        published = [e.response for e in after if e.order_id == order_id][len(before[order_id]):]
        taken = answers[order_id] == 200 and published == [response]
        listed = response in offered[order_id]
        if taken != listed or (not taken and published):
            wrong.append((kind, state, response, answers[order_id], offered[order_id]))
    assert wrong == []
