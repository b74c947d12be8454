"""shared.http: a state that passes (Redis restarting, an incident held by another step) is
answered 503 with Retry-After, never 500: the caller asks again and it works."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.http import AuthMiddleware, Principal, TryAgain, install_error_handlers

ADMIN = {"Authorization": "Bearer admin-token"}


def app_with(*, route_raises: Exception | None = None,
             resolver_raises: Exception | None = None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/thing")
    async def thing() -> dict[str, str]:
        if route_raises is not None:
            raise route_raises
        return {"ok": "yes"}

    async def resolve(token: str) -> Principal | None:
        if resolver_raises is not None:
            raise resolver_raises
        return Principal(kind="device", subject=token)

    app.add_middleware(AuthMiddleware, admin_token="admin-token", resolve=resolve)
    return app


async def get(app: FastAPI, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return await client.get("/thing", headers=headers)


@pytest.mark.parametrize("error", [RedisConnectionError("Connection refused"),
                                   RedisTimeoutError("Timeout reading from socket")])
async def test_redis_not_answering_in_a_route_is_503_with_retry_after(error: Exception) -> None:
    r = await get(app_with(route_raises=error), ADMIN)
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert r.json() == {"error": {"code": "unavailable",
                                  "message": "the store is not answering; ask again"}}


async def test_try_again_is_503_and_says_why() -> None:
    r = await get(app_with(route_raises=TryAgain("incident i-1 is being changed by another step")),
                  ADMIN)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["message"] == (
        "incident i-1 is being changed by another step; ask again")


async def test_anything_else_is_still_the_apps_own_500() -> None:
    r = await get(app_with(route_raises=RuntimeError("a bug")), ADMIN)
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal", "message": "internal error"}}


async def test_a_token_that_cannot_be_checked_now_is_neither_accepted_nor_refused() -> None:
    app = app_with(resolver_raises=RedisConnectionError("Connection refused"))
    r = await get(app, {"Authorization": "Bearer some-device"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert r.json()["error"]["code"] == "unavailable"
    # the admin token needs no store: still let in
    assert (await get(app, ADMIN)).status_code == 200


async def test_a_socket_whose_token_cannot_be_checked_now_is_told_to_try_again() -> None:
    async def resolve(token: str) -> Principal | None:
        raise RedisConnectionError("Connection refused")

    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a socket whose token is unknown must not reach the app")

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/socket", "headers": [],
             "query_string": b"token=some-device"}
    await AuthMiddleware(app, admin_token="admin-token", resolve=resolve)(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1013, "reason": "try again later"}]


async def test_a_token_checked_once_the_store_answers_gets_in() -> None:
    r = await get(app_with(), {"Authorization": "Bearer dev"})
    assert r.status_code == 200 and r.json() == {"ok": "yes"}
