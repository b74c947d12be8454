"""Issue #6: poison on every consumed stream, each service in-process against a real Redis.

A poison entry (raw garbage fields, a FastStream envelope holding broken JSON, valid JSON of
the wrong shape, an envelope FastStream itself cannot read) ends in `dlq.<stream>` with its
reason, and the consumer goes on: the next valid event is processed. A valid event that
was dead-lettered because of a fault in Redis is processed once when it is replayed through
the admin endpoint after the fault is fixed.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import uuid4

import httpx
from faststream.redis import RedisBroker
from faststream.redis.parser.binary import BinaryMessageFormatV1
from pydantic import BaseModel
from redis.asyncio import Redis

from services.volunteers.store import keys
from shared import streams
from shared.events import (
    DeviceRevoked,
    IncidentClosed,
    IncidentReported,
    IncidentUpdated,
    Location,
    OrderDelivered,
    OrderIssued,
    OrderResponded,
    OrderWithdrawn,
    TimelineEntry,
    UnitPosition,
    UnitStatus,
    utcnow,
)
from tests.helpers import poll_until

ADMIN_TOKEN = "poison-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UNREACHABLE = "http://127.0.0.1:9"  # dispatch's zone lookups fail fast: no volunteers here
MAX_DELIVERIES = 3
HERE = (22.8170, 108.3665)


async def envelope(body: bytes) -> bytes:
    """FastStream's own binary envelope, as a publisher would write it, around `body`."""
    return await BinaryMessageFormatV1.encode(message=body, reply_to=None,
                                              headers={"content-type": "application/json"},
                                              correlation_id=uuid4().hex)


async def poisons() -> dict[str, dict[bytes, bytes]]:
    return {
        "raw fields": {b"garbage": b"\x00 not an event", b"\xff\xfe": b"\x81\x82"},
        "an envelope of broken JSON": {b"__data__": await envelope(b'{"event_id": "e1", "dis')},
        "JSON of the wrong shape": {b"__data__": await envelope(json.dumps(
            {"incident_id": 42, "order_id": ["not", "an", "id"], "district": ""}).encode())},
        "an envelope FastStream cannot read": {
            b"__data__": json.dumps({"data": "{}", "headers": ["not", "a", "map"]}).encode()},
    }


@dataclass
class Service:
    name: str
    client: httpx.AsyncClient  # the app, in-process
    redis: Redis  # bytes, as another service reads the streams
    broker: RedisBroker  # publishes as the producing service would
    covered: set[str] = field(default_factory=set)

    async def publish(self, stream: streams.Stream, event: BaseModel) -> None:
        await self.broker.publish(event, stream=stream.name)

    async def dead_letters(self, stream: str) -> list[dict[bytes, bytes]]:
        return [f for _, f in await self.redis.xrange(f"dlq.{stream}")
                if f.get(b"group") == self.name.encode()]

    async def pending(self, stream: str) -> int:
        return int((await self.redis.xpending(stream, self.name))["pending"])

    async def poison_then(self, stream: streams.Stream, valid: BaseModel,
                          processed: Callable[[], Awaitable[Any]]) -> None:
        """Poison `stream`, then publish `valid`: the poison is dead-lettered with its reason,
        the valid event is processed after it, and nothing stays pending."""
        assert self.name in stream.consumers
        before = len(await self.dead_letters(stream.name))
        kinds = await poisons()
        ids = [await self.redis.xadd(stream.name, fields) for fields in kinds.values()]
        await self.publish(stream, valid)
        await poll_until(processed, f"{self.name} processing a valid {stream.name} event "
                                    "published after the poison", timeout=15)

        async def all_dead() -> list[dict[bytes, bytes]] | None:
            letters = (await self.dead_letters(stream.name))[before:]
            return letters if len(letters) >= len(ids) else None

        letters = await poll_until(all_dead, f"{len(ids)} dead letters in dlq.{stream.name}")
        by_entry = {f[b"entry_id"]: f for f in letters}
        assert set(by_entry) == set(ids)  # in any order: some readers run several workers
        for kind, entry_id in zip(kinds, ids, strict=True):
            letter = by_entry[entry_id]
            assert letter[b"reason"], f"{stream.name}: {kind} dead-lettered without a reason"
            assert letter[b"stream"] == stream.name.encode()
        await poll_until(lambda: self.drained(stream.name), f"{stream.name}/{self.name} drained")
        self.covered.add(stream.name)

    async def drained(self, stream: str) -> bool:
        return await self.pending(stream) == 0

    def assert_every_consumed_stream_covered(self) -> None:
        consumed = {s.name for s in streams.consumed_by(self.name)}
        assert self.covered == consumed, f"streams {self.name} reads without a poison check: " \
                                         f"{sorted(consumed - self.covered)}"

    async def replay_the_dead_letter(self, stream: streams.Stream) -> None:
        """Replay, through the service's admin endpoint, the one dead letter of `stream`."""
        r = await self.client.get("/v1/admin/dead-letters", headers=ADMIN,
                                  params={"stream": stream.name})
        assert r.status_code == 200, r.text
        (letter,) = [d for d in r.json()["dead_letters"] if d["group"] == self.name]
        r = await self.client.post(
            f"/v1/admin/dead-letters/{stream.name}/{letter['dead_letter_id']}/replay",
            headers=ADMIN)
        assert r.status_code == 200, r.text


@asynccontextmanager
async def running(name: str, redis_url: str, **overrides: Any) -> AsyncIterator[Service]:
    main = importlib.import_module(f"services.{name}.main")
    config = importlib.import_module(f"services.{name}.config")
    settings = config.Settings(
        redis_url=redis_url, admin_token=ADMIN_TOKEN, claim_idle_ms=200,
        max_deliveries=MAX_DELIVERIES, consumer_name=f"poison-{uuid4().hex[:6]}",
        volunteers_url=UNREACHABLE, **overrides)
    app = main.create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        redis = Redis.from_url(redis_url)
        broker = RedisBroker(redis_url)
        await broker.connect()
        try:
            async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as client:
                yield Service(name, client, redis, broker)
        finally:
            await broker.stop()
            await redis.aclose()


async def dead_letter_reason(svc: Service, stream: streams.Stream) -> str:
    async def one() -> list[dict[bytes, bytes]]:
        return await svc.dead_letters(stream.name)

    (letter,) = await poll_until(one, f"the dead letter on dlq.{stream.name}", timeout=20)
    assert letter[b"attempts"] == str(MAX_DELIVERIES).encode()
    return letter[b"reason"].decode()


# --- intake -------------------------------------------------------------------------------


async def reported_incident(svc: Service) -> dict[str, Any]:
    r = await svc.client.post("/v1/systems", headers=ADMIN,
                              json={"name": "110", "districts": ["d1"]})
    assert r.status_code == 201, r.text
    key = {"Authorization": f"Bearer {r.json()['api_key']}"}
    r = await svc.client.post("/v1/incidents", headers=key, json={
        "external_ref": uuid4().hex, "category": "noise", "district": "d1",
        "location": {"lat": HERE[0], "lon": HERE[1]}})
    assert r.status_code == 202, r.text
    return r.json()


def updated(incident_id: str, status: str = "assigned") -> IncidentUpdated:
    return IncidentUpdated(district="d1", incident_id=incident_id, seq=1, status=status,
                           priority="P4", entry=TimelineEntry(kind="status"))


async def intake_status(svc: Service, incident_id: str) -> str:
    r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["status"]


async def test_intake_dead_letters_poison_and_goes_on(clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        incident_id = (await reported_incident(svc))["incident_id"]
        await svc.poison_then(streams.INCIDENT_UPDATED, updated(incident_id),
                              lambda: _is(intake_status(svc, incident_id), "assigned"))

        async def off_the_open_index() -> bool:
            return await svc.redis.zscore("intake:open:d1:noise", incident_id) is None

        await svc.poison_then(streams.INCIDENT_CLOSED, IncidentClosed(
            district="d1", incident_id=incident_id, final_status="resolved", category="noise"),
            off_the_open_index)
        svc.assert_every_consumed_stream_covered()


async def test_intake_processes_a_replayed_dead_letter_once_after_the_fix(
        clean_redis: str) -> None:
    async with running("intake", clean_redis) as svc:
        incident_id = (await reported_incident(svc))["incident_id"]
        # The fault: the key holding the update's dedupe set has the wrong type.
        await svc.redis.set(f"intake:seen:{incident_id}", "corrupt")
        await svc.publish(streams.INCIDENT_UPDATED, updated(incident_id))
        assert "WRONGTYPE" in await dead_letter_reason(svc, streams.INCIDENT_UPDATED)
        assert await intake_status(svc, incident_id) == "reported"
        await svc.redis.delete(f"intake:seen:{incident_id}")
        await svc.replay_the_dead_letter(streams.INCIDENT_UPDATED)
        await poll_until(lambda: _is(intake_status(svc, incident_id), "assigned"),
                         "the replayed update applied")
        await poll_until(lambda: svc.drained(streams.INCIDENT_UPDATED.name), "drained")
        r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        assert [e["kind"] for e in r.json()["timeline"]] == ["status"]  # once
        assert await svc.dead_letters(streams.INCIDENT_UPDATED.name) == []


# --- dispatch -------------------------------------------------------------------------------


def unit_status(team_id: str = "t1") -> UnitStatus:
    return UnitStatus(district="d1", unit_id=team_id, status="available", agency_id="a1",
                      agency_kind="police", agency_role="patrol", mode="car", on_shift=True)


def unit_position(team_id: str = "t1") -> UnitPosition:
    return UnitPosition(district="d1", unit_id=team_id, lat=HERE[0] + 0.001, lon=HERE[1],
                        at=utcnow())


def incident_reported(incident_id: str, category: str = "noise") -> IncidentReported:
    return IncidentReported(district="d1", incident_id=incident_id, system_id="s1",
                            external_ref=incident_id, category=category, priority="P4",
                            location=Location(lat=HERE[0], lon=HERE[1]), reported_at=utcnow())


async def dispatch_units(svc: Service) -> dict[str, dict[str, Any]]:
    r = await svc.client.get("/v1/units", headers=ADMIN, params={"district": "d1"})
    assert r.status_code == 200, r.text
    return {u["team_id"]: u for u in r.json()["units"]}


async def dispatch_incident(svc: Service, incident_id: str) -> dict[str, Any] | None:
    r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code in (200, 404), r.text
    return r.json() if r.status_code == 200 else None


async def assigned_incident(svc: Service, incident_id: str) -> dict[str, Any]:
    await svc.publish(streams.UNIT_STATUS, unit_status())
    await svc.publish(streams.UNIT_POSITION, unit_position())
    await poll_until(lambda: _has_position(svc), "dispatch knowing the team and its place")
    await svc.publish(streams.INCIDENT_REPORTED, incident_reported(incident_id))

    async def assigned() -> dict[str, Any] | None:
        inc = await dispatch_incident(svc, incident_id)
        return inc if inc and inc["status"] == "assigned" else None

    return await poll_until(assigned, "the incident assigned to the team")


async def _has_position(svc: Service) -> bool:
    unit = (await dispatch_units(svc)).get("t1")
    return bool(unit and unit["position"] and unit["status"] == "available")


def delivered(order_id: str, incident_id: str) -> OrderDelivered:
    return OrderDelivered(district="d1", order_id=order_id, incident_id=incident_id,
                          team_id="t1", member_id="m1", device_id="dev1")


def responded(order_id: str, incident_id: str, response: str,
              team_id: str = "t1") -> OrderResponded:
    return OrderResponded(district="d1", order_id=order_id, incident_id=incident_id,
                          team_id=team_id, member_id="m1", device_id="dev1",
                          response=response)  # type: ignore[arg-type]


async def test_dispatch_dead_letters_poison_and_goes_on(clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        await svc.poison_then(streams.UNIT_STATUS, unit_status(),
                              lambda: _truthy(dispatch_units(svc), "t1"))
        await svc.poison_then(streams.UNIT_POSITION, unit_position(),
                              lambda: _has_position(svc))
        await svc.poison_then(streams.INCIDENT_REPORTED, incident_reported("inc1"),
                              lambda: _status_of(svc, "inc1", "assigned"))
        order_id = (await dispatch_incident(svc, "inc1") or {})["orders"][0]["order_id"]

        async def receipt() -> bool:
            inc = await dispatch_incident(svc, "inc1") or {}
            return any(e["kind"] == "receipt" for e in inc["timeline"])

        await svc.poison_then(streams.ORDER_DELIVERED, delivered(order_id, "inc1"), receipt)
        await svc.poison_then(streams.ORDER_RESPONDED, responded(order_id, "inc1", "acknowledged"),
                              lambda: _status_of(svc, "inc1", "acknowledged"))
        svc.assert_every_consumed_stream_covered()


async def test_dispatch_processes_a_replayed_receipt_once_after_the_fix(clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        inc = await assigned_incident(svc, "inc1")
        order_id = inc["orders"][0]["order_id"]
        # The fault: the incident's timeline, where the receipt goes, has the wrong type.
        timeline = await svc.redis.lrange("dispatch:timeline:inc1", 0, -1)
        await svc.redis.delete("dispatch:timeline:inc1")
        await svc.redis.set("dispatch:timeline:inc1", "corrupt")
        await svc.publish(streams.ORDER_DELIVERED, delivered(order_id, "inc1"))
        assert "WRONGTYPE" in await dead_letter_reason(svc, streams.ORDER_DELIVERED)
        await svc.redis.delete("dispatch:timeline:inc1")
        await svc.redis.rpush("dispatch:timeline:inc1", *timeline)
        await svc.replay_the_dead_letter(streams.ORDER_DELIVERED)

        async def receipts() -> int:
            inc = await dispatch_incident(svc, "inc1") or {}
            return sum(e["kind"] == "receipt" for e in inc["timeline"])

        await poll_until(receipts, "the replayed receipt in the timeline")
        await poll_until(lambda: svc.drained(streams.ORDER_DELIVERED.name), "drained")
        assert await receipts() == 1
        assert (await dispatch_incident(svc, "inc1") or {})["orders"][0]["delivered_at"]


async def test_dispatch_resolves_the_incident_of_a_replayed_resolution_after_the_fix(
        clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        inc = await assigned_incident(svc, "inc1")
        order_id = inc["orders"][0]["order_id"]
        # The fault: the team's claim, which a resolution releases, has the wrong type.
        await svc.redis.delete("dispatch:claim:t1")
        await svc.redis.hset("dispatch:claim:t1", "corrupt", "1")
        await svc.publish(streams.ORDER_RESPONDED, responded(order_id, "inc1", "resolved"))
        assert "WRONGTYPE" in await dead_letter_reason(svc, streams.ORDER_RESPONDED)
        await svc.redis.delete("dispatch:claim:t1")
        await svc.replay_the_dead_letter(streams.ORDER_RESPONDED)
        await poll_until(lambda: _status_of(svc, "inc1", "resolved"),
                         "the incident resolved by the replayed response")
        await poll_until(lambda: svc.drained(streams.ORDER_RESPONDED.name), "drained")
        closed = [e for _, e in await svc.redis.xrange(streams.INCIDENT_CLOSED.name)]
        assert len(closed) == 1  # incident.closed once


# --- notify -------------------------------------------------------------------------------


def order_issued(order_id: str, team_id: str = "t1") -> OrderIssued:
    return OrderIssued(district="d1", order_id=order_id, incident_id="inc1", team_id=team_id,
                       agency_kind="security", category="noise", priority="P4",
                       location=Location(lat=HERE[0], lon=HERE[1]),
                       ack_by=utcnow() + timedelta(minutes=5))


async def notify_order(svc: Service, order_id: str) -> dict[str, Any] | None:
    r = await svc.client.get(f"/v1/orders/{order_id}", headers=ADMIN)
    assert r.status_code in (200, 404), r.text
    return r.json() if r.status_code == 200 else None


async def test_notify_dead_letters_poison_and_goes_on(clean_redis: str) -> None:
    async with running("notify", clean_redis) as svc:
        await svc.poison_then(streams.ORDER_ISSUED, order_issued("o1"),
                              lambda: notify_order(svc, "o1"))

        async def withdrawn() -> bool:
            return bool((await notify_order(svc, "o1") or {}).get("withdrawn"))

        await svc.poison_then(streams.ORDER_WITHDRAWN, OrderWithdrawn(
            district="d1", order_id="o1", incident_id="inc1", team_id="t1", reason="timeout"),
            withdrawn)
        await svc.redis.hset("notify:device:dev1", mapping={"member_id": "m1", "team_id": "t1"})
        await svc.redis.sadd("notify:team:t1:devices", "dev1")

        async def forgotten() -> bool:
            return not await svc.redis.exists("notify:device:dev1")

        await svc.poison_then(streams.DEVICE_REVOKED, DeviceRevoked(
            district="d1", device_id="dev1", member_id="m1", team_id="t1"), forgotten)
        svc.assert_every_consumed_stream_covered()


async def test_notify_stores_a_replayed_order_once_after_the_fix(clean_redis: str) -> None:
    async with running("notify", clean_redis) as svc:
        # The fault: the order's own key has the wrong type.
        await svc.redis.set("notify:order:o1", "corrupt")
        await svc.publish(streams.ORDER_ISSUED, order_issued("o1"))
        assert "WRONGTYPE" in await dead_letter_reason(svc, streams.ORDER_ISSUED)
        await svc.redis.delete("notify:order:o1")
        await svc.replay_the_dead_letter(streams.ORDER_ISSUED)
        order = await poll_until(lambda: notify_order(svc, "o1"), "the replayed order stored")
        assert order["state"] == "issued" and not order["withdrawn"]
        await poll_until(lambda: svc.drained(streams.ORDER_ISSUED.name), "drained")
        r = await svc.client.get("/v1/orders/o1/deliveries", headers=ADMIN)
        assert r.status_code == 200, r.text
        fan_outs = [a for a in r.json()["attempts"] if a["outcome"] in ("fanned_out", "no_socket")]
        assert len(fan_outs) == 1  # pushed once


# --- volunteers -------------------------------------------------------------------------------


ROSTER: dict[str, Any] = {
    "district": "d1",
    "agencies": [{"id": "v1", "name": "Red armbands", "kind": "volunteer"}],
    "zones": [],
    "teams": [{"id": "t1", "agency_id": "v1", "name": "Aunties", "mode": "foot",
               "skills": [], "home_zone_id": None}],
    "members": [{"id": "m1", "name": "Auntie Wang", "agency_id": "v1", "team_id": "t1",
                 "role": "volunteer"}],
}


async def on_shift(svc: Service) -> dict[str, str]:
    r = await svc.client.post("/v1/roster/import", headers=ADMIN, json=ROSTER)
    assert r.status_code == 200, r.text
    r = await svc.client.post("/v1/members/m1/devices", headers=ADMIN)
    assert r.status_code == 201, r.text
    device = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await svc.client.post("/v1/me/shift/start", headers=device)
    assert r.status_code == 200, r.text
    return device


async def team_status(svc: Service) -> str:
    r = await svc.client.get("/v1/teams/t1", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["state"]["status"]


async def points(svc: Service, device: dict[str, str]) -> list[str]:
    r = await svc.client.get("/v1/me/points", headers=device)
    assert r.status_code == 200, r.text
    return [h["reason"] for h in r.json()["history"]]


async def test_volunteers_dead_letter_poison_and_go_on(clean_redis: str) -> None:
    async with running("volunteers", clean_redis) as svc:
        device = await on_shift(svc)
        await svc.poison_then(streams.ORDER_ISSUED, order_issued("o1"),
                              lambda: _is(team_status(svc), "dispatched"))
        await svc.poison_then(streams.ORDER_RESPONDED, responded("o1", "inc1", "resolved"),
                              lambda: _is(team_status(svc), "available"))
        await svc.publish(streams.ORDER_ISSUED, order_issued("o2"))
        await poll_until(lambda: _is(team_status(svc), "dispatched"), "the second order")
        await svc.poison_then(streams.ORDER_WITHDRAWN, OrderWithdrawn(
            district="d1", order_id="o2", incident_id="inc2", team_id="t1", reason="timeout"),
            lambda: _is(team_status(svc), "available"))
        await svc.poison_then(streams.INCIDENT_CLOSED, IncidentClosed(
            district="d1", incident_id="inc3", final_status="resolved", resolved_by=("t1",),
            category="hazard_report"),
            lambda: _contains(points(svc, device), "hazard_report"))
        svc.assert_every_consumed_stream_covered()


async def test_volunteers_apply_a_replayed_order_once_after_the_fix(clean_redis: str) -> None:
    async with running("volunteers", clean_redis) as svc:
        await on_shift(svc)
        announced = await svc.redis.xlen(streams.UNIT_STATUS.name)
        # The fault: the key of the order's record has the wrong type.
        order_key = keys.order("o1")
        await svc.redis.hset(order_key, "corrupt", "1")
        await svc.publish(streams.ORDER_ISSUED, order_issued("o1"))
        assert "WRONGTYPE" in await dead_letter_reason(svc, streams.ORDER_ISSUED)
        assert await team_status(svc) == "available"
        await svc.redis.delete(order_key)
        await svc.replay_the_dead_letter(streams.ORDER_ISSUED)
        await poll_until(lambda: _is(team_status(svc), "dispatched"), "the replayed order applied")
        await poll_until(lambda: svc.drained(streams.ORDER_ISSUED.name), "drained")
        # one unit.status announcing `dispatched`, however often the event was tried
        assert await svc.redis.xlen(streams.UNIT_STATUS.name) == announced + 1


# --- helpers ----------------------------------------------------------------------------------


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return (await value) == expected


async def _truthy(value: Awaitable[dict[str, Any]], key: str) -> bool:
    return bool((await value).get(key))


async def _contains(value: Awaitable[list[str]], item: str) -> bool:
    return item in await value


async def _status_of(svc: Service, incident_id: str, status: str) -> bool:
    return ((await dispatch_incident(svc, incident_id)) or {}).get("status") == status

