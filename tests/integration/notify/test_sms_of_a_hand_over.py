"""A hand-over's SMS through the real adapter: it says it is a hand-over and when it must be
filed (its date in the district's time), and the gateway gets both as fields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from services.notify import store
from shared.events import utcnow
from tests.helpers import poll_until

from .conftest import an_order, serving
from .test_fallback_failures import Outside, a_phone, sms_replica


@pytest.fixture
async def outside() -> AsyncIterator[Outside]:
    standin = Outside()
    async with serving(standin.app()) as url:
        standin.url = url
        yield standin


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


async def test_a_station_member_texted_a_hand_over_reads_it_as_one_to_file(
        clean_redis: str, redis: Redis, outside: Outside) -> None:
    # "P2紧急 纠纷：…。指令号 …" read as a live emergency; it is a case to file within a day
    await a_phone(redis, "st-dev", "st", "+8613800000009")
    shanghai = ZoneInfo("Asia/Shanghai")
    tomorrow = datetime.now(shanghai) + timedelta(days=1)
    due = tomorrow.replace(hour=0, minute=30, second=0, microsecond=0)
    order = an_order("st", kind="handover", occurred_at=utcnow(), ack_by=None,
                     filing_due=due.astimezone(UTC))
    await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.0,
                            fallback_steps=1, ttl_s=600)
    async with sms_replica(clean_redis, redis, outside, tz=shanghai):
        await poll_until(lambda: outside.at("/sms"), "the hand-over's SMS")
    [sent] = [t.json() for t in outside.at("/sms")]
    assert sent["text"].startswith("【联防】（移交）P2紧急 纠纷")
    assert f"立案期限{due.month}月{due.day}日00:30。" in sent["text"]
    assert "请于" not in sent["text"]  # no deadline to acknowledge by
    assert (sent["order_kind"], sent["filing_due"], sent["ack_by"]) == (
        "handover", due.isoformat(), None)
    assert sent["filing_due"].endswith("+08:00")
