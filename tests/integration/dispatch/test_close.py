"""The command room closes an incident (POST /v1/incidents/{id}/close), in-process against
a real Redis: its orders withdrawn and their teams freed, incident.closed published once,
and a close that failed halfway can be made again."""

from __future__ import annotations

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from shared.events import IncidentClosed, IncidentUpdated, OrderWithdrawn
from tests.helpers import poll_until, read_stream

from .conftest import fail_a_write_once, fail_once
from .test_engine import DISTRICT, orders_for, report, team, wait_for_units

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def offered(url: str, publisher: RedisBroker) -> tuple[str, str]:
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "an order")
    return incident_id, order.order_id


def closed_events(url: str, incident_id: str) -> list[IncidentClosed]:
    return [e for e in read_stream(url, streams.INCIDENT_CLOSED.name, IncidentClosed)
            if e.incident_id == incident_id]


async def test_closing_withdraws_the_orders_and_publishes_the_end_once(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id, order_id = await offered(clean_redis, publisher)
    r = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "closed"
    assert [(e.final_status, e.event_id) for e in closed_events(clean_redis, incident_id)] == [
        ("closed", f"closed-{incident_id}-cmd")]
    withdrawn = read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
    assert [(w.order_id, w.reason) for w in withdrawn] == [(order_id, "closed")]
    updates = [u for u in read_stream(clean_redis, streams.INCIDENT_UPDATED.name,
                                      IncidentUpdated) if u.incident_id == incident_id]
    assert updates[-1].status == "closed" and updates[-1].entry.kind == "closed"
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        assert client.get("dispatch:claim:t1") is None  # the team is free again
        assert client.hget(f"dispatch:incident:{incident_id}", "closed_by") == "admin:admin"
    finally:
        client.close()
    again = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    assert again.status_code == 409
    assert len(closed_events(clean_redis, incident_id)) == 1


async def close_fails_then_succeeds(url: str, console: httpx.AsyncClient, incident_id: str,
                                   failures: list[str]) -> None:
    """The command room closes the incident while a write fails (503: ask again, nothing
    closed), then closes it again: closed once."""
    first = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    assert first.status_code == 503 and failures == ["failed"]
    assert closed_events(url, incident_id) == []
    second = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    assert second.status_code == 200
    assert len(closed_events(url, incident_id)) == 1


async def test_a_close_that_failed_at_its_write_can_be_made_again(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id, _ = await offered(clean_redis, publisher)
    failures = fail_a_write_once(monkeypatch)
    await close_fails_then_succeeds(clean_redis, console, incident_id, failures)


async def test_a_close_that_failed_while_withdrawing_withdraws_when_made_again(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The order's withdrawal (its state, its deadline, order.withdrawn) is one write: made
    # again, the close publishes it. Written apart, a failure after the state left an order
    # withdrawn that no retry published (the device kept it, volunteers kept the team busy).
    incident_id, order_id = await offered(clean_redis, publisher)
    failures = fail_once(monkeypatch, store, "write_order_once",
                         lambda *_, unless, **__: unless == ("state", "withdrawn"))
    await close_fails_then_succeeds(clean_redis, console, incident_id, failures)
    withdrawn = read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
    assert [(w.order_id, w.reason) for w in withdrawn] == [(order_id, "closed")]


async def test_a_closed_incident_is_no_longer_flagged(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # Flagged (two deadlines missed: the command room must act) until it is closed: then
    # there is nothing to act on, and the board's `flagged=true` no longer lists it.
    await team(publisher, "guard", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: orders_for(clean_redis, incident_id), "the guard's order")
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        client.hset(store.incident_key(incident_id), "misses", "2")  # two deadlines missed
    finally:
        client.close()
    r = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    assert r.status_code == 200, r.text
    board = await console.get("/v1/incidents", headers=ADMIN,
                              params={"district": DISTRICT, "flagged": "true"})
    assert board.status_code == 200
    assert [i["incident_id"] for i in board.json()["incidents"]] == []


async def test_the_team_a_close_frees_goes_to_the_incident_waiting_for_one(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # Volunteers never said the team busy (it was down while the order went out and when it
    # was withdrawn, or read the withdrawal first): in dispatch's view the team is free
    # from the close on, and a new report would get it at once. The incident already
    # waiting for a team gets it then, not at the team's next fix (which volunteers, down,
    # does not pass on either).
    closing, _ = await offered(clean_redis, publisher)
    waiting = await report(publisher, "noise", priority="P4")
    client = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        await poll_until(lambda: client.zscore(f"dispatch:waiting:{DISTRICT}", waiting)
                         is not None, "the second incident waiting: its only team is busy")
    finally:
        client.close()
    r = await console.post(f"/v1/incidents/{closing}/close", headers=ADMIN)
    assert r.status_code == 200, r.text
    (order,) = await poll_until(lambda: orders_for(clean_redis, waiting),
                                "the waiting incident given the team the close freed")
    assert order.team_id == "t1"
