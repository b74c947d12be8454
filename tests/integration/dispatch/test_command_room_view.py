"""What the command room and its supervisors see and count: the board, the KPIs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from .test_engine import DISTRICT
from .test_supervision import newer_reports, seed_incidents

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def test_a_reporting_system_s_fast_clock_gives_no_negative_times_to_act(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """Intake takes a report time up to 5 minutes ahead of its clock (a 110 system's clock
    runs fast). The times to assign, to acknowledge and to reach the scene count from when
    the incident was reported, but never from before dispatch had it: a clock 2 minutes
    fast must not make the command room's p50 to assign -118 s."""
    got = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    seed_incidents(clean_redis, [("inc_fast_clock", got + timedelta(minutes=2), {
        "received_at": got.isoformat(),
        "first_assigned_at": (got + timedelta(seconds=2)).isoformat(),
        "first_ack_at": (got + timedelta(seconds=10)).isoformat(),
        "first_on_scene_at": (got + timedelta(seconds=300)).isoformat()})])
    r = await console.get("/v1/kpis", headers=ADMIN, params={"district": DISTRICT})
    assert r.status_code == 200, r.text
    kpis = r.json()
    assert kpis["incidents"] == 1
    assert kpis["time_to_assign_s"]["p50"] == 2.0
    assert kpis["time_to_acknowledge_s"]["p50"] == 10.0
    assert kpis["time_to_scene_s"]["p50"] == 300.0


async def test_the_console_s_flagged_query_finds_a_waiting_hand_over_behind_newer_reports(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """What the console asks besides its board (the newest 200): every flagged incident of
    the district. A hand-over no station team took, three days and 250 reports ago, is in
    it (and so on the board, in the title and the alarm)."""
    waiting = ("inc_waiting_handover", datetime.now(UTC) - timedelta(days=3),
               {"status": "handed_over", "flagged": "1", "priority": "P2"})
    seed_incidents(clean_redis, [waiting, *newer_reports(250)])
    newest = await console.get("/v1/incidents", headers=ADMIN,
                               params={"district": DISTRICT, "limit": "200"})
    assert "inc_waiting_handover" not in [i["incident_id"] for i in newest.json()["incidents"]]
    flagged = await console.get("/v1/incidents", headers=ADMIN, params={
        "district": DISTRICT, "flagged": "true", "limit": "200"})
    assert [i["incident_id"] for i in flagged.json()["incidents"]] == ["inc_waiting_handover"]


async def test_the_command_room_reads_what_was_reported_and_who_called_on_the_incident(
        clean_redis: str, console: httpx.AsyncClient, publisher) -> None:
    """The command room (police: dispatchers, inspectors, the admin) must know what happened
    and whom to ring back: the incident's own view carries the report's description and the
    caller, which only police teams' orders carried until now. The board's rows do not (a
    list read every few seconds need not spread them), nor the archived record (gone)."""
    from .test_records import resolved_incident

    incident_id = await resolved_incident(clean_redis, publisher)
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "neighbour playing music"
    assert r.json()["caller"] == {"phone": "13800000000", "name": "Li"}
    board = await console.get("/v1/incidents", headers=ADMIN, params={"district": DISTRICT})
    [row] = board.json()["incidents"]
    assert "13800000000" not in board.text and "description" not in row
