"""A step's writes that do not end it (store.write_incident_step, store.write_order_once)
against a real Redis: made once when redis-py sends them again after losing the reply, and
not made over an incident that another step changed since the step read it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from services.dispatch import store
from shared.bus import create_redis

from .conftest import settings_for

INCIDENT = "inc_wo"
KEY = f"dispatch:incident:{INCIDENT}"
TIMELINE = f"dispatch:timeline:{INCIDENT}"
ORDER = "ord_wo"


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    await client.hset(KEY, mapping={"incident_id": INCIDENT, "status": "assigned", "seq": "3"})
    await client.hset(f"dispatch:order:{ORDER}", mapping={"order_id": ORDER, "published": "0"})
    yield client
    await client.aclose()


def step(status: str, seq: str) -> list[tuple[str, ...]]:
    """What _emit queues: the incident's change, its timeline entry, its event."""
    return [("HSET", KEY, "status", status, "seq", seq), ("RPUSH", TIMELINE, status),
            ("XADD", "incident.updated", "*", "status", status)]


async def test_the_same_write_sent_again_is_made_once(redis: Redis) -> None:
    for _ in range(2):
        assert await store.write_incident_step(redis, step("unassigned", "4"),
                                               incident_id=INCIDENT, seq="3", token="w1")
    assert await redis.hget(KEY, "seq") == "4"
    assert await redis.lrange(TIMELINE, 0, -1) == ["unassigned"]
    assert await redis.xlen("incident.updated") == 1


async def test_a_write_over_an_incident_changed_since_is_not_made(redis: Redis) -> None:
    # The step read seq 3; its lock expired and another step wrote seq 4 meanwhile.
    await redis.hset(KEY, mapping={"status": "closed", "seq": "4"})
    assert not await store.write_incident_step(redis, step("unassigned", "4"),
                                               incident_id=INCIDENT, seq="3", token="w1")
    assert (await redis.hget(KEY, "status"), await redis.hget(KEY, "seq")) == ("closed", "4")
    assert await redis.exists(TIMELINE, "incident.updated") == 0


async def test_the_next_write_of_the_step_is_made(redis: Redis) -> None:
    assert await store.write_incident_step(redis, step("unassigned", "4"),
                                           incident_id=INCIDENT, seq="3", token="w1")
    assert await store.write_incident_step(redis, step("assigned", "5"),
                                           incident_id=INCIDENT, seq="4", token="w2")
    assert await redis.lrange(TIMELINE, 0, -1) == ["unassigned", "assigned"]


async def test_an_order_announced_again_is_published_once(redis: Redis) -> None:
    announce = [("XADD", "order.issued", "*", "order", ORDER),
                ("HSET", f"dispatch:order:{ORDER}", "published", "1")]
    for _ in range(2):
        await store.write_order_once(redis, announce, order_id=ORDER, unless=("published", "1"))
    assert await redis.xlen("order.issued") == 1
    assert await redis.hget(f"dispatch:order:{ORDER}", "published") == "1"


# --- the reply really lost: a proxy that passes a request on and drops its connection ----

class ReplyEater:
    """A TCP proxy to Redis that, once armed, forwards the next request holding `marker`
    but never its reply: it closes the client's connection once Redis has run it, as a
    Redis that restarted after running a command would. redis-py then reconnects (through
    the proxy) and sends the command again."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 6379
        self.marker: bytes | None = None
        self.skip = 0  # requests holding `marker` forwarded with their reply before the one
        self.eaten = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        swallow = asyncio.Event()

        async def upward() -> None:
            while data := await reader.read(65536):
                if self.marker is not None and self.marker in data and self.skip:
                    self.skip -= 1
                elif self.marker is not None and self.marker in data:
                    self.marker = None
                    swallow.set()
                    up_writer.write(data)
                    await up_writer.drain()
                    await asyncio.sleep(0.2)  # Redis runs it; its reply goes nowhere
                    self.eaten += 1
                    break
                up_writer.write(data)
                await up_writer.drain()

        async def downward() -> None:
            while data := await up_reader.read(65536):
                if not swallow.is_set():
                    writer.write(data)
                    await writer.drain()

        pumps = [asyncio.ensure_future(upward()), asyncio.ensure_future(downward())]
        self._tasks.update(pumps)
        with contextlib.suppress(Exception):
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for w in (writer, up_writer):
            w.close()


async def test_a_reply_lost_after_the_write_ran_is_not_written_twice(clean_redis: str,
                                                                     redis: Redis) -> None:
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url:
        client = create_redis(settings_for(proxy_url))  # the services' own client and retry
        try:
            await client.ping()
            proxy.marker = b"last_write"
            assert await store.write_incident_step(client, step("unassigned", "4"),
                                                   incident_id=INCIDENT, seq="3", token="w1")
        finally:
            await client.aclose()
    assert proxy.eaten == 1  # the reply was lost, and redis-py sent the script again
    assert await redis.lrange(TIMELINE, 0, -1) == ["unassigned"]
    assert await redis.xlen("incident.updated") == 1


async def test_a_transaction_sent_again_writes_twice(clean_redis: str, redis: Redis) -> None:
    # Why those writes go by script: the same loss under MULTI/EXEC repeats them all.
    proxy = ReplyEater(clean_redis)
    async with proxy as proxy_url:
        client = create_redis(settings_for(proxy_url))
        try:
            await client.ping()
            proxy.marker = b"EXEC"
            async with client.pipeline(transaction=True) as pipe:
                for command in step("unassigned", "4"):
                    pipe.execute_command(*command)
                await pipe.execute()
        finally:
            await client.aclose()
    assert proxy.eaten == 1
    assert await redis.lrange(TIMELINE, 0, -1) == ["unassigned", "unassigned"]
