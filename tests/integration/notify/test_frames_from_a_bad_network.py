"""What a phone on a bad network may send on its socket: each gets a clear error frame, and
neither its socket nor a teammate's is dropped."""

from __future__ import annotations

import json

import httpx
from faststream.redis import RedisBroker

from .conftest import Volunteers, an_order, device, issue
from .test_responses import stored


async def test_binary_huge_and_other_teams_frames_get_error_frames_and_every_socket_lives_on(
        notify: str, volunteers: Volunteers, broker: RedisBroker,
        http: httpx.AsyncClient) -> None:
    member, teammate = volunteers.enrol("t1"), volunteers.enrol("t1")
    theirs = an_order("t2")
    await issue(broker, theirs)
    await stored(http, notify, theirs.order_id)
    async with device(notify, member) as phone, device(notify, teammate) as other:
        cases: list[tuple[str | bytes, str, str | None]] = [
            (b"\xff\xfe not utf-8", "bad_json", None),                    # a binary frame
            (json.dumps({"type": "ping"}).encode(), "", None),             # binary, but good
            (json.dumps({"type": "ping", "pad": "x" * 60_000}), "too_large", None),
            (json.dumps({"type": "received", "order_id": 7}), "invalid_field", None),
            (json.dumps({"type": "response", "order_id": theirs.order_id,
                         "response": "acknowledged"}), "forbidden", theirs.order_id),
            (json.dumps({"type": "received", "order_id": theirs.order_id}), "forbidden",
             theirs.order_id),
            ("", "bad_json", None),
        ]
        for raw, code, about in cases:
            await phone.ws.send(raw)
            if not code:
                assert await phone.next_of("pong") == {"type": "pong"}
                continue
            error = await phone.next_of("error")
            assert error["code"] == code, (raw[:40], error)
            assert error.get("order_id") == about
        await phone.send({"type": "ping"})
        assert await phone.next_of("pong") == {"type": "pong"}
        await other.send({"type": "ping"})
        assert await other.next_of("pong") == {"type": "pong"}
    r = await http.get(f"{notify}/v1/orders/{theirs.order_id}/deliveries",
                       headers={"Authorization": "Bearer test-admin-token"})
    assert r.json()["received"] == {} and r.json()["responses"] == []
