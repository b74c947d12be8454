"""The producer spans shared.bus gives the entries a script writes in one step."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import shared.bus
from shared import streams
from shared.bus import entry_to_write
from shared.events import UnitStatus


async def test_entries_written_in_one_step_are_each_published_from_the_step_not_from_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # dispatch writes an order.issued and its incident.updated in one script: two publishes
    # of the step that made the order. Nested, the incident.updated and intake's reading of
    # it hung under the order.issued publish in every trace, as if the order had caused them.
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracing.get_tracer("test")
    monkeypatch.setattr(shared.bus, "_tracer", tracer)
    event = UnitStatus(district="d1", unit_id="u1", status="busy", agency_id="a",
                       agency_kind="police", mode="car")  # any event: its envelope is not read
    with tracer.start_as_current_span("incident.reported process"):
        async with entry_to_write(streams.ORDER_ISSUED, event, "e1"):
            async with entry_to_write(streams.INCIDENT_UPDATED, event, "e2"):
                pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    step = spans["incident.reported process"].context.span_id
    assert spans["order.issued publish"].parent.span_id == step
    assert spans["incident.updated publish"].parent.span_id == step
