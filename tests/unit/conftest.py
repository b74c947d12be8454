"""Fixtures for unit tests."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import pytest

from shared.logging import setup_logging


@pytest.fixture
def service_log() -> Iterator[Callable[[], str]]:
    """Logging set up as a service sets it up (`setup_logging`: its handler, filters and
    format), writing to a buffer instead of stderr; returns what it has written so far. The
    test process's logging is put back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    touched = ("uvicorn.access", "httpx", "httpcore")
    loggers = {name: (logging.getLogger(name).disabled, logging.getLogger(name).level)
               for name in touched}
    setup_logging("test", "DEBUG")
    buffer = io.StringIO()
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer.getvalue
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, (disabled, lvl) in loggers.items():
        logging.getLogger(name).disabled = disabled
        logging.getLogger(name).setLevel(lvl)
