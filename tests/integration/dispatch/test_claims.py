"""Claims on a real Redis: no team ever holds two open orders, whoever races for it.

The claim is dispatch's one guard against giving a team two incidents at once (two
incidents in one replica, or two replicas); it is a Lua script, so only a real Redis proves it.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from services.dispatch import store
from shared.events import TimelineEntry, new_id

DISTRICT = "qingxiu"
AT = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
LIVE = ["offered", "acknowledged", "en_route", "on_scene"]
FINISHED = ["resolved", "handover", "declined", "withdrawn", "timed_out", "lost"]

# One atomic snapshot of every order in a live state: the team ids, one per order.
_LIVE_ORDER_TEAMS = """
local teams = {}
for _, key in ipairs(redis.call('KEYS', 'dispatch:order:*')) do
  local st = redis.call('HGET', key, 'state')
  if st == 'offered' or st == 'acknowledged' or st == 'en_route' or st == 'on_scene' then
    table.insert(teams, redis.call('HGET', key, 'team_id'))
  end
end
return teams
"""


def client(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True)


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    r = client(clean_redis)
    yield r
    await r.aclose()


async def on_shift(r: Redis, team_id: str, *, status: str = "available",
                   shift: bool = True) -> str:
    await store.save_unit_status(r, at=AT, fields={
        "team_id": team_id, "district": DISTRICT, "status": status,
        "on_shift": "1" if shift else "0", "agency_id": "ag-police", "agency_kind": "police",
        "agency_role": "", "mode": "car", "skills": "[]", "home_zone_id": "", "name": team_id,
    })
    return team_id


async def order(r: Redis, team_id: str, state: str = "claiming") -> str:
    """An order of a new incident for the team, stored as the engine stores it (its offer
    script), its claim left to the test."""
    order_id = new_id("ord")
    await store.offer_order(r, order_id=order_id, incident_id=new_id("inc"), fields={
        "team_id": team_id, "state": state, "kind": "dispatch", "agency_kind": "police",
        "agency_id": "ag-police", "issued_at": AT.isoformat(),
    }, claim=False, require_available=False, ack_by=None,
        entry=TimelineEntry(kind="offer", team_id=team_id, order_id=order_id),
        first_assignment_at=None)
    return order_id


async def warm(r: Redis, connections: int) -> None:
    """Open the pool's connections first, so that the claims race instead of queueing
    behind connection set-up."""
    await asyncio.gather(*(r.ping() for _ in range(connections)))


async def claimed(r: Redis, team_id: str, order_id: str, **kw: bool) -> bool:
    return await store.claim_unit(r, team_id=team_id, order_id=order_id, **kw)


# --- one claim at a time --------------------------------------------------------------


async def test_claim_gives_an_available_team_the_order(redis: Redis) -> None:
    team = await on_shift(redis, new_id("team"))
    first = await order(redis, team)
    assert await claimed(redis, team, first)
    assert await store.claim_of(redis, team) == first


@pytest.mark.parametrize("state", ["claiming", *LIVE])
async def test_claim_held_by_a_live_order_blocks_even_an_assignment_by_hand(
        redis: Redis, state: str) -> None:
    team = await on_shift(redis, new_id("team"))
    holder = await order(redis, team)
    assert await claimed(redis, team, holder)
    await store.update_order(redis, holder, {"state": state})
    newcomer = await order(redis, team)
    assert not await claimed(redis, team, newcomer)
    assert not await claimed(redis, team, newcomer, require_available=False)
    assert await store.claim_of(redis, team) == holder


@pytest.mark.parametrize("state", FINISHED)
async def test_claim_held_by_a_finished_order_does_not_block(redis: Redis, state: str) -> None:
    # The holder finished but its release never came (a worker died in between).
    team = await on_shift(redis, new_id("team"))
    holder = await order(redis, team)
    assert await claimed(redis, team, holder)
    await store.update_order(redis, holder, {"state": state})
    newcomer = await order(redis, team)
    assert await claimed(redis, team, newcomer)
    assert await store.claim_of(redis, team) == newcomer


async def test_same_order_claiming_again_is_idempotent(redis: Redis) -> None:
    team = await on_shift(redis, new_id("team"))
    first = await order(redis, team)
    assert await claimed(redis, team, first)
    assert all(await asyncio.gather(*(claimed(redis, team, first) for _ in range(20))))
    # A worker finishing a claim after a crash: the team meanwhile reported busy.
    await on_shift(redis, team, status="busy")
    await store.update_order(redis, first, {"state": "offered"})
    assert await claimed(redis, team, first)
    assert await store.claim_of(redis, team) == first


async def test_finished_order_cannot_take_back_a_claim_another_order_holds(redis: Redis) -> None:
    team = await on_shift(redis, new_id("team"))
    old = await order(redis, team)
    assert await claimed(redis, team, old)
    await store.update_order(redis, old, {"state": "resolved"})
    new = await order(redis, team)
    assert await claimed(redis, team, new)
    assert not await claimed(redis, team, old), "a redelivered claim of the old order"
    assert await store.claim_of(redis, team) == new


async def test_only_the_holder_releases_a_claim(redis: Redis) -> None:
    team = await on_shift(redis, new_id("team"))
    holder, other = await order(redis, team), await order(redis, team)
    assert await claimed(redis, team, holder)
    assert not await store.release_unit(redis, team_id=team, order_id=other)
    assert await store.claim_of(redis, team) == holder
    assert await store.release_unit(redis, team_id=team, order_id=holder)
    assert await store.claim_of(redis, team) is None
    assert await claimed(redis, team, other)


@pytest.mark.parametrize(("status", "shift"), [("busy", True), ("off_duty", True),
                                               ("available", False)])
async def test_claim_needs_an_available_team_on_shift_unless_assigned_by_hand(
        redis: Redis, status: str, shift: bool) -> None:
    team = await on_shift(redis, new_id("team"), status=status, shift=shift)
    first = await order(redis, team)
    assert not await claimed(redis, team, first)
    assert await store.claim_of(redis, team) is None
    assert await claimed(redis, team, first, require_available=False)


async def test_claim_of_a_team_dispatch_does_not_know_needs_an_assignment_by_hand(
        redis: Redis) -> None:
    team = new_id("team")
    first = await order(redis, team)
    assert not await claimed(redis, team, first)
    assert await claimed(redis, team, first, require_available=False)


# --- races ----------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["claiming", "offered"])
async def test_many_claims_racing_for_one_team_leave_exactly_one_holder(
        redis: Redis, state: str) -> None:
    team = await on_shift(redis, new_id("team"))
    orders = [await order(redis, team, state) for _ in range(50)]
    await warm(redis, len(orders))
    results = await asyncio.gather(*(claimed(redis, team, o) for o in orders))
    winners = [o for o, won in zip(orders, results, strict=True) if won]
    assert len(winners) == 1
    assert await store.claim_of(redis, team) == winners[0]


async def test_claims_racing_past_a_finished_holder_leave_exactly_one_holder(
        redis: Redis) -> None:
    team = await on_shift(redis, new_id("team"))
    old = await order(redis, team)
    assert await claimed(redis, team, old)
    await store.update_order(redis, old, {"state": "timed_out"})  # its release was lost
    orders = [await order(redis, team) for _ in range(30)]
    await warm(redis, len(orders))
    results = await asyncio.gather(*(claimed(redis, team, o) for o in orders))
    winners = [o for o, won in zip(orders, results, strict=True) if won]
    assert len(winners) == 1
    assert await store.claim_of(redis, team) == winners[0]


async def test_claims_racing_for_many_teams_give_each_team_exactly_one_order(
        redis: Redis) -> None:
    teams = [await on_shift(redis, new_id("team")) for _ in range(10)]
    attempts = [(t, await order(redis, t)) for t in teams for _ in range(10)]
    random.Random(7).shuffle(attempts)
    await warm(redis, len(attempts))
    results = await asyncio.gather(*(claimed(redis, t, o) for t, o in attempts))
    won = Counter(t for (t, _), ok in zip(attempts, results, strict=True) if ok)
    assert won == Counter(teams)
    for (t, o), ok in zip(attempts, results, strict=True):
        if ok:
            assert await store.claim_of(redis, t) == o


async def test_claims_and_releases_racing_never_give_a_team_two_open_orders(
        clean_redis: str) -> None:
    """Many workers run orders through their life (claim, offered, maybe acknowledged,
    finished, release) on a few teams; an atomic snapshot taken throughout never shows
    a team with two live orders, and no claim is ever won while another order is live."""
    r = client(clean_redis)
    teams = [await on_shift(r, new_id("team")) for _ in range(4)]
    await warm(r, 40)
    rng = random.Random(11)
    holding: dict[str, str] = {}
    wins = 0
    snapshots: list[list[str]] = []
    done = asyncio.Event()

    async def worker() -> None:
        nonlocal wins
        for _ in range(6):
            team = rng.choice(teams)
            mine = await order(r, team)
            if not await claimed(r, team, mine):
                await store.update_order(r, mine, {"state": "lost"})
                continue
            assert team not in holding, f"{team} won by {mine} while {holding.get(team)} is live"
            holding[team] = mine
            wins += 1
            await store.update_order(r, mine, {"state": "offered"})
            await asyncio.sleep(rng.random() / 500)
            if rng.random() < 0.5:
                await store.update_order(r, mine, {"state": rng.choice(LIVE[1:])})
            # Off the books before the state is finished: from then on a claim may win.
            del holding[team]
            await store.update_order(r, mine, {"state": rng.choice(FINISHED[:-1])})
            if rng.random() < 0.8:  # sometimes the release is lost (a worker died)
                await store.release_unit(r, team_id=team, order_id=mine)

    async def watcher() -> None:
        while not done.is_set():
            snapshots.append(await r.eval(_LIVE_ORDER_TEAMS, 0))
            await asyncio.sleep(0)

    try:
        watching = asyncio.create_task(watcher())
        await asyncio.gather(*(worker() for _ in range(40)))
        done.set()
        await watching
        for snapshot in snapshots:
            assert len(snapshot) == len(set(snapshot)), f"two live orders: {snapshot}"
        assert wins >= len(teams)
        assert len(snapshots) > 10
    finally:
        await r.aclose()


def _replica(url: str, name: str, teams: list[str], start: threading.Barrier,
             rounds: int) -> list[tuple[int, str, str]]:
    """One dispatch replica in its own thread, event loop and Redis connection pool:
    per round, a burst of claims for every team; the wins, as (round, team, order)."""

    async def run() -> list[tuple[int, str, str]]:
        r = client(url)
        wins: list[tuple[int, str, str]] = []
        try:
            await warm(r, 3 * len(teams))
            for round_ in range(rounds):
                attempts = [(t, await order(r, t)) for t in teams for _ in range(3)]
                await asyncio.to_thread(start.wait, 10)
                results = await asyncio.gather(*(claimed(r, t, o) for t, o in attempts))
                wins += [(round_, t, o) for (t, o), ok in zip(attempts, results, strict=True)
                         if ok]
                await asyncio.to_thread(start.wait, 10)  # both replicas done with the round
                if name == "a":  # one replica ends the round's orders for the next race
                    for t in teams:
                        holder = await store.claim_of(r, t)
                        if holder:
                            await store.update_order(r, holder, {"state": "resolved"})
                            await store.release_unit(r, team_id=t, order_id=holder)
                await asyncio.to_thread(start.wait, 10)
            return wins
        finally:
            await r.aclose()

    return asyncio.run(run())


async def test_two_dispatch_replicas_racing_never_claim_one_team_twice(
        clean_redis: str, redis: Redis) -> None:
    teams = [await on_shift(redis, new_id("team")) for _ in range(8)]
    rounds = 5
    start = threading.Barrier(2)
    a, b = await asyncio.gather(
        asyncio.to_thread(_replica, clean_redis, "a", teams, start, rounds),
        asyncio.to_thread(_replica, clean_redis, "b", teams, start, rounds),
    )
    per_round_team = Counter((round_, t) for round_, t, _ in a + b)
    assert per_round_team == Counter({(round_, t): 1 for round_ in range(rounds) for t in teams})
