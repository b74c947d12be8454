"""Only device tokens are asked of volunteers: any other token is no device's, known to be
so without a round trip. With volunteers away, a system key, a desk token or garbage sent
to notify was answered 503 "retry" (DESIGN: 401 for an unknown token), and each cost an
HTTP call to volunteers when it was up."""

from __future__ import annotations

import httpx
import pytest

from shared.introspect import DEVICE_TOKEN_PREFIX, IntrospectionUnavailable, Introspector


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
