"""A reporting system asks to cancel its report (intake's POST
/v1/incidents/{id}/cancel-requests: the caller says it was a mistake, a video system retracts
a false alert): dispatch cancels nothing itself. The incident is flagged `cancel_requested`
for the command room, its timeline carries the request with the system's words as a note
(the command room's, never the reporting system's view), its teams are left as they are,
and the flag goes when the command room closes it or answers with a remark (keeping it
open), or when it ends."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from shared import streams
from shared.events import (
    IncidentCancelRequested,
    IncidentReported,
    OrderAmended,
    OrderWithdrawn,
    new_id,
    utcnow,
)
from tests.helpers import poll_until, read_stream

from .test_engine import DISTRICT, SCENE, orders_for, report, team, wait_for_units
from .test_linked import resolve, updates

ADMIN = {"Authorization": "Bearer test-admin-token"}
REASON = "Wang Wei (13800138000) says his son dialled 110 by mistake"


async def ask_to_cancel(broker: RedisBroker, incident_id: str, *,
                        report_id: str | None = None) -> IncidentCancelRequested:
    event = IncidentCancelRequested(
        district=DISTRICT, incident_id=incident_id, report_id=report_id or incident_id,
        system_id="sys", external_ref=new_id("call"), reason=REASON, requested_at=utcnow())
    await broker.publish(event, stream=streams.INCIDENT_CANCEL_REQUESTED.name)
    return event


async def board_row(console: httpx.AsyncClient, incident_id: str) -> dict:
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def sent(url: str, publisher: RedisBroker) -> tuple[str, str]:
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await poll_until(lambda: orders_for(url, incident_id), "an order")
    return incident_id, order.order_id


async def flagged_for(console: httpx.AsyncClient, incident_id: str) -> list[str]:
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code in (200, 404), r.text  # 404: its report not handled yet
    return list(r.json().get("flagged_for") or []) if r.status_code == 200 else []


async def test_a_cancel_request_flags_the_incident_and_leaves_its_teams_alone(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id, order_id = await sent(clean_redis, publisher)
    await ask_to_cancel(publisher, incident_id)
    await poll_until(lambda: _has(flagged_for(console, incident_id), "cancel_requested"),
                     "the incident flagged for the command room")
    row = await board_row(console, incident_id)
    assert row["flagged"] is True and row["status"] == "assigned"
    [entry] = [e for e in row["timeline"] if e["kind"] == "cancel_request"]
    assert entry["detail_code"] == "cancel_requested"
    assert entry["detail"] == "its reporting system asks to cancel it: the command room " \
                              "decides (close it, or answer with a remark to keep it open)"
    assert entry["note"] == REASON  # the command room reads the system's words
    # published with it, as every entry; intake drops the note from the system's view
    [told] = [u for u in updates(clean_redis, incident_id) if u.entry.kind == "cancel_request"]
    assert told.flagged is True
    # nothing reaches the team until the command room decides
    assert read_stream(clean_redis, streams.ORDER_WITHDRAWN.name, OrderWithdrawn) == []
    assert read_stream(clean_redis, streams.ORDER_AMENDED.name, OrderAmended) == []
    assert [o.order_id for o in orders_for(clean_redis, incident_id)] == [order_id]


async def test_a_cancel_request_handled_again_writes_nothing_twice(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id, _ = await sent(clean_redis, publisher)
    event = await ask_to_cancel(publisher, incident_id)
    await poll_until(lambda: _has(flagged_for(console, incident_id), "cancel_requested"),
                     "flagged")
    await publisher.publish(event, stream=streams.INCIDENT_CANCEL_REQUESTED.name)  # redelivered
    await ask_to_cancel(publisher, incident_id)  # the caller asks a second time: its own entry
    await poll_until(lambda: _count(console, incident_id, "cancel_request", 2),
                     "the second request on the timeline")
    await poll_until(lambda: _drained(clean_redis), "every request read")
    assert await _count(console, incident_id, "cancel_request", 2)


async def test_a_remark_answers_the_request_and_the_incident_stays_open(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id, _ = await sent(clean_redis, publisher)
    await ask_to_cancel(publisher, incident_id)
    await poll_until(lambda: _has(flagged_for(console, incident_id), "cancel_requested"),
                     "flagged")
    r = await console.post(f"/v1/incidents/{incident_id}/remarks", headers=ADMIN,
                           json={"note": "called back: she sounded afraid, the team goes on"})
    assert r.status_code == 201, r.text
    row = await board_row(console, incident_id)
    assert "cancel_requested" not in (row.get("flagged_for") or [])
    assert row["status"] == "assigned"
    remark = row["timeline"][-1]
    assert remark["kind"] == "remark" and remark["detail_code"] == "remark_keeps_open"
    assert remark["detail"] == "remark by admin:admin: kept open, its reporting system's " \
                               "request to cancel answered"
    # a remark with no request standing is a remark
    r = await console.post(f"/v1/incidents/{incident_id}/remarks", headers=ADMIN,
                           json={"note": "team on its way"})
    assert (await board_row(console, incident_id))["timeline"][-1]["detail_code"] == "remark"
    # a new request flags it again
    await ask_to_cancel(publisher, incident_id)
    await poll_until(lambda: _has(flagged_for(console, incident_id), "cancel_requested"),
                     "flagged again")


async def test_closing_it_agrees_and_the_flag_goes(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id, _ = await sent(clean_redis, publisher)
    await ask_to_cancel(publisher, incident_id)
    await poll_until(lambda: _has(flagged_for(console, incident_id), "cancel_requested"),
                     "flagged")
    r = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    assert r.status_code == 200, r.text
    row = await board_row(console, incident_id)
    assert row["flagged"] is False and not row.get("flagged_for")


async def test_a_request_for_an_incident_that_ended_meanwhile_is_noted_unflagged(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # intake answers 409 for an incident it knows ended; its view follows dispatch's by a
    # moment, so dispatch may still get one
    incident_id, _ = await sent(clean_redis, publisher)
    await resolve(clean_redis, publisher, incident_id)
    await ask_to_cancel(publisher, incident_id)
    await poll_until(lambda: _count(console, incident_id, "cancel_request", 1), "noted")
    row = await board_row(console, incident_id)
    assert row["status"] == "resolved" and row["flagged"] is False
    assert row["timeline"][-1]["detail_code"] == "cancel_requested_ended"


async def test_a_request_for_a_linked_report_flags_the_incident_it_joined(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # intake names the incident the report is linked to; dispatch finds it linked there too
    parent, _ = await sent(clean_redis, publisher)
    await ask_to_cancel(publisher, parent, report_id="inc_the_linked_report")
    await poll_until(lambda: _has(flagged_for(console, parent), "cancel_requested"), "flagged")
    [entry] = [e for e in (await board_row(console, parent))["timeline"]
               if e["kind"] == "cancel_request"]
    assert entry["detail_code"] == "cancel_requested_linked"
    assert entry["detail_args"] == {"report": "inc_the_linked_report"}


async def test_a_request_that_comes_before_its_report_waits_for_it(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # two streams: the request may be read before the report it names is handled
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = new_id("inc")
    await ask_to_cancel(publisher, incident_id)
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow()),
        stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: _has(flagged_for(console, incident_id), "cancel_requested"),
                     "flagged once its report came", 15)


async def _has(found: object, code: str) -> bool:
    return code in await found  # type: ignore[misc]


async def _count(console: httpx.AsyncClient, incident_id: str, kind: str, n: int) -> bool:
    timeline = (await board_row(console, incident_id))["timeline"]
    return len([e for e in timeline if e["kind"] == kind]) == n


async def _drained(url: str) -> bool:
    client = aioredis.Redis.from_url(url)
    try:
        for group in await client.xinfo_groups(streams.INCIDENT_CANCEL_REQUESTED.name):
            if group["name"] == b"dispatch":
                return not group["pending"] and group["lag"] == 0
        return False
    finally:
        await client.aclose()
