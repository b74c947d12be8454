"""What the services' logging writes (shared.logging.setup_logging): libraries' lines about
requests never carry a credential or an order's text."""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.logging import _NoCredentialsFilter


def test_a_websockets_token_in_its_url_is_masked(service_log: Callable[[], str]) -> None:
    # uvicorn writes each WebSocket's path, query string included, at INFO; the member's
    # page passes its device token there (browsers cannot set headers on a WebSocket).
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "10.0.0.7:51234",
        "/v1/devices/stream?token=lfd_Secret-Device.Token&v=2")
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" %d', "10.0.0.7:51235", "/v1/devices/stream?token=lfd_Revoked", 403)
    log = service_log()
    assert '"WebSocket /v1/devices/stream?token=***&v=2" [accepted]' in log
    assert "stream?token=*** 403" in log.replace('"', "")
    assert "lfd_Secret" not in log and "lfd_Revoked" not in log


def test_the_websocket_wire_trace_is_not_written(service_log: Callable[[], str]) -> None:
    # At LOG_LEVEL=DEBUG the WebSocket library traces every header and frame.
    wire = logging.getLogger("uvicorn.error")
    wire.debug("< %s: %s", "authorization", "Bearer lfd_HeaderToken")
    wire.debug("> %s", "TEXT '{\"type\": \"order\", ... \"description\": \"Huang Wei, 13877001234\"}'")
    wire.debug("%s - WebSocket connection open", "10.0.0.7:51234")
    log = service_log()
    assert "WebSocket connection open" in log  # the rest of DEBUG stays
    assert "lfd_HeaderToken" not in log and "Huang" not in log and "13877001234" not in log


def test_credentials_in_any_line_are_masked_and_our_own_lines_kept(
        service_log: Callable[[], str]) -> None:
    log_ = logging.getLogger("services.intake")
    log_.warning("upstream refused: Authorization: Bearer lsk_abc.DEF-123 (401)")
    log_.info("report %s accepted for %s", "inc_01", "sys_9")
    log = service_log()
    assert "Bearer *** (401)" in log and "lsk_abc" not in log
    assert "report inc_01 accepted for sys_9" in log


def test_a_password_in_a_url_is_masked(service_log: Callable[[], str]) -> None:
    # compose gives each service its own Redis user: REDIS_URL=redis://intake:<password>@...
    logging.getLogger("services.intake").warning(
        "cannot reach redis://intake:s3cr-et_pw@redis:6379/0 nor rediss://:other@h:1")
    log = service_log()
    assert "s3cr-et_pw" not in log and "other@" not in log
    assert "redis://intake:***@redis:6379/0" in log and "rediss://:***@h:1" in log


def test_httpx_request_lines_are_not_written(service_log: Callable[[], str]) -> None:
    logging.getLogger("httpx").info(
        'HTTP Request: POST https://fcm.googleapis.com/fcm/send/pushREGISTRATION "201"')
    logging.getLogger("httpx").warning("a warning of httpx's own still shows")
    log = service_log()
    assert "pushREGISTRATION" not in log and "a warning of httpx's own still shows" in log


def test_a_malformed_call_passes_the_filter_for_the_handler_to_report() -> None:
    record = logging.LogRecord("services.intake", logging.INFO, __file__, 1, "broken %s %s",
                               ("only one",), None)
    assert _NoCredentialsFilter().filter(record)  # not raised into the caller
