"""The command room assigns a team by hand (POST /v1/incidents/{id}/assign), in-process
against a real Redis: one order, also when the request is made again after a failure or a
lost answer."""

from __future__ import annotations

import json

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import locks
from services.dispatch.main import create_app
from shared import streams
from shared.events import OrderIssued
from tests.helpers import poll_until, read_stream

from .conftest import fail_a_write_once, settings_for
from .test_engine import orders_for, report, team, wait_for_units

ADMIN = {"Authorization": "Bearer test-admin"}


async def incident_and_a_second_team(url: str, publisher: RedisBroker) -> str:
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "patrol", kind="police", lat=22.8300, lon=108.3665)
    await wait_for_units(url, 2)
    incident_id = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: orders_for(url, incident_id), "the first order")
    return incident_id


def manual_orders(url: str, incident_id: str) -> list[OrderIssued]:
    return [o for o in read_stream(url, streams.ORDER_ISSUED.name, OrderIssued)
            if o.incident_id == incident_id and o.kind == "manual"]


def entries(url: str, incident_id: str, kind: str) -> int:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return sum(json.loads(e)["kind"] == kind
                   for e in client.lrange(f"dispatch:timeline:{incident_id}", 0, -1))
    finally:
        client.close()


async def assign(console: httpx.AsyncClient, incident_id: str) -> httpx.Response:
    return await console.post(f"/v1/incidents/{incident_id}/assign", headers=ADMIN,
                              json={"team_id": "patrol"})


async def test_asking_twice_gives_the_same_order(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id = await incident_and_a_second_team(clean_redis, publisher)
    first = await assign(console, incident_id)
    assert first.status_code == 200 and first.json()["team_id"] == "patrol"
    again = await assign(console, incident_id)  # the first answer lost on the way, say
    assert again.status_code == 200 and again.json() == first.json()
    assert [o.order_id for o in manual_orders(clean_redis, incident_id)] == [
        first.json()["order_id"]]
    assert entries(clean_redis, incident_id, "manual_assign") == 1


async def test_an_assignment_that_failed_after_its_offer_is_finished_when_asked_again(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = await incident_and_a_second_team(clean_redis, publisher)
    failures = fail_a_write_once(monkeypatch, "manual_order")
    failed = await assign(console, incident_id)
    assert failed.status_code == 503 and failures == ["failed"]
    again = await assign(console, incident_id)
    assert again.status_code == 200
    assert [o.order_id for o in manual_orders(clean_redis, incident_id)] == [
        again.json()["order_id"]]
    assert entries(clean_redis, incident_id, "manual_assign") == 1


async def test_a_team_busy_on_another_incident_is_a_conflict(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id = await incident_and_a_second_team(clean_redis, publisher)
    assert (await assign(console, incident_id)).status_code == 200
    other = await report(publisher, "noise", priority="P4")  # waits: both teams are busy

    async def waiting() -> bool:
        r = await console.get(f"/v1/incidents/{other}", headers=ADMIN)
        return r.status_code == 200 and r.json()["status"] == "unassigned"

    await poll_until(waiting, "the other incident waiting")
    busy = await assign(console, other)
    assert busy.status_code == 409 and "holds open order" in busy.json()["error"]["message"]


async def test_an_incident_held_by_a_stalled_step_answers_503_and_the_assignment_waits_for_it(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # A step that holds the incident's lock past the wait (a stalled worker; its TTL frees
    # it) is a state that passes: 503 with Retry-After, not 500, and asking again works.
    monkeypatch.setattr(locks, "WAIT_S", 0.3)
    app = create_app(settings_for(clean_redis))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as console:
            incident_id = await incident_and_a_second_team(clean_redis, publisher)
            client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
            try:
                client.set(locks.key(incident_id), "a-stalled-worker", px=60_000)
                held = await assign(console, incident_id)
                assert held.status_code == 503 and held.headers["Retry-After"] == "1"
                assert held.json()["error"] == {
                    "code": "unavailable",
                    "message": f"incident {incident_id} is being changed by another step; "
                               "ask again"}
                assert manual_orders(clean_redis, incident_id) == []
                client.delete(locks.key(incident_id))  # the stalled worker's TTL ran out
            finally:
                client.close()
            again = await assign(console, incident_id)
            assert again.status_code == 200
            assert [o.order_id for o in manual_orders(clean_redis, incident_id)] == [
                again.json()["order_id"]]
