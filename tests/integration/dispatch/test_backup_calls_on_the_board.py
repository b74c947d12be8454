"""A team's call for backup on the command room's board: the incident's row says when the
call was made, by which team, and which team was sent as backup, or that none is yet. A
call on a P3 or P4 neither flags the incident nor is a new P1, so the board had no mark of
it at all while the team was asking for help (DOMAIN.md: people on scene in trouble)."""

from __future__ import annotations

from typing import Any

import httpx
from faststream.redis import RedisBroker

from tests.helpers import poll_until

from .test_engine import DISTRICT, orders_for, team, wait_for_units
from .test_reinforcement import (
    ADMIN,
    answer,
    make_due,
    on_scene_asking_for_backup,
    updates,
)


async def row_of(console: httpx.AsyncClient, incident_id: str) -> dict[str, Any]:
    r = await console.get("/v1/incidents", params={"district": DISTRICT}, headers=ADMIN)
    assert r.status_code == 200, r.text
    (row,) = [i for i in r.json()["incidents"] if i["incident_id"] == incident_id]
    return row


def call_time(url: str, incident_id: str) -> str:
    (call,) = [u.entry for u in updates(url, incident_id)
               if u.entry.kind == "response" and u.entry.detail == "reinforce"]
    return call.at.isoformat()


async def test_a_call_for_backup_on_a_p4_says_on_its_row_who_called_and_who_was_sent(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    url = clean_redis
    await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "backup", kind="security", lat=22.8190, lon=108.3665)
    await wait_for_units(url, 2)
    incident_id, _ = await on_scene_asking_for_backup(url, publisher)
    await poll_until(lambda: len(orders_for(url, incident_id)) >= 2, "the backup's order")
    row = await poll_until(
        lambda: _with_backup(console, incident_id), "the backup on the incident's row")
    assert row["backup_call"] == {
        "at": call_time(url, incident_id), "team_id": "first", "team_name": "first",
        "backup": {"team_id": "backup", "team_name": "backup"}}
    assert (row["priority"], row["flagged"]) == ("P4", False)  # the call is the mark
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.json()["backup_call"] == row["backup_call"]


async def _with_backup(console: httpx.AsyncClient, incident_id: str) -> dict[str, Any] | None:
    row = await row_of(console, incident_id)
    call = row.get("backup_call")
    return row if call and call.get("backup") else None


async def test_a_call_nobody_was_free_for_says_none_yet_until_a_team_is_sent(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    url = clean_redis
    await team(publisher, "alone", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    incident_id, order = await on_scene_asking_for_backup(url, publisher)
    await poll_until(lambda: [u for u in updates(url, incident_id) if u.entry.kind == "note"],
                     "nobody free for the backup")
    row = await row_of(console, incident_id)
    assert row["backup_call"] == {"at": call_time(url, incident_id), "team_id": "alone",
                                  "team_name": "alone", "backup": None}
    assert row["flagged"]
    await team(publisher, "later", kind="security", lat=22.8300, lon=108.3665)
    await wait_for_units(url, 2)
    make_due(url, f"reinforce:{order.order_id}")
    row = await poll_until(lambda: _with_backup(console, incident_id), "the backup sent later")
    assert row["backup_call"]["backup"] == {"team_id": "later", "team_name": "later"}


async def test_a_backup_that_declines_with_nobody_else_free_leaves_the_call_without_one(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    url = clean_redis
    await team(publisher, "first", kind="security", lat=22.8171, lon=108.3665)
    await team(publisher, "backup", kind="security", lat=22.8190, lon=108.3665)
    await wait_for_units(url, 2)
    incident_id, _ = await on_scene_asking_for_backup(url, publisher)
    _, backup = await poll_until(lambda: len(orders_for(url, incident_id)) >= 2 and
                                 orders_for(url, incident_id), "the backup's order")
    await poll_until(lambda: _with_backup(console, incident_id), "the backup on the row")
    await answer(publisher, backup, "declined")
    await poll_until(lambda: [u for u in updates(url, incident_id) if u.entry.kind == "note"],
                     "nobody else free for the backup")
    row = await row_of(console, incident_id)
    assert row["backup_call"]["backup"] is None
    assert row["flagged"]
