"""Starting a service process: logging, traces, metrics, then uvicorn with N workers.

`python -m services.<name>` calls `run_service("<name>")`. uvicorn imports
`shared.runtime:worker_app` in every worker process, so each worker sets up its own
telemetry and consumer name (the process id differs) before building the app.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from shared.collector import collect_when_quiet
from shared.logging import setup_logging
from shared.metrics import setup_metrics
from shared.settings import ServiceSettings
from shared.telemetry import setup_telemetry

_SERVICE_ENV = "LIANFANG_SERVICE"


def _settings(service: str):  # -> the service's Settings
    return importlib.import_module(f"services.{service}.config").Settings()


def worker_app() -> FastAPI:
    service = os.environ[_SERVICE_ENV]
    settings = _settings(service)
    setup_logging(settings.service_name, settings.log_level)
    setup_telemetry(settings.service_name, traces_file=settings.traces_file,
                    traces_max_mb=settings.traces_max_mb, traces_keep=settings.traces_keep)
    setup_metrics(settings.service_name, workers=settings.http_workers)
    return _heap_frozen_after_startup(
        importlib.import_module(f"services.{service}.main").create_app(settings))


def _heap_frozen_after_startup(app: FastAPI) -> FastAPI:
    """Once the app has started, everything it holds so far (modules, classes, the app,
    its broker and subscribers: some 100,000 objects the collector tracks) leaves the
    collector's view (`gc.freeze`). Python's full collections scanned them all every second
    or two under load, stopping the whole process for 70-140 ms each time (measured in
    intake, dispatch and volunteers at 50 incidents/s with the position load): the tail of
    every latency. What the process builds later (notify's device sockets, ~250 objects
    each) is still scanned: the full collections come at quiet moments (`shared.collector`)."""
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with started(a) as state:
            gc.collect()
            gc.freeze()
            collecting = asyncio.create_task(collect_when_quiet(), name="full-collections")
            try:
                yield state
            finally:
                await stop_task(collecting)

    app.router.lifespan_context = lifespan
    return app


def _settings_or_exit(service: str):  # -> the service's Settings
    """The service's settings, or exit with EX_CONFIG and one line per wrong variable.

    Not pydantic's traceback: it repeats every value it was given (REDIS_URL with its
    password among them) and buries the variable's name under the stack, once per restart.
    EX_CONFIG tells a supervisor (`make run`) that starting again would not help."""
    try:
        return _settings(service)
    except ValidationError as exc:
        wrong = [f"  {'.'.join(str(p) for p in err['loc']).upper() or '(settings)'}: {err['msg']}"
                 for err in exc.errors(include_url=False, include_input=False)]
        sys.stderr.write(f"{service}: invalid configuration in the environment:\n"
                         + "\n".join(wrong) + "\n")
        raise SystemExit(os.EX_CONFIG) from None


def proxy_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's options for X-Forwarded-For: trusted from FORWARDED_ALLOW_IPS only.

    uvicorn's own default trusts it from 127.0.0.1 and ::1 (its FORWARDED_ALLOW_IPS read
    from the environment when none is given): under `make run` any local process could name
    a new address with each request and so never be locked out (shared.http.AuthFailures).
    Without proxies named, uvicorn does not look at the header at all."""
    trusted = settings.forwarded_allow_ips.strip()
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted}


def run_service(service: str) -> None:
    os.environ[_SERVICE_ENV] = service
    settings = _settings_or_exit(service)
    setup_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        "shared.runtime:worker_app",
        factory=True,
        host=settings.http_host,
        port=settings.port,
        workers=settings.http_workers if settings.http_workers > 1 else None,
        **proxy_options(settings),
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=10,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        # notify's device sockets: a frame above this closes the socket at the transport,
        # before it is read whole (uvicorn's own default is 16 MiB)
        **({"ws_max_size": settings.ws_max_size} if hasattr(settings, "ws_max_size") else {}),
    )


async def stop_task(task: asyncio.Task, *, grace_s: float = 0.0, attempts: int = 20,
                    wait_s: float = 0.25) -> None:
    """Wait up to `grace_s` for a background task to end by itself (its stop event set),
    then cancel it and wait until it has really ended.

    On Python 3.11 a cancellation that lands inside a redis-py command or `wait_for` can be
    swallowed, leaving the task running: cancel again until it ends (bounded)."""
    if grace_s and not task.done():
        await asyncio.wait({task}, timeout=grace_s)
    for _ in range(attempts):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=wait_s)
    if task.done() and not task.cancelled() and task.exception() is not None:
        logging.getLogger(__name__).warning("background task %s ended with %r",
                                            task.get_name(), task.exception())
