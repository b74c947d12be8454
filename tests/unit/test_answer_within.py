"""AnswerWithin (shared.http): a request its app has not begun to answer within the bound
is answered 503 and left to end as it would have; a write names what asking again does;
the time a body takes to arrive is the client's, not counted. An app that waits on an
event the test holds stands in for a Redis that does not answer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from shared.http import AnswerWithin, InputFirstRoute, install_error_handlers, when_not_answered

BOUND_S = 0.05


class Stalled:
    """An app whose answer waits until `released`; `ended` once it has."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.ended = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.released.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})
        self.ended.set()


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def test_a_read_not_answered_is_a_503_and_the_request_ends_as_it_would() -> None:
    app = Stalled()
    async with client(AnswerWithin(app, timeout_s=BOUND_S)) as http:
        r = await http.get("/v1/incidents")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"
    assert r.json() == {"error": {"code": "unavailable",
                                  "message": "the store is not answering; ask again"}}
    app.released.set()  # Redis answers: the request is not cancelled, and ends
    await asyncio.wait_for(app.ended.wait(), 5)


async def test_a_write_begun_is_told_whether_it_was_made_is_not_known() -> None:
    released = asyncio.Event()
    api = FastAPI()
    api.router.route_class = InputFirstRoute
    install_error_handlers(api)

    @api.post("/v1/remarks")
    async def remark() -> dict[str, str]:
        await released.wait()
        return {}

    @api.post("/v1/tokens")
    @when_not_answered("asking again issues another token")
    async def issue() -> dict[str, str]:
        await released.wait()
        return {}

    try:
        async with client(AnswerWithin(api, timeout_s=BOUND_S)) as http:
            plain = await http.post("/v1/remarks")
            marked = await http.post("/v1/tokens")
    finally:
        released.set()
    assert plain.status_code == marked.status_code == 503
    assert plain.json()["error"]["message"] == (
        "the store is not answering (no answer within 0.05 s): whether this change was made "
        "is not known; ask again (a change made is not made twice)")
    assert marked.json()["error"]["message"].endswith(
        "whether this change was made is not known; ask again (asking again issues another "
        "token)")


async def test_the_time_a_body_takes_to_arrive_is_not_counted() -> None:
    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def slow_body() -> Any:  # a phone on a poor network: chunks far apart
        for chunk in (b"a", b"b", b"c"):
            await asyncio.sleep(BOUND_S * 2)
            yield chunk

    async with client(AnswerWithin(echo, timeout_s=BOUND_S)) as http:
        r = await http.post("/v1/roster/import", content=slow_body())
    assert (r.status_code, r.content) == (200, b"abc")
