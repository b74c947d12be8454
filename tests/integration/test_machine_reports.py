"""Reports from machines (a video-analytics platform, door access in urban villages) as the
command room sees them, across intake and dispatch.

The four services run in this process under uvicorn on one real Redis. Each test imports a
district of its own (random name), so the tests share the services only.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest
import pytest_asyncio

from tests.e2e.journey import district_roster
from tests.helpers import poll_until
from tests.integration.four_services import four_services

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN_TOKEN = f"machines-admin-{secrets.token_hex(8)}"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SCENE = (22.8300, 108.3300)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    http: httpx.AsyncClient
    urls: dict[str, str]

    def url(self, service: str, path: str) -> str:
        return self.urls[service] + path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(redis_url: str) -> AsyncIterator[World]:
    async with four_services(redis_url, ADMIN_TOKEN) as urls, \
            httpx.AsyncClient(timeout=10) as http:
        yield World(http, urls)


@dataclass
class District:
    world: World
    name: str
    desk: dict[str, str]  # a dispatcher of the district

    async def system(self, name: str) -> dict[str, str]:
        r = await self.world.http.post(self.world.url("intake", "/v1/systems"), headers=ADMIN,
                                       json={"name": name, "districts": [self.name]})
        assert r.status_code == 201, r.text
        return bearer(r.json()["api_key"])

    async def report(self, key: dict[str, str], **over: Any) -> dict[str, Any]:
        body = {"external_ref": f"ref-{uuid4().hex}", "category": "violence",
                "district": self.name, "location": {"lat": SCENE[0], "lon": SCENE[1]}, **over}
        r = await self.world.http.post(self.world.url("intake", "/v1/incidents"), headers=key,
                                       json=body)
        assert r.status_code == 202, r.text
        return dict(r.json())

    async def at_dispatch(self, incident_id: str) -> dict[str, Any]:
        """The incident as the district's dispatcher opens it, once dispatch has it."""
        async def known() -> dict[str, Any] | None:
            r = await self.world.http.get(
                self.world.url("dispatch", f"/v1/incidents/{incident_id}"), headers=self.desk)
            return r.json() if r.status_code == 200 else None

        return await poll_until(known, f"dispatch holding {incident_id}")

    async def board(self, **params: str) -> list[dict[str, Any]]:
        r = await self.world.http.get(self.world.url("dispatch", "/v1/incidents"),
                                      headers=self.desk,
                                      params={"district": self.name, "limit": "200"} | params)
        assert r.status_code == 200, r.text
        return list(r.json()["incidents"])


async def new_district(world: World) -> District:
    name = f"d{uuid4().hex[:8]}"
    r = await world.http.post(world.url("volunteers", "/v1/roster/import"), headers=ADMIN,
                              json=district_roster(name, SCENE))
    assert r.status_code == 200, r.text
    r = await world.http.post(world.url("dispatch", "/v1/dispatchers"), headers=ADMIN,
                              json={"name": "Duty desk", "districts": [name]})
    assert r.status_code == 201, r.text
    return District(world, name, bearer(r.json()["token"]))


async def test_the_dispatcher_reads_which_system_reported_a_camera_s_alert_or_a_call(
        world: World) -> None:
    # At 03:00 a fight "detected" by a camera (often a false alarm: people dancing) and a
    # fight a caller describes on 110 look alike on the board: no caller on either once the
    # call-taker leaves the field empty. The dispatcher tells them apart by the system that
    # reported each, by its name, not by an id only intake's administrator can look up.
    d = await new_district(world)
    video, calls = await d.system("Skynet video analytics"), await d.system("110 call-taking")
    alert = await d.report(video, flags=["in_progress"])
    call = await d.report(calls, location={"lat": SCENE[0] + 0.01, "lon": SCENE[1]})
    assert (await d.at_dispatch(alert["incident_id"]))["system_name"] == "Skynet video analytics"
    assert (await d.at_dispatch(call["incident_id"]))["system_name"] == "110 call-taking"
    rows = {row["incident_id"]: row.get("system_name") for row in await d.board()}
    assert rows == {alert["incident_id"]: "Skynet video analytics",
                    call["incident_id"]: "110 call-taking"}


async def test_an_alarm_a_camera_repeats_does_not_push_another_incident_off_the_board(
        world: World) -> None:
    # A forced door at 03:00, its guard on the way; then a camera down the street sees a
    # crowd and says so every second. Each repeat is linked to the camera's first alert (no
    # team sent), and each was a row of the board, newest first: a page of them (the
    # console asks for 200) and the forced door, open and unflagged, was on none of it, nor
    # on the console's map. The board asked without linked reports keeps every incident
    # on it; the repeats are on the alert's timeline, and asked for by status.
    d = await new_district(world)
    video, doors = await d.system("Skynet video analytics"), await d.system("Door access")
    door = await d.report(doors, category="suspicious", flags=["door_forced"],
                          location={"lat": SCENE[0] + 0.01, "lon": SCENE[1]})
    crowd = await d.report(video, category="suspicious", flags=["crowding"])
    repeats = [await d.report(video, category="suspicious", flags=["crowding"])
               for _ in range(12)]
    assert {r.get("linked_to") for r in repeats} == {crowd["incident_id"]}
    await d.at_dispatch(repeats[-1]["incident_id"])
    page = await d.board(order="received", limit="10", linked="false")
    assert [row["incident_id"] for row in page] == [crowd["incident_id"], door["incident_id"]]
    linked = await d.board(order="received", status="linked")
    assert {row["incident_id"] for row in linked} == {r["incident_id"] for r in repeats}
    # asked as before (no `linked`), the board lists them all, as it always did
    assert len(await d.board(order="received")) == 14


async def linked_in(d: District, parent: str, report: dict[str, Any]) -> None:
    """Waits until dispatch has put `report`, linked to `parent`, on parent's timeline:
    reports handled one after the other (dispatch reads several at once)."""
    assert report.get("linked_to") == parent, report

    async def told() -> bool:
        view = await d.at_dispatch(parent)
        return any((e.get("detail_args") or {}).get("report") == report["incident_id"]
                   for e in view["timeline"])

    await poll_until(told, f"{report['incident_id']} on {parent}'s timeline")


async def test_the_incident_lists_its_linked_reports_by_who_reported_them(
        world: World) -> None:
    # A camera sees a fight and repeats its alert; in between, a 110 caller at the same
    # corner says the man now has a knife. The board leaves every linked report out
    # (linked=false), so what the caller said, who they are and whether the call is of this
    # fight at all (a mis-link the dispatcher must undo) is found on the incident or
    # nowhere: its view lists its linked reports by who reported them (the camera's repeats
    # as one source, folded where they say the same; the caller as another), and its row
    # on the board counts them, with the sources other than the incident's own reporter.
    d = await new_district(world)
    video, calls = await d.system("Skynet video analytics"), await d.system("110 call-taking")
    fight = await d.report(video, flags=["in_progress"], description="fight, 3 persons")
    parent = fight["incident_id"]
    repeats = []
    for _ in range(3):
        repeats.append(await d.report(video, flags=["in_progress"],
                                      description="fight, 3 persons"))
        await linked_in(d, parent, repeats[-1])
    call = await d.report(calls, flags=["weapon"], description="now he has a knife",
                          caller={"phone": "13800000000", "name": "Zhang San"})
    await linked_in(d, parent, call)
    repeats.append(await d.report(video, flags=["in_progress"],
                                  description="fight, 3 persons"))
    await linked_in(d, parent, repeats[-1])

    view = await d.at_dispatch(parent)
    camera, caller = view["linked_reports"]
    assert (camera["system_name"], camera["own_source"], camera["count"], camera["caller"]) == (
        "Skynet video analytics", True, 4, None)
    [account] = camera["accounts"]
    assert (account["incident_id"], account["repeats"], account["last_incident_id"],
            account["description"], account["flags"]) == (
        repeats[0]["incident_id"], 3, repeats[-1]["incident_id"], "fight, 3 persons",
        ["in_progress"])
    assert (caller["system_name"], caller["own_source"], caller["count"]) == (
        "110 call-taking", False, 1)
    assert caller["caller"] == {"phone": "13800000000", "name": "Zhang San"}
    [said] = caller["accounts"]
    assert (said["incident_id"], said["description"], said["flags"], said["repeats"]) == (
        call["incident_id"], "now he has a knife", ["weapon"], 0)
    [row] = [r for r in await d.board(linked="false") if r["incident_id"] == parent]
    assert row["reports_linked"] == {"count": 5, "sources": 2, "other_sources": 1}

    # the call was of another fight: unlinked, it leaves the list and the count
    r = await world.http.post(world.url("dispatch", f"/v1/incidents/{call['incident_id']}"
                                                   "/unlink"), headers=d.desk, json={})
    assert r.status_code == 200, r.text
    view = await d.at_dispatch(parent)
    assert [g["system_name"] for g in view["linked_reports"]] == ["Skynet video analytics"]
    [row] = [r for r in await d.board(linked="false") if r["incident_id"] == parent]
    assert row["reports_linked"] == {"count": 4, "sources": 1, "other_sources": 0}


async def test_a_camera_s_repeats_are_one_line_of_the_timeline_and_a_caller_its_own(
        world: World) -> None:
    # An hour of a camera repeating its alert every second was 3,600 lines "another report
    # linked" on the incident's timeline, each as the others, and the line of a caller's
    # call among them one to find. Asked as the console asks (repeats=collapsed), each run
    # of repeats of one source is one line, with how many more and until when; a report
    # from another source stays a line of its own. The timeline asked as before is whole.
    d = await new_district(world)
    video, calls = await d.system("Skynet video analytics"), await d.system("110 call-taking")
    parent = (await d.report(video))["incident_id"]
    before, after = [], []
    for _ in range(4):
        before.append(await d.report(video))
        await linked_in(d, parent, before[-1])
    call = await d.report(calls, caller={"phone": "13900000000"})
    await linked_in(d, parent, call)
    for _ in range(2):
        after.append(await d.report(video))
        await linked_in(d, parent, after[-1])

    def lines(view: dict[str, Any]) -> list[tuple[str, str, int, str | None]]:
        return [(e["detail_args"]["report"], e["report_source"]["system_name"],
                 (e.get("repeats") or {}).get("count", 0),
                 (e.get("repeats") or {}).get("last_report"))
                for e in view["timeline"] if e.get("detail_code") == "report_linked"]

    r = await world.http.get(world.url("dispatch", f"/v1/incidents/{parent}"),
                             headers=d.desk, params={"repeats": "collapsed"})
    assert r.status_code == 200, r.text
    assert lines(r.json()) == [
        (before[0]["incident_id"], "Skynet video analytics", 3, before[-1]["incident_id"]),
        (call["incident_id"], "110 call-taking", 0, None),
        (after[0]["incident_id"], "Skynet video analytics", 1, after[-1]["incident_id"])]
    [folded] = [e for e in r.json()["timeline"] if e.get("detail_code") == "report_linked"][:1]
    assert folded["repeats"]["last_at"] >= folded["at"]
    whole = lines(await d.at_dispatch(parent))
    assert [report for report, *_ in whole] == [
        x["incident_id"] for x in (*before, call, *after)]
