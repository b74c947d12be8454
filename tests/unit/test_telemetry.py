"""The JSON-lines span exporter: one object per span, parents linked, personal data dropped."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from shared.telemetry import JsonLinesSpanExporter


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
