"""An order withdrawn after its Web Push went: the push is taken back (a phone offline
meanwhile must not be shown the order when it comes back; one that showed it is told)."""

from __future__ import annotations

import json

import httpx
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.notify import store
from tests.helpers import poll_until

from .conftest import ADMIN, Gateway, NotifyFactory, Volunteers, an_order, issue, withdraw
from .test_fallback import Browser, deliveries, settings_for


async def test_a_withdrawn_orders_web_push_is_taken_back_with_the_same_topic(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient, clean_redis: str) -> None:
    member, teammate = volunteers.enrol("t1"), volunteers.enrol("t1")
    phone = Browser(f"{gateway.url}/push/sub-1")
    later = Browser(f"{gateway.url}/push/sub-2")
    async with notify_factory(**settings_for(gateway, 0.3)) as notify:
        r = await http.post(f"{notify}/v1/devices/me/webpush", headers=member.bearer,
                            json={"subscription": phone.subscription})
        assert r.status_code == 200, r.text
        order = an_order("t1", agency_kind="security")
        await issue(broker, order)  # the phone is offline: the push service holds the push
        pushed = await poll_until(lambda: gateway.at("/push/sub-1"), "the order's Web Push")
        assert phone.read(pushed[0].body)["type"] == "order"
        # a teammate turns Web Push on after the step went: nothing was sent to take back
        r = await http.post(f"{notify}/v1/devices/me/webpush", headers=teammate.bearer,
                            json={"subscription": later.subscription})
        assert r.status_code == 200, r.text

        await withdraw(broker, order)  # the deadline passed; the incident went to another team

        again = await poll_until(lambda: gateway.at("/push/sub-1")[1:], "a second Web Push")
        message = phone.read(again[0].body)
        assert message == {"type": "order_withdrawn", "order_id": order.order_id,
                           "category": order.category, "priority": order.priority,
                           "address": order.location.address}
        # the same Topic: the push service replaces the order's push still waiting for it
        assert again[0].headers["topic"] == pushed[0].headers["topic"]

        async with Redis.from_url(clean_redis) as redis:
            await poll_until(lambda: _timer_gone(redis, order.order_id),
                             "the take-back timer done")
        assert gateway.at("/push/sub-2") == []
        attempts = [(a["channel"], a["outcome"]) for a in
                    (await deliveries(http, notify, order.order_id))["attempts"]]
        assert attempts.count(("webpush", "withdrawal_sent")) == 1, attempts
        assert len(gateway.at("/push/sub-1")) == 2


async def _timer_gone(redis: Redis, order_id: str) -> bool:
    return await store.fallback_due_at(redis, store.withdrawal_timer(order_id)) is None


async def test_an_order_withdrawn_before_any_fallback_step_sends_no_push(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient, clean_redis: str) -> None:
    member = volunteers.enrol("t1")
    phone = Browser(f"{gateway.url}/push/sub-1")
    async with notify_factory(**settings_for(gateway, 30)) as notify:
        r = await http.post(f"{notify}/v1/devices/me/webpush", headers=member.bearer,
                            json={"subscription": phone.subscription})
        assert r.status_code == 200, r.text
        order = an_order("t1")
        await issue(broker, order)
        await withdraw(broker, order)

        async def withdrawn() -> bool:
            r = await http.get(f"{notify}/v1/orders/{order.order_id}/deliveries",
                               headers=ADMIN)
            return r.status_code == 200 and r.json()["withdrawn"]
        await poll_until(withdrawn, "the withdrawal handled")
        async with Redis.from_url(clean_redis) as redis:
            assert await _timer_gone(redis, order.order_id)  # nothing went: nothing to take back
        assert gateway.at("/push/sub-1") == []


async def test_a_member_texted_an_order_is_texted_that_it_was_withdrawn(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient, clean_redis: str) -> None:
    # A volunteer, the page closed, is texted a fight; the command room then learns of a
    # knife and takes the volunteers off it. The SMS stays in the phone's inbox, read as it
    # came: without a second text the volunteer walks into the fight, sent by nobody.
    member = volunteers.enrol("t1", agency_kind="volunteer")
    settings = settings_for(gateway, 0.2)
    settings.pop("vapid_private_key")  # SMS only
    async with notify_factory(**settings) as notify:
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                            json={"phone": "+8613800000001"})
        assert r.status_code == 200, r.text
        order = an_order("t1", agency_kind="volunteer", category="fight")
        await issue(broker, order)
        await poll_until(lambda: gateway.at("/sms"), "the order's SMS")

        await withdraw(broker, order, reason="reassigned")

        texts = await poll_until(lambda: gateway.at("/sms")[1:], "a second SMS")
        body = json.loads(texts[0].body)
        assert body["to"] == "+8613800000001" and body["order_id"] == order.order_id
        assert body["kind"] == "withdrawn" and "请勿前往" in body["text"]  # do not go
        assert order.location.address in body["text"]  # which order the member was sent
        first = json.loads(gateway.at("/sms")[0].body)
        # its own reference: the gateway must not take it for the order's SMS sent again
        assert body["reference"] != first["reference"]
        assert texts[0].headers["idempotency-key"] == body["reference"]
        async with Redis.from_url(clean_redis) as redis:
            await poll_until(lambda: _timer_gone(redis, order.order_id),
                             "the take-back timer done")
        attempts = [(a["channel"], a["outcome"]) for a in
                    (await deliveries(http, notify, order.order_id))["attempts"]]
        assert attempts.count(("sms", "withdrawal_sent")) == 1, attempts
        assert len(gateway.at("/sms")) == 2


async def test_a_member_texted_an_order_a_teammate_then_declined_is_texted_not_to_go(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient, clean_redis: str) -> None:
    # A volunteer, the page closed, is texted a fight; a teammate then declines it (they are
    # still at another call) and dispatch gives it to another team at once: no withdrawal
    # comes for a declined order. Without a second text the volunteer goes, sent by nobody.
    texted, decliner = (volunteers.enrol("t1", agency_kind="volunteer") for _ in range(2))
    settings = settings_for(gateway, 0.2)
    settings.pop("vapid_private_key")  # SMS only
    async with notify_factory(**settings) as notify:
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=texted.bearer,
                            json={"phone": "+8613800000001"})
        assert r.status_code == 200, r.text
        order = an_order("t1", agency_kind="volunteer", category="fight")
        await issue(broker, order)
        await poll_until(lambda: gateway.at("/sms"), "the order's SMS")

        r = await http.post(f"{notify}/v1/orders/{order.order_id}/responses",
                            headers=decliner.bearer,
                            json={"response": "declined", "note": "still at the last call"})
        assert r.status_code == 200 and r.json()["state"] == "declined", r.text

        texts = await poll_until(lambda: gateway.at("/sms")[1:], "a second SMS")
        body = json.loads(texts[0].body)
        assert body["to"] == "+8613800000001" and body["kind"] == "withdrawn"
        assert "请勿前往" in body["text"] and order.location.address in body["text"]
        async with Redis.from_url(clean_redis) as redis:
            await poll_until(lambda: _timer_gone(redis, order.order_id),
                             "the take-back timer done")
        attempts = [(a["channel"], a["outcome"]) for a in
                    (await deliveries(http, notify, order.order_id))["attempts"]]
        assert attempts.count(("sms", "withdrawal_sent")) == 1, attempts
        assert len(gateway.at("/sms")) == 2
