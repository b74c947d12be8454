"""A reporting system asks to cancel its own report (POST /v1/incidents/{id}/cancel-requests):
the 110 caller rings back to say it was a mistake, the video system retracts a false alert.
Intake passes it to dispatch (incident.cancel_requested), which flags the incident for the
command room: nothing is cancelled by it. Scoped as a read of the report (403 another
system's, 404 unknown), retried by its own external_ref, 409 once the incident has ended;
its reason is the system's words, never logged or traced."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

import shared.bus
from services.intake import store
from shared import streams
from shared.events import IncidentCancelRequested, IncidentUpdated, TimelineEntry
from tests.helpers import read_stream
from tests.integration.intake.conftest import ADMIN, system_key
from tests.integration.intake.test_api import incident

REASON = "Wang Wei, 13800138000, says his son dialled by mistake"


def requests_sent(url: str) -> list[IncidentCancelRequested]:
    return read_stream(url, streams.INCIDENT_CANCEL_REQUESTED.name, IncidentCancelRequested)


async def reported(intake: httpx.AsyncClient, key: dict[str, str], ref: str = "call-1") -> str:
    r = await intake.post("/v1/incidents", headers=key, json=incident(ref))
    assert r.status_code == 202, r.text
    return str(r.json()["incident_id"])


def cancel(incident_id: str) -> str:
    return f"/v1/incidents/{incident_id}/cancel-requests"


async def dispatch_says(url: str, incident_id: str, status: str, seq: int = 1) -> None:
    """Dispatch's word on the incident, as intake's consumer applies it."""
    redis = Redis.from_url(url, decode_responses=True)
    try:
        await store.apply_update(redis, IncidentUpdated(
            district="d1", incident_id=incident_id, seq=seq, status=status, priority="P2",
            entry=TimelineEntry(kind="status")), records_ttl_s=3600)
    finally:
        await redis.aclose()


async def test_a_cancel_request_goes_to_dispatch_with_the_systems_words(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    key = await system_key(intake, ["d1"])
    report = await reported(intake, key)
    r = await intake.post(cancel(report), headers=key,
                          json={"external_ref": "call-2", "reason": REASON})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["incident_id"] == report and body["request_id"]
    assert body["status"] == "cancel_requested"
    [event] = requests_sent(clean_redis)
    assert (event.incident_id, event.report_id, event.reason) == (report, report, REASON)
    assert (event.external_ref, event.district, event.event_id) == ("call-2", "d1",
                                                                   body["request_id"])


async def test_a_cancel_request_is_retried_by_its_own_external_ref(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    key = await system_key(intake, ["d1"])
    report = await reported(intake, key)
    sent = await intake.post(cancel(report), headers=key,
                             json={"external_ref": "call-2", "reason": REASON})
    again = await intake.post(cancel(report), headers=key,
                              json={"external_ref": "call-2", "reason": REASON})
    assert (sent.status_code, again.status_code) == (202, 200), again.text
    assert again.json() == sent.json()
    other = await intake.post(cancel(report), headers=key,
                              json={"external_ref": "call-2", "reason": "another reason"})
    assert other.status_code == 409, other.text
    assert other.json()["error"]["field"] == "external_ref"
    assert REASON not in other.text and "another reason" not in other.text
    # a second call of the caller's is a request of its own
    second = await intake.post(cancel(report), headers=key,
                               json={"external_ref": "call-3", "reason": REASON})
    assert second.status_code == 202
    assert len(requests_sent(clean_redis)) == 2


async def test_a_cancel_request_for_another_systems_report_is_403_and_for_none_404(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    mine, theirs = await system_key(intake, ["d1"]), await system_key(intake, ["d1"])
    report = await reported(intake, theirs)
    body = {"external_ref": "c-1", "reason": REASON}
    other = await intake.post(cancel(report), headers=mine, json=body)
    unknown = await intake.post(cancel("inc_nosuch"), headers=mine, json=body)
    admin = await intake.post(cancel(report), headers=ADMIN, json=body)
    assert (other.status_code, unknown.status_code, admin.status_code) == (403, 404, 403)
    assert requests_sent(clean_redis) == []


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
async def test_a_cancel_request_needs_a_reason_of_at_most_500_characters(
        intake: httpx.AsyncClient, clean_redis: str, reason: str) -> None:
    key = await system_key(intake, ["d1"])
    report = await reported(intake, key)
    r = await intake.post(cancel(report), headers=key,
                          json={"external_ref": "c-1", "reason": reason})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "reason"
    missing = await intake.post(cancel(report), headers=key, json={"external_ref": "c-1"})
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "reason"
    assert requests_sent(clean_redis) == []


@pytest.mark.parametrize("status", ["resolved", "handed_over", "closed"])
async def test_a_cancel_request_for_an_ended_incident_is_409(
        intake: httpx.AsyncClient, clean_redis: str, status: str) -> None:
    key = await system_key(intake, ["d1"])
    report = await reported(intake, key)
    await dispatch_says(clean_redis, report, status)
    r = await intake.post(cancel(report), headers=key,
                          json={"external_ref": "c-1", "reason": REASON})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["message"] == (
        f"the incident has ended ({status}): there is nothing left to cancel")
    assert requests_sent(clean_redis) == []


async def test_a_request_accepted_before_the_incident_ended_is_still_its_retry(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    key = await system_key(intake, ["d1"])
    report = await reported(intake, key)
    body = {"external_ref": "c-1", "reason": REASON}
    sent = await intake.post(cancel(report), headers=key, json=body)
    await dispatch_says(clean_redis, report, "closed")
    again = await intake.post(cancel(report), headers=key, json=body)
    assert (sent.status_code, again.status_code) == (202, 200)


async def test_a_cancel_request_of_a_linked_report_goes_to_the_incident_it_joined(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    first_system, second_system = await system_key(intake, ["d1"]), await system_key(intake, ["d1"])
    parent = await reported(intake, first_system, "a-1")
    linked = (await intake.post("/v1/incidents", headers=second_system,
                                json=incident("b-1"))).json()
    assert linked["linked_to"] == parent
    r = await intake.post(cancel(linked["incident_id"]), headers=second_system,
                          json={"external_ref": "b-2", "reason": "false alert"})
    assert r.status_code == 202, r.text
    assert r.json()["linked_to"] == parent
    [event] = requests_sent(clean_redis)
    assert (event.incident_id, event.report_id) == (parent, linked["incident_id"])
    # the incident it joined ended: the event is over
    await dispatch_says(clean_redis, parent, "resolved")
    r = await intake.post(cancel(linked["incident_id"]), headers=second_system,
                          json={"external_ref": "b-3", "reason": "false alert"})
    assert r.status_code == 409, r.text


async def test_the_reason_is_never_logged_nor_traced(
        intake: httpx.AsyncClient, clean_redis: str, service_log: Callable[[], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(shared.bus, "_tracer", tracing.get_tracer("lianfang.bus"))
    key = await system_key(intake, ["d1"])
    report = await reported(intake, key)
    for ref, reason in (("c-1", REASON), ("c-1", REASON + "!"), ("c-2", "x" * 501)):
        await intake.post(cancel(report), headers=key, json={"external_ref": ref,
                                                             "reason": reason})
    [span] = [s for s in exporter.get_finished_spans()
              if s.name == "incident.cancel_requested publish"]
    assert "13800138000" not in repr(dict(span.attributes or {}))
    assert "13800138000" not in service_log() and "xxxxx" not in service_log()
