"""An unexpected failure in a request: answered 500, and logged and traced by its type, the
fields it names and where in the code it happened, never by its own text (a pydantic error
quotes the input it refused: a caller's phone number)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable

import httpx
import pytest
from fastapi import WebSocket
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, Field, ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from shared.http import TELEMETRY, ServiceApp, install_error_handlers
from tests.helpers import serving

PHONE = "13912345678"


class Caller(BaseModel):
    phone: str = Field(pattern=r"^\+86")


def app_failing(provider: TracerProvider) -> ServiceApp:
    app = ServiceApp(telemetry={**TELEMETRY, "tracer_provider": provider, "metrics": False})
    install_error_handlers(app)

    @app.get("/v1/callers/latest")
    async def latest() -> dict[str, str]:
        return Caller(phone=PHONE).model_dump()  # a bug: raises, quoting the number

    return app


async def test_an_unexpected_error_is_answered_500_and_its_values_reach_no_log_nor_span(
        caplog: pytest.LogCaptureFixture, service_log: Callable[[], str]) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with serving(app_failing(provider)) as url, httpx.AsyncClient(base_url=url) as http:
        r = await http.get("/v1/callers/latest")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal", "message": "internal error"}}

    written = service_log()
    for text in (caplog.text, written):
        assert PHONE not in text
        assert "unhandled error: ValidationError" in text  # what failed, and where
        assert "phone: string_pattern_mismatch" in text
        assert "test_unexpected_errors.py" in text and "in latest" in text
    assert "Exception in ASGI application" not in caplog.text  # not raised on to uvicorn

    (server,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.status.is_ok is False
    (event,) = [e for e in server.events if e.name == "exception"]
    assert dict(event.attributes or {}) == {
        "exception.type": "ValidationError",
        "exception.message": "ValidationError: phone: string_pattern_mismatch"}
    exported = json.dumps([json.loads(s.to_json()) for s in exporter.get_finished_spans()])
    assert PHONE not in exported


async def test_a_failure_the_server_logs_is_written_without_the_values_it_quotes(
        service_log: Callable[[], str]) -> None:
    # A WebSocket's failure is raised on to uvicorn, which logs it with its traceback; so
    # does any background loop's log.exception
    app = ServiceApp(telemetry={**TELEMETRY, "tracing": False, "metrics": False})

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        Caller(phone=PHONE)

    async with serving(app) as url:
        with contextlib.suppress(ConnectionClosed):
            async with connect(url.replace("http://", "ws://") + "/v1/stream") as ws:
                await ws.recv()
    try:
        Caller(phone=PHONE)
    except ValidationError as exc:
        logging.getLogger("lianfang.loop").exception("sweep failed", exc_info=exc)
    written = service_log()
    assert "Exception in ASGI application" in written and "sweep failed" in written
    assert written.count("ValidationError: phone: string_pattern_mismatch") == 2
    assert "in stream" in written  # where
    assert PHONE not in written
