"""Failures described for logs, spans and dead letters: their types, the fields they name and
where in the code they happened, never the values their own text may quote (pydantic quotes
the input it refused, and a model may be built from a caller's details)."""

from __future__ import annotations

import traceback

from opentelemetry.trace import Span, Status, StatusCode
from pydantic import ValidationError

from shared.fieldnames import FIELD_NAME


def _where(loc: tuple[int | str, ...]) -> str:
    """An error's location: field names and positions. Any other key in it (an unknown key
    of a caller or a location: `{"13800138000": "Wang"}`) is the sender's data, not shown."""
    return ".".join(str(p) if isinstance(p, int) or FIELD_NAME.match(p) else "(a key not shown)"
                    for p in loc) or "(body)"


def describe_validation_error(exc: ValidationError) -> str:
    """Which fields were wrong, never their values (they may hold personal data)."""
    parts = [f"{_where(err['loc'])}: {err['type']}"
             for err in exc.errors(include_url=False, include_input=False)]
    return "; ".join(parts[:10])


def describe_failure(exc: BaseException) -> str:
    """A failure for logs, spans and dead letters: its type and message, but of a validation
    error only its fields and what was wrong with them."""
    if isinstance(exc, ValidationError):
        return f"{type(exc).__name__}: {describe_validation_error(exc)}"
    return f"{type(exc).__name__}: {exc}"


_CAUSED = "\nThe above exception was the direct cause of the following exception:\n\n"
_DURING = "\nDuring handling of the above exception, another exception occurred:\n\n"


def describe_traceback(exc: BaseException) -> str:
    """A traceback as Python prints it (the frames: file, line, function and source line, of
    each exception of the chain), each exception named by describe_failure instead of its
    own text. Not `logging.exception`: its last line is that text."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__cause__ is not None:
            chain.append((current, _CAUSED))
            current = current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            chain.append((current, _DURING))
            current = current.__context__
        else:
            chain.append((current, ""))
            current = None
    parts: list[str] = []
    for failure, link in reversed(chain):
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_list(traceback.extract_tb(failure.__traceback__)))
        parts.append(f"{describe_failure(failure)}\n")
        parts.append(link)
    return "".join(parts).rstrip("\n")


def record_failure(span: Span, exc: BaseException) -> None:
    """The failure on `span`, as describe_failure says it. Not `span.record_exception`: its
    message and stack trace are the exception's own text."""
    span.add_event("exception", {"exception.type": type(exc).__name__,
                                 "exception.message": describe_failure(exc)})
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
