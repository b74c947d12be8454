"""No fallback message for an order whose acknowledge-by deadline has passed: dispatch has
withdrawn it then (and offered the incident to another team), so an SMS or a Web Push
would send a team to an incident that is no longer theirs."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
from faststream.redis import RedisBroker

from shared.events import utcnow
from tests.helpers import poll_until

from .conftest import ADMIN, Gateway, NotifyFactory, Volunteers, an_order, issue
from .test_fallback import PHONE


async def test_an_order_whose_deadline_passed_while_notify_was_away_gets_no_sms(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    settings = {"sms_gateway_url": f"{gateway.url}/sms", "fallback_after_s": 0.3,
                "fallback_poll_s": 0.1}
    # Notify was away (a restart, a deploy) for five minutes: the P1 order below was issued
    # four minutes ago, dispatch withdrew it at its 30 s deadline, and both entries wait
    # in their streams; notify reads the order.issued first.
    issued_at = utcnow() - timedelta(minutes=4)
    stale = an_order("t1", priority="P1", occurred_at=issued_at,
                     ack_by=issued_at + timedelta(seconds=30))
    live = an_order("t1", priority="P1", ack_by=utcnow() + timedelta(seconds=30))
    async with notify_factory(**settings) as notify:
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                            json={"phone": PHONE})
        assert r.status_code == 200, r.text
        await issue(broker, stale)
        await issue(broker, live)

        async def tried_by_sms(order_id: str) -> list[dict[str, str]]:
            r = await http.get(f"{notify}/v1/orders/{order_id}/deliveries", headers=ADMIN)
            attempts = r.json()["attempts"] if r.status_code == 200 else []  # 404: not yet
            return [a for a in attempts if a["channel"] == "sms"]

        # the order still to be answered gets its SMS (the chain runs in this test) ...
        await poll_until(lambda: tried_by_sms(live.order_id), "the live order's SMS")
        # ... the one past its deadline is recorded as too late, and sent to nobody
        attempts = await poll_until(lambda: tried_by_sms(stale.order_id),
                                    "the stale order's fallback step")
        assert [a["outcome"] for a in attempts] == ["too_late"], attempts
        sent = [json.loads(r.body)["order_id"] for r in gateway.at("/sms")]
        assert sent == [live.order_id]
