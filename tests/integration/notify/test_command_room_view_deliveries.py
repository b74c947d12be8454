"""What operations staff read of an order's text messages (GET /v1/orders/{id}/deliveries):
the order as first sent, each update of it once the command room raised it (which version
went, on which channel, to which phone, how it stands) and the message taking it back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker

from shared import streams
from shared.events import OrderAmended, utcnow
from tests.helpers import poll_until

from .conftest import ADMIN, NotifyFactory, Volunteers, an_order, issue, serving, withdraw
from .test_fallback_failures import Outside


@pytest.fixture
async def outside() -> AsyncIterator[Outside]:
    """The SMS gateway on loopback (test_fallback_failures.Outside)."""
    standin = Outside()
    async with serving(standin.app()) as url:
        standin.url = url
        try:
            yield standin
        finally:
            for hold in standin.holds:
                hold.set()


async def _deliveries(http: httpx.AsyncClient, notify: str, order_id: str) -> dict[str, Any]:
    r = await http.get(f"{notify}/v1/orders/{order_id}/deliveries", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


async def test_the_deliveries_say_which_version_each_text_carried(
        notify_factory: NotifyFactory, volunteers: Volunteers, outside: Outside,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # A security team's phone has no data: it was texted "P2 纠纷", then the command room
    # added a knife (P1), then took the order back. Operations staff, asked by the command
    # room whether the guards' phone got the knife, must read that the update carrying the
    # raised order (version 1) went by SMS to that phone, and that the withdrawal went after.
    guard = volunteers.enrol("t1", agency_kind="security")
    settings = {"sms_gateway_url": f"{outside.url}/sms", "fallback_after_s": 0.2,
                "fallback_poll_s": 0.05}
    async with notify_factory(**settings) as notify:
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=guard.bearer,
                            json={"phone": "+8613800000001"})
        assert r.status_code == 200, r.text
        issued = utcnow()
        order = an_order("t1", agency_kind="security", flags=(), occurred_at=issued,
                         ack_by=issued + timedelta(seconds=60))
        await issue(broker, order)
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        await broker.publish(OrderAmended(
            district=order.district, order_id=order.order_id, incident_id=order.incident_id,
            team_id=order.team_id, priority="P1", flags=("weapon",),
            ack_by=issued + timedelta(seconds=30)), stream=streams.ORDER_AMENDED.name)
        await poll_until(lambda: outside.at("/sms")[1:], "the update's SMS")
        await withdraw(broker, order, reason="closed")
        await poll_until(lambda: outside.at("/sms")[2:], "the withdrawal's SMS")
        kinds = [t.json()["kind"] for t in outside.at("/sms")]
        assert kinds == ["order", "order_update", "withdrawn"]

        async def all_three() -> dict[str, Any] | None:
            # the withdrawal's attempt is recorded after its mark says how it went
            seen = await _deliveries(http, notify, order.order_id)
            done = any(a["outcome"] == "withdrawal_sent" for a in seen["attempts"])
            return seen if done else None

        seen = await poll_until(all_three, "the three texts in the deliveries")
    assert seen["version"] == 1  # amended once
    assert seen["messages"] == [
        {"message": "order", "step": 0, "channel": "sms", "device_id": guard.device_id,
         "version": 0, "state": "sent", "tries": 1},
        {"message": "update", "step": 0, "channel": "sms", "device_id": guard.device_id,
         "version": 1, "state": "sent", "tries": 1},
        {"message": "withdrawal", "step": 0, "channel": "sms", "device_id": guard.device_id,
         "version": None, "state": "sent", "tries": 1},
    ]
    # the attempts, as before: each with its channel and outcome
    outcomes = [(a["channel"], a["outcome"]) for a in seen["attempts"]
                if a["channel"] != "websocket"]
    assert outcomes == [("sms", "sent"), ("sms", "update_sent"), ("sms", "withdrawal_sent")]


async def test_the_deliveries_route_says_what_its_answer_holds(
        notify: str, http: httpx.AsyncClient) -> None:
    # An operator reading the API's own description must learn what an update's and a
    # withdrawal's lines look like and where the version is, not only "every attempt".
    spec = (await http.get(f"{notify}/openapi.json")).json()
    described = spec["paths"]["/v1/orders/{order_id}/deliveries"]["get"]
    text = described.get("description", "")
    for said in ("update_sent", "withdrawal_sent", "`messages`", "`version`", "`attempts`",
                 "`received`", "`responses`", "no_recipient", "too_late"):
        assert said in text, said
