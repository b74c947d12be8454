"""A Redis that stops answering without going away (the process frozen, its disk stalled):
notify's routes are answered 503 within REQUEST_TIMEOUT_S (a read told to ask again, a
write that whether it was made is not known), and a device that connects is closed with
1013 once its socket's set-up waited as long, where each was held for about a minute; once
Redis answers again, the same requests and the socket are served. A real uvicorn server and
a real redis-server of the test's own, stopped with SIGSTOP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.notify.config import Settings
from services.notify.main import create_app
from tests.helpers import freezable_redis, poll_until
from tests.integration.notify.conftest import ADMIN_TOKEN, roster_of, serving, ws_url


async def test_routes_and_sockets_are_answered_while_redis_does_not_answer(tmp_path: Path) -> None:
    with freezable_redis(tmp_path / "redis") as server:
        async with roster_of() as standin:
            member = standin.enrol("t1")
            settings = Settings(redis_url=server.url, admin_token=ADMIN_TOKEN,
                                volunteers_url=standin.url, consumer_name="notify-frozen",
                                request_timeout_s=1)
            async with serving(create_app(settings)) as url, httpx.AsyncClient(
                    base_url=url, headers=member.bearer, timeout=30) as http:
                assert (await http.get("/v1/devices/me")).status_code == 200

                server.freeze()
                read = await http.get("/v1/devices/me")
                assert read.status_code == 503, read.text
                assert read.headers["retry-after"]
                assert read.json() == {"error": {"code": "unavailable", "message":
                                                 "the store is not answering; ask again"}}
                write = await http.delete("/v1/devices/me/sms")
                assert write.status_code == 503, write.text
                assert write.json()["error"]["code"] == "unavailable"
                assert "whether this change was made is not known" in write.text
                async with connect(ws_url(url), additional_headers=member.bearer) as ws:
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.recv()  # no hello: the set-up's touch of the device waits
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013

                server.thaw()

                async def served() -> bool:  # redis-py's reconnects, then the answer
                    return (await http.get("/v1/devices/me")).status_code == 200

                await poll_until(served, "notify serving again", 30)
                again = await http.delete("/v1/devices/me/sms")
                assert again.status_code == 200, again.text
                assert again.json() == {"registered": False}
                async with connect(ws_url(url), additional_headers=member.bearer) as ws:
                    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert hello["type"] == "hello" and hello["device_id"] == member.device_id
