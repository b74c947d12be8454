"""What the operations staff watch stays true when things go wrong (docs/operations.md,
"Dashboards and alerts"): a reply redis-py lost and sent again, a step that failed and was
made again, a batch with one failing order, a stream trimmed while a group lagged. Each
metric against a real Redis, through the code that keeps it; the instruments are read from
a meter of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis as sync_redis
from faststream.redis import RedisBroker
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.dispatch import engine, records, store
from services.dispatch.locks import IncidentLocks
from services.dispatch.main import create_app
from services.notify import store as notify_store
from services.notify.config import Settings as NotifySettings
from services.notify.hub import order_message
from shared import streams
from shared.bus import create_redis
from shared.events import OrderDelivered, OrderResponded
from shared.metrics import COUNTED_LAG, unread_by_group
from shared.scripts import _compiled
from tests.helpers import poll_until
from tests.integration.dispatch.conftest import fail_once, settings_for
from tests.integration.dispatch.test_engine import (
    DISTRICT,
    orders_for,
    report,
    team,
    wait_for_units,
)
from tests.integration.dispatch.test_linked import resolve, status
from tests.integration.dispatch.test_writes_once import ReplyEater
from tests.integration.notify.conftest import an_order


class Readings:
    """The test's own meter: instruments made from it replace the services' for the test."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meter = MeterProvider(metric_readers=[self.reader]).get_meter("test")

    def counted(self, name: str, **attributes: str) -> int:
        """How many times `name` was recorded (a histogram) or added to (a counter's sum),
        over its points with `attributes`."""
        data = self.reader.get_metrics_data()
        total = 0
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        if all(point.attributes.get(k) == v for k, v in attributes.items()):
                            total += int(getattr(point, "count", None) or point.value)
        return total


@pytest.fixture
def readings(monkeypatch: pytest.MonkeyPatch) -> Readings:
    readings = Readings()
    meter = readings.meter
    monkeypatch.setattr(engine, "TIME_TO_ACK", meter.create_histogram("time_to_ack"))
    monkeypatch.setattr(engine, "TIME_TO_SCENE", meter.create_histogram("time_to_scene"))
    monkeypatch.setattr(engine, "TIME_TO_ASSIGN", meter.create_histogram("time_to_assign"))
    monkeypatch.setattr(notify_store, "DELIVERIES", meter.create_counter("deliveries"))
    return readings


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def dispatch(clean_redis: str) -> AsyncIterator[str]:
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        yield clean_redis


# --- notify: lianfang_notify_deliveries_total ---------------------------------------------


def new_order(team_id: str) -> notify_store.NewOrder:
    order = an_order(team_id)
    return notify_store.NewOrder(order, {}, order_message(order, {}))


async def save(client: Redis, orders: list[notify_store.NewOrder]) -> list[notify_store.Saved]:
    return await notify_store.save_orders(client, orders, fallback_after_s=None, ttl_s=600)


async def test_fan_outs_are_counted_when_another_order_of_their_batch_fails(
        redis: Redis, readings: Readings) -> None:
    # One order of a batch cannot be stored (its key holds something else): the pipeline's
    # other scripts ran and pushed their orders, but the batch failed before they were
    # counted, and handled again order by order each found its order pushed already: the
    # two fan-outs were never counted.
    good, broken, other = new_order("t1"), new_order("t2"), new_order("t3")
    await redis.set(f"notify:order:{broken.order.order_id}", "not a hash")
    with pytest.raises(ResponseError):
        await save(redis, [good, broken, other])
    for one in (good, other):  # the batch handled again event by event, as shared.bus does
        assert await save(redis, [one]) == [notify_store.Saved(created=False, replicas=None)]
    assert readings.counted("deliveries", channel="websocket", outcome="no_socket") == 2


async def test_a_fan_out_whose_reply_was_lost_is_counted_once(
        clean_redis: str, redis: Redis, readings: Readings) -> None:
    # Redis ran the batch, the reply was lost, redis-py sent it again: the second run found
    # the order pushed and said so, and the fan-out that went out was never counted.
    order = new_order("t1")
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url:
        client = create_redis(NotifySettings(redis_url=proxy_url, admin_token="test-admin-token"))
        try:
            await client.ping()
            proxy.marker = order.order.order_id.encode()
            (saved,) = await save(client, [order])
        finally:
            await client.aclose()
    assert proxy.eaten == 1
    assert saved == notify_store.Saved(created=True, replicas=0)
    assert readings.counted("deliveries", outcome="no_socket") == 1
    assert [a["outcome"] for a in (await notify_store.deliveries(
        redis, order.order.order_id))["attempts"]] == ["no_socket"]
    # the order's event again (a redelivery): nothing more to count
    assert await save(redis, [order]) == [notify_store.Saved(created=False, replicas=None)]
    assert readings.counted("deliveries", outcome="no_socket") == 1


async def test_a_receipt_whose_reply_was_lost_is_counted_once(
        clean_redis: str, redis: Redis, readings: Readings) -> None:
    order = new_order("t1")
    await save(redis, [order])
    receipt = OrderDelivered(district="d1", order_id=order.order.order_id,
                             incident_id=order.order.incident_id, team_id="t1",
                             member_id="m1", device_id="dev-1", channel="websocket")
    await redis.script_load(notify_store._RECEIVE)  # its EVALSHA runs at once, not after NOSCRIPT
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url:
        client = create_redis(NotifySettings(redis_url=proxy_url, admin_token="test-admin-token"))
        try:
            await client.ping()
            proxy.marker = b"dev-1"
            first = await notify_store.record_receipt(client, receipt, ttl_s=600)
        finally:
            await client.aclose()
    assert proxy.eaten == 1
    assert first is True  # this very receipt was the first: its event went out once
    assert await redis.xlen(streams.ORDER_DELIVERED.name) == 1
    assert readings.counted("deliveries", outcome="received") == 1
    # the same device confirming again: not a receipt of its own
    assert await notify_store.record_receipt(redis, receipt, ttl_s=600) is False
    assert readings.counted("deliveries", outcome="received") == 1


# --- dispatch: lianfang_incidents{status} ---------------------------------------------------


async def test_an_incident_forgotten_once_leaves_the_status_counts_once(
        clean_redis: str, dispatch: str, publisher: RedisBroker, redis: Redis) -> None:
    # KPI_DAYS after its report an archived incident is deleted, and counted out of its
    # status. The reply to that write was lost and redis-py sent it again: counted out
    # twice, the gauge showed one resolved incident fewer than there are (below 0 once
    # the last went).
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    await resolve(dispatch, publisher, incident_id)
    assert await redis.hget(store.STATUS_COUNTS, "resolved") == "1"
    locks = IncidentLocks(redis)
    try:
        assert await records.archive_ended(redis, locks, ended_before=9e9) == 1
        proxy = ReplyEater(clean_redis)
        async with proxy as proxy_url:
            client = create_redis(settings_for(proxy_url))
            sweeping = IncidentLocks(client)
            try:
                proxy.marker = store.STATUS_COUNTS.encode()
                assert await records.forget_archived(client, sweeping,
                                                     reported_before=9e9) == 1
            finally:
                await sweeping.close()
                await client.aclose()
    finally:
        await locks.close()
    assert proxy.eaten == 1
    assert not await redis.exists(store.incident_key(incident_id))
    assert await redis.hget(store.STATUS_COUNTS, "resolved") == "0"


# --- dispatch: time to assign, to acknowledge, to scene --------------------------------------


async def test_response_times_are_recorded_once_when_the_answer_is_handled_again(
        dispatch: str, publisher: RedisBroker, readings: Readings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The team answers on scene; the step's last write fails (Redis away) and the answer is
    # handled again by the reclaimer: one incident, one time to acknowledge and one time to
    # scene, not two.
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(dispatch, incident_id), "an order")
    failures = fail_once(monkeypatch, store, "end_step",
                         lambda _redis, commands, **_: "first_ack_at" in str(commands))
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=incident_id, team_id="t1",
        member_id="m1", response="on_scene"), stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: status(dispatch, incident_id) == "on_scene", "on scene")
    assert failures == ["failed"]
    assert readings.counted("time_to_ack") == 1
    assert readings.counted("time_to_scene") == 1


async def test_a_response_made_again_after_its_first_write_records_its_times_then(
        dispatch: str, publisher: RedisBroker, readings: Readings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A hand-over's first write (the order, the incident's first acknowledgement) went
    # through, the step failed after it and was made again: its times are recorded once,
    # when the step is done.
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(dispatch, incident_id), "an order")
    failures = fail_once(monkeypatch, store, "end_step")  # the step's end, after the write
    answer = OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=incident_id, team_id="t1",
        member_id="m1", response="handover")
    await publisher.publish(answer, stream=streams.ORDER_RESPONDED.name)
    client = sync_redis.Redis.from_url(dispatch, decode_responses=True)
    try:
        await poll_until(lambda: client.exists(f"dispatch:seen:responded:{answer.event_id}"),
                         "the answer's step done")
        assert client.hget(store.incident_key(incident_id), "first_ack_at")
    finally:
        client.close()
    assert failures == ["failed"]
    assert readings.counted("time_to_ack") == 1
    assert readings.counted("time_to_scene") == 1


# --- streams: lianfang_stream_lag -------------------------------------------------------------


async def test_time_to_assign_is_recorded_when_the_offers_reply_was_lost(
        clean_redis: str, publisher: RedisBroker, readings: Readings) -> None:
    # The order's script ran, its reply was lost, redis-py sent it again: the second run
    # found the order written and answered "not the first assignment", so the incident was
    # never counted in time to assign.
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url:
        app = create_app(settings_for(proxy_url))
        async with app.router.lifespan_context(app):
            await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
            await team(publisher, "t2", kind="security", lat=22.8175, lon=108.3665)
            await wait_for_units(clean_redis, 2)
            first = await report(publisher, "noise", priority="P4")  # loads the script
            await poll_until(lambda: orders_for(clean_redis, first), "the first order")
            proxy.marker = _compiled(store._OFFER).sha.encode()
            second = await report(publisher, "noise", priority="P4")
            await poll_until(lambda: orders_for(clean_redis, second), "the second order")
    assert proxy.eaten == 1
    assert readings.counted("time_to_assign") == 2


def _group_info(client: sync_redis.Redis, stream: str, group: str) -> dict[str, Any]:
    return next(g for g in client.xinfo_groups(stream) if g["name"] == group)


@pytest.fixture
def sync_client(clean_redis: str) -> Iterator[sync_redis.Redis]:
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    yield client
    client.close()


def test_the_lag_of_a_group_that_read_everything_is_zero_after_a_trim(
        sync_client: sync_redis.Redis) -> None:
    # Dispatch fell behind on unit.position and MAXLEN trimmed fixes it had not read. Once it
    # caught up, Redis's own lag kept counting the trimmed fixes for ever: the dashboard
    # said dispatch was 17 fixes behind with nothing left to read.
    stream, group = streams.UNIT_POSITION.name, "dispatch"
    sync_client.xgroup_create(stream, group, id="0", mkstream=True)
    for i in range(20):
        sync_client.xadd(stream, {"n": i}, maxlen=10, approximate=False)
    sync_client.xreadgroup(group, "c1", {stream: ">"}, count=3)
    for i in range(20):
        sync_client.xadd(stream, {"n": i}, maxlen=10, approximate=False)
    behind = unread_by_group(sync_client, stream, _group_info(sync_client, stream, group))
    assert behind == 10  # all ten entries kept are still to read: no more than that
    sync_client.xreadgroup(group, "c1", {stream: ">"}, count=100)
    info = _group_info(sync_client, stream, group)
    assert info["lag"] > 0  # what Redis says
    assert unread_by_group(sync_client, stream, info) == 0
    sync_client.xadd(stream, {"n": "new"}, maxlen=10, approximate=False)
    assert unread_by_group(sync_client, stream, _group_info(sync_client, stream, group)) == 1


def test_the_lag_of_a_group_on_an_untrimmed_stream_is_redis_own(
        sync_client: sync_redis.Redis) -> None:
    stream, group = streams.ORDER_RESPONDED.name, "dispatch"
    sync_client.xgroup_create(stream, group, id="0", mkstream=True)
    assert unread_by_group(sync_client, stream, _group_info(sync_client, stream, group)) == 0
    for i in range(5):
        sync_client.xadd(stream, {"n": i})
    assert unread_by_group(sync_client, stream, _group_info(sync_client, stream, group)) == 5
    sync_client.xreadgroup(group, "c1", {stream: ">"}, count=2)
    assert unread_by_group(sync_client, stream, _group_info(sync_client, stream, group)) == 3


def test_the_lag_of_a_group_far_behind_is_never_more_than_the_stream_holds(
        sync_client: sync_redis.Redis) -> None:
    stream, group = streams.UNIT_POSITION.name, "dispatch"
    sync_client.xgroup_create(stream, group, id="0", mkstream=True)
    for i in range(COUNTED_LAG + 50):
        sync_client.xadd(stream, {"n": i})
    info = _group_info(sync_client, stream, group)
    assert unread_by_group(sync_client, stream, info) == COUNTED_LAG + 50  # Redis's own
    sync_client.xreadgroup(group, "c1", {stream: ">"}, count=3)
    for i in range(COUNTED_LAG + 50):  # trimmed to 120 while the group had read 3
        sync_client.xadd(stream, {"n": i}, maxlen=COUNTED_LAG + 20, approximate=False)
    info = _group_info(sync_client, stream, group)
    assert info["lag"] > COUNTED_LAG + 20
    assert unread_by_group(sync_client, stream, info) == COUNTED_LAG + 20
