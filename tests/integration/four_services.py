"""The four services served in this process on one real Redis (flushed first), for tests
that need them all without the cost of processes: their URLs by name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import redis

from services.dispatch.config import Settings as DispatchSettings
from services.dispatch.main import create_app as dispatch_app
from services.intake.config import Settings as IntakeSettings
from services.intake.main import create_app as intake_app
from services.notify.config import Settings as NotifySettings
from services.notify.main import create_app as notify_app
from services.volunteers.config import Settings as VolunteersSettings
from services.volunteers.main import create_app as volunteers_app
from shared.runtime import proxy_options
from tests.integration.notify.conftest import serving

# Generous: such tests ask fast, and a 429 is not what they are about. Nor is the lockout
# of an address that keeps failing to authenticate: every test asks from 127.0.0.1.
NO_RATE_LIMITS = {"rate_limit_system": "100000/second", "rate_limit_device": "100000/second",
                  "rate_limit_dispatcher": "100000/second", "auth_failure_limit": ""}


@asynccontextmanager
async def four_services(redis_url: str, admin_token: str, **settings: Any
                        ) -> AsyncIterator[dict[str, str]]:
    """`settings`: the same for the four, over NO_RATE_LIMITS."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # before any consumer starts
    client.close()
    common = {"redis_url": redis_url, "admin_token": admin_token, **NO_RATE_LIMITS, **settings}
    async with AsyncExitStack() as stack:
        volunteers = VolunteersSettings(**common)
        urls = {"volunteers": await stack.enter_async_context(
            serving(volunteers_app(volunteers), **proxy_options(volunteers)))}
        around = {"volunteers_url": urls["volunteers"], **common}
        for name, settings_class, create_app in (
                ("notify", NotifySettings, notify_app), ("intake", IntakeSettings, intake_app),
                ("dispatch", DispatchSettings, dispatch_app)):
            settings = settings_class(**around)
            urls[name] = await stack.enter_async_context(
                serving(create_app(settings), **proxy_options(settings)))
        yield urls
