"""An order raised by the command room after its SMS or Web Push went: the phone that has
only that message (no data, its page closed) is sent the order as it stands now, marked as
an update, once per amendment; a withdrawal's 'do not go' never overtakes it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from services.notify import store
from services.notify.config import Settings
from services.notify.service import Orders
from shared.events import OrderAmended, OrderIssued, utcnow
from tests.helpers import poll_until

from .conftest import ADMIN_TOKEN, an_order, serving
from .test_fallback import Browser
from .test_fallback_failures import (
    Outside,
    Reply,
    a_phone,
    attempts,
    push_and_sms_replica,
    sms_replica,
)
from .test_store import respond


@pytest.fixture
async def outside() -> AsyncIterator[Outside]:
    """The SMS gateway and push service on loopback (test_fallback_failures.Outside)."""
    standin = Outside()
    async with serving(standin.app()) as url:
        standin.url = url
        try:
            yield standin
        finally:
            for hold in standin.holds:
                hold.set()


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


def orders_of(redis_url: str, redis: Redis, *, steps: int = 1) -> Orders:
    """notify's operations, as its order.amended handler calls them."""
    settings = Settings(redis_url=redis_url, admin_token=ADMIN_TOKEN, fallback_after_s=0.2)
    return Orders(redis=redis, stream_redis=redis, broker=None, hub=None,  # type: ignore[arg-type]
                  settings=settings, fallback_steps=steps)


async def a_dispute(redis: Redis, team_id: str, *, steps: int = 1) -> OrderIssued:
    issued = utcnow()
    order = an_order(team_id, agency_kind="security", priority="P2", category="dispute",
                     flags=(), occurred_at=issued, ack_by=issued + timedelta(seconds=60))
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.0,
                            fallback_steps=steps, ttl_s=600)
    return order


def weapon(order: OrderIssued, *, at_s: float = 30.0) -> OrderAmended:
    """The caller rang back: a knife. P1, its deadline sooner."""
    assert order.ack_by is not None
    return OrderAmended(district=order.district, order_id=order.order_id,
                        incident_id=order.incident_id, team_id=order.team_id, priority="P1",
                        flags=("weapon",), ack_by=order.occurred_at + timedelta(seconds=at_s))


async def _no_timer(redis: Redis, timer: str) -> bool:
    return await store.fallback_due_at(redis, timer) is None


async def test_a_phone_texted_the_order_is_texted_again_when_it_is_raised(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # A security team's phone has no data: it got "P2 纠纷 at X, 请于…前接单" by SMS. The
    # command room adds "weapon": P1, a sooner deadline. The guards must hear it, not walk
    # into a knife fight thinking it a dispute, with the old deadline.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    order = await a_dispute(redis, "t1")
    orders = orders_of(clean_redis, redis)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        raised = weapon(order)
        await orders.amend(raised)
        texts = await poll_until(lambda: outside.at("/sms")[1:] and outside.at("/sms"),
                                 "the SMS saying the order was raised")
        # delivered again (at least once): nothing more goes
        await orders.amend(raised)
        await poll_until(lambda: _no_timer(redis, store.amendment_timer(order.order_id)),
                         "the amendment's sends done")
    first, update = (t.json() for t in texts[:2])
    assert len(outside.at("/sms")) == 2
    assert first["kind"] == "order" and first["priority"] == "P2"
    assert update["kind"] == "order_update"
    assert update["to"] == "+8613800000001"
    assert (update["priority"], update["flags"]) == ("P1", ["weapon"])
    assert raised.ack_by is not None
    assert update["ack_by"] == raised.ack_by.replace(microsecond=0).isoformat()
    # its own reference: the gateway would drop it as the first one again
    assert update["reference"] == f"{order.order_id}:t1-dev:v1" != first["reference"]
    assert texts[1].headers["idempotency-key"] == update["reference"]
    assert update["text"].startswith("【联防】指令更新：P1特急 纠纷（持械）：")
    assert ("sms", "update_sent") in [a[:2] for a in await attempts(redis, order.order_id)]


async def test_an_order_raised_twice_is_texted_once_per_amendment(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    order = await a_dispute(redis, "t1")
    orders = orders_of(clean_redis, redis)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        await orders.amend(weapon(order, at_s=40))
        await poll_until(lambda: outside.at("/sms")[1:], "the first update")
        injured = weapon(order, at_s=30).model_copy(update={
            "flags": ("weapon", "injury"), "occurred_at": utcnow() + timedelta(seconds=1)})
        await orders.amend(injured)
        await poll_until(lambda: outside.at("/sms")[2:], "the second update")
        await poll_until(lambda: _no_timer(redis, store.amendment_timer(order.order_id)),
                         "the amendment's sends done")
    refs = [t.json()["reference"] for t in outside.at("/sms")]
    assert refs == [f"{order.order_id}:t1-dev", f"{order.order_id}:t1-dev:v1",
                    f"{order.order_id}:t1-dev:v2"]
    assert outside.at("/sms")[2].json()["flags"] == ["weapon", "injury"]


async def test_an_amendment_that_raises_nothing_sends_nothing_again(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # lowered (P2 to P3): the phone's text asks for more than the order needs now; nobody is
    # texted again for that
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    order = await a_dispute(redis, "t1")
    orders = orders_of(clean_redis, redis)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        await orders.amend(OrderAmended(
            district=order.district, order_id=order.order_id, incident_id=order.incident_id,
            team_id=order.team_id, priority="P3", flags=(), ack_by=order.ack_by))
        record = await poll_until(lambda: store.get_order(redis, order.order_id), "stored")
        assert record.order is not None and record.order.priority == "P3"
    assert await _no_timer(redis, store.amendment_timer(order.order_id))
    assert len(outside.at("/sms")) == 1


async def test_an_order_raised_before_any_step_went_is_sent_as_it_stands(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # nothing went yet: the step itself sends the raised order, once
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    issued = utcnow()
    order = an_order("t1", agency_kind="security", flags=(), occurred_at=issued,
                     ack_by=issued + timedelta(seconds=60))
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.5,
                            fallback_steps=1, ttl_s=600)
    await orders_of(clean_redis, redis).amend(weapon(order))
    assert await _no_timer(redis, store.amendment_timer(order.order_id))
    async with sms_replica(clean_redis, redis, outside, after_s=0.0):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        await poll_until(lambda: _no_timer(redis, order.order_id), "the chain done")
    [text] = [t.json() for t in outside.at("/sms")]
    assert (text["kind"], text["priority"], text["reference"]) == (
        "order", "P1", f"{order.order_id}:t1-dev")


async def test_a_step_that_read_the_order_before_an_amendment_sends_it_as_it_stands(
        clean_redis: str, redis: Redis) -> None:
    # The step read the order (P2), then the amendment (P1) came before the step marked its
    # message: the mark is refused as stale, for the step to read the order again, rather
    # than the P2 going with no update to follow (no mark yet: the amendment set no timer).
    order = await a_dispute(redis, "t1")
    record = await store.get_order(redis, order.order_id)
    assert record is not None and record.version == 0
    await orders_of(clean_redis, redis).amend(weapon(order))
    now = time.time()
    mark = await store.begin_fallback_send(redis, order.order_id, step=0, device_id="d1",
                                           now=now, till=now + 5, ttl_s=600,
                                           version=record.version)
    assert mark.state == "stale"
    again = await store.get_order(redis, order.order_id)
    assert again is not None and again.version == 1
    mark = await store.begin_fallback_send(redis, order.order_id, step=0, device_id="d1",
                                           now=now, till=now + 5, ttl_s=600,
                                           version=again.version)
    assert mark.state == "go"


async def test_a_push_only_phone_is_pushed_the_raised_order(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # Web Push only (no number): its notification said P2 纠纷; the update replaces it (the
    # same Topic, the same tag on the page) and says it is one.
    browser = Browser(f"{outside.url}/push")
    await store.touch_device(redis, device_id="t1-dev", member_id="m1", team_id="t1",
                             agency_kind="security", district="d1")
    await store.set_device_channel(redis, "t1-dev", field="webpush",
                                   value=json.dumps(browser.subscription))
    order = await a_dispute(redis, "t1", steps=2)
    orders = orders_of(clean_redis, redis, steps=2)
    async with push_and_sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/push"), "the order's push")
        await orders.amend(weapon(order))
        await poll_until(lambda: outside.at("/push")[1:], "the push of the raised order")
        await poll_until(lambda: _no_timer(redis, store.amendment_timer(order.order_id)),
                         "the amendment's sends done")
    first, update = (browser.read(p.body) for p in outside.at("/push"))
    assert outside.at("/push")[0].headers["topic"] == outside.at("/push")[1].headers["topic"]
    assert "update" not in first and first["priority"] == "P2"
    assert (update["type"], update["update"], update["priority"], update["flags"]) == (
        "order", 1, "P1", ["weapon"])
    assert outside.at("/sms") == []


async def test_the_withdrawals_text_waits_for_an_update_being_sent(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # The update ("P1 持械") is at the gateway, not answered yet, when the order is withdrawn
    # (the weapon took the team off). The "do not go" must come after it, never before: a
    # member reading them in the other order would go.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    held = asyncio.Event()
    at_withdrawal: list[bool] = []

    async def note() -> None:
        at_withdrawal.append(held.is_set())

    outside.reply("/sms", Reply(201), Reply(201, hold=held), Reply(201, before=note))
    order = await a_dispute(redis, "t1")
    orders = orders_of(clean_redis, redis)
    async with sms_replica(clean_redis, redis, outside, timeout_s=2.0):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        await orders.amend(weapon(order))
        await poll_until(lambda: outside.at("/sms")[1:], "the update at the gateway")
        await store.withdraw_order(redis, order_id=order.order_id, team_id="t1",
                                   incident_id=order.incident_id, district="d1",
                                   reason="reassigned", ttl_s=600, fan_out="{}")

        async def looked_at() -> bool:
            # the take-back put off till the update's sender is done (its lease: 30 s), or
            # (what must not be) its text came while the update was held
            due = await store.fallback_due_at(redis, store.withdrawal_timer(order.order_id))
            return bool(at_withdrawal) or (
                due is not None and 0.5 < due - time.time() < 10)
        try:
            await poll_until(looked_at, "the take-back waiting for the update", 5)
        finally:
            held.set()
        await poll_until(lambda: at_withdrawal, "the withdrawal's SMS", 10)
    kinds = [t.json()["kind"] for t in outside.at("/sms")]
    assert kinds == ["order", "order_update", "withdrawn"]
    assert at_withdrawal == [True]


async def test_an_update_of_an_order_the_team_acknowledged_asks_for_no_acknowledgement(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # A guard's phone with no data was texted the dispute; a teammate acknowledged it on
    # the page. Then a knife: the update must say so, but not "请于…前接单" (answered: that
    # deadline is gone, and the guard would take the order as still nobody's).
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    order = await a_dispute(redis, "t1")
    orders = orders_of(clean_redis, redis)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        assert await respond(redis, order.order_id, "acknowledged", "t1-other") is not None
        await orders.amend(weapon(order))
        await poll_until(lambda: outside.at("/sms")[1:], "the SMS saying the order was raised")
        await poll_until(lambda: _no_timer(redis, store.amendment_timer(order.order_id)),
                         "the amendment's sends done")
    update = outside.at("/sms")[1].json()
    assert update["kind"] == "order_update"
    assert "请于" not in update["text"] and "前接单" not in update["text"]
    assert update["text"] == (f"【联防】指令更新：P1特急 纠纷（持械）：Minzu Ave 88。本组已接单。"
                              f"指令号 {order.order_id}。")
    # a relay filling its own template: no deadline to give, and the team has answered
    assert update["ack_by"] is None and update["answered"] is True
    assert "answered" not in outside.at("/sms")[0].json()


async def test_the_push_of_an_acknowledged_order_raised_after_its_deadline_is_kept(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # Acknowledged in time; the knife came after the acknowledge-by had passed. The update
    # goes (answered: that deadline no longer bounds it), and must live at the push service
    # as long as any push may: a TTL of 0 (the push dies at once unless the phone is
    # connected right then) loses it for a phone that is out of coverage for a moment.
    browser = Browser(f"{outside.url}/push")
    await store.touch_device(redis, device_id="t1-dev", member_id="m1", team_id="t1",
                             agency_kind="security", district="d1")
    await store.set_device_channel(redis, "t1-dev", field="webpush",
                                   value=json.dumps(browser.subscription))
    issued = utcnow()
    order = an_order("t1", agency_kind="security", priority="P2", category="dispute",
                     flags=(), occurred_at=issued, ack_by=issued + timedelta(seconds=2))
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.0,
                            fallback_steps=2, ttl_s=600)
    orders = orders_of(clean_redis, redis, steps=2)
    async with push_and_sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/push"), "the order's push")
        assert await respond(redis, order.order_id, "acknowledged", "t1-other") is not None
        assert order.ack_by is not None
        due = order.ack_by.timestamp()
        await poll_until(lambda: time.time() > due + 0.5, "the acknowledge-by passed", 10)
        await orders.amend(weapon(order, at_s=2))
        await poll_until(lambda: outside.at("/push")[1:], "the push of the raised order")
        await poll_until(lambda: _no_timer(redis, store.amendment_timer(order.order_id)),
                         "the amendment's sends done")
    push = outside.at("/push")[1]
    assert browser.read(push.body)["update"] == 1
    assert push.headers["ttl"] == "60"  # WEBPUSH_TTL_S of the replica


def sooner(order: OrderIssued, *, at_s: float = 30.0) -> OrderAmended:
    """The command room made the incident more urgent but nothing the phone says changed:
    the same priority and flags, only a sooner acknowledge-by."""
    return OrderAmended(district=order.district, order_id=order.order_id,
                        incident_id=order.incident_id, team_id=order.team_id,
                        priority=order.priority, flags=order.flags,
                        ack_by=order.occurred_at + timedelta(seconds=at_s))


async def test_a_sooner_deadline_alone_is_texted_again_while_nobody_answered(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # unanswered: the sooner deadline is what the member must act on
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    order = await a_dispute(redis, "t1")
    orders = orders_of(clean_redis, redis)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        await orders.amend(sooner(order))
        await poll_until(lambda: outside.at("/sms")[1:], "the SMS with the sooner deadline")
        await poll_until(lambda: _no_timer(redis, store.amendment_timer(order.order_id)),
                         "the amendment's sends done")
    update = outside.at("/sms")[1].json()
    assert update["kind"] == "order_update" and "前接单" in update["text"]


async def test_a_sooner_deadline_alone_sends_an_acknowledged_order_nowhere_again(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # A teammate acknowledged the dispute; the command room then brings its acknowledge-by
    # forward, nothing else. The update would say "指令更新：P2紧急 纠纷…本组已接单": nothing new
    # to the guard, who learns to ignore updates (and misses the knife in the next one).
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    order = await a_dispute(redis, "t1")
    orders = orders_of(clean_redis, redis)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        assert await respond(redis, order.order_id, "acknowledged", "t1-other") is not None
        await orders.amend(sooner(order))
        record = await store.get_order(redis, order.order_id)
        assert record is not None and record.version == 1  # the amendment was applied
        assert await _no_timer(redis, store.amendment_timer(order.order_id))
    assert len(outside.at("/sms")) == 1


async def test_an_acknowledgement_just_before_the_amendment_is_stored_is_heeded(
        clean_redis: str, redis: Redis, outside: Outside,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The teammate's acknowledgement lands between notify reading the order (unanswered) and
    # storing its amendment (a sooner deadline only): the amendment's script, which sets the
    # update's timer, must judge the order as it then stands, answered.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    order = await a_dispute(redis, "t1")
    orders = orders_of(clean_redis, redis)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        await poll_until(lambda: _no_timer(redis, order.order_id), "the chain done")
    read = store.get_order

    async def read_then_answered(client: Redis, order_id: str) -> store.OrderRecord | None:
        record = await read(client, order_id)
        monkeypatch.undo()  # once: the answer reads the order too
        assert await respond(redis, order_id, "acknowledged", "t1-other") is not None
        return record

    monkeypatch.setattr(store, "get_order", read_then_answered)
    await orders.amend(sooner(order))
    record = await store.get_order(redis, order.order_id)
    assert record is not None and record.answered and record.version == 1
    assert await _no_timer(redis, store.amendment_timer(order.order_id))


async def _texted(clean_redis: str, redis: Redis, outside: Outside) -> OrderIssued:
    """The dispute texted to the guard, its chain done; no replica's loop runs after it (an
    amendment's update timer is set, not fired, till the test starts one again)."""
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    order = await a_dispute(redis, "t1")
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        await poll_until(lambda: _no_timer(redis, order.order_id), "the chain done")
    return order


async def _updates_fired(clean_redis: str, redis: Redis, outside: Outside,
                         order: OrderIssued) -> list[dict[str, object]]:
    """A replica's loop fires the update's timer; the SMS the gateway got, in order."""
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: _no_timer(redis, store.amendment_timer(order.order_id)),
                         "the amendment's timer fired")
    return [t.json() for t in outside.at("/sms")]


async def test_a_sooner_deadline_alone_acknowledged_before_its_update_went_is_not_sent(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # Unanswered when the command room brought the deadline forward: the update's timer is
    # set. A teammate acknowledges before it fires: the update would now say only
    # "指令更新：P2紧急 纠纷…本组已接单", nothing new to the guard.
    order = await _texted(clean_redis, redis, outside)
    await orders_of(clean_redis, redis).amend(sooner(order))
    assert not await _no_timer(redis, store.amendment_timer(order.order_id))
    assert await respond(redis, order.order_id, "acknowledged", "t1-other") is not None
    texts = await _updates_fired(clean_redis, redis, outside, order)
    assert [t["kind"] for t in texts] == ["order"]


async def test_a_flag_raised_acknowledged_before_its_update_went_is_still_sent(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # The knife (P1, weapon, a sooner deadline), acknowledged before the update's timer
    # fires: the guard must still hear of the knife (without the deadline).
    order = await _texted(clean_redis, redis, outside)
    await orders_of(clean_redis, redis).amend(weapon(order))
    assert await respond(redis, order.order_id, "acknowledged", "t1-other") is not None
    texts = await _updates_fired(clean_redis, redis, outside, order)
    assert [t["kind"] for t in texts] == ["order", "order_update"]
    assert (texts[1]["priority"], texts[1]["flags"]) == ("P1", ["weapon"])
    assert "本组已接单" in str(texts[1]["text"]) and "前接单" not in str(texts[1]["text"])


async def test_a_flag_raise_then_a_sooner_deadline_acknowledged_sends_the_flag(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # The knife (version 1), then a sooner deadline alone (version 2), both before the timer
    # fired; acknowledged: the update (version 2, as the order stands) still goes, for the
    # knife its phone never heard of.
    order = await _texted(clean_redis, redis, outside)
    orders = orders_of(clean_redis, redis)
    knife = weapon(order, at_s=40)
    await orders.amend(knife)
    await orders.amend(sooner(order, at_s=30).model_copy(update={
        "priority": "P1", "flags": ("weapon",),
        "occurred_at": knife.occurred_at + timedelta(seconds=1)}))
    assert await respond(redis, order.order_id, "acknowledged", "t1-other") is not None
    texts = await _updates_fired(clean_redis, redis, outside, order)
    assert [(t["kind"], t["reference"]) for t in texts] == [
        ("order", f"{order.order_id}:t1-dev"), ("order_update", f"{order.order_id}:t1-dev:v2")]
    assert (texts[1]["priority"], texts[1]["flags"]) == ("P1", ["weapon"])


async def test_a_sooner_deadline_after_the_flags_update_went_is_not_sent_once_acknowledged(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # The knife's update went (version 1); then a sooner deadline alone (version 2) while
    # unanswered, acknowledged before its timer fires: the phone already has all it says.
    order = await _texted(clean_redis, redis, outside)
    orders = orders_of(clean_redis, redis)
    knife = weapon(order, at_s=40)
    await orders.amend(knife)
    assert len(await _updates_fired(clean_redis, redis, outside, order)) == 2
    await orders.amend(sooner(order, at_s=30).model_copy(update={
        "priority": "P1", "flags": ("weapon",),
        "occurred_at": knife.occurred_at + timedelta(seconds=1)}))
    assert not await _no_timer(redis, store.amendment_timer(order.order_id))
    assert await respond(redis, order.order_id, "acknowledged", "t1-other") is not None
    texts = await _updates_fired(clean_redis, redis, outside, order)
    assert [t["reference"] for t in texts] == [f"{order.order_id}:t1-dev",
                                               f"{order.order_id}:t1-dev:v1"]


def escort(order: OrderIssued, said: str, *, later_s: float = 0.0) -> OrderAmended:
    """Dispatch's word on the police or security going with a volunteer team to a P1: the
    order's priority, flags and deadline as they stand."""
    return OrderAmended(district=order.district, order_id=order.order_id,
                        incident_id=order.incident_id, team_id=order.team_id,
                        priority=order.priority, flags=order.flags, ack_by=order.ack_by,
                        escort=said,  # type: ignore[arg-type]
                        occurred_at=utcnow() + timedelta(seconds=later_s))


async def test_volunteers_texted_that_police_are_sent_are_texted_when_they_no_longer_come(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # A volunteer's phone has no data: it was texted the P1 with "民警/保安已派出". The
    # security team's offer then timed out, nobody else free: the volunteers, acknowledged
    # and on their way, must learn to wait at a safe distance, not walk in expecting them.
    await a_phone(redis, "t1-dev", "t1", "+8613800000001")
    issued = utcnow()
    order = an_order("t1", agency_kind="volunteer", priority="P1", category="medical",
                     flags=("injury",), instructions=None, escort="sent",
                     occurred_at=issued, ack_by=issued + timedelta(seconds=30))
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.0,
                            fallback_steps=1, ttl_s=600)
    orders = orders_of(clean_redis, redis)
    async with sms_replica(clean_redis, redis, outside):
        await poll_until(lambda: outside.at("/sms"), "the order's SMS")
        assert await respond(redis, order.order_id, "acknowledged", "t1-other") is not None
        await orders.amend(escort(order, "awaited"))
        await poll_until(lambda: outside.at("/sms")[1:], "the SMS saying nobody comes yet")
        await poll_until(lambda: _no_timer(redis, store.amendment_timer(order.order_id)),
                         "the amendment's sends done")
        # another guard's order issued: their phones' text already says to wait for them
        await orders.amend(escort(order, "sent", later_s=1))
        record = await store.get_order(redis, order.order_id)
        assert record is not None and record.version == 2
        assert record.order is not None and record.order.escort == "sent"
        assert await _no_timer(redis, store.amendment_timer(order.order_id))
    first, update = (t.json() for t in outside.at("/sms"))
    assert len(outside.at("/sms")) == 2
    assert "民警/保安已派出。" in first["text"] and first["escort"] == "sent"
    assert update["kind"] == "order_update" and update["escort"] == "awaited"
    assert update["text"] == ("【联防】指令更新：P1特急 急救求助（有人受伤）：Minzu Ave 88。"
                              "民警/保安尚未出动，请在安全距离外等候。本组已接单。"
                              f"指令号 {order.order_id}。")
