"""How long notify keeps an order and a team's devices: an open order stays while its team
works on it, its records go ORDER_TTL_S after it ends, and no write leaves a key with no way
out (a half order written after the record expired, an abandoned device in its team's set).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.notify import store
from services.notify.domain.responses import Decision, decide_response
from services.notify.hub import amended_message, order_message, withdrawn_message
from shared import streams
from shared.events import OrderDelivered, OrderResponded, Response, utcnow
from tests.helpers import poll_until, read_stream

from .conftest import ADMIN, NotifyFactory, Volunteers, an_order, issue

ENDED_TTL_S = 60  # ORDER_TTL_S as these tests pass it: an ended order's records
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


def order_keys(order_id: str) -> list[str]:
    key = f"notify:order:{order_id}"
    return [key, *(f"{key}:{part}" for part in ("attempts", "received", "responses",
                                                   "fallback_sent"))]


async def ttls(redis: Redis, keys: list[str]) -> dict[str, int]:
    return {key: await redis.ttl(key) for key in keys}


async def answer(redis: Redis, order_id: str, response: Response) -> store.Outcome | None:
    def decide(rec: store.OrderRecord) -> tuple[Decision, OrderResponded | None]:
        decision = decide_response(state=rec.state, response=response,
                                   last_reinforce_at=rec.last_reinforce_at, now=utcnow(),
                                   reinforce_repeat_s=0)
        return decision, OrderResponded(
            district=rec.district, order_id=order_id, incident_id=rec.incident_id,
            team_id=rec.team_id, member_id="m1", device_id="d1", response=response)

    return await store.apply_response(
        redis, order_id, decide=decide, fan_out=lambda d: json.dumps({"state": d.state}),
        response=response, member_id="m1", device_id="d1", ttl_s=ENDED_TTL_S)


def receipt(order_id: str, team_id: str, device_id: str = "d1") -> OrderDelivered:
    return OrderDelivered(district="d1", order_id=order_id, incident_id="inc_1",
                          team_id=team_id, member_id="m1", device_id=device_id,
                          channel="websocket")


@pytest.mark.parametrize("ending", ["resolved", "handover", "declined", "withdrawn"])
async def test_an_open_order_outlives_order_ttl_and_its_records_expire_order_ttl_after_it_ends(
        redis: Redis, ending: str) -> None:
    # A station's hand-over order acknowledged on day 1 and filed on day 20: its record had
    # expired ORDER_TTL_S after the acknowledgement, and the station's answer got 404.
    order = an_order("t1", kind="handover" if ending == "resolved" else "dispatch")
    await store.save_orders(
        redis, [store.NewOrder(order, TRACE, order_message(order, TRACE))],
        fallback_after_s=30.0, ttl_s=ENDED_TTL_S)
    assert await store.record_receipt(redis, receipt(order.order_id, "t1"), ttl_s=ENDED_TTL_S)
    mark = await store.begin_fallback_send(redis, order.order_id, step=0, device_id="d2",
                                           now=time.time(), till=time.time() + 10,
                                           ttl_s=ENDED_TTL_S)
    assert mark.state == "go"
    await store.record_attempt(redis, order.order_id, channel="sms", outcome="sent",
                               device_id="d2", ttl_s=ENDED_TTL_S)
    keys = order_keys(order.order_id)
    kept = list(keys)
    if ending == "declined":  # declined only before any other answer: none to keep yet
        kept.remove(f"notify:order:{order.order_id}:responses")
    else:  # the team at work on it (a call for backup takes it)
        working = await answer(redis, order.order_id, "reinforce")
        assert working is not None and working.event_id is not None
    open_set = "notify:team:t1:open"
    live = await ttls(redis, [*kept, open_set])
    assert all(ttl > ENDED_TTL_S for ttl in live.values()), (
        f"a live order's records expire as an ended order's: {live}")
    # and yet they leave some day, should the order's end never reach notify (a lost event)
    assert all(ttl > 0 for ttl in live.values()), live
    assert live[open_set] >= live[keys[0]], "the team's open set outlived by its order"

    if ending == "withdrawn":
        assert await store.withdraw_order(
            redis, order_id=order.order_id, team_id="t1", incident_id=order.incident_id,
            district="d1", reason="closed", ttl_s=ENDED_TTL_S,
            fan_out=withdrawn_message(order.order_id))
    else:
        ended = await answer(redis, order.order_id, ending)  # type: ignore[arg-type]
        assert ended is not None and ended.record.state == ending
    after = await ttls(redis, keys)
    assert all(0 < ttl <= ENDED_TTL_S for ttl in after.values()), (
        f"an ended order's records must expire ORDER_TTL_S after its end: {after}")
    assert await store.open_orders(redis, "t1") == []


async def test_a_late_write_of_an_ended_order_keeps_its_records_expiring_with_it(
        redis: Redis) -> None:
    order = an_order("t1")
    await store.save_orders(redis, [store.NewOrder(order, TRACE)], fallback_after_s=None,
                            ttl_s=ENDED_TTL_S)
    assert await store.withdraw_order(
        redis, order_id=order.order_id, team_id="t1", incident_id=order.incident_id,
        district="d1", reason="timeout", ttl_s=ENDED_TTL_S,
        fan_out=withdrawn_message(order.order_id))
    # a receipt crossing the withdrawal, an attempt logged behind a push
    assert await store.record_receipt(redis, receipt(order.order_id, "t1"), ttl_s=ENDED_TTL_S)
    log = store.AttemptLog(redis, ttl_s=ENDED_TTL_S)
    log.add(order.order_id, channel="websocket", outcome="pushed", device_id="d1")
    await log.flush()
    after = await ttls(redis, order_keys(order.order_id)[:3])
    assert all(0 < ttl <= ENDED_TTL_S for ttl in after.values()), after


# --- no write brings back an order whose record expired ------------------------------------


async def saved_then_expired(redis: Redis) -> store.OrderRecord:
    """An order as a replica read it, whose record then expired (a key's expiry is its
    deletion)."""
    order = an_order("t1", ack_by=None)
    await store.save_orders(redis, [store.NewOrder(order, TRACE)], fallback_after_s=30.0,
                            ttl_s=ENDED_TTL_S)
    record = await store.get_order(redis, order.order_id)
    assert record is not None
    await redis.delete(*order_keys(order.order_id))
    return record


async def test_a_receipt_of_an_order_whose_record_expired_writes_nothing_and_publishes_nothing(
        redis: Redis, clean_redis: str) -> None:
    record = await saved_then_expired(redis)
    first = await store.record_receipt(redis, receipt(record.order_id, "t1"),
                                       ttl_s=ENDED_TTL_S)
    assert first is False
    assert [k for k in order_keys(record.order_id) if await redis.exists(k)] == []
    assert read_stream(clean_redis, streams.ORDER_DELIVERED.name, OrderDelivered) == []


async def test_an_amendment_of_an_order_whose_record_expired_writes_nothing(
        redis: Redis) -> None:
    record = await saved_then_expired(redis)
    assert record.order is not None
    amended = record.order.model_copy(update={"priority": "P1"})
    applied = await store.amend_order(redis, record, amended,
                                      fan_out=amended_message(amended), revised_at=utcnow())
    assert applied is False
    assert await redis.exists(f"notify:order:{record.order_id}") == 0


async def test_a_fallback_step_of_an_order_whose_record_expired_writes_nothing(
        redis: Redis) -> None:
    record = await saved_then_expired(redis)
    assert await store.fallback_due_at(redis, record.order_id) is not None
    await store.next_fallback(redis, record.order_id, step=0, due_at=time.time() + 30)
    assert await redis.exists(f"notify:order:{record.order_id}") == 0
    assert await store.fallback_due_at(redis, record.order_id) is None  # the timer goes too


# --- a team's devices ---------------------------------------------------------------------


async def touch(redis: Redis, device_id: str, team_id: str) -> None:
    assert await store.touch_device(redis, device_id=device_id, member_id=f"m-{device_id}",
                                    team_id=team_id, agency_kind="police", district="d1")


async def test_an_abandoned_device_leaves_its_team_s_set_when_a_teammate_connects(
        redis: Redis) -> None:
    await touch(redis, "dev-lost", "t1")
    await touch(redis, "dev-kept", "t1")
    # the lost phone's record expires (its token lapsed, never revoked: nobody said so)
    await redis.delete("notify:device:dev-lost")
    await touch(redis, "dev-kept", "t1")
    assert await redis.smembers("notify:team:t1:devices") == {"dev-kept"}


async def test_a_team_s_device_set_expires_with_its_freshest_device(redis: Redis) -> None:
    await touch(redis, "dev-a", "t1")
    key = "notify:team:t1:devices"
    ttl = await redis.ttl(key)
    assert 0 < ttl <= store.DEVICE_TTL_S
    assert ttl >= await redis.ttl("notify:device:dev-a")
    # a device moved in from another team keeps the set of its new team expiring too
    await touch(redis, "dev-b", "t2")
    await redis.persist("notify:team:t3:devices")
    assert await store.move_device(redis, "dev-b", team_id="t3", moved_at=utcnow())
    assert await redis.smembers("notify:team:t3:devices") == {"dev-b"}
    assert 0 < await redis.ttl("notify:team:t3:devices") <= store.DEVICE_TTL_S


async def touched_as_checked(redis: Redis, device_id: str, team_id: str,
                             checked_at: float | None) -> str | None:
    return await store.touch_device(redis, device_id=device_id, member_id=f"m-{device_id}",
                                    team_id=team_id, agency_kind="police", district="d1",
                                    checked_at=checked_at)


async def test_a_touch_whose_token_was_checked_before_a_move_was_applied_leaves_it_moved(
        redis: Redis) -> None:
    # The identity read (volunteers: t1), then the move to t2 applied, then the touch.
    await touch(redis, "dev-m", "t1")
    checked_at = time.time()
    assert await store.move_device(redis, "dev-m", team_id="t2", moved_at=utcnow())
    assert await touched_as_checked(redis, "dev-m", "t1", checked_at) == "t2"
    assert await redis.smembers("notify:team:t1:devices") == set()
    assert await redis.smembers("notify:team:t2:devices") == {"dev-m"}
    # a device not seen before its move stays on no team: its next touch, checked later, files it
    assert await store.move_device(redis, "dev-new", team_id="t2", moved_at=utcnow())
    assert await touched_as_checked(redis, "dev-new", "t1", checked_at) == ""
    assert await redis.smembers("notify:team:t1:devices") == set()


async def test_a_touch_whose_token_was_checked_after_a_move_was_applied_files_it_as_said(
        redis: Redis) -> None:
    # A later move (t2 -> t3) that volunteers answers with before its event is handled here,
    # and a touch of the move's own team, file the device as the token says.
    await touch(redis, "dev-m", "t1")
    assert await store.move_device(redis, "dev-m", team_id="t2", moved_at=utcnow())
    assert await touched_as_checked(redis, "dev-m", "t3", time.time()) == "t3"
    assert await redis.smembers("notify:team:t3:devices") == {"dev-m"}
    assert await redis.smembers("notify:team:t2:devices") == set()
    checked_at = time.time()
    assert await store.move_device(redis, "dev-m", team_id="t4", moved_at=utcnow())
    assert await touched_as_checked(redis, "dev-m", "t4", checked_at) == "t4"
    assert await touched_as_checked(redis, "dev-m", "t1", None) == "t1"  # a test's seeding


# --- through the service --------------------------------------------------------------------


async def test_a_station_s_answer_long_after_it_acknowledged_its_hand_over_is_taken(
        notify_factory: NotifyFactory, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient, clean_redis: str) -> None:
    # ORDER_TTL_S of a few seconds stands for the 14 days between the acknowledgement on
    # day 1 and the filing on day 20.
    ttl_s = 4
    member = volunteers.enrol("station-1")
    async with notify_factory(order_ttl_s=ttl_s) as notify:
        # issued now: an order issued longer ago than ORDER_TTL_S is not taken at all
        order = an_order("station-1", kind="handover", ack_by=None)
        await issue(broker, order)

        async def stored() -> bool:
            r = await http.get(f"{notify}/v1/orders/{order.order_id}", headers=ADMIN)
            return r.status_code == 200
        await poll_until(stored, "notify stored the hand-over order", timeout=30)
        url = f"{notify}/v1/orders/{order.order_id}/responses"
        r = await http.post(url, headers=member.bearer, json={"response": "acknowledged"})
        assert r.status_code == 200, r.text

        await asyncio.sleep(ttl_s + 2)  # the time passing, not a proof of anything happening
        r = await http.post(url, headers=member.bearer, json={"response": "resolved"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "resolved"
        redis = Redis.from_url(clean_redis, decode_responses=True)
        try:  # ended: kept ORDER_TTL_S from now
            assert 0 < await redis.ttl(f"notify:order:{order.order_id}") <= ttl_s
        finally:
            await redis.aclose()
    answers = read_stream(clean_redis, streams.ORDER_RESPONDED.name, OrderResponded)
    assert [a.response for a in answers] == ["acknowledged", "resolved"]
