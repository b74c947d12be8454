"""One logging set-up for every service: plain lines, trace ids when a span is current."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys

from opentelemetry import trace

from shared.described import describe_traceback


class _TraceIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else "-"
        return True


# Credentials as libraries write them: a query parameter (a device's WebSocket URL carries
# ?token=) or an Authorization header's value. The spans' URLs are masked with it too
# (shared.telemetry).
_CREDENTIALS = re.compile(
    r"(?i)(\b(?:token|access_token|api_key|sig|signature)=)[^&\s\"']+"
    r"|(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+"
    # a URL's password (compose's REDIS_URL=redis://intake:<password>@redis:6379)
    r"|(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(?=@)")


def mask_credentials(text: str) -> str:
    """`text` with each credential's value replaced by `***` (`token=***`, `Bearer ***`)."""
    return _CREDENTIALS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)


def rotated_name(name: str) -> str:
    """A file rotated by logging's RotatingFileHandler named with its number before its
    ending (its `namer`): `dispatch.log.2` -> `dispatch.2.log`, `dispatch.jsonl.1` ->
    `dispatch.1.jsonl`, so that `*.log` or `*.jsonl` finds every file."""
    folder, file_name = os.path.split(name)
    base, _, number = file_name.rpartition(".")
    stem, dot, suffix = base.rpartition(".")
    if not (stem and dot and number.isdigit()):
        return name
    return os.path.join(folder, f"{stem}.{number}.{suffix}")


class _NoCredentialsFilter(logging.Filter):
    """What libraries log of requests never carries a credential or an order's text:
    uvicorn logs each WebSocket's path with its query string at INFO; the WebSocket
    library's DEBUG wire trace ("< " received, "> " sent) has headers with bearer tokens
    and the frames' text (an order's description). The trace is dropped, credentials in
    any other line masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.levelno <= logging.DEBUG and isinstance(record.msg, str)
                and record.msg[:2] in ("< ", "> ")
                and record.name.startswith(("uvicorn", "websockets"))):
            return False
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: the handler reports it as it would have
            return True
        masked = mask_credentials(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class _ExceptionsDescribed(logging.Filter):
    """A logged exception's traceback written with its frames, each exception named as
    shared.described says (of a validation error its fields, not the values it quotes):
    the traceback's last line is the exception's own text. Our own 500s are logged so
    already (shared.http.log_unexpected); this is for the lines of libraries (uvicorn's
    "Exception in ASGI application" of a WebSocket's failure) and of background loops."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = describe_traceback(record.exc_info[1])
            record.exc_info = None
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ExceptionsDescribed())
    handler.addFilter(_NoCredentialsFilter())
    handler.addFilter(_TraceIdFilter())
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)s {service} %(name)s [trace=%(trace_id)s] %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs would carry query strings (a device may pass ?token=); our own logs say enough.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request's URL at INFO: a Web Push endpoint's path is its credential.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    _faststream_through_our_handler(level=root.level)


def _faststream_through_our_handler(*, level: int) -> None:
    """FastStream's logger (every broker's, shared.bus) writes through the root's handler.

    FastStream gives it a handler of its own at import and stops its lines from reaching
    the root's, so they skipped our format and the credentials filter: among them a failing
    subscriber task's error with its text and traceback. Its per-message DEBUG lines
    ("Received", "Processed") stay out even at DEBUG: thousands a second under the position
    load."""
    import faststream  # noqa: F401  # sets its logger up when first imported: before we do

    logger = faststream_logger()
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(max(level, logging.INFO))


# Set on an exception once shared.bus logged it as a failed read (a STORE_AWAY failure).
READ_FAILURE_LOGGED = "_lianfang_read_failure_logged"


def mark_logged(exc: BaseException) -> None:
    with contextlib.suppress(AttributeError):
        setattr(exc, READ_FAILURE_LOGGED, True)


class _FastStreamReadFailures(logging.Filter):
    """FastStream's lines for a subscriber's reads failing while Redis refuses writes or is
    away, left out: shared.bus logs those once when they start, every 30 s while they last
    and when the reads work again. FastStream logs a failed read as "Message fetch error" at
    ERROR with its traceback (Redis away: every few seconds per subscriber, for hours); a
    read refused with an error reply (MISCONF, OOM, READONLY) it raises out of the read
    loop, whose task supervisor logs "<task> raised an exception, retrying..." at ERROR
    (once per process and hour for all subscribers alike) and restarts it at once, with an
    INFO line "callback for <task> is being executed..." at each restart: thousands a
    second per subscriber. Those INFO lines (one at every task's end, saying nothing else)
    go always; the ERROR lines only for an exception that shared.bus has logged, so every
    other FastStream error is logged as it was."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if not isinstance(msg, str):
            return True
        if record.levelno == logging.INFO:
            return not (msg.startswith("callback for ") and msg.endswith(" is being executed..."))
        if record.levelno >= logging.ERROR and record.exc_info:
            exc = record.exc_info[1]
            read_failed = (msg == "Message fetch error"
                           or " raised an exception, retrying..." in msg)
            return not (read_failed and getattr(exc, READ_FAILURE_LOGGED, False))
        return True


def faststream_logger() -> logging.Logger:
    """FastStream's logger (every broker's, shared.bus), with its read failures left to ours."""
    logger = logging.getLogger("faststream")
    if not any(isinstance(f, _FastStreamReadFailures) for f in logger.filters):
        logger.addFilter(_FastStreamReadFailures())
    return logger
