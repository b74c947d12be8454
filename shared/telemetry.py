"""OpenTelemetry set-up: standard OTEL_* variables, plus a JSON-lines file exporter for make run."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from logging.handlers import RotatingFileHandler
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util import types

from shared.described import describe_failure, describe_traceback
from shared.jsontext import ascii_json
from shared.logging import mask_credentials, rotated_name

# Attribute keys that may carry a caller's personal data if some instrumentation adds them.
_REDACTED_KEYS = frozenset({"http.request.body", "messaging.message.body", "db.statement"})


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON object per line: readable without a collector.

    The file is rotated by size, as a log is (the standard library's RotatingFileHandler,
    one record per batch: a batch goes whole into one file, so no span is split or lost at
    a rotation): before a batch would take it to `max_bytes` it becomes `<name>.1.jsonl`,
    the one before `<name>.2.jsonl`, and so on; the oldest beyond `keep` is deleted. Under
    `make run` for months the spans would otherwise fill the disk (some 800 MB a day with
    the demo). The rotated files keep the `.jsonl` ending, so `*.jsonl` finds them all."""

    def __init__(self, path: str, *, max_bytes: int = 0, keep: int = 0) -> None:
        self.max_bytes = max_bytes
        self.keep = keep
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # Opened at the first batch, in the batch processor's thread; the handler's own lock
        # keeps a flush from another thread (at exit) from writing into a rotation.
        self._file = _SpanFile(path, maxBytes=max_bytes, backupCount=keep, encoding="ascii",
                               delay=True)
        self._file.namer = rotated_name

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            parent = span.parent
            # A plain dict copy: iterating the SDK's BoundedAttributes walks the Mapping ABC.
            attributes = _kept(span.attributes)
            lines.append(ascii_json({
                "service": span.resource.attributes.get("service.name"),
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "parent_id": format(parent.span_id, "016x") if parent else None,
                "start": span.start_time,
                "end": span.end_time,
                "status": span.status.status_code.name,
                "attributes": attributes,
                # where a step came from (a command room's request, the event that freed a
                # team) and what happened in it (a dead letter)
                **({"links": [{"trace_id": format(link.context.trace_id, "032x"),
                               "span_id": format(link.context.span_id, "016x")}
                              for link in span.links]} if span.links else {}),
                **({"events": [{"name": event.name, "at": event.timestamp,
                                "attributes": _kept(event.attributes)}
                               for event in span.events]} if span.events else {}),
            }, fallback=str))
        if lines:
            # one record, written with its line break by the handler: the whole batch
            self._file.handle(logging.makeLogRecord(
                {"msg": b"\n".join(lines).decode("ascii")}))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


class _SpanFile(RotatingFileHandler):
    """A rotating file of spans, not of log records."""

    def handleError(self, record: logging.LogRecord) -> None:
        # Raised to the batch processor, which logs that the batch was not exported: the
        # handler's own would print the batch's spans whole into the service's log.
        raise  # the handler calls it inside its `except`


def _kept(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The attributes as a plain dict (iterating the SDK's BoundedAttributes walks the Mapping
    ABC), without those that may hold personal data."""
    kept = dict(attributes.copy()) if attributes else {}
    for key in _REDACTED_KEYS.intersection(kept):
        del kept[key]
    return kept


# Attribute keys that hold a request's query string.
_QUERY_KEYS = ("url.query", "url.full", "http.url", "http.target")
# Request headers that carry a credential, as the HTTP instrumentations name them when asked
# to capture headers (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST).
_CREDENTIAL_HEADER_KEYS = tuple(f"http.request.header.{name}" for name in
                                ("authorization", "proxy_authorization", "cookie"))


def _masked_header(value: str) -> str:
    """A credential header's value without its secret: its scheme kept where the logs keep
    it (`Bearer ***`), nothing of any other (a VAPID JWT, a cookie)."""
    masked = mask_credentials(value)
    return masked if masked != value else "***"


class UrlCredentialsMasked(SpanProcessor):
    """Masks credentials in a span's URL and captured request headers as it starts, as the
    logs mask them, so that no exporter (OTLP, the file) ever has them. FastAPI's server span
    keeps a request's query string in `url.query`, redacting only the semantic conventions'
    few signature names (fastapi/telemetry/_asgi.py, no setting to add ours), and a device or
    a system may send its token as `?token=`. The httpx instrumentation records the request
    headers an operator asks for by OpenTelemetry's own variable, `Authorization` too, and
    sanitizes only those its own variable names: every token notify and intake ask volunteers
    about, dispatch's admin token, the SMS gateway's. The SDK's span is still writable in
    `on_start`; instrumentations give these attributes at start."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        attributes = span.attributes
        if not attributes:
            return
        for key in _QUERY_KEYS:
            value = attributes.get(key)
            if isinstance(value, str):
                masked = mask_credentials(value)
                if masked != value:
                    span.set_attribute(key, masked)
        for key in _CREDENTIAL_HEADER_KEYS:
            values = attributes.get(key)
            if isinstance(values, tuple):
                span.set_attribute(key, [_masked_header(str(v)) for v in values])


def _exception_described(span: Span, exception: BaseException,
                         attributes: types.Attributes = None, timestamp: int | None = None,
                         escaped: bool = False) -> None:
    """`Span.record_exception` as the logs say a failure (shared.described): its type, its
    message and the frames of its stack trace, each exception of the chain said by
    describe_failure (a validation error by its fields, never the values it quotes)."""
    module, name = type(exception).__module__, type(exception).__qualname__
    described: dict[str, types.AttributeValue] = {
        "exception.type": f"{module}.{name}" if module and module != "builtins" else name,
        "exception.message": describe_failure(exception),
        "exception.stacktrace": describe_traceback(exception),
        "exception.escaped": str(escaped),
    }
    if attributes:
        described.update(attributes)
    span.add_event("exception", described, timestamp)
    # The SDK sets the error status next, its description the exception's own text
    # (`use_span`, a span's `__exit__`): that one is said as the event says it.
    span.set_status = functools.partial(  # type: ignore[method-assign]
        _status_described, span, f"{type(exception).__name__}: {exception}",
        describe_failure(exception))


def _status_described(span: Span, raw: str, described: str, status: Status | StatusCode,
                      description: str | None = None) -> None:
    if isinstance(status, Status) and status.description == raw:
        status = Status(status.status_code, described)
    Span.set_status(span, status, description)


class ExceptionsDescribed(SpanProcessor):
    """An exception that escapes a span is recorded as the logs describe it. The SDK's
    `record_exception`, which `start_as_current_span`, `use_span` and a span's own `with`
    call for an exception escaping them, records the exception's own text and a stack
    trace ending in it, and the error status they set next has that text as its
    description: pydantic's quotes the input it refused (a stored incident's caller, a
    description), and every exporter had it (the file writes no description; OTLP does).
    Each span gets, as it starts, its own `record_exception` that says it as
    shared.described does, the status's description too; `record_failure` for a failure a
    handler catches says it the same way."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        span.record_exception = functools.partial(_exception_described, span)  # type: ignore[method-assign]


# The messaging conventions' operation types (semantic conventions 1.26 and later) of the
# operations FastStream and shared.bus name as 1.24 did (`messaging.operation`, the span name's
# last word): `publish` became `send`.
_OPERATION_TYPES = {"create": "create", "publish": "send", "send": "send",
                    "receive": "receive", "process": "process", "settle": "settle"}


class MessagingOperationType(SpanProcessor):
    """Adds `messaging.operation.type` and `messaging.operation.name`, by which the current
    messaging conventions find a span's operation, to every messaging span as it starts:
    FastStream's (`order.issued publish`, its `messaging.operation` set only after the start,
    so read from the name) and ours (shared.bus, notify's push), which keep 1.24's
    `messaging.operation` and names for the queries and dashboards written against them."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        attributes = span.attributes
        if not attributes or "messaging.system" not in attributes \
                or "messaging.operation.type" in attributes:
            return
        operation = attributes.get("messaging.operation") or span.name.rpartition(" ")[2]
        kind = _OPERATION_TYPES.get(str(operation))
        if kind:
            span.set_attribute("messaging.operation.type", kind)
            span.set_attribute("messaging.operation.name", str(operation))


def setup_telemetry(service_name: str, *, traces_file: str | None = None,
                    traces_max_mb: int = 0, traces_keep: int = 0) -> TracerProvider:
    """Install the global tracer provider; call before building FastAPI apps and brokers."""
    # The HTTP conventions' stable attribute names (`http.request.method`, `url.full`,
    # `http.response.status_code`) on the httpx client spans too: FastAPI's server spans use
    # only those, and the httpx instrumentation, left to itself, the old `http.method`,
    # `http.url`, `http.status_code`, so that one query found half of a trace's HTTP spans.
    # Read once, when the first instrumentation is made (after this call); an operator's own
    # setting of OpenTelemetry's variable is kept.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    provider = tracer_provider(service_name, traces_file=traces_file,
                               traces_max_mb=traces_max_mb, traces_keep=traces_keep)
    trace.set_tracer_provider(provider)
    return provider


def tracer_provider(service_name: str, *, traces_file: str | None = None,
                    traces_max_mb: int = 0, traces_keep: int = 0) -> TracerProvider:
    """The provider setup_telemetry installs: credentials masked, then the spans to the file
    (TRACES_FILE, rotated at `traces_max_mb`, `traces_keep` old files kept; 0: never) and to
    OTLP when OpenTelemetry's variables name an endpoint."""
    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": name}),
                              sampler=every_incident_sampled(os.environ))
    provider.add_span_processor(UrlCredentialsMasked())  # before any exporter's processor
    provider.add_span_processor(ExceptionsDescribed())
    provider.add_span_processor(MessagingOperationType())
    if traces_file:
        exporter = JsonLinesSpanExporter(traces_file, max_bytes=traces_max_mb * 1024 * 1024,
                                         keep=traces_keep)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def every_incident_sampled(env: Mapping[str, str]) -> Sampler | None:
    """Every span recorded, in its parent's trace, also when the parent is a calling system's
    that it did not sample itself (a traceparent ending `-00`): a 110 system tracing 1% of its
    requests otherwise had 99% of its incidents traced nowhere, in any service, their trace id
    in GET /v1/incidents/{id} naming no span. Our own services sample everything, so only a
    caller's context arrives unsampled. None (the SDK's default, from OpenTelemetry's
    variables) when the operator chose a sampler with OTEL_TRACES_SAMPLER."""
    if env.get("OTEL_TRACES_SAMPLER"):
        return None
    return ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def inject_context() -> dict[str, str]:
    """The current trace context as W3C headers, to store or send alongside a message."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(carrier: dict[str, str] | None):  # -> opentelemetry.context.Context
    return propagate.extract(carrier or {})


_URL_KEYS = ("url.full", "http.url")


async def _host_only(span: trace.Span, request: Any) -> None:
    """The request span names the host only: a push service's URL path is the subscription's
    own credential."""
    if not span.is_recording():
        return
    url = request.url  # httpx.URL (RequestInfo.url)
    there = getattr(span, "attributes", None) or {}
    for key in _URL_KEYS:
        if key in there:
            span.set_attribute(key, f"{url.scheme}://{url.netloc.decode('ascii')}/")


def trace_outside_calls(client: Any, *, tracer_provider: TracerProvider | None = None) -> None:
    """Trace an httpx.AsyncClient that calls services outside the deployment (Web Push
    endpoints, an SMS gateway) with their URLs cut to the host."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=tracer_provider,
                                              request_hook=_host_only)
