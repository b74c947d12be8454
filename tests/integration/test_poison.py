"""Issue #6: poison on every consumed stream, each service in-process against a real Redis.

A poison entry (raw garbage fields, a FastStream envelope holding broken JSON, valid JSON of
the wrong shape, an envelope FastStream itself cannot read) ends in `dlq.<stream>` with its
reason, and the consumer goes on: the next valid event is processed. A valid event that
was dead-lettered because of a fault in Redis is processed once when it is replayed through
the service's admin endpoint after the fault is fixed.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from services.notify import store as notify_store
from services.volunteers.store import keys as volunteer_keys
from shared import streams
from shared.bus import dead_letter_entry
from shared.dead_letters import REPLAY_SAFE_S
from shared.events import IncidentUpdated, utcnow
from tests.helpers import poll_until, read_stream
from tests.integration.stream_probes import (
    ADMIN,
    SCENARIOS,
    Effect,
    Service,
    _is,
    assigned_in_dispatch,
    dispatch_incident,
    dispatch_status,
    envelope,
    incident_updated,
    intake_incident,
    notify_order,
    on_shift,
    order_delivered,
    order_issued,
    order_responded,
    order_withdrawn,
    reported_at_intake,
    running,
    team_status,
)

MAX_DELIVERIES = 3


async def poisons(model: str) -> dict[str, tuple[dict[bytes, bytes], str]]:
    """Each kind of poison, with what its dead letter's reason must say."""
    return {
        "raw fields": ({b"garbage": b"\x00 not an event", b"\xff\xfe": b"\x81\x82"},
                       "unreadable stream entry"),
        "an envelope of broken JSON": (
            {b"__data__": await envelope(b'{"event_id": "e1", "dis')},
            f"invalid {model}: (body): json_invalid"),
        "JSON of the wrong shape": (
            {b"__data__": await envelope(json.dumps(
                {"incident_id": 42, "order_id": ["not", "an", "id"], "district": ""}).encode())},
            f"invalid {model}: "),
        "an envelope FastStream cannot read": (
            {b"__data__": json.dumps({"data": "{}", "headers": ["not", "a", "map"]}).encode()},
            "unreadable stream entry"),
    }


def poison_step(svc: Service):  # -> stream_probes.Step
    async def step(stream: streams.Stream, valid: BaseModel, effect: Effect) -> None:
        """Poison `stream`, then publish `valid`: the poison is dead-lettered with its
        reason, the valid event is processed after it, and nothing stays pending."""
        assert svc.name in stream.consumers
        before = len(await svc.dead_letters(stream.name))
        kinds = await poisons(type(valid).__name__)
        ids = [await svc.redis.xadd(stream.name, fields) for fields, _ in kinds.values()]
        await svc.publish(stream, valid)
        await poll_until(effect, f"{svc.name} processing a valid {stream.name} event "
                                 "published after the poison", timeout=15)

        async def all_dead() -> list[dict[bytes, bytes]] | None:
            letters = (await svc.dead_letters(stream.name))[before:]
            return letters if len(letters) >= len(ids) else None

        letters = await poll_until(all_dead, f"{len(ids)} dead letters in dlq.{stream.name}")
        by_entry = {f[b"entry_id"]: f for f in letters}
        assert set(by_entry) == set(ids)  # in any order: some readers run several workers
        for (kind, (_, says)), entry_id in zip(kinds.items(), ids, strict=True):
            letter = by_entry[entry_id]
            reason = letter[b"reason"].decode()
            assert says in reason, f"{stream.name}: {kind} dead-lettered as {reason!r}"
            assert letter[b"stream"] == stream.name.encode()
            assert letter[b"payload"], f"{stream.name}: {kind} dead-lettered without its payload"
        await poll_until(lambda: svc.drained(stream.name), f"{stream.name}/{svc.name} drained")
        svc.covered.add(stream.name)

    return step


@pytest.mark.parametrize("service", sorted(SCENARIOS))
async def test_poison_is_dead_lettered_with_its_reason_and_the_next_event_is_processed(
        clean_redis: str, service: str) -> None:
    async with running(service, clean_redis, max_deliveries=MAX_DELIVERIES) as svc:
        await SCENARIOS[service](svc, poison_step(svc), "p1")
        svc.assert_every_consumed_stream_covered()
        assert await svc.ready()


async def the_dead_letter_reason(svc: Service, stream: streams.Stream) -> str:
    async def one() -> list[dict[bytes, bytes]]:
        return await svc.dead_letters(stream.name)

    (letter,) = await poll_until(one, f"the dead letter on dlq.{stream.name}", timeout=20)
    assert letter[b"attempts"] == str(MAX_DELIVERIES).encode()
    return letter[b"reason"].decode()


async def test_intake_applies_a_replayed_update_once_after_the_fix(clean_redis: str) -> None:
    async with running("intake", clean_redis, max_deliveries=MAX_DELIVERIES) as svc:
        incident_id = await reported_at_intake(svc, "r1")
        # The fault: the key of the update's dedupe set has the wrong type.
        await svc.redis.set(f"intake:seen:{incident_id}", "corrupt")
        await svc.publish(streams.INCIDENT_UPDATED, incident_updated(incident_id))
        assert "WRONGTYPE" in await the_dead_letter_reason(svc, streams.INCIDENT_UPDATED)
        assert (await intake_incident(svc, incident_id))["status"] == "reported"
        await svc.redis.delete(f"intake:seen:{incident_id}")
        await svc.replay_the_dead_letter(streams.INCIDENT_UPDATED)

        async def assigned() -> bool:
            return (await intake_incident(svc, incident_id))["status"] == "assigned"

        await poll_until(assigned, "the replayed update applied")
        await poll_until(lambda: svc.drained(streams.INCIDENT_UPDATED.name), "drained")
        timeline = (await intake_incident(svc, incident_id))["timeline"]
        assert [e["kind"] for e in timeline] == ["status"]  # once
        assert await svc.dead_letters(streams.INCIDENT_UPDATED.name) == []


async def test_dispatch_records_a_replayed_receipt_once_after_the_fix(clean_redis: str) -> None:
    async with running("dispatch", clean_redis, max_deliveries=MAX_DELIVERIES) as svc:
        team, incident_id, order_id = await assigned_in_dispatch(svc, "r1")
        # The fault: the incident's timeline, where the receipt goes, has the wrong type.
        key = f"dispatch:timeline:{incident_id}"
        timeline = await svc.redis.lrange(key, 0, -1)
        await svc.redis.delete(key)
        await svc.redis.set(key, "corrupt")
        await svc.publish(streams.ORDER_DELIVERED, order_delivered(order_id, incident_id, team))
        assert "WRONGTYPE" in await the_dead_letter_reason(svc, streams.ORDER_DELIVERED)
        await svc.redis.delete(key)
        await svc.redis.rpush(key, *timeline)
        await svc.replay_the_dead_letter(streams.ORDER_DELIVERED)

        async def receipts() -> int:
            inc = await dispatch_incident(svc, incident_id) or {}
            return sum(e["kind"] == "receipt" for e in inc["timeline"])

        await poll_until(receipts, "the replayed receipt in the timeline")
        await poll_until(lambda: svc.drained(streams.ORDER_DELIVERED.name), "drained")
        assert await receipts() == 1
        assert (await dispatch_incident(svc, incident_id) or {})["orders"][0]["delivered_at"]


async def test_dispatch_resolves_the_incident_of_a_replayed_resolution_after_the_fix(
        clean_redis: str) -> None:
    async with running("dispatch", clean_redis, max_deliveries=MAX_DELIVERIES) as svc:
        team, incident_id, order_id = await assigned_in_dispatch(svc, "r1")
        # The fault: the team's claim, which a resolution releases first, has the wrong type.
        await svc.redis.delete(f"dispatch:claim:{team}")
        await svc.redis.hset(f"dispatch:claim:{team}", "corrupt", "1")
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, incident_id, team, "resolved"))
        assert "WRONGTYPE" in await the_dead_letter_reason(svc, streams.ORDER_RESPONDED)
        await svc.redis.delete(f"dispatch:claim:{team}")
        await svc.replay_the_dead_letter(streams.ORDER_RESPONDED)
        await poll_until(lambda: _is(dispatch_status(svc, incident_id), "resolved"),
                         "the incident resolved by the replayed response")
        await poll_until(lambda: svc.drained(streams.ORDER_RESPONDED.name), "drained")
        assert await svc.redis.xlen(streams.INCIDENT_CLOSED.name) == 1  # closed once


async def test_a_resolution_that_fails_halfway_publishes_the_incidents_end_once_after_the_fix(
        clean_redis: str) -> None:
    async with running("dispatch", clean_redis, max_deliveries=MAX_DELIVERIES) as svc:
        team, incident_id, order_id = await assigned_in_dispatch(svc, "r1")
        # The fault: incident.closed, which a resolution writes after moving the order and
        # before the incident's own change, is not a stream. The attempts fail halfway; the
        # step's writes stop there (one script), so the replay writes the rest once.
        await svc.redis.set(streams.INCIDENT_CLOSED.name, "corrupt")
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, incident_id, team, "resolved"))
        assert "WRONGTYPE" in await the_dead_letter_reason(svc, streams.ORDER_RESPONDED)
        assert await dispatch_status(svc, incident_id) == "assigned"
        await svc.redis.delete(streams.INCIDENT_CLOSED.name)
        await svc.replay_the_dead_letter(streams.ORDER_RESPONDED)
        await poll_until(lambda: _is(dispatch_status(svc, incident_id), "resolved"),
                         "the incident resolved by the replayed response")
        await poll_until(lambda: svc.drained(streams.ORDER_RESPONDED.name), "drained")
        assert await svc.redis.xlen(streams.INCIDENT_CLOSED.name) == 1
        updates = read_stream(clean_redis, streams.INCIDENT_UPDATED.name, IncidentUpdated)
        assert [u.status for u in updates if u.incident_id == incident_id].count("resolved") == 1
        timeline = (await dispatch_incident(svc, incident_id) or {})["timeline"]
        assert [e.get("detail") for e in timeline].count("resolved") == 1
        assert await svc.redis.hget("dispatch:status-counts", "resolved") == b"1"
        assert not await svc.redis.exists(f"dispatch:claim:{team}")


async def test_notify_stores_and_pushes_a_replayed_order_once_after_the_fix(
        clean_redis: str) -> None:
    async with running("notify", clean_redis, max_deliveries=MAX_DELIVERIES) as svc:
        # The fault: the order's own key has the wrong type.
        await svc.redis.set("notify:order:o1", "corrupt")
        await svc.publish(streams.ORDER_ISSUED, order_issued("o1", "t1"))
        assert "WRONGTYPE" in await the_dead_letter_reason(svc, streams.ORDER_ISSUED)
        await svc.redis.delete("notify:order:o1")
        await svc.replay_the_dead_letter(streams.ORDER_ISSUED)
        order = await poll_until(lambda: notify_order(svc, "o1"), "the replayed order stored")
        assert order["state"] == "issued" and not order["withdrawn"]
        await poll_until(lambda: svc.drained(streams.ORDER_ISSUED.name), "drained")
        r = await svc.client.get("/v1/orders/o1/deliveries", headers=ADMIN)
        assert r.status_code == 200, r.text
        fan_outs = [a for a in r.json()["attempts"] if a["outcome"] in ("fanned_out", "no_socket")]
        assert len(fan_outs) == 1  # pushed once


async def test_volunteers_apply_a_replayed_order_once_after_the_fix(clean_redis: str) -> None:
    async with running("volunteers", clean_redis, max_deliveries=MAX_DELIVERIES) as svc:
        await on_shift(svc, "r1")
        announced = await svc.redis.xlen(streams.UNIT_STATUS.name)
        # The fault: the key of the order's record has the wrong type.
        order_key = volunteer_keys.order("o1")
        await svc.redis.hset(order_key, "corrupt", "1")
        await svc.publish(streams.ORDER_ISSUED, order_issued("o1", "t-r1"))
        assert "WRONGTYPE" in await the_dead_letter_reason(svc, streams.ORDER_ISSUED)
        assert await team_status(svc, "t-r1") == "available"
        await svc.redis.delete(order_key)
        await svc.replay_the_dead_letter(streams.ORDER_ISSUED)
        await poll_until(lambda: _is(team_status(svc, "t-r1"), "dispatched"),
                         "the replayed order applied")
        await poll_until(lambda: svc.drained(streams.ORDER_ISSUED.name), "drained")
        # one unit.status announcing `dispatched`, however often the event was tried
        assert await svc.redis.xlen(streams.UNIT_STATUS.name) == announced + 1


async def test_notify_never_announces_a_replayed_order_older_than_it_keeps_orders(
        clean_redis: str) -> None:
    """Dead letters are kept RETENTION_DAYS (30), notify's order records ORDER_TTL_S (14
    days). An order.issued that volunteers dead-lettered, although notify handled it (the
    order went out and was withdrawn), is replayed on day 15: notify's group reads it again
    and finds no record. It must not store it as a new live order: the team's phones would
    get a two-week-old order as live, and its Web Push and SMS fallback set again (nor must
    it after a group re-created at 0 on a 30-day stream). ORDER_TTL_S=2 here stands for
    the 14 days having passed."""
    text = Redis.from_url(clean_redis, decode_responses=True)
    async with running("notify", clean_redis, order_ttl_s=2) as svc:
        await svc.publish(streams.ORDER_ISSUED, order_issued("o-old", "t-old"))
        await poll_until(lambda: notify_order(svc, "o-old"), "the order stored")
        await svc.publish(streams.ORDER_WITHDRAWN, order_withdrawn("o-old", "t-old"))

        async def withdrawn() -> bool:
            return bool((await notify_order(svc, "o-old") or {}).get("withdrawn"))

        await poll_until(withdrawn, "the order withdrawn (its deadline missed)")
        assert [r.order_id for r in await notify_store.open_orders(text, "t-old")] == []
        # volunteers' group gave up on the same entry (its bug), so it is in dlq.order.issued
        ((entry_id, fields),) = await svc.redis.xrange(streams.ORDER_ISSUED.name)
        await dead_letter_entry(svc.redis, stream=streams.ORDER_ISSUED.name, entry_id=entry_id,
                                fields=fields, group="volunteers", reason="RuntimeError: bug",
                                attempts=5)

        # ORDER_TTL_S later (14 days by default): notify's record of the order is gone
        async def forgotten() -> bool:
            return await notify_order(svc, "o-old") is None

        await poll_until(forgotten, "notify's record expired", 10)
        r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN,
                                 params={"stream": streams.ORDER_ISSUED.name})
        (letter,) = r.json()["dead_letters"]
        r = await svc.client.post(
            f"/v1/admin/dead-letters/order.issued/{letter['dead_letter_id']}/replay", headers=ADMIN)
        assert r.status_code == 200, r.text
        await poll_until(lambda: svc.drained(streams.ORDER_ISSUED.name), "the replay read", 10)
        live = [r.order_id for r in await notify_store.open_orders(text, "t-old")]
        await text.aclose()
        assert live == [], "a withdrawn two-week-old order is live again on the team's phones"
        assert await notify_order(svc, "o-old") is None  # not stored again
        assert await svc.redis.zscore(notify_store.FALLBACK, "o-old") is None  # no fallback
        assert await svc.dead_letters(streams.ORDER_ISSUED.name) == []  # acknowledged


async def test_a_dead_letter_older_than_consumers_remember_is_replayed_only_by_force(
        clean_redis: str) -> None:
    """A replay goes to every group of the stream, and a group that handled the event
    forgets it after a while (dispatch's marks: 7 days): a dead letter older than that is
    refused (409) unless the operator forces it."""
    async with running("notify", clean_redis) as svc:
        days_ago = REPLAY_SAFE_S / 86_400 + 1
        old = order_issued("o-stale", "t-stale").model_copy(
            update={"occurred_at": utcnow() - timedelta(days=days_ago)})
        old_entry = f"{int((time.time() - days_ago * 86_400) * 1000)}-0"
        await dead_letter_entry(svc.redis, stream=streams.ORDER_ISSUED.name,
                                entry_id=old_entry,
                                fields={b"__data__": await envelope(old.model_dump_json().encode())},
                                group="volunteers", reason="RuntimeError: bug", attempts=5)
        r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN)
        (letter,) = r.json()["dead_letters"]
        url = f"/v1/admin/dead-letters/order.issued/{letter['dead_letter_id']}/replay"
        r = await svc.client.post(url, headers=ADMIN)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "conflict" and "force=true" in r.json()["error"]["message"]
        assert await svc.redis.xlen(streams.ORDER_ISSUED.name) == 0  # nothing replayed
        assert len(await svc.dead_letters(streams.ORDER_ISSUED.name)) == 0  # not notify's
        assert await svc.redis.xlen(streams.ORDER_ISSUED.dead_letters) == 1  # still there
        r = await svc.client.post(url, headers=ADMIN, params={"force": "true"})
        assert r.status_code == 200, r.text
        assert await svc.redis.xlen(streams.ORDER_ISSUED.dead_letters) == 0
        assert await svc.redis.xlen(streams.ORDER_ISSUED.name) == 1


async def test_the_dead_letter_list_merges_every_stream_newest_first_with_totals_and_pages_back(
        clean_redis: str) -> None:
    """`GET /v1/admin/dead-letters` (what the runbook says to read when
    lianfang_stream_dead_letters > 0) must not cut the streams in name order at `limit`: 50
    dead letters of notify's device.revoked (a noisy, harmless stream) would hide an
    order.issued dead letter (an order that never reached a phone), with `count` 50 and no
    sign of it. Each stream's true total is given, and `before` pages back through all of
    them, so any dead letter can be found to be replayed."""
    async with running("notify", clean_redis) as svc:
        await dead_letter_entry(svc.redis, stream=streams.ORDER_ISSUED.name, entry_id=b"1-0",
                                fields={b"__data__": b"{}"}, group="notify",
                                reason="RuntimeError: bug", attempts=5)
        # dead-letter ids are Redis's time (and a sequence per stream within a millisecond)
        await asyncio.sleep(0.01)
        for n in range(50):
            await dead_letter_entry(svc.redis, stream=streams.DEVICE_REVOKED.name,
                                    entry_id=f"{n + 2}-0", fields={b"junk": b"1"},
                                    group="notify", reason="invalid DeviceRevoked", attempts=1)
        await asyncio.sleep(0.01)
        await dead_letter_entry(svc.redis, stream=streams.ORDER_ISSUED.name, entry_id=b"60-0",
                                fields={b"__data__": b"{}"}, group="notify",
                                reason="RuntimeError: bug", attempts=5)
        r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN)
        assert r.status_code == 200, r.text
        body = r.json()
        shown = [(d["stream"], d["original_entry_id"]) for d in body["dead_letters"]]
        assert shown[0] == (streams.ORDER_ISSUED.name, "60-0"), "newest first, any stream"
        assert len(shown) == body["count"] == 50
        assert body["totals"] == {streams.ORDER_ISSUED.name: 2, streams.ORDER_WITHDRAWN.name: 0,
                                  streams.ORDER_AMENDED.name: 0, streams.DEVICE_REVOKED.name: 50}
        assert body["total"] == 52
        ids = [d["dead_letter_id"] for d in body["dead_letters"]]
        assert ids == sorted(ids, key=streams.entry_id_order, reverse=True)

        # page back with next_before: every dead letter once, the oldest last
        seen, before = list(shown), body["next_before"]
        while before is not None:
            r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN,
                                     params={"before": before, "limit": 20})
            assert r.status_code == 200, r.text
            seen += [(d["stream"], d["original_entry_id"]) for d in r.json()["dead_letters"]]
            before = r.json()["next_before"]
        assert len(seen) == len(set(seen)) == 52
        assert seen[-1] == (streams.ORDER_ISSUED.name, "1-0")

        # one stream asked for: its own, with its total, and the old answer's fields kept
        r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN,
                                 params={"stream": streams.ORDER_ISSUED.name, "limit": 1})
        body = r.json()
        assert [d["original_entry_id"] for d in body["dead_letters"]] == ["60-0"]
        assert (body["count"], body["total"], body["totals"]) == (
            1, 2, {streams.ORDER_ISSUED.name: 2})
        r = await svc.client.get("/v1/admin/dead-letters", headers=ADMIN, params={
            "stream": streams.ORDER_ISSUED.name, "before": body["next_before"]})
        assert [d["original_entry_id"] for d in r.json()["dead_letters"]] == ["1-0"]
        assert r.json()["next_before"] is None
