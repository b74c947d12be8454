"""Review of the day's notify and intake changes: what the quick fixes broke at their edges
(a script whose reply redis-py lost and sent again, reports that systems sent before the
flag limit), against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.notify import store
from services.notify.channels import Outcome
from services.notify.config import Settings
from services.notify.fallback import FallbackTimers
from shared.events import OrderIssued, utcnow
from shared.runtime import stop_task
from tests.helpers import poll_until
from tests.integration.intake.conftest import intake, system_key  # noqa: F401 (fixture)
from tests.integration.notify.conftest import ADMIN_TOKEN, an_order

# --- notify: a fallback message whose mark's reply was lost -------------------------------


class LostReplyRedis(Redis):
    """A client whose first reply to each fallback mark script is lost on the way: redis-py
    (retry_on_error, shared.bus) then sends the same EVALSHA again, and Redis runs it twice."""

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:  # type: ignore[override]
        reply = await super().evalsha(sha, numkeys, *keys_and_args)
        if numkeys and str(keys_and_args[0]).endswith(":fallback_sent"):
            reply = await super().evalsha(sha, numkeys, *keys_and_args)
        return reply


class SmsStandIn:
    """The chain's last channel, a gateway that takes every message."""

    name = "sms"
    contact_field = "phone"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def reaches(self, device: store.DeviceRecord) -> bool:
        return device.phone is not None

    async def send(self, order: OrderIssued, device: store.DeviceRecord) -> Outcome:
        self.sent.append((order.order_id, device.device_id))
        return Outcome("sent", "HTTP 202")


@pytest.fixture
async def lossy(clean_redis: str) -> AsyncIterator[Redis]:
    client = LostReplyRedis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


async def test_an_sms_whose_mark_was_sent_twice_by_redis_py_still_goes_out_once(
        lossy: Redis, clean_redis: str) -> None:
    # A P1 order 8 s before its deadline, its SMS step due. The reply to the script marking
    # the message `sending` is lost (a connection reset); redis-py sends the script again,
    # which found the mark this very sender had just taken and answered `busy`: the replica
    # sent nothing, and the message's retry (when the "other" sender's time ran out, 12 s
    # later) came after the deadline: no SMS at all for a member whose page is closed.
    await store.touch_device(lossy, device_id="dev-a", member_id="m-a", team_id="t1",
                             agency_kind="police", district="d1")
    await store.set_device_channel(lossy, "dev-a", field="phone", value="+8613800000001")
    issued = utcnow()
    order = an_order("t1", priority="P1", occurred_at=issued,
                     ack_by=issued + timedelta(seconds=8))
    await store.save_orders(lossy, [store.NewOrder(order, {})], fallback_after_s=0.0,
                            fallback_steps=1, ttl_s=600)
    sms = SmsStandIn()
    timers = FallbackTimers(redis=lossy, orders=None, chain=[sms],  # type: ignore[arg-type]
                            settings=Settings(redis_url=clean_redis, admin_token=ADMIN_TOKEN,
                                              channel_timeout_s=10.0))
    await timers.fire(order.order_id)
    assert sms.sent == [(order.order_id, "dev-a")]
    await timers.fire(store.retry_timer(order.order_id, 0))  # a retry timer finds it sent
    assert sms.sent == [(order.order_id, "dev-a")]
    attempts = (await store.deliveries(lossy, order.order_id))["attempts"]
    assert [a["outcome"] for a in attempts if a["channel"] == "sms"] == ["sent"]


# --- intake: flags that systems sent before the limit --------------------------------------


def report(ref: str, **over: object) -> dict[str, object]:
    body: dict[str, object] = {"external_ref": ref, "category": "violence", "district": "d1",
                               "location": {"lat": 22.817, "lon": 108.3665}}
    body.update(over)
    return body


async def test_a_report_accepted_before_the_flag_limit_is_still_an_idempotent_retry(
        intake: httpx.AsyncClient, clean_redis: str) -> None:  # noqa: F811
    # Video analytics sent a report yesterday with a 33-character flag; intake took it (the
    # record keeps no flags: the same record a report without the flag makes). Its answer was
    # lost, so the system sends the very same report again today: it must be told 200 with the
    # incident it has, not 422 "wrong" (it would drop the report as refused and never learn the
    # incident's id to follow it).
    key = await system_key(intake, ["d1"])
    long_flag = "face_match_watchlist_confidence_9"
    assert len(long_flag) == 33
    first = await intake.post("/v1/incidents", headers=key, json=report("cam-7"))
    assert first.status_code == 202, first.text
    # made then, before the record kept its report's digest (services.intake.domain.
    # report_fingerprint: with one, no report with such a flag can have made it)
    redis = Redis.from_url(clean_redis)
    await redis.hdel(f"intake:incident:{first.json()['incident_id']}", "fingerprint")
    await redis.aclose()
    again = await intake.post("/v1/incidents", headers=key,
                              json=report("cam-7", flags=["in_progress", long_flag]))
    assert again.status_code == 200, again.text
    assert again.json()["incident_id"] == first.json()["incident_id"]
    # a new report with it is refused as before, naming the flag, echoing nothing
    new = await intake.post("/v1/incidents", headers=key,
                            json=report("cam-8", flags=["in_progress", long_flag]))
    assert new.status_code == 422, new.text
    assert new.json()["error"]["field"] == "flags.1" and long_flag not in new.text
    # and a report made since, sent again with such a flag, is no retry of it: refused alike
    made = await intake.post("/v1/incidents", headers=key, json=report("cam-9"))
    assert made.status_code == 202, made.text
    resent = await intake.post("/v1/incidents", headers=key,
                               json=report("cam-9", flags=["in_progress", long_flag]))
    assert resent.status_code == 422 and resent.json()["error"]["field"] == "flags.1"


# --- notify: a replica stopped while a step is sent (a deploy, a restart) -------------------


class HangingSms(SmsStandIn):
    """A gateway that takes the request and never answers (within CHANNEL_TIMEOUT_S)."""

    def __init__(self) -> None:
        super().__init__()
        self.called = asyncio.Event()

    async def send(self, order: OrderIssued, device: store.DeviceRecord) -> Outcome:
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("never answers")


def replica_settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, admin_token=ADMIN_TOKEN, fallback_lease_s=30.0,
                    fallback_poll_s=0.05, fallback_after_s=0.0, channel_timeout_s=10.0)


async def test_a_replica_stopped_while_sending_hands_its_messages_over_at_once(
        clean_redis: str) -> None:
    # A P1 order's SMS step is being sent when its replica is stopped (a rolling deploy). Its
    # timer stayed leased for FALLBACK_LEASE_S (30 s) and its message marked `sending` for
    # CHANNEL_TIMEOUT_S more: the replica that carries on sent the SMS only after the order's
    # deadline had passed (dispatch withdrew it): the member whose page is closed never heard.
    redis = Redis.from_url(clean_redis, decode_responses=True)
    try:
        await store.touch_device(redis, device_id="dev-b", member_id="m-b", team_id="t2",
                                 agency_kind="police", district="d1")
        await store.set_device_channel(redis, "dev-b", field="phone", value="+8613800000002")
        issued = utcnow()
        order = an_order("t2", priority="P1", occurred_at=issued,
                         ack_by=issued + timedelta(seconds=25))
        await store.save_orders(redis, [store.NewOrder(order, {})], fallback_after_s=0.0,
                                fallback_steps=1, ttl_s=600)
        hanging = HangingSms()
        stopping = FallbackTimers(redis=redis, orders=None,  # type: ignore[arg-type]
                                  chain=[hanging], settings=replica_settings(clean_redis))
        task = asyncio.create_task(stopping.run())
        await asyncio.wait_for(hanging.called.wait(), timeout=5)
        await stop_task(task)

        sms = SmsStandIn()
        carrying_on = FallbackTimers(redis=redis, orders=None,  # type: ignore[arg-type]
                                     chain=[sms], settings=replica_settings(clean_redis))
        task = asyncio.create_task(carrying_on.run())
        try:
            await poll_until(lambda: sms.sent, "the other replica sends the SMS", timeout=8)
        finally:
            await stop_task(task)
        assert sms.sent == [(order.order_id, "dev-b")]
    finally:
        await redis.aclose()
