"""Reports dispatch gave up on (their step failed MAX_DELIVERIES times: dead-lettered): the
command room is told, never left with an incident nobody seeks a team for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch import api
from services.dispatch.engine import Dispatcher
from shared import streams
from shared.events import IncidentReported, new_id, utcnow
from tests.helpers import poll_until
from tests.integration.stream_probes import envelope

from .conftest import dead_lettered
from .test_command_room_queries import desk_token
from .test_engine import DISTRICT, SCENE, orders_for, report, team, wait_for_units
from .test_linked import resolve
from .test_reinforcement import answers_handled

ADMIN = {"Authorization": "Bearer test-admin-token"}


def reported(incident_id: str) -> IncidentReported:
    return IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow())


async def flagged_ids(console: httpx.AsyncClient) -> set[str]:
    answer = await console.get("/v1/incidents", headers=ADMIN,
                               params={"district": DISTRICT, "flagged": "true"})
    assert answer.status_code == 200, answer.text
    return {i["incident_id"] for i in answer.json()["incidents"]}


async def unflagged(console: httpx.AsyncClient, incident_id: str) -> bool:
    return incident_id not in await flagged_ids(console)


async def test_an_incident_whose_report_is_dead_lettered_after_it_was_created_is_flagged(
        console: httpx.AsyncClient, clean_redis: str, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The report's step created the incident (`dispatching`), then failed on a bug each
    # time until dead-lettered: no order, in no waiting queue, no timer. It was on the
    # board as `dispatching`, not flagged, and nothing would ever seek it a team. It is
    # flagged in the step that dead-letters it, with a note saying why, until a team goes
    # (here: its report replayed once the bug is fixed).
    incident_id = new_id("inc")
    replay = await dead_lettered(clean_redis, publisher, reported(incident_id), monkeypatch,
                                 failing="add_waiting")
    assert incident_id in await flagged_ids(console)
    view = (await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)).json()
    assert view["status"] == "dispatching" and view["flagged"] is True
    assert [e["detail_code"] for e in view["timeline"]
            if e.get("detail_code") == "report_not_handled"] == ["report_not_handled"]

    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    await replay()
    await poll_until(lambda: orders_for(clean_redis, incident_id), "an order once replayed", 15)
    await poll_until(lambda: unflagged(console, incident_id), "the flag gone with the team sent")


async def not_handled(console: httpx.AsyncClient) -> dict[str, Any]:
    answer = await console.get("/v1/reports-not-handled", headers=ADMIN,
                               params={"district": DISTRICT})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_report_dead_lettered_before_its_incident_was_made_is_counted_for_the_board(
        console: httpx.AsyncClient, clean_redis: str, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Intake answered 202; dispatch's step failed before it made the incident, until
    # dead-lettered: dispatch has no record, so no board showed it, and the command room
    # heard nothing (the dead letters are the admins'). The console asks which reports of
    # its district are lost so, and says how many; replayed, the report leaves the list.
    assert await not_handled(console) == {"reports": [], "count": 0, "next": None,
                                          "more": False, "scanned_to": None}
    lost = new_id("inc")
    replay = await dead_lettered(clean_redis, publisher, reported(lost), monkeypatch)
    answer = await not_handled(console)
    assert answer["count"] == 1 and answer["more"] is False
    [row] = answer["reports"]
    assert row["incident_id"] == lost and row["district"] == DISTRICT
    assert row["category"] == "noise" and row["priority"] == "P4" and row["dead_at"]
    assert "caller" not in row and "description" not in row
    # one dead-lettered after its incident was made is on the board, flagged: not counted
    known = new_id("inc")
    await dead_lettered(clean_redis, publisher, reported(known), monkeypatch,
                        failing="add_waiting")
    assert [r["incident_id"] for r in (await not_handled(console))["reports"]] == [lost]

    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    await replay()
    await poll_until(lambda: orders_for(clean_redis, lost), "an order once replayed", 15)
    assert (await not_handled(console))["count"] == 0


async def test_a_linked_report_sent_out_as_its_own_then_dead_lettered_is_flagged(
        console: httpx.AsyncClient, clean_redis: str, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Intake linked the report to an incident that had ended when dispatch came to it: it
    # was sent out as an incident of its own (`dispatching`), then its step failed on a bug
    # at each try as it gave it a team, until dead-lettered. It has no link timer (its
    # link was judged): in no queue, no order, and nothing would ever seek it a team.
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    parent = await report(publisher, "noise", priority="P4")
    await resolve(clean_redis, publisher, parent)
    linked = new_id("inc")
    await dead_lettered(clean_redis, publisher, IncidentReported(
        district=DISTRICT, incident_id=linked, system_id="sys", external_ref=linked,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow(),
        linked_to=parent), monkeypatch, failing="offer_order")
    view = (await console.get(f"/v1/incidents/{linked}", headers=ADMIN)).json()
    assert view["status"] == "dispatching" and orders_for(clean_redis, linked) == []
    assert linked in await flagged_ids(console)


async def linked_given_up(console: httpx.AsyncClient, url: str, publisher: RedisBroker,
                          monkeypatch: pytest.MonkeyPatch, *, parent_ended: bool
                          ) -> tuple[str, str, Callable[[], Awaitable[str]]]:
    """A noise report linked to another (ended, or open with its team), its step failing on
    a bug at each try before its link was judged, until dead-lettered: flagged, with its
    note naming that incident. That incident, the report and the replay once fixed."""
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    parent = await report(publisher, "noise", priority="P4")
    if parent_ended:
        await resolve(url, publisher, parent)
    else:
        await poll_until(lambda: orders_for(url, parent), "the parent's order")
    linked = new_id("inc")
    replay = await dead_lettered(url, publisher, IncidentReported(
        district=DISTRICT, incident_id=linked, system_id="sys", external_ref=linked,
        category="noise", priority="P4", location=SCENE, reported_at=utcnow(),
        linked_to=parent), monkeypatch, failing="_judge_link", owner=Dispatcher)
    view = (await console.get(f"/v1/incidents/{linked}", headers=ADMIN)).json()
    assert view["status"] == "linked" and view["flagged"] is True
    assert linked in await flagged_ids(console)
    [note] = [e for e in view["timeline"]
              if e.get("detail_code", "").startswith("report_not_handled")]
    assert (note["detail_code"], note["detail_args"]) == ("report_not_handled_link",
                                                          {"parent": parent})
    return parent, linked, replay


@pytest.mark.parametrize("parent_ended", [True, False], ids=["parent_ended", "parent_open"])
async def test_a_linked_report_dead_lettered_before_its_link_was_judged_is_flagged_until_judged(
        console: httpx.AsyncClient, clean_redis: str, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch, parent_ended: bool) -> None:
    # Intake linked the report to an incident; dispatch made its record (`linked`), then its
    # step failed on a bug at each try before it judged the link, until dead-lettered. Had
    # that incident ended, the report is of something still going on and should have been
    # sent out as an incident of its own; as it is, nothing seeks it a team, it has no link
    # timer, and as `linked` it was on no list the command room sees. It is flagged, with a
    # note naming that incident, until the report replayed once the bug is fixed judges
    # the link: sent out (one team) or joined (none).
    parent, linked, replay = await linked_given_up(console, clean_redis, publisher,
                                                   monkeypatch, parent_ended=parent_ended)
    await replay()

    async def judged() -> bool:
        timeline = (await console.get(f"/v1/incidents/{linked}", headers=ADMIN)).json()[
            "timeline"]
        return any(e.get("detail_code") in ("duplicate", "duplicate_of_ended")
                   for e in timeline)

    await poll_until(judged, "the link judged once replayed", 15)
    if parent_ended:
        await poll_until(lambda: orders_for(clean_redis, linked), "its own team", 15)
    await poll_until(lambda: unflagged(console, linked), "the flag gone with the link judged")
    await asyncio.sleep(0.3)  # let any (wrong) second order show up
    view = (await console.get(f"/v1/incidents/{linked}", headers=ADMIN)).json()
    assert len(orders_for(clean_redis, linked)) == (1 if parent_ended else 0)
    assert view["status"] == ("assigned" if parent_ended else "linked")
    assert len(orders_for(clean_redis, parent)) == 1


async def test_a_linked_report_dead_lettered_before_its_link_was_judged_is_closed_by_the_room(
        console: httpx.AsyncClient, clean_redis: str, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The command room checks the incident the flagged report names: still going on, with
    # its team; the report is of it. Its flag went only with the replay's judgement (the
    # bug fixed, an administrator's replay) or a team sent to it (a second team to one
    # event): the room's close was refused, the report being `linked`. It closes it: the
    # flag goes, no team is sent, and a replay after sends none either.
    parent, linked, replay = await linked_given_up(console, clean_redis, publisher,
                                                   monkeypatch, parent_ended=False)
    r = await console.post(f"/v1/incidents/{linked}/close", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert await unflagged(console, linked)
    await replay()
    await poll_until(lambda: answers_handled(clean_redis, streams.INCIDENT_REPORTED.name),
                     "the replay handled", 15)
    await asyncio.sleep(0.3)  # let any (wrong) order show up
    view = (await console.get(f"/v1/incidents/{linked}", headers=ADMIN)).json()
    assert view["status"] == "closed" and view["flagged"] is False
    assert orders_for(clean_redis, linked) == []
    assert len(orders_for(clean_redis, parent)) == 1


async def test_a_lost_report_naming_no_district_tells_every_desk_only_that_it_was_lost(
        console: httpx.AsyncClient, clean_redis: str) -> None:
    # A dead letter whose report names no district is listed to every desk (none can be
    # told apart): that it was lost and when, nothing of what or where it was.
    body = reported(new_id("inc")).model_dump(mode="json")
    body.pop("district")
    body["location"]["address"] = "12 Minzu Avenue"
    async with Redis.from_url(clean_redis) as redis:
        await redis.xadd(streams.INCIDENT_REPORTED.dead_letters, {
            "payload": await envelope(json.dumps(body).encode()), "dead_at": "2026-12-06T14:00:00Z",
            "reason": "ValidationError"})
    [row] = (await not_handled(console))["reports"]
    assert row["incident_id"] == body["incident_id"] and row["dead_at"]
    assert all(row[k] is None for k in ("district", "category", "priority", "reported_at",
                                        "address")), row


async def lose(url: str, district: str, count: int = 1) -> list[str]:
    """`count` reports of `district` dead-lettered before dispatch made their incident, as
    the consumer writes them (the newest last); their incident ids."""
    ids = []
    async with Redis.from_url(url) as redis:
        for _ in range(count):
            body = reported(new_id("inc")).model_dump(mode="json") | {"district": district}
            await redis.xadd(streams.INCIDENT_REPORTED.dead_letters, {
                "payload": await envelope(json.dumps(body).encode()), "dead_at": utcnow().isoformat(),
                "reason": "RuntimeError", "group": "dispatch", "attempts": "5"})
            ids.append(body["incident_id"])
    return ids


@pytest.mark.roster(DISTRICT, "xixiangtang")
async def test_a_desk_sees_its_districts_lost_report_however_many_of_another_were_lost_since(
        console: httpx.AsyncClient, clean_redis: str) -> None:
    # The list read the newest 200 dead letters, then kept the desk's: another district's
    # 250 lost since (a bug in its rules, a flood) hid this district's lost report from its
    # desk, which saw none and had no way to look further back. The desk's districts are
    # kept while reading, however far back.
    [ours] = await lose(clean_redis, DISTRICT)
    theirs = await lose(clean_redis, "xixiangtang", 250)
    desk = await desk_token(console, [DISTRICT])
    for params in ({}, {"district": DISTRICT}):
        answer = await console.get("/v1/reports-not-handled", headers=desk, params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert [r["incident_id"] for r in page["reports"]] == [ours], params
        assert (page["count"], page["more"], page["next"]) == (1, False, None)
    # the administrator still sees every lost report, newest first
    answer = await console.get("/v1/reports-not-handled", headers=ADMIN, params={"limit": 500})
    assert [r["incident_id"] for r in answer.json()["reports"]] == [*reversed(theirs), ours]


@pytest.mark.roster(DISTRICT, "xixiangtang")
async def test_a_desk_pages_back_through_its_lost_reports_past_the_look_up_budget(
        console: httpx.AsyncClient, clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A page ends at `limit` reports (`next`), or when the budget of letters looked at is
    # spent (`next` and `scanned_to`, the time it reached back to); asked on with `after`,
    # the desk reaches every lost report of its district, each once.
    monkeypatch.setattr(api, "NOT_HANDLED_SCAN", 24)
    monkeypatch.setattr(api, "NOT_HANDLED_BATCH", 8)
    [oldest] = await lose(clean_redis, DISTRICT)
    await lose(clean_redis, "xixiangtang", 30)
    middle, newest = await lose(clean_redis, DISTRICT, 2)
    await lose(clean_redis, "xixiangtang", 5)
    desk = await desk_token(console, [DISTRICT])

    async def page(**params: Any) -> dict[str, Any]:
        answer = await console.get("/v1/reports-not-handled", headers=desk, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    first = await page(limit=2)
    assert [r["incident_id"] for r in first["reports"]] == [newest, middle]
    assert first["more"] is True and first["scanned_to"] is None
    # the next 24 letters looked at (three reads) are all another district's: the budget
    # ends the page
    second = await page(limit=2, after=first["next"])
    assert (second["reports"], second["count"], second["more"]) == ([], 0, True)
    async with Redis.from_url(clean_redis) as redis:
        letters = await redis.xrevrange(streams.INCIDENT_REPORTED.dead_letters)
    reached = streams.entry_id_order(letters[6 + 24][0])[0] / 1000  # the 24th after `middle`
    assert second["scanned_to"] == datetime.fromtimestamp(reached, UTC).isoformat()
    third = await page(limit=2, after=second["next"])
    assert [r["incident_id"] for r in third["reports"]] == [oldest]
    assert (third["next"], third["more"], third["scanned_to"]) == (None, False, None)
    # a page filled by the last of them says there is nothing more
    monkeypatch.setattr(api, "NOT_HANDLED_SCAN", 100)
    whole = await page(limit=3)
    assert [r["incident_id"] for r in whole["reports"]] == [newest, middle, oldest]
    assert (whole["next"], whole["more"], whole["scanned_to"]) == (None, False, None)
    # what is no cursor of this list is refused, naming `after`
    answer = await console.get("/v1/reports-not-handled", headers=desk,
                               params={"after": "18446744073709551616-0"})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "after"


async def test_a_linked_report_the_room_closed_as_a_duplicate_counts_once_in_the_review(
        console: httpx.AsyncClient, clean_redis: str, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The command room found the flagged report of the incident it was linked to and
    # closed it (the only way off the board that sends a duplicate no team). Its status
    # became `closed` and the review counted it as an incident of its own: the one noise
    # was two in the KPIs, their category, hour and zone, two on the heat map, and one
    # "never assigned, ended with no team" (a duplicate needs none). It is a duplicate
    # report, counted as one (`linked_reports`), as a linked report is.
    parent, linked, _ = await linked_given_up(console, clean_redis, publisher, monkeypatch,
                                              parent_ended=False)
    r = await console.post(f"/v1/incidents/{linked}/close", headers=ADMIN)
    assert r.status_code == 200, r.text
    kpis = (await console.get("/v1/kpis", headers=ADMIN, params={"district": DISTRICT})).json()
    assert (kpis["incidents"], kpis["linked_reports"]) == (1, 1), kpis
    assert kpis["by_category"] == {"noise": 1} and sum(kpis["by_hour"]) == 1
    assert kpis["never_assigned"]["incidents"] == 0 and kpis["by_status"] == {"assigned": 1}
    heat = (await console.get("/v1/heatmap", headers=ADMIN, params={"district": DISTRICT})).json()
    assert heat["incidents"] == 1
