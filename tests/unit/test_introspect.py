"""Only device tokens are asked of volunteers: any other token is no device's, known to be
so without a round trip. With volunteers away, a system key, a desk token or garbage sent
to notify was answered 503 "retry" (DESIGN: 401 for an unknown token), and each cost an
HTTP call to volunteers when it was up."""

from __future__ import annotations

import time

import httpx
import pytest

from shared.introspect import IntrospectionUnavailable, Introspector
from shared.tokens import DEVICE_TOKEN_PREFIX


def introspector(handler: httpx.MockTransport) -> Introspector:
    client = httpx.AsyncClient(transport=handler)
    return Introspector(client, base_url="http://volunteers", cache_s=30, timeout_s=1)


@pytest.mark.parametrize("token", ["not-a-token", "lfc_desk-token", "lsk_system-key", ""])
async def test_a_token_that_is_no_device_token_is_unknown_without_asking(token: str) -> None:
    asked: list[httpx.Request] = []

    def away(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        raise httpx.ConnectError("volunteers away")

    assert await introspector(httpx.MockTransport(away)).resolve(token) is None
    assert asked == []


async def test_a_device_token_is_still_asked_and_volunteers_away_is_still_unavailable() -> None:
    def away(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("volunteers away")

    with pytest.raises(IntrospectionUnavailable):
        await introspector(httpx.MockTransport(away)).resolve(f"{DEVICE_TOKEN_PREFIX}abc")


async def test_a_device_s_identity_says_when_volunteers_was_asked_and_a_cached_answer_keeps_it(
        ) -> None:
    # notify compares it with the time it applied the member's last move (store.touch_device):
    # a cached answer is as old as the question that fetched it, not the request it serves.
    answered_at: list[float] = []

    def roster(request: httpx.Request) -> httpx.Response:
        answered_at.append(time.time())
        return httpx.Response(200, json={"device_id": "dev-1", "member_id": "m-1",
                                         "team_id": "t1"})

    checking = introspector(httpx.MockTransport(roster))
    first = await checking.resolve(f"{DEVICE_TOKEN_PREFIX}abc")
    again = await checking.resolve(f"{DEVICE_TOKEN_PREFIX}abc")
    assert first is not None and again is not None and len(answered_at) == 1
    assert first.checked_at is not None and first.checked_at <= answered_at[0]
    assert again.checked_at == first.checked_at
