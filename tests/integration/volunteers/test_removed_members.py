"""A member removed from the roster stays removed from the points: an award made after the
removal (a hazard report confirmed when its incident closes, a resolution read late, a
patrol, a coordinator's adjustment racing the removal) writes nothing, and the leaderboard
shows no removed member."""

from __future__ import annotations

from datetime import UTC, datetime

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.volunteers.api import points as points_api
from services.volunteers.domain.points import LedgerEntry
from services.volunteers.store import keys, teams
from services.volunteers.store import points as points_store
from services.volunteers.store.teams import Decision, TeamView
from shared.events import IncidentClosed, OrderResponded

from .conftest import ADMIN, Volunteers
from .test_points import hazard_order, resolved, wang_and_chen

AT = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


async def remove(volunteers: Volunteers, member_id: str) -> None:
    r = await volunteers.client.delete(f"/v1/members/{member_id}", headers=ADMIN)
    assert r.status_code == 204, r.text


async def points_left(volunteers: Volunteers, member_id: str) -> int:
    """How many of the member's points keys exist (history, balance, leaderboard line)."""
    return (await volunteers.redis.exists(keys.points_history(member_id),
                                          keys.points_balance(member_id))
            + (await volunteers.redis.zscore(keys.leaderboard("d1"), member_id) is not None))


async def board(volunteers: Volunteers, limit: int = 20) -> list[dict]:
    r = await volunteers.client.get("/v1/points/leaderboard",
                                    params={"district": "d1", "limit": limit}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["entries"]


async def test_a_hazard_confirmed_after_a_removal_pays_nobody_removed(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Wang and Chen resolve a help request; Chen is then removed from the roster; the command
    # room closes the incident as a hazard report: the resolving order's record names Chen.
    await wang_and_chen(volunteers, chen_on_shift=True)
    await publisher.publish(hazard_order(category="help_request"), stream="order.issued")
    await volunteers.consumed("order.issued")
    await publisher.publish(resolved(), stream="order.responded")
    await volunteers.consumed("order.responded")
    await remove(volunteers, "m-chen")
    assert await points_left(volunteers, "m-chen") == 0

    await publisher.publish(IncidentClosed(
        district="d1", incident_id="inc_ord_h", final_status="resolved", resolved_by=("t-vol",),
        category="hazard_report"), stream="incident.closed")
    await volunteers.consumed("incident.closed")

    assert await points_left(volunteers, "m-chen") == 0
    assert not await volunteers.redis.exists(keys.ledger_entry("hazard:inc_ord_h:m-chen"))
    assert [(e["member_id"], e["name"], e["points"]) for e in await board(volunteers)] == [
        ("m-wang", "Auntie Wang", 13)]


async def test_a_resolution_read_after_a_removal_pays_nobody_removed(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Nobody is on t-vol's shift: the command room calls it in off duty. Chen answers the
    # order (en route) and is then removed; Wang's resolution pays those who answered it.
    await volunteers.import_district()
    await publisher.publish(hazard_order(category="help_request"), stream="order.issued")
    await volunteers.consumed("order.issued")
    await publisher.publish(OrderResponded(
        district="d1", order_id="ord_h", incident_id="inc_ord_h", team_id="t-vol",
        member_id="m-chen", response="en_route"), stream="order.responded")
    await volunteers.consumed("order.responded")
    await remove(volunteers, "m-chen")

    await publisher.publish(resolved(member_id="m-wang"), stream="order.responded")
    await volunteers.consumed("order.responded")

    record = await volunteers.redis.get(keys.order("ord_h"))
    assert b"m-chen" in record  # the record names Chen: the award found him gone
    assert await points_left(volunteers, "m-chen") == 0
    assert [(e["member_id"], e["points"]) for e in await board(volunteers)] == [("m-wang", 10)]


async def test_a_transition_writes_its_change_but_no_points_for_a_removed_member(
    volunteers: Volunteers,
) -> None:
    # A patrol's points computed for Chen (say, his shift's end read just before his removal)
    # are written with the team's change: the change stands, Chen's points do not.
    await wang_and_chen(volunteers, chen_on_shift=False)
    await remove(volunteers, "m-chen")
    patrol = [LedgerEntry(entry_id=f"patrol:s-1:{AT.isoformat()}:{m}", member_id=m,
                          team_id="t-vol", district="d1", points=2, reason="patrol", at=AT,
                          shift_id="s-1", minutes=30) for m in ("m-chen", "m-wang")]

    def end_with_points(view: TeamView) -> Decision:
        return Decision(view.state.model_copy(update={"status": "off_duty", "on_shift": False}),
                        None, tuple(patrol))

    redis = Redis.from_url(volunteers.settings.redis_url, decode_responses=True)  # as the app's
    try:
        applied = await teams.transition(redis, team_id="t-vol", decide=end_with_points, now=AT)
        assert applied is not None
        assert (await teams.team_state(redis, "t-vol")).on_shift is False
    finally:
        await redis.aclose()
    assert await points_left(volunteers, "m-chen") == 0
    assert await volunteers.redis.get(keys.points_balance("m-wang")) == b"2"
    assert [e["member_id"] for e in await board(volunteers)] == ["m-wang"]


async def test_an_adjustment_racing_the_removal_writes_nothing_and_is_404(
    volunteers: Volunteers, monkeypatch,
) -> None:
    await volunteers.import_district()
    looked_up = points_api.roster_store.member_and_kind

    async def then_removed(redis, member_id):  # the removal lands between check and write
        found = await looked_up(redis, member_id)
        await remove(volunteers, member_id)
        return found

    monkeypatch.setattr(points_api.roster_store, "member_and_kind", then_removed)
    r = await volunteers.client.post("/v1/members/m-chen/points", headers=ADMIN, json={
        "points": 5, "note": "the briefing", "adjustment_id": "k-race"})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"
    assert await points_left(volunteers, "m-chen") == 0
    assert await board(volunteers) == []


async def test_an_adjustment_for_an_unknown_member_is_404(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    r = await volunteers.client.post("/v1/members/m-nobody/points", headers=ADMIN, json={
        "points": 5, "note": "the briefing"})
    assert r.status_code == 404, r.text
    assert "member" in r.json()["error"]["message"]
    assert await points_left(volunteers, "m-nobody") == 0


async def test_the_leaderboard_skips_lines_of_removed_members(volunteers: Volunteers) -> None:
    # Lines written before awards checked the member (or by any other way): the board shows
    # members only, ranked among themselves, and still fills its limit.
    await volunteers.import_district()
    for member_id, points in (("m-wang", 5), ("m-chen", 3)):
        r = await volunteers.client.post(f"/v1/members/{member_id}/points", headers=ADMIN,
                                         json={"points": points, "note": "the briefing"})
        assert r.status_code == 201, r.text
    await volunteers.redis.zadd(keys.leaderboard("d1"), {"m-gone": 9, "m-gone-too": 4})

    assert [(e["rank"], e["member_id"], e["points"]) for e in await board(volunteers)] == [
        (1, "m-wang", 5), (2, "m-chen", 3)]
    assert [e["member_id"] for e in await board(volunteers, limit=2)] == ["m-wang", "m-chen"]
    assert [e["member_id"] for e in await board(volunteers, limit=1)] == ["m-wang"]


async def test_an_award_to_a_member_who_never_existed_writes_nothing(
    volunteers: Volunteers,
) -> None:
    entry = LedgerEntry(entry_id="adjust:x-1", member_id="m-never", team_id="t-vol",
                        district="d1", points=5, reason="adjustment", at=AT, note="x")
    assert await points_store.award(volunteers.redis, [entry], ledger_ttl_s=60) == 0
    assert await points_left(volunteers, "m-never") == 0
    assert not await volunteers.redis.exists(keys.ledger_entry("adjust:x-1"))
