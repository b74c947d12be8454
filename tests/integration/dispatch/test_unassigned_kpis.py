"""The KPIs say what the times to assign cannot: incidents nobody was sent to, and those
sent their first team after their priority's acknowledge deadline; the inspector's board
lists them (?problem=unassigned_late). An overloaded night read "assign 18/40 s, 0 routing
timeouts" while half its incidents waited with no team."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from faststream.redis import RedisBroker

from tests.helpers import poll_until

from .test_engine import report, team, wait_for_units
from .test_outage_catchup import fast_deadlines
from .test_supervision import ADMIN, board, kpis, problems, store_incident

DEADLINE_S = 1  # P3's acknowledge deadline here (DESIGN: 120 s), so the test waits 1 s


def waited_past_deadline(url: str, incident_id: str) -> bool:
    received = datetime.fromisoformat(store_incident(url, incident_id)["received_at"])
    return datetime.now(UTC) - received > timedelta(seconds=DEADLINE_S + 0.5)


async def test_incidents_left_without_a_team_are_counted_beside_the_times_to_assign(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A P2 gets the district's one security team at once. Three P3s come while it is busy:
    the first is sent a team that comes on shift after its deadline, the second is closed
    by the command room with no team, the third (a traffic accident, which no security team
    may answer) still waits. The times to assign count the two sent a team; the KPIs count
    the two never assigned (one open, one ended, both past their deadline) and the one
    assigned late, and the board's unassigned_late lists those three, not the P2."""
    fast_deadlines(monkeypatch, DEADLINE_S)
    async with board(clean_redis) as client:
        await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
        await wait_for_units(clean_redis, 1)
        in_time = await report(publisher, "suspicious", priority="P2")
        await poll_until(lambda: bool(store_incident(clean_redis, in_time)
                                      .get("first_assigned_at")), "the P2 sent its team")
        late = await report(publisher, "help_request", priority="P3")
        closed = await report(publisher, "help_request", priority="P3")
        waiting = await report(publisher, "traffic", priority="P3")
        for incident_id in (late, closed, waiting):
            await poll_until(lambda i=incident_id: store_incident(clean_redis, i)
                             .get("status") == "unassigned", "waiting: no team free")
        await poll_until(lambda: all(waited_past_deadline(clean_redis, i)
                                     for i in (late, closed, waiting)),
                         "past the P3s' deadline")
        r = await client.post(f"/v1/incidents/{closed}/close", headers=ADMIN)
        assert r.status_code == 200, r.text
        # a second security team comes on shift: the oldest waiting P3 it may answer is sent it
        await team(publisher, "second", kind="security", lat=22.8190, lon=108.3665)
        await poll_until(lambda: bool(store_incident(clean_redis, late)
                                      .get("first_assigned_at")), "the first P3 sent a team")

        found = await kpis(client)
        listed = {i["incident_id"] for i in await problems(client, "unassigned_late")}
    assert found["incidents"] == 4
    assert found["time_to_assign_s"]["count"] == 2  # the P2 and the P3 sent a team late
    assert found["never_assigned"] == {"incidents": 2, "open": 1, "ended": 1,
                                       "past_deadline": 2}
    assert found["assigned_after_deadline"] == 1
    assert listed == {late, closed, waiting}
    assert store_incident(clean_redis, closed).get("first_assigned_at") is None
    assert store_incident(clean_redis, waiting).get("first_assigned_at") is None


async def test_an_incident_sent_its_team_in_time_is_neither_late_nor_on_the_list(
        clean_redis: str, publisher: RedisBroker) -> None:
    """DESIGN's own deadlines: a noise complaint (P4, 300 s) a free team is sent to at once."""
    async with board(clean_redis) as client:
        await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
        await wait_for_units(clean_redis, 1)
        incident_id = await report(publisher, "noise", priority="P4")
        await poll_until(lambda: bool(store_incident(clean_redis, incident_id)
                                      .get("first_assigned_at")), "a team sent")
        found = await kpis(client)
        listed = await problems(client, "unassigned_late")
    assert found["never_assigned"] == {"incidents": 0, "open": 0, "ended": 0,
                                       "past_deadline": 0}
    assert (found["assigned_after_deadline"], listed) == (0, [])
