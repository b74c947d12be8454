"""A Redis that answers but refuses writes: full (`maxmemory` with `noeviction`) or a replica
for a moment after a failover (READONLY). Nothing is lost and nothing breaks for good: callers
get 503 with Retry-After (never 500, never 202 for an incident not kept), events stay pending
(never dead-lettered as poison), timers wait, and everything carries on by itself once Redis
takes writes again, without restarting a service.

Each test runs its own redis-server (tools.redis_server), so that making it refuse touches no
other test's services. "Full" is `maxmemory` set to 1 byte: below what is used, as full as it
gets under `noeviction`; "replica" is REPLICAOF a master that is not there (the data stays,
writes get READONLY); both are undone as an operator would (CONFIG SET maxmemory higher,
REPLICAOF NO ONE)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import pytest_asyncio
import redis as sync_redis
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.dispatch.config import Settings as DispatchSettings
from services.dispatch.main import create_app as dispatch_app
from services.intake.config import Settings as IntakeSettings
from services.intake.main import create_app as intake_app
from services.notify.config import Settings as NotifySettings
from services.notify.main import create_app as notify_app
from services.volunteers.config import Settings as VolunteersSettings
from services.volunteers.main import create_app as volunteers_app
from shared import streams
from shared.bus import consume, consuming, create_broker
from shared.events import IncidentReported, OrderIssued, UnitStatus
from shared.settings import ServiceSettings
from tests.e2e.journey import district_roster
from tests.helpers import poll_until, read_stream
from tests.integration.four_services import NO_RATE_LIMITS, four_services
from tests.integration.notify.conftest import serving
from tools.redis_server import RedisServer, free_port

ADMIN_TOKEN = f"refusing-admin-{secrets.token_hex(8)}"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SCENE = (22.8300, 108.3300)
HOW = ["full", "replica"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refuse_writes(url: str, how: str) -> None:
    client = sync_redis.Redis.from_url(url)
    try:
        if how == "full":
            client.config_set("maxmemory", 1)
        else:  # a master nobody answers at: the data stays, every write gets READONLY
            client.replicaof("127.0.0.1", free_port())
    finally:
        client.close()


def take_writes(url: str) -> None:
    client = sync_redis.Redis.from_url(url)
    try:
        client.config_set("maxmemory", 0)
        client.replicaof("NO", "ONE")
    finally:
        client.close()


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    with RedisServer(folder) as server:
        try:
            yield server.url
        finally:
            take_writes(server.url)


def dead_letters(url: str) -> dict[str, list[Any]]:
    client = sync_redis.Redis.from_url(url)
    try:
        return {key.decode(): client.xrange(key) for key in client.scan_iter("dlq.*")}
    finally:
        client.close()


def pending(url: str, stream: str, group: str) -> int:
    client = sync_redis.Redis.from_url(url)
    try:
        return int(client.xpending(stream, group)["pending"])
    finally:
        client.close()


# --- the four services on one Redis, over HTTP ------------------------------------------------


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("refusing")) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def services(own_redis: str) -> AsyncIterator[dict[str, str]]:
    async with four_services(own_redis, ADMIN_TOKEN) as urls:
        yield urls


class District:
    """A district of its own (tests.e2e.journey.district_roster) with a reporting system and
    the guard post on shift near the scene: a help request goes to it."""

    def __init__(self, http: httpx.AsyncClient, urls: dict[str, str]) -> None:
        self.http, self.urls = http, urls
        self.name = f"d{uuid4().hex[:8]}"

    def url(self, service: str, path: str) -> str:
        return self.urls[service] + path

    async def set_up(self) -> None:
        r = await self.http.post(self.url("volunteers", "/v1/roster/import"), headers=ADMIN,
                                 json=district_roster(self.name, SCENE))
        assert r.status_code == 200, r.text
        r = await self.http.post(self.url("intake", "/v1/systems"), headers=ADMIN,
                                 json={"name": "110 call-taking", "districts": [self.name]})
        assert r.status_code == 201, r.text
        self.key = r.json()["api_key"]
        r = await self.http.post(self.url("volunteers", f"/v1/members/{self.name}-m-sec/devices"),
                                 headers=ADMIN)
        assert r.status_code == 201, r.text
        self.guard = r.json()["token"]
        r = await self.http.post(self.url("volunteers", "/v1/me/shift/start"),
                                 headers=bearer(self.guard))
        assert r.status_code == 200, r.text
        r = await self.fix()
        assert r.status_code == 200, r.text

        async def available() -> bool:
            r = await self.http.get(self.url("dispatch", "/v1/units"), headers=ADMIN,
                                    params={"district": self.name, "status": "available"})
            return any(u["position"] for u in r.json()["units"])

        await poll_until(available, "dispatch seeing the guard post available", 20)

    def fix(self) -> Any:
        return self.http.put(self.url("volunteers", "/v1/me/position"), headers=bearer(self.guard),
                             json={"lat": SCENE[0] + 0.001, "lon": SCENE[1], "accuracy_m": 8})

    async def also_on_shift(self, *members: str) -> None:
        """More teams on shift beside the guard post (the member ids' suffixes)."""
        for member in members:
            r = await self.http.post(self.url("volunteers", f"/v1/members/{self.name}-{member}/devices"),
                                     headers=ADMIN)
            assert r.status_code == 201, r.text
            token = bearer(r.json()["token"])
            r = await self.http.post(self.url("volunteers", "/v1/me/shift/start"), headers=token)
            assert r.status_code == 200, r.text
            r = await self.http.put(self.url("volunteers", "/v1/me/position"), headers=token,
                                    json={"lat": SCENE[0] - 0.003, "lon": SCENE[1], "accuracy_m": 8})
            assert r.status_code == 200, r.text

        async def available() -> bool:
            r = await self.http.get(self.url("dispatch", "/v1/units"), headers=ADMIN,
                                    params={"district": self.name, "status": "available"})
            return sum(1 for u in r.json()["units"] if u["position"]) == 1 + len(members)

        await poll_until(available, "dispatch seeing the teams available", 20)

    def report(self, external_ref: str, category: str = "help_request", north_m: int = 0) -> Any:
        """An incident `north_m` metres north of the scene (reports of one category 200 m
        apart are two incidents, not a duplicate)."""
        return self.http.post(self.url("intake", "/v1/incidents"), headers=bearer(self.key), json={
            "external_ref": external_ref, "category": category, "district": self.name,
            "location": {"lat": SCENE[0] + north_m / 111_000, "lon": SCENE[1]}})

    def answer(self, order_id: str, response: str) -> Any:
        return self.http.post(self.url("notify", f"/v1/orders/{order_id}/responses"),
                              headers=bearer(self.guard), json={"response": response})

    async def incident(self, incident_id: str) -> dict[str, Any]:
        """Dispatch's view of the incident; empty while dispatch has not read it yet."""
        r = await self.http.get(self.url("dispatch", f"/v1/incidents/{incident_id}"), headers=ADMIN)
        if r.status_code == 404:
            return {}
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def order_held_by_notify(self, incident_id: str) -> str:
        async def issued() -> str | None:
            orders = (await self.incident(incident_id)).get("orders")
            return orders[0]["order_id"] if orders else None

        order_id = await poll_until(issued, f"an order for {incident_id}", 20)

        async def held() -> bool:
            r = await self.http.get(self.url("notify", f"/v1/orders/{order_id}"), headers=ADMIN)
            return r.status_code == 200

        await poll_until(held, f"notify holding {order_id}", 20)
        return order_id


async def close_code_on_connect(d: District) -> int | None:
    """The close code a socket of the guard post's phone gets before any frame."""
    url = d.url("notify", "/v1/devices/stream").replace("http", "ws", 1)
    async with connect(url, additional_headers=bearer(d.guard)) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 20)
    return ws.close_code


def assert_asked_to_retry(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "unavailable"
    assert int(r.headers["Retry-After"]) >= 1


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("how", HOW)
async def test_every_service_asks_to_retry_while_redis_refuses_writes_and_takes_it_after(
        own_redis: str, services: dict[str, str], how: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # The guard post holds a help request. Redis refuses writes: a new incident, the guards'
    # acknowledgement, their position and the command room's close are each answered 503
    # with Retry-After (the callers' cue to ask again), never a 500 with a stack trace in the
    # log per request; their phone connecting is closed with 1013 (try again later). Once
    # Redis takes writes, the same requests go through: the refused incident was not kept
    # (a 202 of its own now, not the 200 of a retry of a kept one).
    async with httpx.AsyncClient(timeout=30) as http:
        d = District(http, services)
        await d.set_up()
        r = await d.report(f"cad-{uuid4().hex}")
        assert r.status_code == 202, r.text
        incident_id = r.json()["incident_id"]
        order_id = await d.order_held_by_notify(incident_id)
        refused_ref = f"cad-{uuid4().hex}"

        refuse_writes(own_redis, how)
        caplog.clear()
        try:
            assert_asked_to_retry(await d.report(refused_ref))
            assert_asked_to_retry(await d.answer(order_id, "acknowledged"))
            assert_asked_to_retry(await d.fix())
            assert_asked_to_retry(await http.post(
                d.url("dispatch", f"/v1/incidents/{incident_id}/close"), headers=ADMIN))
            # a phone connecting meanwhile is told to try again later (1013), not 1011
            assert await close_code_on_connect(d) == 1013
        finally:
            take_writes(own_redis)
        crashed = [rec.getMessage() for rec in caplog.records
                   if rec.getMessage().startswith(("unhandled error", "Exception in ASGI"))]
        assert crashed == []

        async def acknowledged() -> bool:
            return (await d.answer(order_id, "acknowledged")).status_code == 200

        await poll_until(acknowledged, "the acknowledgement taken", 20)

        async def dispatch_saw_it() -> bool:
            return (await d.incident(incident_id))["status"] == "acknowledged"

        await poll_until(dispatch_saw_it, "the incident acknowledged at dispatch", 20)
        r = await d.report(refused_ref)
        assert r.status_code == 202, r.text
        assert (await d.fix()).status_code == 200
    assert dead_letters(own_redis) == {}


@pytest.mark.asyncio(loop_scope="module")
async def test_consumers_do_not_spin_while_redis_is_a_read_only_replica(
        own_redis: str, services: dict[str, str]) -> None:
    # After a failover the services may talk to a replica for a while: every XREADGROUP of
    # every subscriber gets READONLY. FastStream restarts a subscriber whose read raised at
    # once, with no pause: tens of thousands of reads a second, two cores burnt and the log
    # flooded, for as long as the failover lasts. The reads must back off (redis-py's own
    # retry waits: 0.05 s doubling up to 2 s). This counts refused reads, not speed.
    client = sync_redis.Redis.from_url(own_redis)

    def refused_reads() -> int:
        stats = client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("rejected_calls", 0))
                   + int(stats.get(f"cmdstat_{c}", {}).get("failed_calls", 0))
                   for c in ("xreadgroup", "xautoclaim"))

    subscribers = sum(1 for c in client.client_list() if c.get("cmd") in ("xreadgroup", "xautoclaim"))
    refuse_writes(own_redis, "replica")
    try:
        before = refused_reads()
        await asyncio.sleep(3)  # a window to count in, not a wait for something to happen
        during = refused_reads() - before
    finally:
        take_writes(own_redis)
        client.close()
    assert subscribers > 0
    # backing off: about 8 tries each in 3 s; spinning was some 500 each
    assert during <= 40 * max(subscribers, 20), (during, subscribers)


# --- incidents and timers across a refusal, dispatch restarted meanwhile ---------------------


def fast_p4_deadline(monkeypatch: pytest.MonkeyPatch, seconds: int) -> None:
    from shared import policy as policy_module

    real = policy_module.load_policy()
    fast = real.model_copy(update={"deadlines_s": {**real.deadlines_s, "P4": seconds}})
    monkeypatch.setattr("services.dispatch.main.load_policy", lambda *_: fast)


@pytest.mark.parametrize("how", HOW)
async def test_incidents_accepted_before_redis_refused_are_dispatched_once_when_it_takes_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    # Two help requests are accepted (202) while dispatch is down (two patrol cars are free
    # for them); a noise complaint was offered to the guard post before, with a 3-s deadline
    # nobody meets. Redis then refuses writes, and
    # dispatch starts (a restart by compose) meanwhile: it must start, not die at its
    # consumer groups (FastStream's XGROUP CREATE is refused even for a group that exists);
    # the incidents wait in its stream, the deadline in its sorted set. Once Redis takes
    # writes again, without restarting anything:
    # each incident gets exactly one order, the missed deadline fires once, nothing stays
    # pending, no dead letter.
    fast_p4_deadline(monkeypatch, 3)
    with redis_server(tmp_path) as url:
        common = {"redis_url": url, "admin_token": ADMIN_TOKEN, **NO_RATE_LIMITS,
                  "claim_idle_ms": 300, "max_deliveries": 2}
        async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as http:
            urls = {"volunteers": await stack.enter_async_context(
                serving(volunteers_app(VolunteersSettings(**common))))}
            around = {"volunteers_url": urls["volunteers"], **common}
            urls["notify"] = await stack.enter_async_context(
                serving(notify_app(NotifySettings(**around))))
            urls["intake"] = await stack.enter_async_context(
                serving(intake_app(IntakeSettings(**around))))
            async with serving(dispatch_app(DispatchSettings(**around, consumer_name="first"))
                               ) as urls["dispatch"]:
                d = District(http, urls)
                await d.set_up()
                await d.also_on_shift("m-near-1", "m-far")
                r = await d.report(f"cad-{uuid4().hex}", "noise")
                assert r.status_code == 202, r.text
                timed = r.json()["incident_id"]

                async def offer() -> dict[str, Any] | None:
                    orders = (await d.incident(timed)).get("orders")
                    return orders[0] if orders else None

                first = await poll_until(offer, "the guard post's offer", 20)
            # its deadline comes due while Redis refuses
            assert (first["team_id"], first["state"]) == (d.name + "-sec-1", "offered")
            # dispatch is down: intake still takes incidents
            waiting = []
            for n in range(2):
                r = await d.report(f"cad-{uuid4().hex}", north_m=500 * n)
                assert r.status_code == 202, r.text
                waiting.append(r.json()["incident_id"])

            refuse_writes(url, how)
            try:
                # Its start while writes are refused waits out FastStream's refused subscriber
                # starts (~9 s on a quiet two-core VM; more beside a busy suite), then serves.
                async with serving(dispatch_app(DispatchSettings(**around, consumer_name="again")),
                                   start_timeout_s=30) as urls["dispatch"]:
                    # it serves what needs no write meanwhile
                    assert (await d.incident(timed))["orders"][0]["state"] == "offered"
                    await poll_until(lambda: datetime.now(UTC) > datetime.fromisoformat(
                        first["ack_by"]) + timedelta(seconds=1), "the deadline passed", 20)
                    await asyncio.sleep(1)  # its timer scans refused meanwhile
                    assert dead_letters(url) == {}
                    take_writes(url)

                    async def ordered(incident_id: str) -> bool:
                        return bool((await d.incident(incident_id)).get("orders"))

                    for incident_id in waiting:
                        await poll_until(lambda i=incident_id: ordered(i),
                                         f"an order for {incident_id}", 30)

                    async def timed_out() -> bool:
                        states = {o["order_id"]: o["state"]
                                  for o in (await d.incident(timed))["orders"]}
                        return states.get(first["order_id"]) == "timed_out"

                    await poll_until(timed_out, "the missed deadline fired", 30)
                    await poll_until(
                        lambda: pending(url, "incident.reported", "dispatch") == 0,
                        "the incidents acknowledged", 20)
                    timeline = (await d.incident(timed))["timeline"]
            finally:
                take_writes(url)
            assert dead_letters(url) == {}
            issued = read_stream(url, streams.ORDER_ISSUED.name, OrderIssued)
            for incident_id in waiting:
                assert sum(1 for o in issued if o.incident_id == incident_id) == 1
            reported = read_stream(url, streams.INCIDENT_REPORTED.name, IncidentReported)
            assert sorted(e.incident_id for e in reported) == sorted([timed, *waiting])
            # the missed deadline fired once (the next team's offer, with its own 3 s, may
            # run out too before the timeline is read on a busy machine)
            assert sum(1 for e in timeline if e.get("kind") == "timeout"
                       and e.get("order_id") == first["order_id"]) == 1


# --- shared.bus alone: a handler whose own writes are refused ----------------------------------


@pytest.mark.parametrize("how", HOW)
async def test_an_event_whose_writes_redis_refuses_stays_pending_and_is_never_dead_lettered(
        clean_redis: str, tmp_path: Path, how: str) -> None:
    # A handler's writes refused (OOM, READONLY) say nothing about the event: the handler's
    # store may be full one moment and take a dead letter the next (expiring keys free
    # memory). Here the handler writes to a Redis of its own that refuses, while the stream
    # and its dead letters live on one that accepts, so a misjudged refusal shows: past
    # MAX_DELIVERIES (2) the event must still be pending, then handled once writes pass.
    cfg = ServiceSettings(redis_url=clean_redis, admin_token="test-admin-token", claim_idle_ms=200,
                          max_deliveries=2, consumer_name="test-consumer")
    with redis_server(tmp_path) as store_url:
        store = Redis.from_url(store_url)
        calls: list[str] = []

        async def handler(event: UnitStatus) -> None:
            calls.append(event.unit_id)
            await store.hset(f"seen:{event.unit_id}", "status", event.status)

        broker = create_broker(cfg)
        consume(broker, streams.UNIT_STATUS, UnitStatus, handler, settings=cfg, group="dispatch")
        redis = Redis.from_url(clean_redis)
        refuse_writes(store_url, how)
        try:
            async with consuming(broker, redis):
                await broker.publish(UnitStatus(
                    district="d", unit_id="u-refused", status="available", agency_id="a",
                    agency_kind="police", mode="car"), stream=streams.UNIT_STATUS.name)
                await poll_until(lambda: len(calls) >= 4, "four attempts (max_deliveries 2)", 20)
                assert dead_letters(clean_redis) == {}
                assert pending(clean_redis, "unit.status", "dispatch") == 1
                take_writes(store_url)
                await poll_until(lambda: store.hget("seen:u-refused", "status"),
                                 "the event handled once writes pass", 20)
                await poll_until(lambda: pending(clean_redis, "unit.status", "dispatch") == 0,
                                 "an empty pending list", 20)
        finally:
            take_writes(store_url)
            await store.aclose()
            await redis.aclose()
        assert dead_letters(clean_redis) == {}
