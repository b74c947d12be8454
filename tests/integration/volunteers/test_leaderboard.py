"""The leaderboard the coordinator reads for the monthly commendation: the points each
volunteer earned in a month on the district's clock (Asia/Shanghai, no DST: a month begins
at 16:00 UTC the day before), ranked so that equal points share a rank."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from services.volunteers.domain.points import LedgerEntry
from services.volunteers.store import points as points_store

from .conftest import ADMIN, DISTRICT, Volunteers

DAY_S = 86400

# Uncle Chen, Wang's teammate, and a third volunteer of the same team
WITH_LIU = copy.deepcopy(DISTRICT)
WITH_LIU["members"].append({"id": "m-liu", "name": "Sister Liu", "agency_id": "v-red",
                            "team_id": "t-vol", "role": "volunteer"})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def award(member_id: str, points: float, when: str, n: int) -> LedgerEntry:
    return LedgerEntry(entry_id=f"adjust:board-{member_id}-{n}", member_id=member_id,
                       team_id="t-vol", district="d1", points=points, reason="adjustment",
                       at=at(when), note=f"n{n}")


async def board(volunteers: Volunteers, **params: object) -> dict:
    r = await volunteers.client.get("/v1/points/leaderboard", headers=ADMIN,
                                    params={"district": "d1", **params})
    assert r.status_code == 200, r.text
    return r.json()


def ranks(answer: dict) -> list[tuple[int, str, float]]:
    return [(e["rank"], e["member_id"], e["points"]) for e in answer["entries"]]


async def test_volunteers_with_equal_points_share_their_rank(volunteers: Volunteers) -> None:
    await volunteers.import_district(WITH_LIU)
    await points_store.award(volunteers.redis, [
        award("m-wang", 30, "2026-11-10T10:00:00+08:00", 1),
        award("m-chen", 30, "2026-11-11T10:00:00+08:00", 2),
        award("m-liu", 12, "2026-11-12T10:00:00+08:00", 3)], ledger_ttl_s=DAY_S)
    entries = ranks(await board(volunteers))
    # the two with 30 are both first, in either order; the next is third, not second
    assert sorted(entries[:2]) == [(1, "m-chen", 30), (1, "m-wang", 30)]
    assert entries[2] == (3, "m-liu", 12)


async def test_a_months_board_counts_the_points_earned_in_that_month_on_the_districts_clock(
        volunteers: Volunteers) -> None:
    await volunteers.import_district(WITH_LIU)
    await points_store.award(volunteers.redis, [
        # Wang: a long-time volunteer, first of all time, little in November
        award("m-wang", 100, "2026-09-15T10:00:00+08:00", 1),
        award("m-wang", 5, "2026-11-03T10:00:00+08:00", 2),
        # Chen: November's most active; his last patrol ended at 23:30 on 30 November there
        # (15:30 UTC), and one more on 1 December at 01:00 (17:00 UTC on 30 November)
        award("m-chen", 40, "2026-11-01T00:10:00+08:00", 3),
        award("m-chen", 20, "2026-11-30T23:30:00+08:00", 4),
        award("m-chen", 50, "2026-12-01T01:00:00+08:00", 5),
        # Liu: before November began on the district's clock (31 October, 23:50 there),
        # then a penalty in November
        award("m-liu", 60, "2026-10-31T23:50:00+08:00", 6),
        award("m-liu", -2, "2026-11-20T10:00:00+08:00", 7),
    ], ledger_ttl_s=DAY_S)

    november = await board(volunteers, month="2026-11")
    assert ranks(november) == [(1, "m-chen", 60), (2, "m-wang", 5), (3, "m-liu", -2)]
    assert november["entries"][0]["name"] == "Uncle Chen"
    assert (november["month"], november["since"], november["until"]) == (
        "2026-11", "2026-11-01T00:00:00+08:00", "2026-12-01T00:00:00+08:00")
    assert ranks(await board(volunteers, month="2026-12")) == [(1, "m-chen", 50)]
    assert ranks(await board(volunteers, month="2026-10")) == [(1, "m-liu", 60)]
    assert ranks(await board(volunteers, month="2026-11", limit=1)) == [(1, "m-chen", 60)]
    # all of time, as before
    assert ranks(await board(volunteers))[0] == (1, "m-chen", 110)

    # a volunteer removed is on no board; another district's are never this one's
    assert (await volunteers.client.delete("/v1/members/m-chen", headers=ADMIN)).status_code \
        == 204
    assert ranks(await board(volunteers, month="2026-11")) == [
        (1, "m-wang", 5), (2, "m-liu", -2)]
    assert (await board(volunteers, month="2026-08"))["entries"] == []


async def test_a_month_asked_wrongly_is_a_422_naming_it(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    for month in ("2026-13", "2026-11-01", "11/2026", "2026-1", "0000-01", "0001-01",
                  "9999-12"):
        r = await volunteers.client.get("/v1/points/leaderboard", headers=ADMIN,
                                        params={"district": "d1", "month": month})
        assert (r.status_code, r.json()["error"]["field"]) == (422, "month"), (month, r.text)


async def test_a_months_points_hold_at_its_bounds_and_for_an_award_read_late(
        volunteers: Volunteers) -> None:
    """An entry's time may carry an offset and a fraction of a second; an event read late
    (dispatch catching up) pushes an older entry after newer ones, and the entries of the
    month pushed before it still count."""
    await volunteers.import_district()

    def timed(points: float, when: str, n: int) -> LedgerEntry:  # `at` as given, offset kept
        return LedgerEntry(entry_id=f"adjust:bounds-{n}", member_id="m-wang",
                           team_id="t-vol", district="d1", points=points,
                           reason="adjustment", at=datetime.fromisoformat(when), note=str(n))

    for entry in (timed(1, "2026-10-31T23:59:59.999999+08:00", 1),  # October there
                  timed(2, "2026-11-01T00:00:00.000001+08:00", 2),  # November
                  timed(4, "2026-11-05T12:00:00Z", 3),
                  timed(8, "2026-10-20T12:00:00+08:00", 4),  # read late, pushed after
                  timed(16, "2026-11-30T15:59:59.5Z", 5),  # 23:59:59 on 30 November there
                  timed(32, "2026-11-30T16:00:00Z", 6)):  # 1 December there
        assert await points_store.award(volunteers.redis, [entry], ledger_ttl_s=60 * DAY_S)
    assert ranks(await board(volunteers, month="2026-11")) == [(1, "m-wang", 2 + 4 + 16)]
    assert ranks(await board(volunteers, month="2026-10")) == [(1, "m-wang", 1 + 8)]
    assert ranks(await board(volunteers, month="2026-12")) == [(1, "m-wang", 32)]
