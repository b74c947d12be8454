"""AnswerWithin (shared.http): a request its app has not begun to answer within the bound
is answered 503 and left to end as it would have; a write names what asking again does;
the time a body takes to arrive is the client's, not counted. An app that waits on an
event the test holds stands in for a Redis that does not answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from shared.http import (
    AnswerWithin,
    InputFirstRoute,
    answers_within,
    install_error_handlers,
    when_not_answered,
)

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


@dataclass
class Answered:
    """What a server sent the client: the 503 goes while the request still runs (httpx's
    ASGI transport answers only once the app has returned, so the server is played here)."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    request: asyncio.Task[None]


async def served(app: Any, method: str, path: str) -> Answered:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [], "scheme": "http", "server": ("svc", 80), "client": ("c", 1),
             "root_path": ""}
    sent: list[dict[str, Any]] = []
    done, body_sent = asyncio.Event(), False

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if body_sent:
            await done.wait()
            return {"type": "http.disconnect"}
        body_sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    request = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(done.wait(), 5)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return Answered(start["status"], headers,
                    json.loads(b"".join(m.get("body", b"") for m in sent[1:])), request)


async def test_a_read_not_answered_is_a_503_and_the_request_ends_as_it_would() -> None:
    app = Stalled()
    r = await served(AnswerWithin(app, timeout_s=BOUND_S), "GET", "/v1/incidents")
    assert r.status == 503
    assert r.headers["retry-after"] == "2"
    assert r.body == {"error": {"code": "unavailable",
                                "message": "the store is not answering; ask again"}}
    assert not r.request.done()  # answered while the request still waits on the store
    app.released.set()  # Redis answers: the request is not cancelled, and ends
    await asyncio.wait_for(app.ended.wait(), 5)
    await asyncio.wait_for(r.request, 5)  # its own answer dropped, not sent after the 503


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
        plain = await served(AnswerWithin(api, timeout_s=BOUND_S), "POST", "/v1/remarks")
        marked = await served(AnswerWithin(api, timeout_s=BOUND_S), "POST", "/v1/tokens")
    finally:
        released.set()
    await asyncio.wait_for(asyncio.gather(plain.request, marked.request), 5)
    assert plain.status == marked.status == 503
    assert plain.body["error"]["message"] == (
        "the store is not answering (no answer within 0.05 s): whether this change was made "
        "is not known; ask again (a change made is not made twice)")
    assert marked.body["error"]["message"].endswith(
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


async def test_a_route_of_long_work_has_its_own_bound() -> None:
    """A city's roster import (11,000 members) is seconds of quick writes, not a Redis that
    does not answer: at the services' bound it was told "whether this change was made is not
    known" while it went on and was made."""
    api = FastAPI()
    api.router.route_class = InputFirstRoute
    install_error_handlers(api)

    @api.post("/v1/roster/import")
    @answers_within(BOUND_S * 6)
    async def import_roster() -> dict[str, str]:
        await asyncio.sleep(BOUND_S * 3)
        return {"imported": "yes"}

    @api.post("/v1/remarks")
    async def remark() -> dict[str, str]:
        await asyncio.sleep(BOUND_S * 3)
        return {}

    bounded = AnswerWithin(api, timeout_s=BOUND_S)
    long_work = await served(bounded, "POST", "/v1/roster/import")
    assert (long_work.status, long_work.body) == (200, {"imported": "yes"})
    plain = await served(bounded, "POST", "/v1/remarks")
    assert plain.status == 503
    await asyncio.wait_for(plain.request, 5)


async def test_a_request_the_store_answers_at_the_bound_is_answered_503_not_500() -> None:
    """The store's answer comes in the loop's turn the bound passes: the request's own answer
    is dropped (its 503 is on the way) and the request returns before the 503's task has
    run. A server answers a request that returned without starting its answer itself
    (uvicorn: 500, "ASGI callable returned without starting response"), and refuses the 503
    after that: the 503 must have been sent by the time the request returns."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()
    # due with the bound (0 s, armed just after): the same turn of the loop, run first
    loop.call_at(loop.time(), answered.set_result, None)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await answered
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "path": "/v1/incidents", "raw_path": b"/v1/incidents",
             "query_string": b"", "headers": [], "scheme": "http", "server": ("svc", 80),
             "client": ("c", 1), "root_path": ""}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await AnswerWithin(app, timeout_s=0)(scope, receive, send)
    # what the server has when the request returns: the 503, whole
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 503
