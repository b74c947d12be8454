"""`make demo`'s simulated phones answer as a member's page does: an answer notify cannot
take now (restarting, 503 while Redis is away, however long) is sent again until notify
says yes or no, so the team is never left busy for ever by a lost answer."""

from __future__ import annotations

import httpx
import pytest

from tools import demo


@pytest.fixture
def offline_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The demo's clock, moved on by each of its pauses instead of waiting them out."""
    now = [0.0]

    async def pause(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(demo.asyncio, "sleep", pause)
    monkeypatch.setattr(demo.time, "monotonic", lambda: now[0])
    return now


async def test_an_answer_is_sent_again_until_notify_takes_it(offline_clock: list[float]) -> None:
    asked = []

    def notify(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        if len(asked) <= 150:  # Redis away for some two and a half minutes
            return httpx.Response(503, json={"error": {"code": "unavailable"}})
        return httpx.Response(200, json={"state": "acknowledged"})

    phone = demo.Demo({"ADMIN_TOKEN": "t" * 32, "NOTIFY_URL": "http://notify"}, "qingxiu")
    phone.client = httpx.AsyncClient(transport=httpx.MockTransport(notify))
    assert await phone.answer("lfd_x", "ord_1", {"response": "acknowledged"})
    assert len(asked) == 151 and offline_clock[0] >= 150


async def test_an_answer_notify_refuses_is_not_sent_again(offline_clock: list[float]) -> None:
    asked = []

    def notify(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(409, json={"error": {"code": "conflict"}})  # taken back

    phone = demo.Demo({"ADMIN_TOKEN": "t" * 32, "NOTIFY_URL": "http://notify"}, "qingxiu")
    phone.client = httpx.AsyncClient(transport=httpx.MockTransport(notify))
    assert not await phone.answer("lfd_x", "ord_1", {"response": "acknowledged"})
    assert len(asked) == 1
