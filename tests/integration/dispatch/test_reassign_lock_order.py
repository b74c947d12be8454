"""The command room reassigns a team to a linked report (`POST /v1/incidents/{id}/assign`
with `reassign`): it holds the locks of the report and of the team's incident, and takes
them in the order the report's own steps do (its link judged, its unlink: the report, then
the incident it is linked to), never waiting for a third incident's lock while it holds
them. Before, a step of that third incident waiting for one of the two (its own unlink, its
link judged) and the reassignment each waited for the other's lock until the wait (20 s)
ran out: a 503 or a redelivery, for nothing. An unlink asked again, once the report has
its team, tells the incident it was linked to only once the report's lock is let go: a
reassignment of that team back to that incident may hold it first. In-process, real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch import locks
from services.dispatch.engine import Dispatcher
from shared import streams
from shared.events import IncidentReported, new_id, utcnow
from tests.helpers import poll_until

from .conftest import fail_once
from .test_engine import DISTRICT, SCENE, orders_for, report, team, wait_for_units
from .test_linked import status
from .test_unlink import ADMIN, a_report_linked_to_a_noise_complaint, details, incident


@pytest.fixture
async def other_step(clean_redis: str) -> AsyncIterator[tuple[Redis, locks.IncidentLocks]]:
    """Another dispatch step's locks, on the test's own Redis client."""
    client = Redis.from_url(clean_redis, decode_responses=True)
    step = locks.IncidentLocks(client)
    yield client, step
    await step.close()
    await client.aclose()


async def noise(publisher: RedisBroker, incident_id: str, *, linked_to: str | None = None) -> None:
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow(),
        linked_to=linked_to), stream=streams.INCIDENT_REPORTED.name)


async def test_a_team_reassigned_to_the_report_linked_to_its_incident_takes_the_report_first(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        other_step: tuple[Redis, locks.IncidentLocks], monkeypatch: pytest.MonkeyPatch) -> None:
    # The incident's id sorts before the report's: the order the locks were taken in
    # before, the incident held while the reassignment waited for the report.
    parent, linked = sorted((new_id("inc"), new_id("inc")))
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    await noise(publisher, parent)
    await poll_until(lambda: orders_for(clean_redis, parent), "the guard's order")
    await noise(publisher, linked, linked_to=parent)
    await poll_until(lambda: status(clean_redis, linked) == "linked", "the report linked")

    tried: list[str] = []  # the incidents whose lock a step began to take, in order
    real = locks.IncidentLocks._acquire

    async def acquire(self: locks.IncidentLocks, incident_id: str, token: str) -> None:
        tried.append(incident_id)
        await real(self, incident_id, token)

    monkeypatch.setattr(locks.IncidentLocks, "_acquire", acquire)
    client, step = other_step
    async with step.hold(linked):  # a step of the report's, which would wait for `parent`
        asking = asyncio.create_task(console.post(
            f"/v1/incidents/{linked}/assign", headers=ADMIN,
            json={"team_id": "t1", "reassign": True}))
        await poll_until(lambda: tried.count(linked) == 2, "the reassignment waiting")
        assert not await client.exists(locks.key(parent)), "the incident held meanwhile"
    r = await asking
    assert r.status_code == 200, r.text
    assert [o.team_id for o in orders_for(clean_redis, linked)] == ["t1"]


async def test_a_team_reassigned_to_a_report_tells_the_incident_it_was_linked_to_once_let_go(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        other_step: tuple[Redis, locks.IncidentLocks]) -> None:
    # The report is linked to `parent` (guard t1), t2 is on another incident; a step holds
    # `parent` (one that may wait for the other incident's lock, or the report's).
    parent, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher)
    other = await report(publisher, "noise", priority="P4")
    [order] = await poll_until(lambda: orders_for(clean_redis, other), "t2's order")
    assert order.team_id == "t2"

    client, step = other_step
    async with step.hold(parent):
        asking = asyncio.create_task(console.post(
            f"/v1/incidents/{linked}/assign", headers=ADMIN,
            json={"team_id": "t2", "reassign": True}))
        await poll_until(lambda: [o.team_id for o in orders_for(clean_redis, linked)] == ["t2"],
                         "t2 sent to the report while the other step holds its incident")

        async def let_go() -> bool:
            return not await client.exists(locks.key(linked), locks.key(other))

        await poll_until(let_go, "the report and t2's incident let go")
    r = await asking  # the note on `parent`, once its step let it go
    assert r.status_code == 200, r.text
    told = f"report {linked} is not a duplicate of this incident: unlinked by admin:admin"
    assert details(await incident(console, parent), "note").count(told) == 1


async def test_a_reassignment_whose_note_failed_adds_it_when_asked_again(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # t2 taken off another incident for the report: the report unlinked and t2's order
    # made, then Redis went away as the incident the report was linked to was told (told
    # once both locks are let go, after the order). Before: the desk's retry found the report
    # `assigned` and never told that incident.
    parent, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher)
    other = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: [o.team_id for o in orders_for(clean_redis, other)] == ["t2"],
                     "t2's order")
    failed = fail_once(monkeypatch, Dispatcher, "_tell_unlinked")
    r = await console.post(f"/v1/incidents/{linked}/assign", headers=ADMIN,
                           json={"team_id": "t2", "reassign": True})
    assert r.status_code == 503 and failed == ["failed"], r.text
    [order] = orders_for(clean_redis, linked)
    assert order.team_id == "t2" and status(clean_redis, linked) == "assigned"
    told = f"report {linked} is not a duplicate of this incident: unlinked by admin:admin"
    assert details(await incident(console, parent), "note").count(told) == 0

    r = await console.post(f"/v1/incidents/{linked}/assign", headers=ADMIN,
                           json={"team_id": "t2", "reassign": True})
    assert r.status_code == 200 and r.json()["order_id"] == order.order_id, r.text
    assert details(await incident(console, parent), "note").count(told) == 1


async def test_an_unlink_asked_again_tells_the_incident_it_was_linked_to_once_the_report_is_let_go(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        other_step: tuple[Redis, locks.IncidentLocks], monkeypatch: pytest.MonkeyPatch) -> None:
    # The report unlinked and sent t2; the note on the incident it was linked to failed, and
    # the desk asks again. A reassignment of t2 back to that incident, whose id sorts first,
    # holds that incident's lock and waits for the report's (the other step here). Before:
    # the unlink asked again told that incident while it held the report's lock: each waited
    # for the other until the lock wait (20 s) ran out.
    parent, linked = sorted((new_id("inc"), new_id("inc")))
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    await noise(publisher, parent)
    await poll_until(lambda: orders_for(clean_redis, parent), "the guard's order")
    await team(publisher, "t2", kind="security", lat=22.8180, lon=108.3665)
    await wait_for_units(clean_redis, 2)
    await noise(publisher, linked, linked_to=parent)
    await poll_until(lambda: status(clean_redis, linked) == "linked", "the report linked")
    failed = fail_once(monkeypatch, Dispatcher, "_tell_unlinked")
    r = await console.post(f"/v1/incidents/{linked}/unlink", headers=ADMIN)
    assert r.status_code == 503 and failed == ["failed"], r.text

    tried: list[str] = []  # the incidents whose lock a step began to take, in order
    real = locks.IncidentLocks._acquire

    async def acquire(self: locks.IncidentLocks, incident_id: str, token: str) -> None:
        tried.append(incident_id)
        await real(self, incident_id, token)

    monkeypatch.setattr(locks.IncidentLocks, "_acquire", acquire)
    client, step = other_step
    async with step.hold(parent):  # as the reassignment back to it does, first
        asking = asyncio.create_task(console.post(
            f"/v1/incidents/{linked}/unlink", headers=ADMIN))
        await poll_until(lambda: tried.count(parent) == 2, "the unlink waiting for the incident")
        assert not await client.exists(locks.key(linked)), "the report held meanwhile"
    r = await asking
    assert r.status_code == 200, r.text
    told = f"report {linked} is not a duplicate of this incident: unlinked by admin:admin"
    assert details(await incident(console, parent), "note").count(told) == 1
    assert [o.team_id for o in orders_for(clean_redis, linked)] == ["t2"]
