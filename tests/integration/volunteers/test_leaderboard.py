"""The leaderboard the coordinator reads for the commendations: volunteers ranked by their
points, equal points sharing a rank."""

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
