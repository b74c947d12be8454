"""The JSON-lines span exporter: one object per span, parents linked, personal data dropped;
and no span's URL carries a credential to any exporter."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind

from shared.http import TELEMETRY
from shared.telemetry import JsonLinesSpanExporter, UrlCredentialsMasked


def test_each_span_is_one_line_without_the_redacted_attributes(tmp_path: Path) -> None:
    path = tmp_path / "traces" / "svc.jsonl"
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(str(path))))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("outer", kind=SpanKind.CONSUMER) as outer:
        with tracer.start_as_current_span("inner", attributes={
                "messaging.destination.name": "incident.reported",
                "http.request.body": '{"caller": {"phone": "13800000000"}}',
                "db.statement": "HSET caller 13800000000", "lianfang.count": 3}):
            pass
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [span["name"] for span in lines] == ["inner", "outer"]
    inner, outer_line = lines
    assert inner["attributes"] == {"messaging.destination.name": "incident.reported",
                                   "lianfang.count": 3}
    assert "13800000000" not in path.read_text()
    assert inner["service"] == "svc" and inner["kind"] == "INTERNAL"
    assert inner["trace_id"] == outer_line["trace_id"] == format(
        outer.get_span_context().trace_id, "032x")
    assert inner["parent_id"] == outer_line["span_id"] and outer_line["parent_id"] is None
    assert outer_line["kind"] == "CONSUMER" and outer_line["attributes"] == {}
    assert inner["status"] == "UNSET" and inner["start"] <= inner["end"]


def test_a_span_s_links_and_events_are_written_too(tmp_path: Path) -> None:
    # A command room's step runs in the incident's trace, linked to its request; a dead
    # letter ends its span with a `dead-lettered` event: without them a span file shows
    # neither where a step came from nor where an event went.
    path = tmp_path / "svc.jsonl"
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(str(path))))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("request") as request:
        cause = request.get_span_context()
    with tracer.start_as_current_span("step", links=[Link(cause)]) as step:
        step.add_event("dead-lettered", {"reason": "invalid OrderIssued: field location",
                                         "http.request.body": "13800000000"})
    line = json.loads(path.read_text().splitlines()[-1])
    assert line["links"] == [{"trace_id": format(cause.trace_id, "032x"),
                              "span_id": format(cause.span_id, "016x")}]
    (event,) = line["events"]
    assert event["name"] == "dead-lettered"
    assert event["attributes"] == {"reason": "invalid OrderIssued: field location"}
    assert "13800000000" not in path.read_text()


def test_text_lists_and_line_breaking_characters_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "svc.jsonl"
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(str(path))))
    with provider.get_tracer("t").start_as_current_span("巡逻 order", attributes={
            "lianfang.zone": "黄浦区 外滩", "lianfang.teams": ("t-1", "t-2"),
            "url.path": "/v1/orders/\x85\u2028\x1e\udbff",
            "lianfang.distance_m": 12.5, "lianfang.linked": False}):
        pass
    raw = path.read_bytes()
    assert raw.isascii()  # no character a line reader could take for a line break
    (line,) = [json.loads(text) for text in raw.decode().splitlines()]
    assert line["name"] == "巡逻 order"
    assert line["attributes"] == {"lianfang.zone": "黄浦区 外滩", "lianfang.teams": ["t-1", "t-2"],
                                  "url.path": "/v1/orders/\x85\u2028\x1e\udbff",
                                  "lianfang.distance_m": 12.5, "lianfang.linked": False}


def masked_provider(*exporters: InMemorySpanExporter | JsonLinesSpanExporter) -> TracerProvider:
    """A provider as setup_telemetry builds it: the masking first, then the exporters."""
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(UrlCredentialsMasked())
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def test_credentials_in_a_span_s_url_are_masked_for_every_exporter(tmp_path: Path) -> None:
    path = tmp_path / "svc.jsonl"
    otlp_like = InMemorySpanExporter()  # what the OTLP exporter would be handed
    provider = masked_provider(otlp_like, JsonLinesSpanExporter(str(path)))
    with provider.get_tracer("t").start_as_current_span("GET", attributes={
            "url.path": "/v1/devices/stream", "url.query": "token=lfd_Secret-Device.Token&v=2",
            "url.full": "https://sms.example/send?API_KEY=sk_live_1&to=all",
            "http.target": "/hook?sig=HookSig%2F1", "lianfang.note": "token=kept: not a URL"}):
        pass
    (span,) = otlp_like.get_finished_spans()
    assert dict(span.attributes or {}) == {
        "url.path": "/v1/devices/stream", "url.query": "token=***&v=2",
        "url.full": "https://sms.example/send?API_KEY=***&to=all",
        "http.target": "/hook?sig=***", "lianfang.note": "token=kept: not a URL"}
    written = path.read_text()
    assert '"url.query":"token=***&v=2"' in written
    assert "lfd_Secret" not in written and "sk_live_1" not in written and "HookSig" not in written


def test_a_url_without_credentials_is_left_as_it_is() -> None:
    exporter = InMemorySpanExporter()
    with masked_provider(exporter).get_tracer("t").start_as_current_span("GET", attributes={
            "url.query": "district=d1&tokens=3&page=2", "url.full": "http://volunteers/v1/zones"}):
        pass
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {"url.query": "district=d1&tokens=3&page=2",
                                           "url.full": "http://volunteers/v1/zones"}


async def test_fastapi_s_server_span_keeps_the_query_string_without_its_token() -> None:
    # FastAPI's own tracing (shared.http.TELEMETRY) records the query string in url.query,
    # redacting only a few signature names: a refused ?token= would be kept whole.
    exporter = InMemorySpanExporter()
    app = FastAPI(telemetry={**TELEMETRY, "tracer_provider": masked_provider(exporter),
                             "metrics": False, "logs": False})

    @app.get("/v1/categories")
    async def categories() -> list[str]:
        return []

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://intake") as client:
        r = await client.get("/v1/categories?token=lfd_Secret&lang=zh")
        assert r.status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.kind == SpanKind.SERVER
    assert (span.attributes or {})["url.query"] == "token=***&lang=zh"
