"""Fallback when the outside world misbehaves: an SMS gateway or push service that refuses,
asks to wait, times out or hangs, a replica killed in the middle of a step, a device changed
while a step is sent. No message sent twice (the gateway gets one reference per order and
phone to deduplicate on), none lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.notify import store
from services.notify.channels.sms import SmsChannel
from services.notify.channels.webpush import WebPushChannel, load_vapid
from services.notify.config import Settings
from services.notify.domain.fallback import MAX_TRIES
from services.notify.domain.responses import Decision
from services.notify.fallback import FallbackTimers
from shared.events import OrderResponded, utcnow
from shared.runtime import stop_task
from tests.helpers import poll_until

from .conftest import ADMIN, ADMIN_TOKEN, NotifyFactory, Volunteers, an_order, issue, serving
from .test_fallback import Browser, vapid_key


@dataclass
class Reply:
    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    hold: asyncio.Event | None = None  # answer only once set (a hanging service)
    before: Callable[[], Awaitable[None]] | None = None  # what happens meanwhile


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Outside:
    """An SMS gateway or push service on loopback: answers each path's requests from its
    script in turn (then 201), and records every request as it arrives."""

    url: str = ""
    received: list[Seen] = field(default_factory=list)
    script: dict[str, list[Reply]] = field(default_factory=dict)
    always: dict[str, Reply] = field(default_factory=dict)  # path -> every request's reply
    holds: list[asyncio.Event] = field(default_factory=list)

    def at(self, path: str) -> list[Seen]:
        return [r for r in self.received if r.path == path]

    def reply(self, path: str, *replies: Reply) -> None:
        self.script.setdefault(path, []).extend(replies)
        self.holds += [r.hold for r in replies if r.hold is not None]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{path:path}")
        async def answer(path: str, request: Request) -> Response:
            path = "/" + path
            self.received.append(Seen(path, dict(request.headers), await request.body()))
            queue = self.script.get(path) or []
            reply = queue.pop(0) if queue else self.always.get(path, Reply())
            if reply.before is not None:
                await reply.before()
            if reply.hold is not None:
                await reply.hold.wait()
            return Response(status_code=reply.status, headers=reply.headers)

        return app


@pytest.fixture
async def outside() -> AsyncIterator[Outside]:
    standin = Outside()
    async with serving(standin.app()) as url:
        standin.url = url
        try:
            yield standin
        finally:
            for hold in standin.holds:  # let held requests end, so the server stops
                hold.set()


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


async def a_phone(redis: Redis, device_id: str, team_id: str, phone: str) -> None:
    await store.touch_device(redis, device_id=device_id, member_id=f"m-{device_id}",
                             team_id=team_id, agency_kind="police", district="d1")
    await store.set_device_channel(redis, device_id, field="phone", value=phone)


@asynccontextmanager
async def sms_replica(redis_url: str, redis: Redis, gateway: Outside, *, lease_s: float = 30.0,
                      timeout_s: float = 10.0, after_s: float = 0.2,
                      tz: tzinfo = UTC) -> AsyncIterator[None]:
    """One notify replica's fallback loop, the real SMS adapter its only channel."""
    settings = Settings(redis_url=redis_url, admin_token=ADMIN_TOKEN, fallback_lease_s=lease_s,
                        fallback_after_s=after_s, fallback_poll_s=0.05,
                        channel_timeout_s=timeout_s)
    async with httpx.AsyncClient() as client:
        sms = SmsChannel(client, url=f"{gateway.url}/sms", token="gw-secret",
                         timeout_s=timeout_s, tz=tz)
        timers = FallbackTimers(redis=redis, orders=None, chain=[sms],  # type: ignore[arg-type]
                                settings=settings)
        task = asyncio.create_task(timers.run())
        try:
            yield
        finally:
            await stop_task(task)


async def an_sms_order(redis: Redis, team_id: str, *, ack_in_s: float | None = 60.0,
                       steps: int = 1) -> str:
    issued = utcnow()
    order = an_order(team_id, occurred_at=issued,
                     ack_by=issued + timedelta(seconds=ack_in_s) if ack_in_s else None)
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.0,
                            fallback_steps=steps, ttl_s=600)
    return order.order_id


async def attempts(redis: Redis, order_id: str) -> list[tuple[str, str, str | None]]:
    found = (await store.deliveries(redis, order_id))["attempts"]
    return [(a["channel"], a["outcome"], a.get("detail")) for a in found
            if a["channel"] != "websocket"]


@pytest.mark.parametrize("refusal", [
    Reply(503), Reply(429, {"Retry-After": "1"}), Reply(502)])
async def test_an_sms_the_gateway_refused_for_a_while_is_sent_again_before_the_deadline(
        clean_redis: str, redis: Redis, outside: Outside, refusal: Reply) -> None:
    # The gateway is restarting or throttling when the order's only fallback message is
    # due: the member of a team whose page is closed must still get it while the order
    # can be acknowledged, not never.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    outside.reply("/sms", refusal)
    order_id = await an_sms_order(redis, "t1")
    async with sms_replica(clean_redis, redis, outside):
        sent = await poll_until(lambda: len(outside.at("/sms")) >= 2 and outside.at("/sms"),
                                "the SMS sent again", 10)
        await poll_until(lambda: _chain_done(redis, order_id), "the chain done")
    first, second = sent[0].json(), sent[1].json()
    assert first == second  # the same message, the same reference to deduplicate on
    assert first["reference"] == f"{order_id}:t1-dev"
    assert await attempts(redis, order_id) == [
        ("sms", "failed", f"HTTP {refusal.status}"), ("sms", "sent", "HTTP 201")]


async def test_a_gateways_retry_after_is_waited_for(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    outside.reply("/sms", Reply(429, {"Retry-After": "20"}))
    order_id = await an_sms_order(redis, "t1", ack_in_s=120)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/sms"), "the first SMS")
        record = await poll_until(lambda: _attempt_recorded(redis, order_id), "the refusal")

        due = await poll_until(
            lambda: store.fallback_due_at(redis, store.retry_timer(order_id, 0)),
            "the retry scheduled", 3)
    assert due - record >= 19, f"retried {due - record:.1f} s after a Retry-After of 20 s"
    assert len(outside.at("/sms")) == 1


async def test_a_gateway_down_for_a_while_is_waited_out_while_the_order_can_be_answered(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # Down for minutes (here: its first eight answers), the deadline further off still.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    outside.reply("/sms", *[Reply(503) for _ in range(8)])
    order_id = await an_sms_order(redis, "t1", ack_in_s=120)
    async with sms_replica(clean_redis, redis, outside, after_s=0.05):
        await poll_until(lambda: _chain_done(redis, order_id), "the chain done", 20)
    assert len(outside.at("/sms")) == 9
    assert (await attempts(redis, order_id))[-1] == ("sms", "sent", "HTTP 201")


async def test_an_sms_whose_answer_timed_out_is_sent_again_with_the_same_reference(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # The gateway took the message and did not answer in time: did the member get it?
    # notify cannot know; it sends it again with the same reference (and Idempotency-Key),
    # which the gateway deduplicates on.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    outside.reply("/sms", Reply(201, hold=asyncio.Event()))
    order_id = await an_sms_order(redis, "t1")
    async with sms_replica(clean_redis, redis, outside, timeout_s=0.5):
        sent = await poll_until(lambda: len(outside.at("/sms")) >= 2 and outside.at("/sms"),
                                "the SMS sent again", 10)
        await poll_until(lambda: _chain_done(redis, order_id), "the chain done")
    assert sent[0].json()["reference"] == sent[1].json()["reference"] == f"{order_id}:t1-dev"
    assert sent[0].headers["idempotency-key"] == sent[1].headers["idempotency-key"] == (
        f"{order_id}:t1-dev")
    assert [a[:2] for a in await attempts(redis, order_id)] == [
        ("sms", "failed"), ("sms", "sent")]


async def test_a_message_the_gateway_refuses_as_wrong_is_not_sent_again(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # 400: the same request would be refused again; a retry loop would only hammer it.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    outside.always["/sms"] = Reply(400)
    order_id = await an_sms_order(redis, "t1", ack_in_s=None)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: _chain_done(redis, order_id), "the chain done")
    assert len(outside.at("/sms")) == 1
    assert await attempts(redis, order_id) == [("sms", "failed", "HTTP 400")]


async def test_a_gateway_down_for_good_is_tried_a_bounded_number_of_times(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # a hand-over (no deadline): retries end, the timer with them
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    outside.always["/sms"] = Reply(503)
    order_id = await an_sms_order(redis, "t1", ack_in_s=None)
    async with sms_replica(clean_redis, redis, outside, after_s=0.0):
        await poll_until(lambda: _chain_done(redis, order_id), "the chain given up", 20)
    tries = len(outside.at("/sms"))
    assert tries == MAX_TRIES
    assert await attempts(redis, order_id) == [("sms", "failed", "HTTP 503")] * tries


async def test_a_replica_killed_while_sending_an_sms_leaves_it_to_another(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # Killed after marking the step sent to the phone, before the gateway took it: the
    # replica that takes the timer over must send it, not take it for sent.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    arrived = asyncio.Event()

    async def note() -> None:
        arrived.set()

    outside.reply("/sms", Reply(201, hold=asyncio.Event(), before=note))
    order_id = await an_sms_order(redis, "t1")
    async with sms_replica(clean_redis, redis, outside, lease_s=0.5, timeout_s=3.0):
        await asyncio.wait_for(arrived.wait(), 10)
    # replica A is gone (its request never answered); replica B takes the timer over
    async with sms_replica(clean_redis, redis, outside, lease_s=0.5, timeout_s=3.0):
        sent = await poll_until(lambda: len(outside.at("/sms")) >= 2 and outside.at("/sms"),
                                "the SMS sent by the other replica", 15)
        await poll_until(lambda: _chain_done(redis, order_id), "the chain done")
    assert sent[0].json()["reference"] == sent[1].json()["reference"]
    assert ("sms", "sent", "HTTP 201") in await attempts(redis, order_id)


async def test_a_device_revoked_or_renumbered_while_a_step_is_sent(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # A slow push service, three phones: while the Web Push step is under way, the second
    # device is revoked (a lost phone) and the third's member gives a new number. The
    # revoked phone gets nothing of the order, the new number gets it, the old number not.
    for i, phone in enumerate(("+8613800000000", "+8613800000001", "+8613800000002")):
        await a_phone(redis, f"t1-dev{i}", "t1", phone)
    await a_subscription(redis, "t1-dev0", f"{outside.url}/push")

    async def meanwhile() -> None:
        await store.forget_device(redis, "t1-dev1")
        await store.set_device_channel(redis, "t1-dev2", field="phone", value="+8613899999999")

    outside.reply("/push", Reply(201, before=meanwhile))
    order_id = await an_sms_order(redis, "t1", steps=2)
    async with push_and_sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: _chain_done(redis, order_id, steps=2), "the chain done")
    assert sorted(r.json()["to"] for r in outside.at("/sms")) == [
        "+8613800000000", "+8613899999999"]


async def test_a_device_moved_to_another_team_while_a_step_is_sent_gets_nothing(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    await a_phone(redis, "t1-dev0", "t1", "+8613800000000")
    await a_phone(redis, "t1-dev1", "t1", "+8613800000001")
    await a_subscription(redis, "t1-dev0", f"{outside.url}/push")

    async def moved() -> None:
        await store.move_device(redis, "t1-dev1", team_id="t2", moved_at=utcnow())

    outside.reply("/push", Reply(201, before=moved))
    order_id = await an_sms_order(redis, "t1", steps=2)
    async with push_and_sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: _chain_done(redis, order_id, steps=2), "the chain done")
    assert [r.json()["to"] for r in outside.at("/sms")] == ["+8613800000000"]


async def a_subscription(redis: Redis, device_id: str, endpoint: str) -> None:
    await store.set_device_channel(redis, device_id, field="webpush",
                                   value=json.dumps(Browser(endpoint).subscription))


@asynccontextmanager
async def push_and_sms_replica(redis_url: str, redis: Redis, outside: Outside, *,
                               timeout_s: float = 10.0) -> AsyncIterator[None]:
    """One notify replica's fallback loop: the real Web Push, then the real SMS adapter."""
    settings = Settings(redis_url=redis_url, admin_token=ADMIN_TOKEN, fallback_after_s=0.2,
                        fallback_poll_s=0.05, channel_timeout_s=timeout_s)
    async with httpx.AsyncClient() as client:
        push = WebPushChannel(client, vapid=load_vapid(vapid_key()), subject="mailto:a@b.test",
                              ttl_s=60, timeout_s=timeout_s, allow_private=True)
        sms = SmsChannel(client, url=f"{outside.url}/sms", token=None, timeout_s=timeout_s)
        timers = FallbackTimers(redis=redis, orders=None,  # type: ignore[arg-type]
                                chain=[push, sms], settings=settings)
        task = asyncio.create_task(timers.run())
        try:
            yield
        finally:
            await stop_task(task)


async def _chain_done(redis: Redis, order_id: str, *, steps: int = 1) -> bool:
    record = await store.get_order(redis, order_id)
    return (record is not None and record.fallback_step >= steps
            and await store.fallback_due_at(redis, order_id) is None
            and await store.fallback_due_at(redis, store.retry_timer(order_id, 0)) is None)


async def _attempt_recorded(redis: Redis, order_id: str) -> float | None:
    found = (await store.deliveries(redis, order_id))["attempts"]
    return datetime.fromisoformat(found[-1]["at"]).timestamp() if found else None


# --- through notify itself -------------------------------------------------------------------


def settings_for(outside: Outside, **over: Any) -> dict[str, Any]:
    return {"vapid_private_key": vapid_key(), "sms_gateway_url": f"{outside.url}/sms",
            "fallback_after_s": 0.2, "fallback_poll_s": 0.05,
            "webpush_allow_private_endpoints": True, **over}


async def test_a_hanging_sms_gateway_does_not_hold_up_other_teams_web_push(
        notify_factory: NotifyFactory, volunteers: Volunteers, outside: Outside,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # The SMS gateway stops answering (connections held open) while team 1's SMS is due;
    # team 2's P1 is offered meanwhile, its page closed: its Web Push must go now, not
    # after team 1's SMS has timed out (CHANNEL_TIMEOUT_S, per message in line: past a
    # P1's 30 s when a few are queued).
    one, two = volunteers.enrol("t1"), volunteers.enrol("t2")
    browser = Browser(f"{outside.url}/push/two")
    outside.always["/sms"] = Reply(201, hold=asyncio.Event())
    outside.holds.append(outside.always["/sms"].hold)  # type: ignore[arg-type]
    async with notify_factory(**settings_for(outside, channel_timeout_s=30.0)) as notify:
        r = await http.post(f"{notify}/v1/devices/me/sms", headers=one.bearer,
                            json={"phone": "+8613800000001"})
        assert r.status_code == 200, r.text
        r = await http.post(f"{notify}/v1/devices/me/webpush", headers=two.bearer,
                            json={"subscription": browser.subscription})
        assert r.status_code == 200, r.text
        await issue(broker, an_order("t1"))
        await poll_until(lambda: outside.at("/sms"), "team 1's SMS under way")
        issued = utcnow()
        order = an_order("t2", priority="P1", occurred_at=issued,
                         ack_by=issued + timedelta(seconds=30))
        await issue(broker, order)
        pushes = await poll_until(lambda: outside.at("/push/two"), "team 2's Web Push", 5)
        assert browser.read(pushes[0].body)["order_id"] == order.order_id


async def test_a_subscription_renewed_while_the_old_one_is_reported_gone_is_kept(
        notify_factory: NotifyFactory, volunteers: Volunteers, outside: Outside,
        broker: RedisBroker, http: httpx.AsyncClient, clean_redis: str) -> None:
    # The browser renews its push subscription (pushsubscriptionchange) just as the push
    # service answers 410 for the old one: the new one must stay, or the member's phone
    # gets no Web Push for any later order.
    member = volunteers.enrol("t1")
    old, new = Browser(f"{outside.url}/push/old"), Browser(f"{outside.url}/push/new")
    settings = settings_for(outside)
    settings.pop("sms_gateway_url")
    async with notify_factory(**settings) as notify:

        async def renewed() -> None:
            r = await http.post(f"{notify}/v1/devices/me/webpush", headers=member.bearer,
                                json={"subscription": new.subscription})
            assert r.status_code == 200, r.text

        r = await http.post(f"{notify}/v1/devices/me/webpush", headers=member.bearer,
                            json={"subscription": old.subscription})
        assert r.status_code == 200, r.text
        outside.reply("/push/old", Reply(410, before=renewed))
        order = an_order("t1")
        await issue(broker, order)
        await poll_until(lambda: _deliveries_with(http, notify, order.order_id, "gone"),
                         "the push reported gone")
    client = Redis.from_url(clean_redis, decode_responses=True)
    try:
        device = await store.get_device(client, member.device_id)
    finally:
        await client.aclose()
    assert device is not None and device.webpush is not None
    assert device.webpush["endpoint"] == new.subscription["endpoint"]


async def _deliveries_with(http: httpx.AsyncClient, notify: str, order_id: str,
                           outcome: str) -> bool:
    r = await http.get(f"{notify}/v1/orders/{order_id}/deliveries", headers=ADMIN)
    return r.status_code == 200 and any(a["outcome"] == outcome for a in r.json()["attempts"])



async def test_a_push_only_phone_whose_push_service_failed_is_pushed_again(
        notify_factory: NotifyFactory, volunteers: Volunteers, outside: Outside,
        broker: RedisBroker, http: httpx.AsyncClient) -> None:
    # A volunteer gave no phone number: Web Push is the only channel that reaches them.
    # The push service throttles (429) the first push; the SMS step finds nobody to send
    # to. The push must be sent again, not the order left unannounced to them.
    member = volunteers.enrol("t1", agency_kind="volunteer")
    browser = Browser(f"{outside.url}/push/only")
    outside.reply("/push/only", Reply(429, {"Retry-After": "1"}))
    async with notify_factory(**settings_for(outside)) as notify:
        r = await http.post(f"{notify}/v1/devices/me/webpush", headers=member.bearer,
                            json={"subscription": browser.subscription})
        assert r.status_code == 200, r.text
        issued = utcnow()
        order = an_order("t1", agency_kind="volunteer", occurred_at=issued,
                         ack_by=issued + timedelta(seconds=60))
        await issue(broker, order)
        pushes = await poll_until(lambda: len(outside.at("/push/only")) >= 2
                                  and outside.at("/push/only"), "the push sent again", 10)
        assert browser.read(pushes[1].body)["order_id"] == order.order_id
        assert outside.at("/sms") == []


async def test_a_push_service_that_never_answers_leaves_a_p1_time_for_its_sms(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # The station's network drops packets to the push service (FCM, behind a firewall):
    # each Web Push waits CHANNEL_TIMEOUT_S for nothing. A patrol group of four, Web Push
    # and SMS on every phone, a P1: sent one after the other, the pushes took the whole
    # deadline and the SMS step found it passed; none of the four phones was texted.
    hang = asyncio.Event()
    outside.always["/push"] = Reply(201, hold=hang)
    outside.holds.append(hang)
    for i in range(4):
        await a_phone(redis, f"t1-dev{i}", "t1", f"+861380000000{i}")
        await a_subscription(redis, f"t1-dev{i}", f"{outside.url}/push?browser={i}")
    issued = utcnow()
    order = an_order("t1", priority="P1", occurred_at=issued,
                     ack_by=issued + timedelta(seconds=3))
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.0,
                            fallback_steps=2, ttl_s=600)
    async with push_and_sms_replica(clean_redis, redis, outside, timeout_s=1.0):
        await poll_until(lambda: _sms_step_over(redis, order.order_id), "the SMS step", 10)
    assert sorted(r.json()["to"] for r in outside.at("/sms")) == [
        f"+861380000000{i}" for i in range(4)]
    assert len(outside.at("/push")) == 4


async def _sms_step_over(redis: Redis, order_id: str) -> bool:
    # the chain's timer gone after the push step: the SMS sent, or found too late
    record = await store.get_order(redis, order_id)
    return (record is not None and record.fallback_step >= 1
            and await store.fallback_due_at(redis, order_id) is None)


async def test_a_withdrawal_sms_the_gateway_refused_for_a_while_is_sent_again(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # The gateway is restarting when the order texted to the member is withdrawn: the
    # 'do not go' must still reach the phone, not be given up at the first 503.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    outside.reply("/sms", Reply(201), Reply(503), Reply(429, {"Retry-After": "1"}))
    order_id = await an_sms_order(redis, "t1", ack_in_s=None)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: _chain_done(redis, order_id), "the order's SMS")
        await store.withdraw_order(redis, order_id=order_id, team_id="t1", incident_id="inc",
                                   district="d1", reason="closed", ttl_s=600, fan_out="{}")
        texts = await poll_until(lambda: len(outside.at("/sms")) >= 4 and outside.at("/sms"),
                                 "the withdrawal's SMS sent again", 10)
        await poll_until(lambda: _no_timer(redis, store.withdrawal_timer(order_id)),
                         "the take-back done")
    withdrawals = [t.json() for t in texts[1:]]
    assert len(withdrawals) == 3 and all(w["kind"] == "withdrawn" and "请勿前往" in w["text"]
                                         for w in withdrawals)
    assert len({w["reference"] for w in withdrawals}) == 1  # the gateway may deduplicate
    assert [a[:2] for a in await attempts(redis, order_id)] == [
        ("sms", "sent"), ("sms", "withdrawal_failed"), ("sms", "withdrawal_failed"),
        ("sms", "withdrawal_sent")]


async def test_a_replica_stopped_while_sending_the_withdrawals_sms_leaves_it_to_another(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # Stopped (a deploy) while the gateway held the 'do not go' text: the replica that takes
    # the timer over must send it, not take the stopped sender for one still at it and drop
    # it.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    arrived = asyncio.Event()

    async def note() -> None:
        arrived.set()

    outside.reply("/sms", Reply(201), Reply(201, hold=asyncio.Event(), before=note))
    order_id = await an_sms_order(redis, "t1", ack_in_s=None)
    async with sms_replica(clean_redis, redis, outside, timeout_s=1.0):
        await poll_until(lambda: _chain_done(redis, order_id), "the order's SMS")
        await store.withdraw_order(redis, order_id=order_id, team_id="t1", incident_id="inc",
                                   district="d1", reason="closed", ttl_s=600, fan_out="{}")
        await asyncio.wait_for(arrived.wait(), 10)
    # stopped mid-send, the sender marked it failed and maybe gone (as the order's own
    # message is): the next replica sends it at once, not after the stopped sender's time
    marks = await redis.hgetall(f"notify:order:{order_id}:fallback_sent")
    [mark] = [json.loads(v) for k, v in marks.items() if k.startswith("withdrawn")]
    assert mark["state"] == "failed" and mark["went"] == 1, mark
    async with sms_replica(clean_redis, redis, outside, timeout_s=1.0):
        await poll_until(lambda: _no_timer(redis, store.withdrawal_timer(order_id)),
                         "the take-back done", 15)
    texts = [t.json() for t in outside.at("/sms")]
    assert [t["kind"] for t in texts] == ["order", "withdrawn", "withdrawn"]
    assert texts[1]["reference"] == texts[2]["reference"]  # the gateway may deduplicate
    assert ("sms", "withdrawal_sent") in [a[:2] for a in await attempts(redis, order_id)]


@pytest.mark.parametrize("ended_by", ["withdrawal", "decline"])
async def test_an_orders_message_begun_after_its_withdrawal_is_not_sent(
        redis: Redis, ended_by: str) -> None:
    # A fallback step read the order live, then the order was withdrawn (or a teammate
    # declined it: dispatch gives it to another team) before the step marked its message as
    # being sent: the withdrawal found no message gone and set no timer to take one back.
    # Sent after all, the member got the order and never heard it was called off (notify's
    # state machine: a timer firing and a withdrawal at once).
    order_id = await an_sms_order(redis, "t1", ack_in_s=None)
    if ended_by == "withdrawal":
        await store.withdraw_order(redis, order_id=order_id, team_id="t1", incident_id="inc",
                                   district="d1", reason="closed", ttl_s=600, fan_out="{}")
    else:
        await decline(redis, order_id)
    now = utcnow().timestamp()
    mark = await store.begin_fallback_send(redis, order_id, step=0, device_id="t1-dev",
                                           now=now, till=now + 10, ttl_s=600)
    assert mark.state == "done", mark
    # a take-back of the order's messages still goes
    back = await store.begin_fallback_send(redis, order_id, step="withdrawn0",
                                           device_id="t1-dev", now=now, till=now + 10,
                                           ttl_s=600)
    assert back.state == "go", back


async def decline(redis: Redis, order_id: str) -> None:
    """A member of team t1 declines the order (as Orders.respond does)."""
    event = OrderResponded(district="d1", order_id=order_id, incident_id="inc", team_id="t1",
                           member_id="m1", device_id="t1-other", response="declined",
                           note="still at the last call")
    done = await store.apply_response(
        redis, order_id, decide=lambda _: (Decision(state="declined", emit=True), event),
        fan_out=lambda _: "{}", response="declined", member_id="m1", device_id="t1-other",
        ttl_s=600)
    assert done is not None and done.event_id == event.event_id


async def _no_timer(redis: Redis, timer: str) -> bool:
    return await store.fallback_due_at(redis, timer) is None


async def test_the_gateway_gets_each_part_of_the_message_for_a_template(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # Mainland carriers (and the SMS services in front of them) send only texts made from a
    # template filed with them: the station's relay fills its template from these fields,
    # not from our text (its language and the category's name in it come too).
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    issued = utcnow()
    order = an_order("t1", priority="P1", category="violence", flags=("weapon", "own_tag"),
                     occurred_at=issued, ack_by=issued + timedelta(seconds=60))
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.0,
                            fallback_steps=1, ttl_s=600)
    async with sms_replica(clean_redis, redis, outside, tz=ZoneInfo("Asia/Shanghai")):
        await poll_until(lambda: _chain_done(redis, order.order_id), "the order's SMS")
        await store.withdraw_order(redis, order_id=order.order_id, team_id="t1",
                                   incident_id=order.incident_id, district="d1",
                                   reason="closed", ttl_s=600, fan_out="{}")
        await poll_until(lambda: outside.at("/sms")[1:], "the withdrawal's SMS")
    sent, withdrawn = (r.json() for r in outside.at("/sms"))
    assert order.ack_by is not None
    local = order.ack_by.astimezone(ZoneInfo("Asia/Shanghai")).replace(microsecond=0)
    assert {k: v for k, v in sent.items() if k not in ("text", "reference")} == {
        "to": "+8613800000001", "kind": "order", "order_id": order.order_id,
        "priority": "P1", "category": "violence", "category_name": "打架斗殴",
        "flags": ["weapon"], "place": "Minzu Ave 88", "ack_by": local.isoformat(),
        "language": "zh", "order_kind": "dispatch", "filing_due": None,
        "escort": None, "page_url": None}  # no NOTIFY_PUBLIC_URL here: no page to link
    assert sent["ack_by"].endswith("+08:00")
    assert withdrawn["kind"] == "withdrawn" and withdrawn["place"] == "Minzu Ave 88"
    assert withdrawn["order_id"] == order.order_id


async def test_a_hanging_push_service_does_not_hold_up_the_withdrawals_sms(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # The order went to two phones by Web Push and SMS; it is withdrawn (a knife reported:
    # volunteers off it) as the push service stops answering. The 'do not go' texts must
    # not wait behind each push's CHANNEL_TIMEOUT_S, the volunteers walking meanwhile.
    for i in range(2):
        await a_phone(redis, f"t1-dev{i}", "t1", f"+861380000000{i}")
        await a_subscription(redis, f"t1-dev{i}", f"{outside.url}/push?browser={i}")
    hang = asyncio.Event()
    outside.reply("/push", Reply(201), Reply(201), Reply(201, hold=hang), Reply(201, hold=hang))
    order_id = await an_sms_order(redis, "t1", steps=2)
    async with push_and_sms_replica(clean_redis, redis, outside, timeout_s=30.0):
        await poll_until(lambda: _chain_done(redis, order_id, steps=2), "both steps sent")
        await store.withdraw_order(redis, order_id=order_id, team_id="t1", incident_id="inc",
                                   district="d1", reason="reassigned", ttl_s=600, fan_out="{}")
        texts = await poll_until(lambda: len(outside.at("/sms")) >= 4 and outside.at("/sms"),
                                 "the withdrawal's texts while the pushes hang", 10)
        hang.set()
    assert sorted(t.json()["to"] for t in texts if t.json()["kind"] == "withdrawn") == [
        "+8613800000000", "+8613800000001"]


async def test_a_web_push_that_got_no_answer_is_taken_back_when_the_order_is_withdrawn(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # The push service took the order's push and never answered (a firewall dropping its
    # replies): the phone may show the order when it comes online. The phone has SMS too,
    # so the push is not tried again; once the order is withdrawn, its push must still be
    # taken back (the same Topic replaces it), not taken for one that never went.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    await a_subscription(redis, "t1-dev", f"{outside.url}/push")
    outside.reply("/push", Reply(201, hold=asyncio.Event()))
    order_id = await an_sms_order(redis, "t1", steps=2)
    async with push_and_sms_replica(clean_redis, redis, outside, timeout_s=0.5):
        await poll_until(lambda: _chain_done(redis, order_id, steps=2), "both steps sent")
        await store.withdraw_order(redis, order_id=order_id, team_id="t1", incident_id="inc",
                                   district="d1", reason="reassigned", ttl_s=600, fan_out="{}")
        await poll_until(lambda: _no_timer(redis, store.withdrawal_timer(order_id)),
                         "the take-back done")
    assert len(outside.at("/push")) == 2
    tried = [a[:2] for a in await attempts(redis, order_id)]
    assert tried[:2] == [("webpush", "failed"), ("sms", "sent")]
    assert sorted(tried[2:]) == [("sms", "withdrawal_sent"), ("webpush", "withdrawal_sent")]



async def test_a_message_refused_outright_is_not_taken_back(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # The gateway answered 503 each time it was asked to text the order: no text went. The
    # withdrawal must not text the member 'do not go' about an order they never got.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    outside.always["/sms"] = Reply(503)
    order_id = await an_sms_order(redis, "t1", ack_in_s=None)
    async with sms_replica(clean_redis, redis, outside, after_s=0.0):
        await poll_until(lambda: len(outside.at("/sms")) >= 2, "the SMS tried again")
        await store.withdraw_order(redis, order_id=order_id, team_id="t1", incident_id="inc",
                                   district="d1", reason="closed", ttl_s=600, fan_out="{}")
        await poll_until(lambda: _no_timer(redis, store.withdrawal_timer(order_id)),
                         "the take-back done")
        await poll_until(lambda: _no_timer(redis, store.retry_timer(order_id, 0)),
                         "the retries over")
    assert {r.json()["kind"] for r in outside.at("/sms")} == {"order"}
