"""Credentials never reach the logs or the traces, whatever the libraries under the services
log or record: FastStream's own lines, request headers an operator asks OpenTelemetry to
capture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.introspect import Introspector
from shared.telemetry import UrlCredentialsMasked

DEVICE_TOKEN = "lfd_Secret-Device.Token"
ROOT = Path(__file__).resolve().parents[2]


def volunteers_standin() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/devices/introspect")
    async def introspect(request: Request) -> dict[str, str]:
        assert request.headers["authorization"] == f"Bearer {DEVICE_TOKEN}"
        return {"device_id": "dev_1", "member_id": "m1", "team_id": "t1"}

    return app


async def test_a_captured_authorization_header_reaches_no_exporter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST is OpenTelemetry's own knob
    # (".*": every header, a common way to debug a call); notify and intake send every
    # device token to volunteers in a header, dispatch the admin token, notify the SMS
    # gateway's and Web Push's credentials.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", ".*")
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "notify"}))
    provider.add_span_processor(UrlCredentialsMasked())  # as setup_telemetry installs it
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=volunteers_standin())
                                 ) as client:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
        devices = Introspector(client, base_url="http://volunteers", cache_s=0, timeout_s=5)
        who = await devices.resolve(DEVICE_TOKEN)
    assert who is not None and who.team_id == "t1"  # the call itself kept its token
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert DEVICE_TOKEN not in str(attributes)
    assert attributes["http.request.header.authorization"] == ("Bearer ***",)
    assert attributes["http.request.header.host"] == ("volunteers",)  # others as captured


# A service process as uvicorn's worker builds it (shared.runtime.worker_app: logging set
# up, then the service's app, which imports FastStream), then a line of FastStream's own.
SERVICE_PROCESS = f"""
import logging
from shared.runtime import worker_app
worker_app()
faststream = logging.getLogger("faststream")
faststream.error("subscriber failed: upstream said Authorization: Bearer {DEVICE_TOKEN}")
faststream.debug("Received")
"""


def test_faststream_s_own_lines_go_through_the_service_s_handler() -> None:
    # FastStream gives its logger a handler of its own when imported and stops its lines
    # from reaching the root's: they skipped the services' format (trace ids) and the
    # credentials filter. A failing subscriber task is logged there with its text and
    # traceback.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LIANFANG_SERVICE": "intake",
           "ADMIN_TOKEN": "test-admin-token", "LOG_LEVEL": "DEBUG"}
    done = subprocess.run([sys.executable, "-c", SERVICE_PROCESS], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert ("ERROR intake faststream [trace=-] subscriber failed: upstream said "
            "Authorization: Bearer ***") in log
    assert DEVICE_TOKEN not in log
    assert "Received" not in log  # per-message lines stay out, even at DEBUG
