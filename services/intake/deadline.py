"""A report's one bound (REPORT_TIMEOUT_S), counted from its arrival: its key's lookup, its
record and every other wait of it on Redis share it, so a calling system (a 110 desk waits
on the answer) has its answer within the bound, not within the bound twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from time import monotonic
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


class Deadline:
    """`timeout_s` of a report's own time from its arrival. The time it waits for its client
    (its body arriving) is not counted, as AnswerWithin does not count it for the other
    requests: the bound is for the store, not for the caller's network."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._by = monotonic() + timeout_s

    def left(self) -> float:
        return self._by - monotonic()

    @asynccontextmanager
    async def within(self) -> AsyncIterator[None]:
        """What it holds bounded by the time left (TimeoutError). None left: TimeoutError at
        once, nothing sent to Redis after the deadline (a write sent, whose answer the bound
        does not wait for, may still be made)."""
        left = self.left()
        if left <= 0:
            raise TimeoutError
        async with asyncio.timeout(left):
            yield

    def receive(self, receive: Receive) -> Receive:
        """`receive`, its waits not counted."""

        async def waited() -> Any:
            since = monotonic()
            try:
                return await receive()
            finally:
                self._by += monotonic() - since

        return waited


# The deadline of the report being handled in this context (set by ReportDeadlines): the
# token resolver, which the authentication middleware hands the token alone, finds it here,
# as the route and its refusals do.
_current: ContextVar[Deadline | None] = ContextVar("intake_report_deadline", default=None)


def current() -> Deadline | None:
    """The report's deadline, None outside a report."""
    return _current.get()


class ReportDeadlines:
    """Stamps each report (`is_report`) with its Deadline on arrival. Put it outside the
    authentication, whose key lookup the bound includes."""

    def __init__(self, app: ASGIApp, *, timeout_s: float,
                 is_report: Callable[[Scope], bool]) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self._is_report = is_report

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._is_report(scope):
            await self.app(scope, receive, send)
            return
        deadline = Deadline(self.timeout_s)
        token = _current.set(deadline)
        try:
            await self.app(scope, deadline.receive(receive), send)
        finally:
            _current.reset(token)
