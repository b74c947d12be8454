"""What one freed team's offer to a long waiting queue costs (Dispatcher.retry_waiting), in
Redis commands and round trips: bounded, whatever the backlog, and the team still sent
where it was. In the chaos run (tests/e2e/test_chaos.py) a backlog of some 2,000 incidents
made each `resolved` answer's offer read hundreds of whole records and ask, one round trip
each, whether the team had been offered each incident it might answer: the answers were
read more slowly than the incidents came."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from services.dispatch import engine, store
from services.dispatch.engine import Dispatcher
from shared.events import utcnow
from tools.benchmarks.monitor import CommandCounter

from .test_engine import DISTRICT, SCENE
from .test_waiting_sweep import free_in_view, reported

BACKLOG = 640  # more than one offer reads (WAITING_PAGES of WAITING_PAGE)


@pytest.fixture
async def redis(clean_redis: str) -> Any:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


@contextlib.contextmanager
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The round trips this process makes to Redis meanwhile: each command, or pipeline
    of commands, sent at once (redis-py sends a pipeline's commands in one write)."""
    sent = [0]
    real = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        sent[0] += 1
        await real(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    yield sent
    monkeypatch.setattr(AbstractConnection, "send_packed_command", real)


@contextlib.asynccontextmanager
async def offer_measured(url: str, monkeypatch: pytest.MonkeyPatch,
                         what: str) -> Any:
    """Counts the commands (MONITOR) and round trips of the block; prints them."""
    counter = CommandCounter(url)
    counter.start()
    sent: Counter[str] = Counter()
    try:
        with round_trips(monkeypatch) as trips:
            yield sent
    finally:
        sent.update(counter.stop().get("?", Counter()))
        print(f"\n{what}: {sum(sent.values())} commands, {trips[0]} round trips: "
              f"{dict(sent.most_common())}")
    sent["round trips"] = trips[0]


def commands(sent: Counter[str]) -> int:
    return sum(n for command, n in sent.items() if command != "round trips")


async def test_a_freed_team_s_offer_to_a_backlog_it_was_offered_all_of_costs_a_few_commands(
        clean_redis: str, redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Noise complaints wait, more than one offer reads, and the guard was offered each
    # (notify away: it missed every deadline) but one, near the end of what an offer reads.
    # Freed, it is sent to that one: its offer read every record whole and asked of each,
    # one round trip each, whether the guard had been offered it (some 1,000 commands and
    # 500 round trips).
    dispatcher, _ = two_replicas
    noise = [await reported(dispatcher, "noise", "P4") for _ in range(BACKLOG)]
    last = engine.WAITING_PAGES * engine.WAITING_PAGE - 20
    for incident_id in noise[:last] + noise[last + 1:]:
        await redis.sadd(store.offered_key(incident_id), "guard")
    await free_in_view(redis, "guard", kind="security", lat=22.8172)
    async with offer_measured(clean_redis, monkeypatch, "the offer") as sent:
        await dispatcher.retry_waiting(DISTRICT, freed="guard")
    (order,) = await store.orders_of(redis, noise[last])
    assert order["team_id"] == "guard"
    assert [i for i in noise if await store.orders_of(redis, i)] == [noise[last]]
    # a page: the queue, then its records and offers read in one go; the order's search and
    # writes; no more than a few other commands
    assert commands(sent) <= 2 * engine.WAITING_PAGES + 30, sent
    assert sent["round trips"] <= 2 * engine.WAITING_PAGES + 30, sent


async def test_a_freed_team_s_offer_to_a_backlog_it_may_answer_none_of_costs_a_few_commands(
        clean_redis: str, redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # P1 fights (volunteers may not go, nor escort) fill the queue; a volunteer team freed
    # reads WAITING_PAGES of it for nothing: each page's records were read whole.
    dispatcher, _ = two_replicas
    fights = [await reported(dispatcher, "violence", "P1") for _ in range(BACKLOG)]
    await free_in_view(redis, "red-armband", kind="volunteer", lat=22.8171)
    async with offer_measured(clean_redis, monkeypatch, "the offer") as sent:
        await dispatcher.retry_waiting(DISTRICT, freed="red-armband")
    assert [i for i in fights if await store.orders_of(redis, i)] == []
    assert commands(sent) <= 2 * engine.WAITING_PAGES + 5, sent
    assert sent["round trips"] <= 2 * engine.WAITING_PAGES + 5, sent



async def test_a_freed_team_s_offer_stops_after_a_few_searches_that_did_not_send_it(
        clean_redis: str, redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard freed is just past the search's radius from the noise complaints waiting,
    # within the margin the look at each leaves (Redis's GEO distance is not ours to the
    # metre): the look says the guard would be sent, the search under each one's lock does
    # not find it. Its offer ran that search for each it read, hundreds.
    dispatcher, _ = two_replicas
    noise = [await reported(dispatcher, "noise", "P4") for _ in range(BACKLOG)]
    just_past = SCENE.lat + (dispatcher.policy.search_radius_km * 1000 + 50) / 111_195
    await free_in_view(redis, "guard", kind="security", lat=just_past)
    async with offer_measured(clean_redis, monkeypatch, "the offer") as sent:
        await dispatcher.retry_waiting(DISTRICT, freed="guard")
    assert [i for i in noise if await store.orders_of(redis, i)] == []
    assert await store.claim_of(redis, "guard") is None
    per_search = 12  # its lock, the incident's state, the search, the queue, the release
    bound = 2 * engine.WAITING_PAGES + engine.WAITING_FILLS_MISSED * per_search + 5
    assert commands(sent) <= bound, sent
    assert sent["round trips"] <= bound, sent


class Reading(dict[str, str]):
    """A record that remembers the fields read of it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


async def test_the_look_at_a_waiting_incident_reads_only_the_fields_the_page_reads(
        redis: Redis, two_replicas: tuple[Dispatcher, Dispatcher]) -> None:
    # An offer reads of each waiting incident store.WAITING_FIELDS, not its whole record:
    # a field the look needs and the page does not read would make every incident odd
    # (passed over, logged). Each kind of look: one a team may answer or not, escort or
    # join (short of a unit), one sent to its zone's station only.
    dispatcher, _ = two_replicas
    await free_in_view(redis, "pol", kind="police", lat=22.8175)
    short = await reported(dispatcher, "violence", "P1")  # the police sent: short of a guard
    incidents = [short, *[await reported(dispatcher, category, priority) for category, priority
                          in (("violence", "P1"), ("medical", "P1"), ("traffic", "P3"),
                              ("noise", "P4"), ("fraud_warning", "P4"))]]
    for team_id, kind in (("guard", "security"), ("riders", "volunteer"), ("pol-2", "police")):
        await free_in_view(redis, team_id, kind=kind, lat=22.8172)
    units = [await store.get_unit(redis, t) for t in ("guard", "riders", "pol-2")]
    read: set[str] = set()
    looked = []
    for incident_id in incidents:
        for unit in units:
            assert unit is not None
            inc = Reading({**await redis.hgetall(store.incident_key(incident_id)),
                           "incident_id": incident_id})
            looked.append(await dispatcher._would_send(unit, inc, utcnow()))
            read |= inc.read
    assert any(looked) and not all(looked)
    assert read <= {*store.WAITING_FIELDS, "incident_id"}, read
