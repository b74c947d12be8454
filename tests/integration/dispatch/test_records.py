"""How long an ended incident's record stays in Redis (records.py): its full record for
RECORDS_DAYS after it ended, then its figures only (the KPIs and the heat map still count
it), then nothing after KPI_DAYS. Against a real Redis, with dispatch in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.dispatch import records, store
from services.dispatch.locks import IncidentLocks
from shared import streams
from shared.events import Caller, IncidentReported, new_id, utcnow
from tests.helpers import poll_until

from .test_engine import DISTRICT, SCENE, team, wait_for_units
from .test_handover import hand_over
from .test_linked import resolve
from .test_supervision import ago, board, file_case, kpis, set_incident, set_order

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def locks(redis: aioredis.Redis) -> AsyncIterator[IncidentLocks]:
    held = IncidentLocks(redis)
    yield held
    await held.close()


async def resolved_incident(url: str, broker: RedisBroker) -> str:
    """An incident with the caller's details, its address and a description, resolved by
    the one team on shift."""
    await team(broker, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    incident_id = new_id("inc")
    await broker.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="110", external_ref="A-1",
        category="noise", priority="P4", location=SCENE.model_copy(update={
            "address": "12 Minzu Avenue, flat 3"}), reported_at=utcnow(),
        description="neighbour playing music", caller=Caller(phone="13800000000", name="Li")),
        stream=streams.INCIDENT_REPORTED.name)
    await resolve(url, broker, incident_id)
    return incident_id


async def test_an_ended_incident_keeps_its_figures_then_goes(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        redis: aioredis.Redis, locks: IncidentLocks) -> None:
    incident_id = await resolved_incident(clean_redis, publisher)
    [order_id] = await redis.lrange(store.orders_key(incident_id), 0, -1)
    # not yet RECORDS_DAYS since it ended: nothing changes
    assert await records.archive_ended(redis, locks, ended_before=time.time() - 86400) == 0
    assert await redis.exists(store.timeline_key(incident_id))

    assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 1
    inc = await redis.hgetall(store.incident_key(incident_id))
    assert inc["archived_at"] and inc["status"] == "resolved" and inc["resolved_at"]
    assert inc["handled_by_force"] == "security"  # who handled it: kept with the figures
    assert not {"caller", "description", "address"} & set(inc)  # the caller's data gone
    assert "13800000000" not in str(inc) and "Minzu" not in str(inc)
    assert not await redis.exists(store.timeline_key(incident_id), store.orders_key(incident_id),
                                  store.offered_key(incident_id), store.order_key(order_id))
    assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 0

    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["archived_at"] and r.json()["timeline"] == [] and r.json()["orders"] == []
    r = await console.get("/v1/kpis", headers=ADMIN, params={"district": DISTRICT})
    kpis = r.json()
    assert (kpis["incidents"], kpis["resolved_on_site"]) == (1, 1)
    assert kpis["time_to_acknowledge_s"]["count"] == 1
    assert (await console.get("/v1/heatmap", headers=ADMIN,
                              params={"district": DISTRICT})).json()["incidents"] == 1

    # KPI_DAYS after it was reported: gone, from the board and the counts too
    counts = await redis.hgetall(store.STATUS_COUNTS)
    assert await records.forget_archived(redis, locks, reported_before=time.time() + 1) == 1
    assert not await redis.exists(store.incident_key(incident_id))
    assert await redis.zscore(store.ALL_INCIDENTS, incident_id) is None
    assert not await redis.exists(store.ref_key(DISTRICT, "A-1"))
    after = await redis.hgetall(store.STATUS_COUNTS)
    assert int(after["resolved"]) == int(counts["resolved"]) - 1
    r = await console.get("/v1/incidents", headers=ADMIN, params={"district": DISTRICT})
    assert r.json()["incidents"] == []
    assert (await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)).status_code == 404


async def test_an_incident_s_count_of_its_linked_reports_goes_with_it(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        redis: aioredis.Redis, locks: IncidentLocks) -> None:
    # A second caller's report joined it: the incident counts it, by source, for its view
    # and its board row; archived RECORDS_DAYS after it ended (its timeline gone, the
    # report archived too), nothing of that count is left behind.
    incident_id = new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="110", external_ref="A-2",
        category="noise", priority="P4", location=SCENE, reported_at=utcnow()),
        stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: redis.exists(store.incident_key(incident_id)), "the incident")
    report = new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=report, system_id="110", external_ref="A-3",
        category="noise", priority="P4", location=SCENE, reported_at=utcnow(),
        caller=Caller(phone="13900000000"), linked_to=incident_id),
        stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: redis.zscore(store.linked_key(incident_id), report),
                     "the report counted among the incident's")
    assert list((await redis.hgetall(store.linked_sources_key(incident_id))).values()) == ["1"]
    r = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 2
    assert not await redis.exists(store.linked_key(incident_id),
                                  store.linked_sources_key(incident_id))


async def test_an_incident_still_in_hand_is_neither_archived_nor_forgotten(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        redis: aioredis.Redis, locks: IncidentLocks) -> None:
    incident_id = await resolved_incident(clean_redis, publisher)
    await store.schedule(redis, f"followup:{incident_id}", utcnow())  # a revisit still due
    assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 0
    assert await redis.exists(store.timeline_key(incident_id))
    assert await redis.zscore(store.ENDED, incident_id) is not None  # looked at later
    # not archived: its figures are not forgotten either, however old
    assert await records.forget_archived(redis, locks, reported_before=time.time() + 1) == 0
    assert await redis.exists(store.incident_key(incident_id))


async def test_incidents_ended_before_the_index_was_kept_are_indexed_once(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        redis: aioredis.Redis) -> None:
    incident_id = await resolved_incident(clean_redis, publisher)
    await redis.delete(store.ENDED)  # as an earlier version left it
    assert await records.index_ended_before(redis) == 1
    assert await redis.zscore(store.ENDED, incident_id) is not None
    await redis.delete(store.ENDED)
    assert await records.index_ended_before(redis) == 0  # once per Redis


async def test_an_archived_hand_over_keeps_its_late_filing_and_who_handed_it_over(
        clean_redis: str, publisher: RedisBroker, redis: aioredis.Redis,
        locks: IncidentLocks) -> None:
    incident_id, orders = await hand_over(clean_redis, publisher)  # by the guard (security)
    station = orders[-1]
    set_order(clean_redis, station.order_id, filing_due=ago(hours=2))
    async with board(clean_redis) as client:
        await file_case(clean_redis, publisher, station)  # two hours late
    assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 1
    inc = await redis.hgetall(store.incident_key(incident_id))
    assert inc["archived_at"] and inc["handled_by_force"] == "security"
    assert await redis.zscore(store.HANDOVERS, incident_id) is None
    async with board(clean_redis) as client:
        found = await kpis(client)
        assert (found["filings_overdue"], found["filings_overdue_unfiled"]) == (1, 0)
        assert found["handled_by_force"]["security"]["handed_over"] == 1


async def test_an_archived_hand_over_keeps_none_of_the_teams_words(
        clean_redis: str, publisher: RedisBroker, redis: aioredis.Redis,
        locks: IncidentLocks) -> None:
    """What the guard said as it handed over ("parties agreed to mediation", often names
    and what the neighbours told) and what a revisit said are free text, as the caller's
    description is: kept beside the timeline for the station's next order, they went with
    neither at archiving and stayed in the figures for KPI_DAYS."""
    incident_id, orders = await hand_over(clean_redis, publisher)
    async with board(clean_redis):
        await file_case(clean_redis, publisher, orders[-1])
    # what a visit that found the agreement broken writes for the next visit's order
    set_incident(clean_redis, incident_id, followup_note="Mr Wang next door shouts again")
    assert await redis.hget(store.incident_key(incident_id), "handover_note")
    assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 1
    inc = await redis.hgetall(store.incident_key(incident_id))
    assert inc["archived_at"] and inc["handled_by_force"] == "security"
    assert not {"handover_note", "followup_note"} & set(inc)
    assert "mediation" not in str(inc) and "Wang" not in str(inc)


async def test_hand_overs_made_before_their_index_was_kept_are_indexed_once(
        clean_redis: str, publisher: RedisBroker, redis: aioredis.Redis) -> None:
    incident_id, _ = await hand_over(clean_redis, publisher)
    await redis.delete(store.HANDOVERS)  # as an earlier version left it
    assert await records.index_handovers_before(redis) == 1
    assert await redis.zscore(store.HANDOVERS, incident_id) is not None
    await redis.delete(store.HANDOVERS)
    assert await records.index_handovers_before(redis) == 0  # once per Redis


async def test_a_sweep_that_fails_oddly_does_not_stop_the_next(
        redis: aioredis.Redis, locks: IncidentLocks, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def archive(*_: object, **__: object) -> int:
        calls.append("swept")
        if len(calls) == 1:
            raise ValueError("a record nobody foresaw")
        return 0

    monkeypatch.setattr(records, "archive_ended", archive)
    stop = asyncio.Event()
    sweeping = asyncio.create_task(records.keep_sweeping(
        redis, locks, records_days=90, kpi_days=800, stop=stop, interval_s=0.01,
        first_after_s=0))
    try:
        await poll_until(lambda: len(calls) >= 2, "a second sweep")
    finally:
        stop.set()
        await sweeping


@pytest.mark.parametrize(("index_before", "index", "field", "value"), [
    (records.index_handovers_before, store.HANDOVERS, "handed_over_at", "2026-09-01T10:00:00+00:00"),
    (records.index_ended_before, store.ENDED, "status", "resolved"),
])
async def test_a_one_time_index_pass_misses_none_while_the_retention_removes_older_incidents(
        redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, index_before: object,
        index: str, field: str, value: str) -> None:
    """The pass an upgrade makes once (hand-overs for the inspector's filings overdue, ended
    incidents for the retention) reads every incident while another replica's sweep may
    forget old ones. Read by position, a page after such a removal started past incidents
    never read: an unfiled hand-over missing from the inspector's list for good, an ended
    incident never archived nor deleted (Redis fills). Every incident there throughout is
    indexed."""
    ids = [f"inc_{n:04d}" for n in range(1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for n, incident_id in enumerate(ids):
            pipe.hset(store.incident_key(incident_id), mapping={
                "incident_id": incident_id, "district": DISTRICT, "status": "closed",
                **({field: value} if n >= 500 else {})})
            pipe.zadd(store.ALL_INCIDENTS, {incident_id: 1_780_000_000 + n})
        await pipe.execute()
    forgotten = ids[:200]  # the oldest, not hand-overs: the retention's sweep elsewhere
    read = {"first": True}

    def after_the_first_read(name: str) -> None:
        real = getattr(redis, name)

        async def reading(*args: object, **kwargs: object) -> object:
            answer = await real(*args, **kwargs)
            if read.pop("first", False):
                await redis.zrem(store.ALL_INCIDENTS, *forgotten)
            return answer

        monkeypatch.setattr(redis, name, reading)

    after_the_first_read("zrange")
    after_the_first_read("zscan")
    await index_before(redis)  # type: ignore[operator]
    want = set(ids[500:]) if field != "status" else set(ids[200:])
    assert want <= set(await redis.zrange(index, 0, -1))


async def test_an_archived_case_shows_the_inspector_how_the_review_counted_it(
        clean_redis: str, publisher: RedisBroker, redis: aioredis.Redis,
        locks: IncidentLocks) -> None:
    """An inspector checks a case online (DOMAIN.md, "Supervision"), also months on: the
    KPIs counted it (handed over by security, its filing late, its times to act), and its
    archived record kept those figures, but GET /v1/incidents/{id} showed a status and
    nothing else once its timeline and orders went: which figure of the review counted the
    case could not be told. `figures` says it, the same before and after the archive."""
    incident_id, orders = await hand_over(clean_redis, publisher)  # by the guard (security)
    station = orders[-1]
    set_order(clean_redis, station.order_id, filing_due=ago(hours=2))
    set_incident(clean_redis, incident_id, filing_due=ago(hours=2))
    async with board(clean_redis) as client:
        await file_case(clean_redis, publisher, station)  # two hours late
        before = (await client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)).json()
        assert await records.archive_ended(redis, locks, ended_before=time.time() + 1) == 1
        after = (await client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)).json()
    assert after["archived_at"] and after["orders"] == [] and after["timeline"] == []
    figures = after["figures"]
    assert figures == before["figures"], (before["figures"], figures)
    assert {k: figures[k] for k in ("counted", "resolved_on_site", "handed_over",
                                    "handled_by_force", "filing")} == {
        "counted": True, "resolved_on_site": False, "handed_over": True,
        "handled_by_force": "security",
        "filing": {"filed_in_time": False, "overdue": True, "unfiled": False}}
    assert figures["handed_over_at"] and figures["resolved_at"] and not figures["closed_at"]
    for name in ("time_to_assign_s", "time_to_acknowledge_s", "time_to_scene_s"):
        assert figures[name] is not None and figures[name] >= 0, (name, figures)
