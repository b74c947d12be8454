"""The store's scripts on a real Redis: an order is stored, announced and recorded at most once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from services.notify import store
from services.notify.domain.responses import Decision, ResponseRefused, decide_response
from services.notify.hub import order_message, withdrawn_message
from shared import streams
from shared.events import OrderIssued, OrderResponded, Response, utcnow
from tests.helpers import read_stream

from .conftest import an_order

SENTINEL = "end of test"
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


class Listener:
    """A replica's view of a team's fan-out channel."""

    def __init__(self, redis: Redis, team_id: str) -> None:
        self.redis = redis
        self.channel = store.fanout_channel(team_id)
        self.pubsub = redis.pubsub()

    async def __aenter__(self) -> Listener:
        await self.pubsub.subscribe(self.channel)
        assert (await self.pubsub.get_message(timeout=5))["type"] == "subscribe"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.pubsub.aclose()

    async def heard(self) -> list[dict[str, Any]]:
        """Everything published so far: Redis delivers in order, so up to our own sentinel."""
        await self.redis.publish(self.channel, SENTINEL)
        messages = []
        while True:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None, "the sentinel never came"
            if message["data"] == SENTINEL:
                return messages
            messages.append(json.loads(message["data"]))


def announced(order: OrderIssued) -> dict[str, Any]:
    """The fan-out message of a new order: its frame and its trace context go with it."""
    message = json.loads(order_message(order, TRACE))
    assert message["frame"]["order_id"] == order.order_id and message["trace"] == TRACE
    return message


async def save(redis: Redis, order: OrderIssued, *, fan_out: bool = True) -> store.Saved:
    (saved,) = await store.save_orders(
        redis, [store.NewOrder(order, TRACE, order_message(order, TRACE) if fan_out else None)],
        fallback_after_s=30.0, ttl_s=60)
    return saved


async def withdraw(redis: Redis, order: OrderIssued) -> bool:
    return await store.withdraw_order(
        redis, order_id=order.order_id, team_id=order.team_id, incident_id=order.incident_id,
        district=order.district, reason="timeout", ttl_s=60,
        fan_out=withdrawn_message(order.order_id),
    )


async def attempts(redis: Redis, order_id: str) -> list[dict[str, Any]]:
    return (await store.deliveries(redis, order_id))["attempts"]


async def test_a_redelivered_order_is_stored_announced_and_recorded_once(redis: Redis) -> None:
    order = an_order("t1")
    async with Listener(redis, "t1") as replica:
        first = await save(redis, order)
        again = await save(redis, order)
        assert first == store.Saved(created=True, replicas=1)
        assert again == store.Saved(created=False, replicas=None)
        assert await replica.heard() == [announced(order)]

    record = await store.get_order(redis, order.order_id)
    assert record is not None and record.order == order and record.state == "issued"
    assert record.trace == TRACE  # the incident's trace continues from the stored context
    assert [r.order_id for r in await store.open_orders(redis, "t1")] == [order.order_id]
    assert await store.fallback_due_at(redis, order.order_id) is not None
    [attempt] = await attempts(redis, order.order_id)
    assert (attempt["channel"], attempt["outcome"], attempt["detail"]) == (
        "websocket", "fanned_out", "1 replica(s) with a socket of the team")
    assert attempt["at"]


async def test_an_order_with_no_replica_listening_is_recorded_as_no_socket(redis: Redis) -> None:
    order = an_order("t1")
    assert await save(redis, order) == store.Saved(created=True, replicas=0)
    assert [(a["outcome"], a["detail"]) for a in await attempts(redis, order.order_id)] == [
        ("no_socket", "0 replica(s) with a socket of the team")]


async def test_an_order_stored_without_its_fan_out_gets_it_when_its_event_comes_again(
        redis: Redis) -> None:
    order = an_order("t1")
    async with Listener(redis, "t1") as replica:
        assert await save(redis, order, fan_out=False) == store.Saved(created=True, replicas=None)
        assert await replica.heard() == []
        assert await attempts(redis, order.order_id) == []

        assert await save(redis, order) == store.Saved(created=False, replicas=1)
        assert await save(redis, order) == store.Saved(created=False, replicas=None)
        assert await replica.heard() == [announced(order)]
    assert [a["outcome"] for a in await attempts(redis, order.order_id)] == ["fanned_out"]


async def test_an_order_withdrawn_before_it_was_issued_is_stored_but_never_announced(
        redis: Redis) -> None:
    order = an_order("t1")
    async with Listener(redis, "t1") as replica:
        assert await withdraw(redis, order) is True
        assert await save(redis, order) == store.Saved(created=True, replicas=None)
        assert await save(redis, order) == store.Saved(created=False, replicas=None)
        assert await replica.heard() == [{"event": "withdrawn", "order_id": order.order_id}]
    record = await store.get_order(redis, order.order_id)
    assert record is not None and record.order == order and record.state == "withdrawn"
    assert await store.open_orders(redis, "t1") == []
    assert await store.fallback_due_at(redis, order.order_id) is None
    assert await attempts(redis, order.order_id) == []


async def test_a_redelivered_withdrawal_is_announced_once(redis: Redis) -> None:
    order = an_order("t1")
    async with Listener(redis, "t1") as replica:
        await save(redis, order)
        assert await withdraw(redis, order) is True
        assert await withdraw(redis, order) is False
        assert await replica.heard() == [announced(order),
                                         {"event": "withdrawn", "order_id": order.order_id}]
    record = await store.get_order(redis, order.order_id)
    assert record is not None and record.withdrawn and record.state == "withdrawn"
    assert await store.open_orders(redis, "t1") == []
    assert await store.fallback_due_at(redis, order.order_id) is None


def deciding(response: Response, device: str) -> Callable[[store.OrderRecord], Any]:
    """A decision as the service makes it, with a new event each time it emits."""
    def decide(rec: store.OrderRecord) -> tuple[Decision, OrderResponded | None]:
        decision = decide_response(state=rec.state, response=response,
                                   last_reinforce_at=rec.last_reinforce_at, now=utcnow(),
                                   reinforce_repeat_s=60)
        if not decision.emit:
            return decision, None
        return decision, OrderResponded(
            district=rec.district, order_id=rec.order_id, incident_id=rec.incident_id,
            team_id=rec.team_id, member_id=f"m-{device}", device_id=device, response=response)
    return decide


async def respond(redis: Redis, order_id: str, response: Response, device: str,
                  record: store.OrderRecord | None = None) -> store.Outcome | None:
    return await store.apply_response(
        redis, order_id, decide=deciding(response, device),
        fan_out=lambda d: json.dumps({"event": "state", "state": d.state, "device": device}),
        response=response, member_id=f"m-{device}", device_id=device, ttl_s=60, record=record)


def responses_written(url: str) -> list[OrderResponded]:
    return read_stream(url, streams.ORDER_RESPONDED.name, OrderResponded)


async def test_a_response_decided_on_a_stale_read_is_decided_again(
        redis: Redis, clean_redis: str) -> None:
    order = an_order("t1")
    await save(redis, order)
    stale = await store.get_order(redis, order.order_id)
    assert stale is not None and stale.state == "issued"

    async with Listener(redis, "t1") as replica:
        first = await respond(redis, order.order_id, "acknowledged", "d1", stale)
        assert first is not None and first.event_id is not None
        assert (first.record.state, first.record.answered) == ("acknowledged", True)
        # A teammate's phone decided on the same read: the order moved since, so its answer
        # is decided again on what is stored now: a repeat, nothing written or published.
        again = await respond(redis, order.order_id, "acknowledged", "d2", stale)
        assert again is not None and again.event_id is None
        # and a decline, allowed on the stale read, is refused on the fresh one
        with pytest.raises(ResponseRefused):
            await respond(redis, order.order_id, "declined", "d2", stale)
        assert await replica.heard() == [
            {"event": "state", "state": "acknowledged", "device": "d1"}]
    (event,) = responses_written(clean_redis)
    assert (event.event_id, event.device_id) == (first.event_id, "d1")

    stored = await store.get_order(redis, order.order_id)
    assert stored is not None and stored.state == "acknowledged"
    assert stored.updated_at == first.record.updated_at
    # still the team's live order (a device connecting now gets it, as taken), no fallback
    assert [o.order_id for o in await store.open_orders(redis, "t1")] == [order.order_id]
    assert await store.fallback_due_at(redis, order.order_id) is None
    answers = [json.loads(x) for x in await redis.lrange(
        f"notify:order:{order.order_id}:responses", 0, -1)]
    assert [(a["response"], a["device_id"]) for a in answers] == [("acknowledged", "d1")]


async def test_concurrent_answers_to_one_order_emit_one_event(
        redis: Redis, clean_redis: str) -> None:
    order = an_order("t1")
    await save(redis, order)
    read = await store.get_order(redis, order.order_id)
    outcomes = await asyncio.gather(*(
        respond(redis, order.order_id, "en_route", f"d{i}", read) for i in range(8)))
    emitted = [o for o in outcomes if o is not None and o.event_id is not None]
    assert len(emitted) == 1 and all(o is not None for o in outcomes)
    assert [e.event_id for e in responses_written(clean_redis)] == [emitted[0].event_id]
    assert await redis.llen(f"notify:order:{order.order_id}:responses") == 1


async def test_an_answer_to_an_unknown_order_writes_nothing(redis: Redis) -> None:
    assert await respond(redis, "ord_missing", "acknowledged", "d1") is None
    assert await redis.keys("*") == []
