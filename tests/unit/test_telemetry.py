"""The JSON-lines span exporter: one object per span, parents linked, personal data dropped,
the file rotated by size; and no span's URL carries a credential to any exporter, nor an
exception recorded on a span what its text quotes."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind
from pydantic import BaseModel, ValidationError

from shared.http import TELEMETRY
from shared.settings import ServiceSettings
from shared.telemetry import JsonLinesSpanExporter, UrlCredentialsMasked, tracer_provider


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


def finished_spans(count: int) -> list[ReadableSpan]:
    """`count` finished spans named "0", "1", ..., each with some 200 bytes of attributes."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for n in range(count):
        with tracer.start_as_current_span(str(n), attributes={"lianfang.pad": "x" * 200}):
            pass
    return list(exporter.get_finished_spans())


def written_spans(directory: Path) -> dict[str, list[str]]:
    """The span names in each file of `directory`, every line whole JSON."""
    return {path.name: [json.loads(line)["name"] for line in path.read_text().splitlines()]
            for path in sorted(directory.iterdir())}


def test_the_file_is_rotated_at_its_size_keeping_the_newest_files(tmp_path: Path) -> None:
    # Under `make run` for months on a station server the spans filled the disk (some 800 MB
    # a day with the demo): the file is rotated before a batch would take it to its size,
    # the oldest file beyond `keep` deleted. A batch goes whole into one file (none of its
    # spans split across two), and every span of the kept files is there, in order.
    spans = finished_spans(300)
    exporter = JsonLinesSpanExporter(str(tmp_path / "svc.jsonl"), max_bytes=10_000, keep=2)
    for start in range(0, len(spans), 7):  # batches of 7, as the batch processor hands them
        exporter.export(spans[start:start + 7])
    exporter.shutdown()
    files = written_spans(tmp_path)
    assert sorted(files) == ["svc.1.jsonl", "svc.2.jsonl", "svc.jsonl"]
    assert all(path.stat().st_size <= 10_000 for path in tmp_path.iterdir())
    kept = files["svc.2.jsonl"] + files["svc.1.jsonl"] + files["svc.jsonl"]
    assert kept == [str(n) for n in range(300 - len(kept), 300)]
    for old in ("svc.2.jsonl", "svc.1.jsonl"):  # whole batches, as many as fitted
        assert len(files[old]) % 7 == 0 and len(files[old]) >= 14
        assert (tmp_path / old).stat().st_size > 10_000 - 7 * 600


def test_spans_written_one_at_a_time_rotate_alike(tmp_path: Path) -> None:
    # The batch processor's thread, a flush at exit: one exporter, however it is called.
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(
        JsonLinesSpanExporter(str(tmp_path / "svc.jsonl"), max_bytes=5_000, keep=1)))
    for n in range(100):
        with provider.get_tracer("t").start_as_current_span(str(n), attributes={"n": n}):
            pass
    provider.shutdown()
    files = written_spans(tmp_path)
    assert sorted(files) == ["svc.1.jsonl", "svc.jsonl"]
    assert files["svc.1.jsonl"] + files["svc.jsonl"] == [
        str(n) for n in range(100 - len(files["svc.1.jsonl"]) - len(files["svc.jsonl"]), 100)]


def test_a_batch_that_cannot_be_written_is_raised_not_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The batch processor logs an export that raised as not exported; the file handler's own
    # error report would print the batch's spans whole into the service's log.
    (tmp_path / "svc.jsonl").mkdir()  # where the file should be: it cannot be opened
    exporter = JsonLinesSpanExporter(str(tmp_path / "svc.jsonl"), max_bytes=10_000, keep=2)
    with pytest.raises(OSError):
        exporter.export(finished_spans(3))
    assert capsys.readouterr().err == ""


def test_a_service_s_traces_are_rotated_at_traces_max_mb_keeping_traces_keep_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACES_MAX_MB", "1")
    monkeypatch.setenv("TRACES_KEEP", "1")
    settings = ServiceSettings(admin_token="a" * 32, traces_file=str(tmp_path / "svc.jsonl"))
    # as the service's process builds it (shared.runtime), its batch processor and all
    provider = tracer_provider("svc", traces_file=settings.traces_file,
                               traces_max_mb=settings.traces_max_mb,
                               traces_keep=settings.traces_keep)
    for n in range(1500):  # some 1.6 MB of spans, fewer than the processor's queue holds
        with provider.get_tracer("t").start_as_current_span(str(n), attributes={"pad": "x" * 900}):
            pass
    provider.shutdown()
    files = written_spans(tmp_path)
    assert sorted(files) == ["svc.1.jsonl", "svc.jsonl"]
    assert all(path.stat().st_size <= 1024 * 1024 for path in tmp_path.iterdir())
    assert files["svc.1.jsonl"] + files["svc.jsonl"] == [
        str(n) for n in range(1500 - len(files["svc.1.jsonl"]) - len(files["svc.jsonl"]), 1500)]


def test_the_traces_kept_by_default_are_bounded() -> None:
    # per service, under `make run`: the file written and the old ones kept
    defaults = ServiceSettings(admin_token="a" * 32)
    assert defaults.traces_max_mb * (1 + defaults.traces_keep) <= 500


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


@pytest.mark.parametrize("service", ["intake", "dispatch", "volunteers", "notify"])
def test_fastapi_s_own_log_export_and_exporters_stay_off_whatever_its_variable_says(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # FastAPI's telemetry exports unhandled exceptions' messages and stack traces as logs
    # (a pydantic error quotes a caller's phone), and FASTAPI_OTEL_AUTO_CONFIGURE=true would
    # add OTLP exporters of its own, for logs too, beside shared.telemetry's
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    main = importlib.import_module(f"services.{service}.main")
    settings = importlib.import_module(f"services.{service}.config").Settings
    app = main.create_app(settings(admin_token="test-admin-token"))
    effective = app._telemetry  # what FastAPI made of TELEMETRY and its variable
    assert effective["logs"] is False
    assert effective["auto_configure"] is False
    assert effective["tracing"] is True and effective["operation_spans"] is False


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def report_with_traceparent(provider: TracerProvider, flags: str) -> None:
    """A report posted to a FastAPI app traced as a service's is, with a calling system's
    traceparent whose sampled flag is `flags`."""
    app = FastAPI(telemetry={**TELEMETRY, "tracer_provider": provider,
                             "metrics": False, "logs": False})

    @app.post("/v1/incidents", status_code=202)
    async def report() -> dict[str, str]:
        return {"incident_id": "inc_1"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://intake") as client:
        r = await client.post("/v1/incidents", json={}, headers={
            "traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-{flags}"})
        assert r.status_code == 202


@pytest.mark.parametrize("flags", ["01", "00"])
async def test_a_report_is_traced_in_the_caller_s_trace_whether_or_not_the_caller_samples_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: str) -> None:
    # A 110 system that samples 1% of its own traces sends `-00` with 99% of its reports:
    # the station's operators need every incident's trace all the same, under the trace id
    # the caller named (GET /v1/incidents/{id} gives it).
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    provider = tracer_provider("intake", traces_file=str(tmp_path / "intake.jsonl"))
    await report_with_traceparent(provider, flags)
    provider.shutdown()
    (span,) = written_spans_of(tmp_path / "intake.jsonl")
    assert (span["name"], span["kind"], span["trace_id"], span["parent_id"]) == (
        "POST /v1/incidents", "SERVER", CALLER_TRACE, "00f067aa0ba902b7")


async def test_an_operator_s_own_sampler_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    provider = tracer_provider("intake", traces_file=str(tmp_path / "intake.jsonl"))
    await report_with_traceparent(provider, "00")
    provider.shutdown()
    assert written_spans_of(tmp_path / "intake.jsonl") == []


def written_spans_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_messaging_spans_say_their_operation_type_as_the_current_conventions_name_it(
        tmp_path: Path) -> None:
    # The messaging conventions since 1.26 query by `messaging.operation.type` (`send`, where
    # 1.24's `messaging.operation` said `publish`); FastStream and shared.bus write 1.24's.
    provider = tracer_provider("svc", traces_file=str(tmp_path / "svc.jsonl"))
    tracer = provider.get_tracer("t")
    redis = {"messaging.system": "redis", "messaging.destination.name": "order.issued"}
    # FastStream's: the operation set after the span started, named in the span's name
    for name, kind in (("order.issued create", SpanKind.PRODUCER),
                       ("order.issued publish", SpanKind.PRODUCER),
                       ("order.issued process", SpanKind.CONSUMER)):
        with tracer.start_as_current_span(name, kind=kind, attributes=redis) as span:
            span.set_attribute("messaging.operation", name.rpartition(" ")[2])
    # shared.bus's and notify's push: the operation given at start
    with tracer.start_as_current_span("order.issued publish", kind=SpanKind.PRODUCER,
                                      attributes={**redis, "messaging.operation": "publish"}):
        pass
    with tracer.start_as_current_span("push order", kind=SpanKind.PRODUCER, attributes={
            "messaging.system": "websocket", "messaging.operation": "publish"}):
        pass
    with tracer.start_as_current_span("GET /v1/zones", kind=SpanKind.SERVER,
                                      attributes={"http.request.method": "GET"}):
        pass
    provider.shutdown()
    written = [(s["name"], s["attributes"].get("messaging.operation.type"),
                s["attributes"].get("messaging.operation.name"),
                s["attributes"].get("messaging.operation"))
               for s in written_spans_of(tmp_path / "svc.jsonl")]
    assert written == [
        ("order.issued create", "create", "create", "create"),
        ("order.issued publish", "send", "publish", "publish"),
        ("order.issued process", "process", "process", "process"),
        ("order.issued publish", "send", "publish", "publish"),
        ("push order", "send", "publish", "publish"),
        ("GET /v1/zones", None, None, None)]


class CallerRecord(BaseModel):
    phone: int  # a stored record a step reads: pydantic quotes what it refused


STORED = {"phone": "13977105555 Huang Xiaoming"}


def caller_record_refused() -> None:
    CallerRecord.model_validate(STORED)


def test_an_exception_escaping_a_span_is_described_without_what_its_text_quotes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `start_as_current_span` and `use_span` record an exception that escapes them with the
    # SDK's `record_exception`: its own text and a stack trace ending in it. A dispatch step
    # failing on a stored record (its caller's phone and name) put them in the incident's
    # trace, for every exporter (Jaeger keeps them), where shared.described keeps them out
    # of the logs and dead letters.
    from services.dispatch import engine

    path = tmp_path / "svc.jsonl"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    provider = tracer_provider("svc", traces_file=str(path))
    otlp_like = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(otlp_like))
    monkeypatch.setattr(engine, "tracer", provider.get_tracer("lianfang.dispatch"))
    with pytest.raises(ValidationError):
        with engine.in_incident_trace("acknowledgement deadline", None,
                                      **{"lianfang.incident_id": "inc_1"}):
            caller_record_refused()
    span = provider.get_tracer("t").start_span("order.issued process")
    with pytest.raises(ValidationError), trace.use_span(span, end_on_exit=True):
        caller_record_refused()
    provider.force_flush()
    provider.shutdown()

    spans = otlp_like.get_finished_spans()
    assert [s.name for s in spans] == ["acknowledgement deadline", "order.issued process"]
    for finished in spans:
        (event,) = finished.events
        attributes = dict(event.attributes or {})
        assert event.name == "exception"
        assert attributes["exception.type"] == "pydantic_core._pydantic_core.ValidationError"
        assert attributes["exception.message"] == "ValidationError: phone: int_parsing"
        # where it happened is kept: the frames, each exception said as the logs say it
        assert "in caller_record_refused" in attributes["exception.stacktrace"]
        assert attributes["exception.stacktrace"].endswith(
            "ValidationError: phone: int_parsing")
        # the error status's description too (OTLP sends it: Jaeger's otel.status_description)
        assert finished.status.status_code.name == "ERROR"
        assert finished.status.description == "ValidationError: phone: int_parsing"
    written = path.read_text()
    assert "exception.stacktrace" in written
    for secret in ("13977105555", "Huang"):
        assert all(secret not in str(dict(e.attributes or {}))
                   for s in spans for e in s.events)
        assert secret not in written
