"""The command room judges a linked report not a duplicate (two fights 150 m apart, a door
alarm at the next building): it assigns a team to it (`POST /v1/incidents/{id}/assign`) or
has it dispatched as any new incident is (`POST /v1/incidents/{id}/unlink`). The report is
then an incident of its own; the incident it was linked to is told. In-process, real Redis."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.dispatch import store
from services.dispatch.engine import Dispatcher
from shared import streams
from shared.events import IncidentReported, new_id, utcnow
from shared.http import conflict
from tests.helpers import poll_until

from .conftest import fail_a_write_once, fail_once
from .test_duty import dispatcher
from .test_engine import DISTRICT, SCENE, orders_for, report, team, wait_for_units
from .test_linked import duplicate_of, status, updates
from .test_linked_to_an_unknown_incident import due_now, timer_set

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def a_report_linked_to_a_noise_complaint(url: str, publisher: RedisBroker,
                                                *, free: tuple[str, ...] = ("t2",)
                                                ) -> tuple[str, str]:
    """A noise complaint with guard t1 on it, teams `free` free nearby, and a second report
    intake linked to it: (the incident, the report)."""
    await team(publisher, "t1", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(url, 1)
    parent = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: orders_for(url, parent), "the guard's order")
    for n, team_id in enumerate(free):
        await team(publisher, team_id, kind="security", lat=22.8180 + n * 0.001, lon=108.3665)
    await wait_for_units(url, 1 + len(free))
    linked = await duplicate_of(publisher, parent)
    await poll_until(lambda: status(url, linked) == "linked", "the report linked")
    return parent, linked


async def incident(console: httpx.AsyncClient, incident_id: str) -> dict[str, Any]:
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


def details(view: dict[str, Any], kind: str) -> list[str]:
    return [e["detail"] for e in view["timeline"] if e["kind"] == kind]


async def audited(console: httpx.AsyncClient, action: str) -> list[dict[str, str]]:
    r = await console.get("/v1/admin/audit", headers=ADMIN)
    return [e for e in r.json()["entries"] if e["action"] == action]


async def test_a_team_assigned_to_a_linked_report_makes_it_an_incident_of_its_own(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # Before: 409, and the second fight had nobody.
    parent, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher)
    r = await console.post(f"/v1/incidents/{linked}/assign", headers=ADMIN,
                           json={"team_id": "t2"})
    assert r.status_code == 200, r.text
    order_id = r.json()["order_id"]
    [order] = orders_for(clean_redis, linked)
    assert (order.order_id, order.team_id, order.kind) == (order_id, "t2", "manual")
    assert status(clean_redis, linked) == "assigned"

    mine = await incident(console, linked)
    assert mine["linked_to"] is None
    assert details(mine, "unlinked") == [f"not a duplicate of {parent}: unlinked by admin:admin"]
    # what intake's view follows: no longer linked, its status its order's
    seen = updates(clean_redis, linked)
    unlinked = next(u for u in seen if u.entry.kind == "unlinked")
    assert unlinked.status != "linked" and unlinked.linked_to is None
    assert seen[-1].status == "assigned" and seen[-1].linked_to is None
    told = f"report {linked} is not a duplicate of this incident: unlinked by admin:admin"
    assert details(await incident(console, parent), "note").count(told) == 1
    assert [e["detail"] for e in await audited(console, "incident.assign")] == [
        f"team t2, order {order_id}, unlinked from {parent}"]

    # asked again (the answer lost): the same order, nothing twice
    again = await console.post(f"/v1/incidents/{linked}/assign", headers=ADMIN,
                               json={"team_id": "t2"})
    assert again.status_code == 200 and again.json()["order_id"] == order_id
    assert len(orders_for(clean_redis, linked)) == 1
    assert len(details(await incident(console, linked), "unlinked")) == 1
    assert details(await incident(console, parent), "note").count(told) == 1

    # its backstop (on_unlinked_due), due: an unlink finished is left as it is
    due_now(clean_redis, f"unlinked:{linked}")
    await poll_until(lambda: not timer_set(clean_redis, f"unlinked:{linked}"), "the timer done")
    assert [o.order_id for o in orders_for(clean_redis, linked)] == [order_id]
    assert status(clean_redis, linked) == "assigned"
    assert details(await incident(console, parent), "note").count(told) == 1


@pytest.mark.roster("qingxiu")
async def test_unlink_dispatches_the_report_as_any_new_incident_and_once(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    parent, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher)
    wang, desk = await dispatcher(console, "Wang Lei")
    r = await console.post(f"/v1/incidents/{linked}/unlink", headers=desk,
                           json={"note": "second caller is at No. 14, another fight"})
    assert r.status_code == 200, r.text
    assert r.json()["incident_id"] == linked and r.json()["unlinked_from"] == parent
    [order] = await poll_until(lambda: orders_for(clean_redis, linked), "its own team")
    assert (order.team_id, order.kind) == ("t2", "dispatch")  # the nearest free, by policy
    assert status(clean_redis, linked) == "assigned"
    mine = await incident(console, linked)
    [entry] = [e for e in mine["timeline"] if e["kind"] == "unlinked"]
    assert entry["detail"] == f"not a duplicate of {parent}: unlinked by dispatcher:{wang}"
    assert entry["note"] == "second caller is at No. 14, another fight"
    assert [(e["who"], e["target"], e["detail"]) for e in await audited(
        console, "incident.unlink")] == [(f"dispatcher:{wang}", linked, f"from {parent}")]

    again = await console.post(f"/v1/incidents/{linked}/unlink", headers=desk, json={})
    assert again.status_code == 200, again.text
    assert again.json()["unlinked_from"] == parent
    assert len(orders_for(clean_redis, linked)) == 1
    assert len(details(await incident(console, linked), "unlinked")) == 1
    assert [e["detail"] for e in await audited(console, "incident.unlink")] == [
        f"from {parent}, already unlinked", f"from {parent}"]
    told = f"report {linked} is not a duplicate of this incident: unlinked by dispatcher:{wang}"
    assert details(await incident(console, parent), "note").count(told) == 1
    assert len(orders_for(clean_redis, parent)) == 1  # the first incident keeps its guard


async def test_an_unlink_that_failed_after_its_write_is_finished_when_asked_again(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    parent, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher)
    failed = fail_once(monkeypatch, Dispatcher, "_fill",
                       lambda _engine, incident_id, *_, **__: incident_id == linked)
    r = await console.post(f"/v1/incidents/{linked}/unlink", headers=ADMIN)
    assert r.status_code == 503 and failed == ["failed"]
    assert status(clean_redis, linked) == "dispatching"  # unlinked, waiting for a team
    r = await console.post(f"/v1/incidents/{linked}/unlink", headers=ADMIN)
    assert r.status_code == 200, r.text
    await poll_until(lambda: orders_for(clean_redis, linked), "its own team")
    assert len(details(await incident(console, linked), "unlinked")) == 1


async def test_an_unlink_whose_step_died_after_its_write_is_flagged_when_nobody_asks_again(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # No team free. The desk unlinks the report and dispatch dies after the unlink's write,
    # before the report's orders; nobody asks again. Before: the report stayed `dispatching`,
    # not flagged, for as long as no team it may get came free, and the command room was
    # never told it waits with nobody (every other step leaves it unassigned and flagged).
    parent, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher, free=())
    failed = fail_once(monkeypatch, Dispatcher, "_fill",
                       lambda _engine, incident_id, *_, **__: incident_id == linked)
    r = await console.post(f"/v1/incidents/{linked}/unlink", headers=ADMIN)
    assert r.status_code == 503 and failed == ["failed"]
    mine = await incident(console, linked)
    assert (mine["status"], mine["flagged"]) == ("dispatching", False)

    due_now(clean_redis, f"unlinked:{linked}")  # a while on, nobody having asked again
    await poll_until(lambda: status(clean_redis, linked) == "unassigned", "the report finished")
    mine = await incident(console, linked)
    assert mine["flagged"] is True
    assert len(details(mine, "unlinked")) == 1
    told = f"report {linked} is not a duplicate of this incident: unlinked by admin:admin"

    async def parent_told() -> bool:
        return details(await incident(console, parent), "note").count(told) == 1

    await poll_until(parent_told, "the incident it was linked to told")
    await poll_until(lambda: not timer_set(clean_redis, f"unlinked:{linked}"), "the timer done")


async def test_an_unlink_whose_step_died_before_announcing_its_offers_has_them_announced(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A fight (police and security) and a second report of one linked to it; unlinked, its
    # search offered it a police and a security team (their orders written, each team
    # claimed), and dispatch died before the write that announces both; nobody asks again.
    # Before: both teams held by orders their phones never got, with no deadline, and the
    # report `dispatching`, unflagged.
    for team_id, kind, lat in (("p1", "police", 22.8171), ("s1", "security", 22.8172),
                               ("p2", "police", 22.8180), ("s2", "security", 22.8181)):
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665)
    await wait_for_units(clean_redis, 4)
    parent = await report(publisher, "violence", priority="P1")
    await poll_until(lambda: len(orders_for(clean_redis, parent)) == 2, "the fight's two teams")
    linked = new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=linked, system_id="sys", external_ref=linked,
        category="violence", priority="P1", location=SCENE, reported_at=utcnow(),
        linked_to=parent), stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: status(clean_redis, linked) == "linked", "the report linked")
    failed = fail_a_write_once(monkeypatch, "order.issued")
    r = await console.post(f"/v1/incidents/{linked}/unlink", headers=ADMIN)
    assert r.status_code == 503 and failed == ["failed"], r.text
    assert status(clean_redis, linked) == "dispatching" and orders_for(clean_redis, linked) == []
    client = Redis.from_url(clean_redis, decode_responses=True)
    try:
        held = {team_id: await store.claim_of(client, team_id) for team_id in ("p2", "s2")}
    finally:
        await client.aclose()
    assert all(held.values()), held  # claimed by the report's unannounced offers

    due_now(clean_redis, f"unlinked:{linked}")
    await poll_until(lambda: {o.team_id for o in orders_for(clean_redis, linked)} == {"p2", "s2"},
                     "its offers announced")
    await poll_until(lambda: status(clean_redis, linked) == "assigned", "the report assigned")


async def test_an_assignment_whose_step_died_after_the_unlink_is_flagged_when_nobody_asks_again(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The desk assigns t2 to the report; dispatch dies after the unlink, before the order,
    # and the desk sends t2 to the first incident instead of asking again: the report, an
    # incident of its own, waits with nobody free. Before: `dispatching` and not flagged.
    parent, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher)
    failed = fail_once(monkeypatch, Dispatcher, "_assign",
                       lambda _engine, incident_id, *_, **__: incident_id == linked)
    r = await console.post(f"/v1/incidents/{linked}/assign", headers=ADMIN,
                           json={"team_id": "t2"})
    assert r.status_code == 503 and failed == ["failed"], r.text
    assert status(clean_redis, linked) == "dispatching" and orders_for(clean_redis, linked) == []
    r = await console.post(f"/v1/incidents/{parent}/assign", headers=ADMIN,
                           json={"team_id": "t2"})
    assert r.status_code == 200, r.text

    due_now(clean_redis, f"unlinked:{linked}")
    await poll_until(lambda: status(clean_redis, linked) == "unassigned", "the report finished")
    mine = await incident(console, linked)
    assert mine["flagged"] is True and orders_for(clean_redis, linked) == []
    told = f"report {linked} is not a duplicate of this incident: unlinked by admin:admin"
    assert details(await incident(console, parent), "note").count(told) == 1


async def test_a_busy_team_leaves_the_report_linked(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # t1 is on the first incident: without reassign the answer is the usual 409, and the
    # report is as it was (not unlinked with nobody sent)
    parent, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher)
    r = await console.post(f"/v1/incidents/{linked}/assign", headers=ADMIN,
                           json={"team_id": "t1"})
    assert r.status_code == 409 and "reassign" in r.json()["error"]["message"], r.text
    assert status(clean_redis, linked) == "linked"
    assert updates(clean_redis, linked)[-1].status == "linked"

    # moved with reassign: the report gets t1, the first incident its next candidate (t2)
    r = await console.post(f"/v1/incidents/{linked}/assign", headers=ADMIN,
                           json={"team_id": "t1", "reassign": True})
    assert r.status_code == 200, r.text
    assert [o.team_id for o in orders_for(clean_redis, linked)] == ["t1"]
    assert status(clean_redis, linked) == "assigned"
    await poll_until(lambda: [o.team_id for o in orders_for(clean_redis, parent)] == ["t1", "t2"],
                     "the first incident's next team")
    mine = await incident(console, linked)
    assert len(details(mine, "unlinked")) == 1


async def test_a_report_unlinked_whose_team_was_taken_meanwhile_is_dispatched_all_the_same(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The team was free when asked, and claimed by another incident before its order: the
    # report, an incident of its own by then, gets what any incident gets, not nothing.
    _, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher)
    real = Dispatcher._assign

    async def taken(self: Dispatcher, incident_id: str, team_id: str, **kw: Any) -> Any:
        if incident_id == linked:
            raise conflict(f"team {team_id} was being given another order; ask again")
        return await real(self, incident_id, team_id, **kw)

    monkeypatch.setattr(Dispatcher, "_assign", taken)
    r = await console.post(f"/v1/incidents/{linked}/assign", headers=ADMIN,
                           json={"team_id": "t2"})
    assert r.status_code == 409, r.text
    [order] = await poll_until(lambda: orders_for(clean_redis, linked), "its own team")
    assert order.kind == "dispatch"


async def test_an_assign_that_failed_after_unlinking_is_finished_when_its_team_is_taken(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The assignment unlinked the report, then Redis went away (503) before the incident it
    # was linked to was told and before the order; the desk asks again once t2 went
    # elsewhere (409). Before: the report stayed `dispatching` with no team and no flag
    # (the retry judged by the report's status, no longer `linked`), its incident never told.
    parent, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher)
    failed = fail_once(monkeypatch, Dispatcher, "_tell_unlinked")
    r = await console.post(f"/v1/incidents/{linked}/assign", headers=ADMIN,
                           json={"team_id": "t2"})
    assert r.status_code == 503 and failed == ["failed"], r.text
    assert status(clean_redis, linked) == "dispatching" and orders_for(clean_redis, linked) == []
    r = await console.post(f"/v1/incidents/{parent}/assign", headers=ADMIN,
                           json={"team_id": "t2"})
    assert r.status_code == 200, r.text

    r = await console.post(f"/v1/incidents/{linked}/assign", headers=ADMIN,
                           json={"team_id": "t2"})
    assert r.status_code == 409, r.text
    mine = await incident(console, linked)
    assert (mine["status"], mine["flagged"]) == ("unassigned", True)  # no team free: told
    assert len(details(mine, "unlinked")) == 1
    told = f"report {linked} is not a duplicate of this incident: unlinked by admin:admin"
    assert details(await incident(console, parent), "note").count(told) == 1


@pytest.mark.roster("qingxiu", "another-district")
async def test_who_may_unlink_and_what(clean_redis: str, console: httpx.AsyncClient,
                                       publisher: RedisBroker) -> None:
    parent, linked = await a_report_linked_to_a_noise_complaint(clean_redis, publisher)
    r = await console.post("/v1/dispatchers", headers=ADMIN, json={
        "name": "Inspector Li", "districts": ["qingxiu"], "role": "inspector"})
    inspector = {"Authorization": f"Bearer {r.json()['token']}"}
    for path, body in ((f"/v1/incidents/{linked}/unlink", {}),
                       (f"/v1/incidents/{linked}/assign", {"team_id": "t2"})):
        r = await console.post(path, headers=inspector, json=body)
        assert r.status_code == 403, r.text
    _, elsewhere = await dispatcher(console, "Zhao", ("another-district",))
    r = await console.post(f"/v1/incidents/{linked}/unlink", headers=elsewhere)
    assert r.status_code == 403, r.text
    assert status(clean_redis, linked) == "linked"
    r = await console.post("/v1/incidents/inc_nope/unlink", headers=ADMIN)
    assert r.status_code == 404, r.text
    r = await console.post(f"/v1/incidents/{parent}/unlink", headers=ADMIN)
    assert r.status_code == 409 and "not a linked report" in r.json()["error"]["message"]
    r = await console.post(f"/v1/incidents/{linked}/unlink", headers=ADMIN,
                           json={"note": "x" * 501})
    assert r.status_code == 422 and r.json()["error"]["field"] == "note", r.text
