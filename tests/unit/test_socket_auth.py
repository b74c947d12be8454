"""shared.http: a WebSocket without a good token is accepted only to be closed with 4401, so
the client sees the code (a close before the accept is an HTTP 403), and it gets nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from shared.http import AuthMiddleware, Principal


async def refused_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("a socket without a good token must not reach the app")


async def nobody(token: str) -> Principal | None:
    return None


async def socket_messages(query: bytes, first: str = "websocket.connect",
                          subprotocols: list[str] | None = None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": first}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/v1/devices/stream", "headers": [],
             "query_string": query, "subprotocols": subprotocols or []}
    await AuthMiddleware(refused_app, admin_token="admin-token", resolve=nobody)(
        scope, receive, send)
    return sent


@pytest.mark.parametrize("query", [b"", b"token=not-a-token"])
async def test_a_socket_without_a_good_token_is_accepted_then_closed_with_4401(
        query: bytes) -> None:
    assert await socket_messages(query) == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": 4401, "reason": "unauthorized"},
    ]


async def test_a_client_that_left_before_the_handshake_is_sent_nothing() -> None:
    assert await socket_messages(b"token=not-a-token", first="websocket.disconnect") == []


async def test_a_refused_token_given_as_a_subprotocol_is_closed_as_one_in_the_query() -> None:
    # the accept chooses the page's fixed subprotocol (a browser fails a handshake that
    # chooses none it offered, and would never see 4401), never the token's
    assert await socket_messages(b"", subprotocols=["lianfang.v1", "token.lfd_guess"]) == [
        {"type": "websocket.accept", "subprotocol": "lianfang.v1"},
        {"type": "websocket.close", "code": 4401, "reason": "unauthorized"},
    ]
