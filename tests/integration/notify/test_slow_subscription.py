"""A socket whose team's fan-out subscription is slow to confirm is told to try again later
(1013, which the page answers by reconnecting), not failed as a server error (1011)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.client import PubSub
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import Volunteers, device, ws_url


async def test_a_socket_whose_team_subscription_is_not_confirmed_in_time_is_told_to_try_again(
        notify: str, volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch) -> None:
    member, other = volunteers.enrol("t-slow"), volunteers.enrol("t-other")
    real = PubSub.subscribe

    async def never_confirmed(self: PubSub, *channels: Any, **kwargs: Any) -> Any:
        # Redis never confirms this team's channel within the 5 s the socket waits
        kept = [c for c in channels if c != "notify:fanout:t-slow"]
        return await real(self, *kept, **kwargs) if kept or kwargs else None

    monkeypatch.setattr(PubSub, "subscribe", never_confirmed)
    async with device(notify, other) as bystander, \
            connect(ws_url(notify), additional_headers=member.bearer) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        await bystander.send({"type": "ping"})  # the other team's socket is untouched
        assert await bystander.next_of("pong") == {"type": "pong"}

    monkeypatch.setattr(PubSub, "subscribe", real)
    async with device(notify, member) as phone:  # trying again later gets in
        await phone.send({"type": "ping"})
        assert await phone.next_of("pong") == {"type": "pong"}
