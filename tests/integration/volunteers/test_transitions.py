"""A team's transition against a real Redis: read, decide, then write only if what the
decision read is unchanged; a change made in between makes it read and decide again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from services.volunteers.domain.points import LedgerEntry
from services.volunteers.domain.roster import MemberRow, record_of
from services.volunteers.domain.status import OrderRecord, TeamState
from services.volunteers.store import keys, teams
from services.volunteers.store.teams import Decision, TeamView
from shared import streams
from shared.events import UnitStatus
from tests.helpers import read_stream

NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
TEAM = "t-1"
MEMBER = "m-1"


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    await client.hset(keys.team(TEAM), mapping={
        "id": TEAM, "name": "Patrol 1", "district": "d1", "agency_id": "a-1", "mode": "foot",
        "skills": "[]"})
    await client.hset(keys.agency("a-1"), mapping={"id": "a-1", "kind": "volunteer",
                                                   "name": "Volunteers"})
    # a member on its roster, stored as an import stores one (points go to members only)
    await client.hset(keys.member(MEMBER), mapping=record_of("members", MemberRow(
        id=MEMBER, name="Auntie Wang", agency_id="a-1", team_id=TEAM, role="volunteer"), "d1"))
    await client.sadd(keys.team_members(TEAM), MEMBER)
    yield client
    await client.aclose()


def shift_started(view: TeamView) -> Decision:
    return Decision(view.state.model_copy(update={"status": "available", "on_shift": True}))


async def apply(redis: Redis, decide: Callable[[TeamView], Decision], *,
                order_id: str | None = None, meanwhile: Callable[[], object] | None = None
                ) -> tuple[list[TeamView], teams.Applied | None]:
    seen: list[TeamView] = []
    pending = [meanwhile] if meanwhile is not None else []

    def wrapped(view: TeamView) -> Decision:
        seen.append(view)
        return decide(view)

    real = teams.run_script

    async def run_script(client, script, keys_, args):  # the other worker writes first
        if script is teams._COMMIT and pending:
            await pending.pop()()
        return await real(client, script, keys_, args)

    teams.run_script = run_script  # type: ignore[assignment]
    try:
        applied = await teams.transition(redis, team_id=TEAM, decide=wrapped, now=NOW,
                                         order_id=order_id)
    finally:
        teams.run_script = real  # type: ignore[assignment]
    return seen, applied


async def test_a_transition_writes_its_state_and_announces_it(redis, clean_redis) -> None:
    seen, applied = await apply(redis, shift_started)
    assert len(seen) == 1 and applied is not None and applied.announced
    state = await teams.team_state(redis, TEAM)
    assert (state.status, state.on_shift) == ("available", True)
    assert await redis.hget(keys.state(TEAM), "seq") == "1"
    (event,) = read_stream(clean_redis, streams.UNIT_STATUS.name, UnitStatus)
    assert (event.unit_id, event.status, event.on_shift) == (TEAM, "available", True)


async def test_a_state_changed_between_read_and_write_is_read_and_decided_again(
        redis, clean_redis) -> None:
    async def another_worker() -> None:  # checks the team in first
        await teams.transition(redis, team_id=TEAM, decide=shift_started, now=NOW)

    def busy_if_on_shift(view: TeamView) -> Decision:
        if not view.state.on_shift:
            return Decision(view.state)  # nothing to do for an off-duty team
        return Decision(view.state.model_copy(update={"status": "dispatched"}))

    seen, applied = await apply(redis, busy_if_on_shift, meanwhile=another_worker)
    assert [v.state.on_shift for v in seen] == [False, True]  # decided again on fresh data
    assert applied is not None and applied.before.seq == 1
    state = await teams.team_state(redis, TEAM)
    assert (state.status, state.on_shift) == ("dispatched", True)
    assert await redis.hget(keys.state(TEAM), "seq") == "2"
    events = read_stream(clean_redis, streams.UNIT_STATUS.name, UnitStatus)
    assert [e.status for e in events] == ["available", "dispatched"]


async def test_a_profile_or_order_changed_in_between_is_read_again(redis) -> None:
    async def renamed() -> None:  # a roster import renames the team meanwhile
        await redis.hset(keys.team(TEAM), "name", "Patrol One")

    seen, applied = await apply(redis, shift_started, meanwhile=renamed)
    assert [v.team["name"] for v in seen] == ["Patrol 1", "Patrol One"]
    assert applied is not None

    record = OrderRecord(team_id=TEAM, incident_id="inc_1", category="noise")

    async def recorded() -> None:
        await redis.set(keys.order("o-1"), record.model_dump_json())

    def keep_record(view: TeamView) -> Decision:
        return Decision(view.state, view.record or record.model_copy(update={"category": "x"}))

    seen, _ = await apply(redis, keep_record, order_id="o-1", meanwhile=recorded)
    assert [v.record for v in seen] == [None, record]
    assert await redis.get(keys.order("o-1")) == record.model_dump_json()


async def test_a_team_removed_in_between_is_no_team(redis, clean_redis) -> None:
    async def removed() -> None:
        await redis.delete(keys.team(TEAM), keys.state(TEAM))

    seen, applied = await apply(redis, shift_started, meanwhile=removed)
    assert len(seen) == 1 and applied is None
    assert not await redis.exists(keys.state(TEAM))
    assert read_stream(clean_redis, streams.UNIT_STATUS.name, UnitStatus) == []


async def test_points_are_awarded_with_the_change_and_once(redis) -> None:
    entry = LedgerEntry(entry_id="resolved:o-1:m-1", member_id=MEMBER, team_id=TEAM,
                        district="d1", points=3, reason="resolved_order", at=NOW, order_id="o-1")

    def earn(view: TeamView) -> Decision:
        return Decision(TeamState(status="available", on_shift=True), None, (entry,))

    for _ in range(2):
        await apply(redis, earn)
    assert await redis.get(keys.points_balance("m-1")) == "3"
    assert await redis.zscore(keys.leaderboard("d1"), "m-1") == 3
    assert await redis.llen(keys.points_history("m-1")) == 1
