"""Dispatch's steps in the incident's own trace (DESIGN: one trace per incident): what the
command room does to an incident, a waiting incident's offer when a team comes free, and
every timer run in a span of the incident's trace, linked to the span of what caused them
(the command room's request, the event that freed the team), on a real Redis."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis as sync_redis
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import shared.bus
from services.dispatch import engine as engine_module
from services.dispatch import store
from services.dispatch.engine import Dispatcher
from shared import streams
from shared.events import IncidentReported, OrderResponded, new_id, utcnow
from shared.telemetry import current_trace_id
from tests.helpers import decode_entry

from .conftest import bare_engine
from .test_engine import DISTRICT, SCENE


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Every span dispatch and the bus make (its producer spans), once ended."""
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(engine_module, "tracer", tracing.get_tracer("lianfang.dispatch"))
    monkeypatch.setattr(shared.bus, "_tracer", tracing.get_tracer("lianfang.bus"))
    return exporter


@pytest.fixture
async def engine(clean_redis: str) -> AsyncIterator[Dispatcher]:
    """Dispatch's engine on the test's Redis, its steps called as its consumers, its timer
    loop and its HTTP routes call them (nothing runs on its own)."""
    async with contextlib.AsyncExitStack() as stack:
        yield await bare_engine(stack, clean_redis)


def hex_trace(span: trace.Span | ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x")


@contextlib.contextmanager
def span_of_another_trace(name: str) -> Iterator[trace.Span]:
    """A span of a trace of its own, current meanwhile: the command room's request, or the
    consumer span of an event about another incident."""
    with engine_module.tracer.start_as_current_span(name, context=trace.set_span_in_context(
            trace.INVALID_SPAN)) as span:
        yield span


async def on_shift(engine: Dispatcher, team_id: str, *, kind: str, lat: float) -> None:
    now = utcnow()
    await store.save_unit_status(engine.redis, at=now, fields={
        "team_id": team_id, "district": DISTRICT, "status": "available", "name": team_id,
        "agency_id": f"ag-{kind}", "agency_kind": kind, "agency_role": "", "mode": "car",
        "skills": "[]", "home_zone_id": "", "on_shift": "1"})
    await store.save_unit_position(engine.redis, team_id=team_id, lat=lat, lon=SCENE.lon, at=now)


async def reported(engine: Dispatcher, category: str = "noise",
                   priority: str = "P4") -> tuple[str, str]:
    """An incident dispatch handled in the consumer span of its report (its trace begins
    there): its id and its trace id."""
    incident_id = new_id("inc")
    event = IncidentReported(district=DISTRICT, incident_id=incident_id, system_id="sys",
                             external_ref=incident_id, category=category, priority=priority,
                             location=SCENE, reported_at=utcnow())
    with span_of_another_trace(f"{streams.INCIDENT_REPORTED.name} process") as span:
        await engine.on_incident_reported(event)
    return incident_id, hex_trace(span)


def entries(url: str, stream: str, incident_id: str) -> list[tuple[dict[str, Any], str]]:
    """The stream's entries about the incident: (body, the trace id its envelope carries)."""
    client = sync_redis.Redis.from_url(url)
    try:
        found = []
        for _, fields in client.xrange(stream):
            body, headers = decode_entry(fields)
            if body.get("incident_id") == incident_id:
                found.append((body, headers["traceparent"].split("-")[1]))
        return found
    finally:
        client.close()


def orders(url: str, incident_id: str) -> list[tuple[dict[str, Any], str]]:
    return entries(url, streams.ORDER_ISSUED.name, incident_id)


def linked_to(exporter: InMemorySpanExporter, cause: trace.Span) -> list[ReadableSpan]:
    """Finished spans that link to `cause`."""
    wanted = cause.get_span_context()
    return [s for s in exporter.get_finished_spans()
            if any(link.context.span_id == wanted.span_id
                   and link.context.trace_id == wanted.trace_id for link in s.links)]


def assert_caused_in_trace(exporter: InMemorySpanExporter, cause: trace.Span, trace_id: str,
                           incident_id: str) -> None:
    """The step that `cause` made ran in a span of the incident's trace that links back to
    `cause`, named for the incident."""
    steps = linked_to(exporter, cause)
    assert steps, "no span links to the span that caused the step"
    assert {hex_trace(s) for s in steps} == {trace_id}
    assert all(s.attributes["lianfang.incident_id"] == incident_id for s in steps)


# --- the command room ------------------------------------------------------------------


async def test_a_team_the_command_room_assigns_gets_its_order_in_the_incidents_trace(
        clean_redis: str, engine: Dispatcher, spans: InMemorySpanExporter) -> None:
    await on_shift(engine, "guard", kind="security", lat=22.8172)
    incident_id, trace_id = await reported(engine)
    await on_shift(engine, "patrol", kind="police", lat=22.8200)
    with span_of_another_trace("POST /v1/incidents/{incident_id}/assign") as request:
        await engine.assign(incident_id, "patrol")
    assert [(o["team_id"], t) for o, t in orders(clean_redis, incident_id)] == [
        ("guard", trace_id), ("patrol", trace_id)]
    assert_caused_in_trace(spans, request, trace_id, incident_id)


async def test_a_reassignment_takes_the_team_off_the_other_incident_in_that_incidents_trace(
        clean_redis: str, engine: Dispatcher, spans: InMemorySpanExporter) -> None:
    await on_shift(engine, "guard", kind="security", lat=22.8172)
    other_id, other_trace = await reported(engine)
    incident_id, trace_id = await reported(engine)  # waits: the one team is on the other
    await on_shift(engine, "second", kind="security", lat=22.8300)
    with span_of_another_trace("POST /v1/incidents/{incident_id}/assign") as request:
        await engine.assign(incident_id, "guard", reassign=True)
    # The guard's order here and the other incident's withdrawal and refill, each in the
    # trace of the incident it concerns.
    assert [(o["team_id"], t) for o, t in orders(clean_redis, incident_id)] == [
        ("guard", trace_id)]
    assert [(o["team_id"], t) for o, t in orders(clean_redis, other_id)] == [
        ("guard", other_trace), ("second", other_trace)]
    assert [t for _, t in entries(clean_redis, streams.ORDER_WITHDRAWN.name, other_id)] == [
        other_trace]
    assert {hex_trace(s) for s in linked_to(spans, request)} == {trace_id}


async def test_an_order_the_command_room_takes_back_is_withdrawn_and_refilled_in_the_trace(
        clean_redis: str, engine: Dispatcher, spans: InMemorySpanExporter) -> None:
    await on_shift(engine, "guard", kind="security", lat=22.8172)
    await on_shift(engine, "second", kind="security", lat=22.8300)
    incident_id, trace_id = await reported(engine)
    ((first, _),) = orders(clean_redis, incident_id)
    with span_of_another_trace("POST /v1/orders/{order_id}/withdraw") as request:
        await engine.take_back(first["order_id"], by="admin", note=None)
    assert [t for _, t in entries(clean_redis, streams.ORDER_WITHDRAWN.name, incident_id)] == [
        trace_id]
    assert [(o["team_id"], t) for o, t in orders(clean_redis, incident_id)] == [
        ("guard", trace_id), ("second", trace_id)]
    assert_caused_in_trace(spans, request, trace_id, incident_id)


async def test_a_revision_by_the_command_room_reaches_the_teams_in_the_incidents_trace(
        clean_redis: str, engine: Dispatcher, spans: InMemorySpanExporter) -> None:
    await on_shift(engine, "guard", kind="security", lat=22.8172)
    incident_id, trace_id = await reported(engine)
    updates = len(entries(clean_redis, streams.INCIDENT_UPDATED.name, incident_id))
    with span_of_another_trace("PATCH /v1/incidents/{incident_id}") as request:
        await engine.revise(incident_id, priority="P2", add_flags=(), note=None, by="admin")
    assert [t for _, t in entries(clean_redis, streams.ORDER_AMENDED.name, incident_id)] == [
        trace_id]
    assert [t for _, t in entries(clean_redis, streams.INCIDENT_UPDATED.name, incident_id)
            ] == [trace_id] * (updates + 1)  # the revision's too
    assert_caused_in_trace(spans, request, trace_id, incident_id)


async def test_an_incident_the_command_room_closes_ends_in_its_own_trace(
        clean_redis: str, engine: Dispatcher, spans: InMemorySpanExporter) -> None:
    await on_shift(engine, "guard", kind="security", lat=22.8172)
    incident_id, trace_id = await reported(engine)
    with span_of_another_trace("POST /v1/incidents/{incident_id}/close") as request:
        await engine.close(incident_id, by="admin")
    assert [t for _, t in entries(clean_redis, streams.ORDER_WITHDRAWN.name, incident_id)] == [
        trace_id]
    assert [t for _, t in entries(clean_redis, streams.INCIDENT_CLOSED.name, incident_id)] == [
        trace_id]
    assert_caused_in_trace(spans, request, trace_id, incident_id)


# --- a freed team ----------------------------------------------------------------------


async def test_a_waiting_incident_gets_the_freed_team_in_its_own_trace_not_the_freeing_one(
        clean_redis: str, engine: Dispatcher, spans: InMemorySpanExporter) -> None:
    await on_shift(engine, "guard", kind="security", lat=22.8172)
    first_id, first_trace = await reported(engine)
    waiting_id, waiting_trace = await reported(engine)  # nobody free: it waits
    assert orders(clean_redis, waiting_id) == []
    ((order, _),) = orders(clean_redis, first_id)
    # The guard resolves the first incident: its answer is handled in the first's trace.
    with engine_module.tracer.start_as_current_span(
            f"{streams.ORDER_RESPONDED.name} process",
            context=trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
                int(first_trace, 16), 0x1234, is_remote=True,
                trace_flags=trace.TraceFlags(1))))) as answer:
        await engine.on_order_responded(OrderResponded(
            district=DISTRICT, order_id=order["order_id"], incident_id=first_id,
            team_id="guard", member_id="m1", response="resolved"))
    assert [(o["team_id"], t) for o, t in orders(clean_redis, waiting_id)] == [
        ("guard", waiting_trace)]
    assert_caused_in_trace(spans, answer, waiting_trace, waiting_id)


async def test_a_waiting_incident_the_sweep_fills_gets_its_order_in_its_own_trace(
        clean_redis: str, engine: Dispatcher, spans: InMemorySpanExporter) -> None:
    waiting_id, waiting_trace = await reported(engine)  # nobody free: it waits
    await on_shift(engine, "guard", kind="security", lat=22.8172)  # no event offers it
    assert await engine.sweep_waiting(DISTRICT, again_after_s=60) is None
    assert [(o["team_id"], t) for o, t in orders(clean_redis, waiting_id)] == [
        ("guard", waiting_trace)]
    (swept,) = [s for s in spans.get_finished_spans() if s.name == "waiting incident swept"]
    assert hex_trace(swept) == waiting_trace
    assert dict(swept.attributes) == {"lianfang.incident_id": waiting_id}


# --- timers ----------------------------------------------------------------------------


TIMER_HANDLERS = {"ack": "on_ack_deadline", "followup": "on_followup_due",
                  "handover": "on_handover_due", "zone": "on_zone_due",
                  "reinforce": "on_reinforce_due", "offshift": "on_off_shift_due"}


@pytest.mark.parametrize("kind", sorted(TIMER_HANDLERS))
async def test_every_timer_of_an_incident_fires_in_the_incidents_trace(
        kind: str, clean_redis: str, engine: Dispatcher, spans: InMemorySpanExporter,
        monkeypatch: pytest.MonkeyPatch) -> None:
    await on_shift(engine, "guard", kind="security", lat=22.8172)
    incident_id, trace_id = await reported(engine)
    ((order, _),) = orders(clean_redis, incident_id)
    seen: list[tuple[str, str | None]] = []

    async def handler(ident: str) -> None:  # what the step writes and publishes is traced so
        seen.append((ident, current_trace_id()))

    monkeypatch.setattr(engine, TIMER_HANDLERS[kind], handler)
    ident = order["order_id"] if kind in ("ack", "reinforce", "offshift") else incident_id
    assert await engine.fire_timer(f"{kind}:{ident}") is None
    assert seen == [(ident, trace_id)]


async def test_a_backup_looked_for_again_by_its_timer_is_sent_in_the_incidents_trace(
        clean_redis: str, engine: Dispatcher, spans: InMemorySpanExporter) -> None:
    await on_shift(engine, "guard", kind="security", lat=22.8172)
    incident_id, trace_id = await reported(engine)
    ((order, _),) = orders(clean_redis, incident_id)
    await on_shift(engine, "backup", kind="security", lat=22.8200)  # free since
    assert await engine.fire_timer(f"reinforce:{order['order_id']}") is None
    assert [(o["team_id"], o["kind"], t) for o, t in orders(clean_redis, incident_id)] == [
        ("guard", "dispatch", trace_id), ("backup", "reinforcement", trace_id)]


async def test_a_missed_deadline_s_span_names_its_incident_and_order_and_nothing_else(
        clean_redis: str, engine: Dispatcher, spans: InMemorySpanExporter) -> None:
    await on_shift(engine, "guard", kind="security", lat=22.8172)
    incident_id, trace_id = await reported(engine)
    ((order, _),) = orders(clean_redis, incident_id)
    assert await engine.fire_timer(f"ack:{order['order_id']}") is None
    (missed,) = [s for s in spans.get_finished_spans()
                 if s.name == "acknowledgement deadline missed"]
    assert hex_trace(missed) == trace_id
    assert dict(missed.attributes) == {"lianfang.incident_id": incident_id,
                                       "lianfang.order_id": order["order_id"]}
    assert [t for _, t in entries(clean_redis, streams.ORDER_WITHDRAWN.name, incident_id)] == [
        trace_id]
