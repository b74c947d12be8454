"""Fallback: an order no device confirmed in time goes by Web Push, then SMS, before its
deadline; each attempt recorded."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import http_ece
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from faststream.redis import RedisBroker
from py_vapid import Vapid02, b64urlencode
from redis.asyncio import Redis

from services.notify import store
from services.notify.channels import Outcome
from services.notify.config import Settings
from services.notify.fallback import FallbackTimers
from services.notify.service import Orders
from shared import streams
from shared.events import DeviceRevoked, OrderAmended, utcnow
from shared.runtime import stop_task
from tests.helpers import poll_until

from .conftest import (
    ADMIN,
    ADMIN_TOKEN,
    Gateway,
    Member,
    NotifyFactory,
    Volunteers,
    an_order,
    device,
    issue,
    withdraw,
)
from .test_sockets import store_away_once

PHONE = "+8613877009999"


def vapid_key() -> str:
    vapid = Vapid02()
    vapid.generate_keys()
    return b64urlencode(vapid.private_key.private_numbers().private_value.to_bytes(32, "big"))


class Browser:
    """The keys a browser makes for a push subscription; it decrypts what it receives."""

    def __init__(self, endpoint: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        point = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)
        self.subscription = {"endpoint": endpoint,
                             "keys": {"p256dh": b64urlencode(point), "auth": b64urlencode(self.auth)}}

    def read(self, body: bytes) -> dict[str, Any]:
        return json.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth,
                                           version="aes128gcm"))


def settings_for(gateway: Gateway, after_s: float) -> dict[str, Any]:
    # The push service stand-in is http on loopback: allowed only by the setting.
    return {"vapid_private_key": vapid_key(), "sms_gateway_url": f"{gateway.url}/sms",
            "sms_gateway_token": "gw-secret", "fallback_after_s": after_s,
            "fallback_poll_s": 0.1, "webpush_allow_private_endpoints": True}


async def register(http: httpx.AsyncClient, notify: str, member: Member, browser: Browser) -> None:
    r = await http.post(f"{notify}/v1/devices/me/webpush", headers=member.bearer,
                        json={"subscription": browser.subscription})
    assert r.status_code == 200 and r.json() == {"subscribed": True, "enabled": True}, r.text
    r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer, json={"phone": PHONE})
    assert r.status_code == 200 and r.json() == {"registered": True, "enabled": True}, r.text


async def deliveries(http: httpx.AsyncClient, notify: str, order_id: str) -> dict[str, Any]:
    r = await http.get(f"{notify}/v1/orders/{order_id}/deliveries", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


async def test_an_unconfirmed_order_goes_by_web_push_then_sms_and_every_attempt_is_recorded(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    browser = Browser(f"{gateway.url}/push/sub-1")
    async with notify_factory(**settings_for(gateway, 0.4)) as notify:
        await register(http, notify, member, browser)
        r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
        assert r.json()["webpush"]["subscribed"] and len(r.json()["webpush"]["public_key"]) == 87

        order = an_order("t1")
        await issue(broker, order)  # no socket is open: nobody confirms

        pushes = await poll_until(lambda: gateway.at("/push/sub-1"), "a Web Push request")
        message = browser.read(pushes[0].body)
        assert message["order_id"] == order.order_id and message["priority"] == "P2"
        assert pushes[0].headers["authorization"].startswith("vapid t=")
        assert pushes[0].headers["content-encoding"] == "aes128gcm"

        sms = await poll_until(lambda: gateway.at("/sms"), "an SMS gateway request")
        body = json.loads(sms[0].body)
        assert body["to"] == PHONE and body["order_id"] == order.order_id
        assert order.order_id in body["text"]
        assert sms[0].headers["authorization"] == "Bearer gw-secret"

        async def chain_done() -> dict[str, Any] | None:
            # the gateway has the SMS a moment before notify records it and ends the chain
            record = await deliveries(http, notify, order.order_id)
            return record if record["fallback_due_at"] is None else None

        record = await poll_until(chain_done, "no fallback step due after the SMS")
        attempts = [(a["channel"], a["outcome"], a.get("device_id")) for a in record["attempts"]]
        assert attempts == [("websocket", "no_socket", None),
                            ("webpush", "sent", member.device_id),
                            ("sms", "sent", member.device_id)]
        assert record["received"] == {}
        r = await http.get(f"{notify}/v1/orders/{order.order_id}/deliveries",
                           headers=member.bearer)
        assert r.status_code == 403  # admin only


async def test_a_phone_number_as_the_member_types_it_reaches_the_gateway_as_e164(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # A member types the number as it is said, in groups; a gateway given '138 0013 8000'
    # (or a number without +86) refuses it or reads it as another country's, and the SMS
    # never comes. A landline cannot take an SMS: the member is told at once, not never.
    member = volunteers.enrol("t1")
    settings = settings_for(gateway, 0.2)
    settings.pop("vapid_private_key")
    async with notify_factory(**settings) as notify:
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                            json={"phone": "0771-2801234"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "phone", r.text
        assert "mobile" in r.json()["error"]["message"]
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                            json={"phone": "138 0013 8000"})
        assert r.status_code == 200, r.text
        await issue(broker, an_order("t1"))
        sms = await poll_until(lambda: gateway.at("/sms"), "an SMS gateway request")
        assert json.loads(sms[0].body)["to"] == "+8613800138000"


async def test_an_orders_sms_links_the_members_page_at_notifys_public_address(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # 「请于…前接单」 and no way to: the SMS now ends with the page (NOTIFY_PUBLIC_URL's
    # /device), in the text and as a field for a relay filling its own template; never the
    # device's token, which the page keeps in the browser. Its withdrawal links nothing.
    member = volunteers.enrol("t1")
    settings = settings_for(gateway, 0.2)
    settings.pop("vapid_private_key")
    async with notify_factory(**settings, notify_public_url="https://lf.example.cn/") as notify:
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                            json={"phone": PHONE})
        assert r.status_code == 200, r.text
        order = an_order("t1")
        await issue(broker, order)
        sms = await poll_until(lambda: gateway.at("/sms"), "an SMS gateway request")
        body = json.loads(sms[0].body)
        assert body["kind"] == "order" and body["page_url"] == "https://lf.example.cn/device"
        assert body["text"].endswith("在此接单：https://lf.example.cn/device")
        assert member.token not in sms[0].body.decode()
        await withdraw(broker, order)
        texts = await poll_until(lambda: [json.loads(s.body) for s in gateway.at("/sms")
                                          if json.loads(s.body)["kind"] == "withdrawn"],
                                 "the withdrawal's SMS")
        assert texts[0]["page_url"] is None and "http" not in texts[0]["text"]


async def test_one_number_on_two_devices_of_a_team_gets_one_sms_per_order(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # A member enrolled again on the same phone (a new token; the old device record kept,
    # or a shared duty phone two members registered): each device record was texted, so
    # every order came twice to one phone, a cost and a confusion ("two orders?").
    first = volunteers.enrol("t1")
    again = replace(first, token=f"{first.token}-again", device_id=f"{first.device_id}-again")
    volunteers.members[again.token] = again
    other = volunteers.enrol("t1")
    settings = settings_for(gateway, 0.2)
    settings.pop("vapid_private_key")
    async with notify_factory(**settings) as notify:
        for member, phone in ((first, "138 0013 8000"), (again, "+8613800138000"),
                              (other, "13900139000")):
            r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                                json={"phone": phone})
            assert r.status_code == 200, r.text
        order = an_order("t1")
        await issue(broker, order)

        async def chain_done() -> bool:
            return (await deliveries(http, notify, order.order_id))["fallback_due_at"] is None

        await poll_until(chain_done, "the fallback chain's end")
        texted = sorted(json.loads(r.body)["to"] for r in gateway.at("/sms"))
        assert texted == ["+8613800138000", "+8613900139000"]


async def test_a_p1_orders_fallback_goes_well_before_its_acknowledge_by_deadline(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # FALLBACK_AFTER_S as shipped (30 s) is the P1 deadline: a first step due then found
    # the order withdrawn for the missed deadline, and the team offline was never alerted.
    member = volunteers.enrol("t1")
    settings = {k: v for k, v in settings_for(gateway, 0).items() if k != "fallback_after_s"}
    async with notify_factory(**settings) as notify:
        await register(http, notify, member, Browser(f"{gateway.url}/push/p1"))
        issued = utcnow()
        # as dispatch issues it: ack_by = issued + the P1 deadline (shared/policy.yaml: 30 s)
        order = an_order("t1", priority="P1", occurred_at=issued,
                         ack_by=issued + timedelta(seconds=30))
        await issue(broker, order)
        record = await poll_until(lambda: _stored(http, notify, order.order_id),
                                  "the order stored")
        assert record["fallback_due_at"] is not None
        # Web Push at a third of the time left, so SMS can follow at two thirds
        assert record["fallback_due_at"] - issued.timestamp() == pytest.approx(10, abs=1.5)


async def test_an_order_confirmed_on_the_socket_needs_no_fallback(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    async with notify_factory(**settings_for(gateway, 0.5)) as notify:
        await register(http, notify, member, Browser(f"{gateway.url}/push/sub-2"))
        async with device(notify, member) as phone:
            order = an_order("t1")
            await issue(broker, order)
            await phone.next_of("order")
            await phone.send({"type": "received", "order_id": order.order_id})
            await phone.drain(1.5)  # three fallback periods
        assert gateway.received == []
        record = await deliveries(http, notify, order.order_id)
        assert [(a["channel"], a["outcome"]) for a in record["attempts"]] == [
            ("websocket", "fanned_out"), ("websocket", "sent"), ("websocket", "received")]
        assert list(record["received"]) == [member.device_id]


async def test_a_receipt_redis_refused_is_asked_for_again_and_no_fallback_goes(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The phone shows the order and confirms it just as Redis restarts: the receipt is
    # refused (`unavailable`). Were it never asked for again, the team would get Web Push
    # and SMS for an order on the phone's screen, and dispatch no order.delivered.
    member = volunteers.enrol("t1")
    async with notify_factory(**{**settings_for(gateway, 0.6), "ping_interval_s": 0.2}) as notify:
        await register(http, notify, member, Browser(f"{gateway.url}/push/rx"))
        async with device(notify, member) as phone:
            failures = store_away_once(monkeypatch, "record_receipt")
            order = an_order("t1")
            await issue(broker, order)
            frame = await phone.next_of("order")
            await phone.send({"type": "received", "order_id": frame["order_id"]})
            error = await phone.next_of("error")
            assert failures == ["record_receipt"] and error["code"] == "unavailable"
            # as the page does: every `order` frame it gets is confirmed; the error frame
            # itself is left unanswered here (the page would send the receipt again too)
            again = await phone.next_of("order", timeout=1.5)  # asked again by a heartbeat
            assert again["order_id"] == order.order_id
            await phone.send({"type": "received", "order_id": order.order_id})
            later = await phone.drain(1.0)  # taken: not asked for again
            assert [f for f in later if f["type"] in ("order", "error")] == []
        record = await deliveries(http, notify, order.order_id)
        assert gateway.received == [] and list(record["received"]) == [member.device_id], (
            [r.path for r in gateway.received], record["received"])


async def test_fallback_timers_survive_a_restart(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    browser = Browser(f"{gateway.url}/push/sub-3")
    settings = settings_for(gateway, 1.5)
    order = an_order("t1")
    async with notify_factory(**settings) as notify:
        await register(http, notify, member, browser)
        await issue(broker, order)
        record = await poll_until(lambda: _stored(http, notify, order.order_id),
                                  "the order stored")
        assert record["fallback_due_at"] is not None
    assert gateway.received == []  # stopped before the timer was due
    async with notify_factory(**settings):
        pushes = await poll_until(lambda: gateway.at("/push/sub-3"), "a Web Push after restart")
        assert browser.read(pushes[0].body)["order_id"] == order.order_id


async def test_a_push_subscription_the_push_service_says_is_gone_is_forgotten(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    member = volunteers.enrol("t1")
    gateway.status["/push/sub-4"] = 410
    async with notify_factory(**settings_for(gateway, 0.3)) as notify:
        await register(http, notify, member, Browser(f"{gateway.url}/push/sub-4"))
        order = an_order("t1")
        await issue(broker, order)
        await poll_until(lambda: gateway.at("/sms"), "the SMS after the failed push")
        record = await deliveries(http, notify, order.order_id)
        assert ("webpush", "gone", "HTTP 410") in [
            (a["channel"], a["outcome"], a.get("detail")) for a in record["attempts"]]
        r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
        assert r.json()["webpush"]["subscribed"] is False


async def test_a_push_endpoint_that_is_not_a_push_services_is_refused(
        notify: str, volunteers: Volunteers, http: httpx.AsyncClient) -> None:
    # notify POSTs to the endpoint: from any device token, loopback, the cloud's metadata
    # or the private network would be reached (SSRF)
    member = volunteers.enrol("t1")
    keys = Browser("https://x.example.com/").subscription["keys"]
    for endpoint in ("http://push.example.com/x", "https://127.0.0.1/x",
                     "https://169.254.169.254/latest/meta-data/", "https://10.0.0.5/x",
                     "https://[::1]/x", "https://push.example.com:99999/x", "https://[zz]/x",
                     "https://localhost/x", "https://redis:6379/x", "https://8.8.8.8/x"):
        r = await http.post(f"{notify}/v1/devices/me/webpush", headers=member.bearer,
                            json={"subscription": {"endpoint": endpoint, "keys": keys}})
        assert r.status_code == 422, (endpoint, r.text)
        error = r.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_field", "subscription.endpoint")
        assert error["message"].startswith("subscription.endpoint "), error
    r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
    assert r.json()["webpush"]["subscribed"] is False
    r = await http.post(f"{notify}/v1/devices/me/webpush", headers=member.bearer,
                        json={"subscription": {"endpoint": "https://fcm.googleapis.com/fcm/"
                                               "send/dQw4w9WgXcQ:APA91bH", "keys": keys}})
    assert r.status_code == 200, r.text


async def test_a_stored_push_endpoint_the_rules_refuse_is_forgotten_not_sent_to(
        notify_factory: NotifyFactory, gateway: Gateway, broker: RedisBroker,
        http: httpx.AsyncClient, clean_redis: str) -> None:
    # stored before the rule (or while WEBPUSH_ALLOW_PRIVATE_ENDPOINTS was on)
    redis = Redis.from_url(clean_redis, decode_responses=True)
    try:
        await store.touch_device(redis, device_id="t1-old", member_id="m1", team_id="t1",
                                 agency_kind="police", district="d1")
        browser = Browser(f"{gateway.url}/push/old")
        await store.set_device_channel(redis, "t1-old", field="webpush",
                                       value=json.dumps(browser.subscription))
        await store.set_device_channel(redis, "t1-old", field="phone", value=PHONE)
        settings = {**settings_for(gateway, 0.3), "webpush_allow_private_endpoints": False}
        async with notify_factory(**settings) as notify:
            order = an_order("t1")
            await issue(broker, order)
            await poll_until(lambda: gateway.at("/sms"), "the SMS after the refused push")
            record = await deliveries(http, notify, order.order_id)
        assert ("webpush", "gone", "endpoint must be an https URL") in [
            (a["channel"], a["outcome"], a.get("detail")) for a in record["attempts"]]
        assert gateway.at("/push/old") == []
        device = await store.get_device(redis, "t1-old")
        assert device is not None and device.webpush is None and device.phone == PHONE
    finally:
        await redis.aclose()


async def _stored(http: httpx.AsyncClient, notify: str, order_id: str) -> dict[str, Any] | None:
    r = await http.get(f"{notify}/v1/orders/{order_id}/deliveries", headers=ADMIN)
    return r.json() if r.status_code == 200 else None


@dataclass
class SlowSms:
    """An SMS gateway that takes half a second per message (within CHANNEL_TIMEOUT_S)."""

    sent: list[tuple[str, str]]
    name: str = "sms"
    contact_field: str = "phone"

    def reaches(self, device: store.DeviceRecord) -> bool:
        return device.phone is not None

    async def send(self, order: Any, device: store.DeviceRecord) -> Outcome:
        await asyncio.sleep(0.5)
        self.sent.append((order.order_id, device.device_id))
        return Outcome("sent")


async def three_phones_and_an_order(redis: Redis, team: str, *, steps: int = 1) -> str:
    for i in range(3):
        await store.touch_device(redis, device_id=f"{team}-dev{i}", member_id=f"m{i}",
                                 team_id=team, agency_kind="police", district="d1")
        await store.set_device_channel(redis, f"{team}-dev{i}", field="phone",
                                       value=f"+8613800000{i}")
    order = an_order(team)
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.0,
                            fallback_steps=steps, ttl_s=600)
    return order.order_id


def sms_timers(redis: Redis, url: str, sent: list[tuple[str, str]], *,
               lease_s: float) -> asyncio.Task[None]:
    """A replica's fallback loop with the slow SMS gateway as its only channel."""
    settings = Settings(redis_url=url, admin_token=ADMIN_TOKEN, fallback_lease_s=lease_s,
                        fallback_after_s=30.0, fallback_poll_s=0.05)
    timers = FallbackTimers(redis=redis, orders=None, chain=[SlowSms(sent)],  # type: ignore[arg-type]
                            settings=settings)
    return asyncio.create_task(timers.run())


@dataclass
class Recording:
    """A channel that reaches the devices with a phone (or none) and records what it sends."""

    name: str
    sent: list[tuple[str, float]]
    reaches_anybody: bool = True
    contact_field: str = "phone"

    def reaches(self, device: store.DeviceRecord) -> bool:
        return self.reaches_anybody and device.phone is not None

    async def send(self, order: Any, device: store.DeviceRecord) -> Outcome:
        self.sent.append((self.name, time.time()))
        return Outcome("sent")


async def run_chain(url: str, redis: Redis, chain: list[Recording], *, ack_in_s: float | None,
                    until: Callable[[], bool]) -> float:
    """An order to a team of one phone, through `chain` with FALLBACK_AFTER_S as shipped
    (30 s), until `until()`: when the order was stored."""
    await store.touch_device(redis, device_id="dev-1", member_id="m1", team_id="t9",
                             agency_kind="police", district="d1")
    await store.set_device_channel(redis, "dev-1", field="phone", value=PHONE)
    issued = utcnow()
    order = an_order("t9", occurred_at=issued,
                     ack_by=issued + timedelta(seconds=ack_in_s) if ack_in_s else None)
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=30.0,
                            fallback_steps=len(chain), ttl_s=600)
    settings = Settings(redis_url=url, admin_token=ADMIN_TOKEN, fallback_poll_s=0.05)
    assert settings.fallback_after_s == 30.0
    timers = FallbackTimers(redis=redis, orders=None, chain=chain,  # type: ignore[arg-type]
                            settings=settings)
    task = asyncio.create_task(timers.run())
    try:
        await poll_until(until, "the fallback steps", 10)
    finally:
        await stop_task(task)
    return issued.timestamp()


async def test_every_fallback_step_goes_before_the_orders_deadline(clean_redis: str) -> None:
    # Each later step waited FALLBACK_AFTER_S again: a P2's SMS at 60 s, its deadline.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    sent: list[tuple[str, float]] = []
    try:
        issued = await run_chain(clean_redis, redis,
                                 [Recording("webpush", sent), Recording("sms", sent)],
                                 ack_in_s=6.0, until=lambda: len(sent) >= 2)
    finally:
        await redis.aclose()
    (first, first_at), (second, second_at) = sent
    assert (first, second) == ("webpush", "sms")
    assert first_at - issued == pytest.approx(2, abs=0.5)   # a third of the 6 s
    assert second_at - issued == pytest.approx(4, abs=0.5)  # two thirds: 2 s left to answer


async def test_a_fallback_step_that_reaches_nobody_is_followed_by_the_next_at_once(
        clean_redis: str) -> None:
    # No push subscription on the team's phones: the SMS must not wait another period.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    sent: list[tuple[str, float]] = []
    try:
        issued = await run_chain(
            clean_redis, redis,
            [Recording("webpush", sent, reaches_anybody=False), Recording("sms", sent)],
            ack_in_s=6.0, until=lambda: len(sent) >= 1)
    finally:
        await redis.aclose()
    [(channel, at)] = sent
    assert channel == "sms" and at - issued == pytest.approx(2, abs=0.5)


async def test_two_replicas_never_send_one_step_to_a_phone_twice(clean_redis: str) -> None:
    # Replica A's sends outlast its lease (a slow gateway); replica B claims the timer
    # again meanwhile: each phone still gets the step once.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    order_id = await three_phones_and_an_order(redis, "t1")
    sent: list[tuple[str, str]] = []
    replicas = [sms_timers(redis, clean_redis, sent, lease_s=0.2) for _ in range(2)]
    try:
        await poll_until(lambda: len(sent) >= 3, "every phone's SMS", 10)
        await asyncio.sleep(1.5)
    finally:
        for task in replicas:
            await stop_task(task)
        await redis.aclose()
    assert sorted(sent) == [(order_id, f"t1-dev{i}") for i in range(3)]


async def test_the_fallback_stops_once_the_order_is_acknowledged(clean_redis: str) -> None:
    # A member acknowledges on the page while the first step's messages are under way:
    # they went, nothing after them does.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    order_id = await three_phones_and_an_order(redis, "t2", steps=2)
    first: list[tuple[str, str]] = []
    second: list[tuple[str, str]] = []
    settings = Settings(redis_url=clean_redis, admin_token=ADMIN_TOKEN, fallback_after_s=0.1,
                        fallback_poll_s=0.05)
    timers = FallbackTimers(redis=redis, orders=None,  # type: ignore[arg-type]
                            chain=[SlowSms(first), SlowSms(second, name="later")],
                            settings=settings)
    task = asyncio.create_task(timers.run())
    try:
        await poll_until(lambda: store.step_marks(redis, order_id), "the first step under way")
        # as the answer's script writes it
        await redis.hset(f"notify:order:{order_id}", mapping={"state": "acknowledged",
                                                               "answered": "1"})
        await redis.zrem(store.FALLBACK, order_id)
        await poll_until(lambda: len(first) == 3, "the first step's messages", 5)
        await asyncio.sleep(1.0)
    finally:
        await stop_task(task)
        await redis.aclose()
    assert second == []


@pytest.mark.parametrize("channel", ["webpush", "sms"])
async def test_a_channel_registered_as_the_device_is_revoked_never_outlives_the_revocation(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient, clean_redis: str,
        monkeypatch: pytest.MonkeyPatch, channel: str) -> None:
    # The registration's token was checked a moment before the revocation; notify forgets
    # the device's channels before the registration writes its own.
    member = volunteers.enrol("t1")
    browser = Browser(f"{gateway.url}/push/sub-5")
    redis = Redis.from_url(clean_redis, decode_responses=True)
    touch = store.touch_device

    async def revoked_meanwhile(client: Redis, **kw: Any) -> Any:
        volunteers.revoke(member)
        await broker.publish(DeviceRevoked(district="d1", device_id=member.device_id,
                                           member_id=member.member_id, team_id="t1"),
                             stream=streams.DEVICE_REVOKED.name)
        await poll_until(lambda: _forgotten(redis, member.device_id), "the device forgotten")
        return await touch(client, **kw)

    try:
        async with notify_factory(**settings_for(gateway, 0.3)) as notify:
            r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
            assert r.status_code == 200  # notify knows the device
            monkeypatch.setattr(store, "touch_device", revoked_meanwhile)
            if channel == "webpush":
                r = await http.post(f"{notify}/v1/devices/me/webpush", headers=member.bearer,
                                    json={"subscription": browser.subscription})
            else:
                r = await http.post(f"{notify}/v1/devices/me/sms", headers=member.bearer,
                                    json={"phone": PHONE})
            assert await store.team_devices(redis, "t1") == []
            assert await store.get_device(redis, member.device_id) is None

            order = an_order("t1")
            await issue(broker, order)
            record = await poll_until(lambda: _fallback_done(http, notify, order.order_id),
                                      "every fallback step tried")
            assert [(a["channel"], a["outcome"]) for a in record["attempts"]] == [
                ("websocket", "no_socket"), ("webpush", "no_recipient"),
                ("sms", "no_recipient")]
            assert gateway.received == []
            assert r.status_code == 401, r.text  # the registration was refused
    finally:
        await redis.aclose()


async def _forgotten(redis: Redis, device_id: str) -> bool:
    return await store.get_device(redis, device_id) is None


async def _fallback_done(http: httpx.AsyncClient, notify: str,
                         order_id: str) -> dict[str, Any] | None:
    record = await _stored(http, notify, order_id)
    return record if record is not None and len(record["attempts"]) >= 3 else None


async def test_an_order_raised_to_p1_gets_its_sooner_deadline_on_the_phone_and_in_the_fallback(
        notify_factory: NotifyFactory, volunteers: Volunteers, gateway: Gateway,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # A P4 (300 s to acknowledge) raised to P1 by the command room: dispatch gives the
    # unacknowledged offer 30 s from its issue and says so in order.amended; the phone shows
    # it, and the fallback (which would have waited 30 s) comes before that deadline too.

    member = volunteers.enrol("t1")
    settings = {k: v for k, v in settings_for(gateway, 0).items() if k != "fallback_after_s"}
    async with notify_factory(**settings) as notify:
        await register(http, notify, member, Browser(f"{gateway.url}/push/raised"))
        issued = utcnow()
        order = an_order("t1", priority="P4", occurred_at=issued,
                         ack_by=issued + timedelta(seconds=300))
        async with device(notify, member) as phone:
            await issue(broker, order)
            await phone.next_of("order")  # shown, not confirmed: the fallback stays due
            record = await poll_until(lambda: _stored(http, notify, order.order_id),
                                      "the order stored")
            assert record["fallback_due_at"] - issued.timestamp() == pytest.approx(30, abs=1.5)
            sooner = issued + timedelta(seconds=30)
            await broker.publish(OrderAmended(
                district=order.district, order_id=order.order_id,
                incident_id=order.incident_id, team_id=order.team_id, priority="P1",
                flags=("in_progress",), ack_by=sooner), stream=streams.ORDER_AMENDED.name)
            update = await phone.next_of("order_update")
            assert (update["priority"], update["ack_by"]) == ("P1", sooner.isoformat())

            async def brought_forward() -> dict[str, Any] | None:
                record = await _stored(http, notify, order.order_id)
                due = record and record["fallback_due_at"]
                return record if due and due < issued.timestamp() + 29 else None

            record = await poll_until(brought_forward, "the fallback brought forward")
            assert record["fallback_due_at"] < sooner.timestamp()


@dataclass
class AmendedWhileSending:
    """A fallback channel; while its first message is under way (a slow push service),
    the command room raises the order and dispatch's order.amended brings its deadline in."""

    name: str
    sent: list[tuple[str, float]]
    amend: Any = None  # async callable, run once during the first send
    contact_field: str = "phone"
    _done: list[bool] = field(default_factory=list)

    def reaches(self, device: store.DeviceRecord) -> bool:
        return device.phone is not None

    async def send(self, order: Any, device: store.DeviceRecord) -> Outcome:
        self.sent.append((self.name, time.time()))
        if self.amend is not None and not self._done:
            self._done.append(True)
            await self.amend()
        return Outcome("sent")


async def test_a_deadline_brought_forward_while_a_step_is_sent_holds_for_the_next_step(
        clean_redis: str) -> None:
    # An order with 6 s to acknowledge, Web Push then SMS (at 2 s and 4 s). While the Web
    # Push goes out, order.amended brings the deadline to 1.5 s from then: the step in
    # progress must schedule the SMS from the amended deadline, not the one it read first.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    sent: list[tuple[str, float]] = []
    settings = Settings(redis_url=clean_redis, admin_token=ADMIN_TOKEN, fallback_poll_s=0.05)
    assert settings.fallback_after_s == 30.0
    orders = Orders(redis=redis, stream_redis=redis, broker=None, hub=None,  # type: ignore[arg-type]
                    settings=settings, fallback_steps=2)
    await store.touch_device(redis, device_id="dev-1", member_id="m1", team_id="t9",
                             agency_kind="police", district="d1")
    await store.set_device_channel(redis, "dev-1", field="phone", value="+8613877009999")
    issued = utcnow()
    order = an_order("t9", occurred_at=issued, priority="P4",
                     ack_by=issued + timedelta(seconds=6))
    new_deadline: list[float] = []

    async def amend() -> None:
        sooner = utcnow() + timedelta(seconds=1.5)
        new_deadline.append(sooner.timestamp())
        await orders.amend(OrderAmended(
            district=order.district, order_id=order.order_id, incident_id=order.incident_id,
            team_id=order.team_id, priority="P1", flags=order.flags, ack_by=sooner))

    chain = [AmendedWhileSending("webpush", sent, amend=amend),
             AmendedWhileSending("sms", sent)]
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=30.0,
                            fallback_steps=2, ttl_s=600)
    timers = FallbackTimers(redis=redis, orders=orders, chain=chain,  # type: ignore[arg-type]
                            settings=settings)
    task = asyncio.create_task(timers.run())
    try:
        await poll_until(lambda: len(sent) >= 2, "both fallback steps", 10)
    finally:
        await stop_task(task)
        await redis.aclose()
    (first, _), (second, second_at) = sent
    assert (first, second) == ("webpush", "sms")
    # the amendment itself was applied (the stored order has the sooner deadline)
    assert new_deadline
    assert second_at < new_deadline[0], (
        f"SMS sent {second_at - new_deadline[0]:.2f} s after the amended ack_by")
