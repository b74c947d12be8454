"""The duty leader (首接首办: whoever receives an incident first owns it until done), in-process
against a real Redis: the dispatcher who leads a district's duty when an incident comes in is
its supervisor for good, also after the next one takes over; the board finds a supervisor's
incidents; who may take the duty, and a revoked dispatcher leaving it."""

from __future__ import annotations

import httpx
import pytest
from faststream.redis import RedisBroker

from tests.helpers import poll_until

from .test_close import ADMIN
from .test_engine import DISTRICT, report

# Desk tokens are made for districts whose roster volunteers (stood in) holds.
pytestmark = pytest.mark.roster(DISTRICT, "xixiangtang")


async def dispatcher(console: httpx.AsyncClient, name: str,
                     districts: tuple[str, ...] = (DISTRICT,)) -> tuple[str, dict[str, str]]:
    r = await console.post("/v1/dispatchers", headers=ADMIN,
                           json={"name": name, "districts": list(districts)})
    assert r.status_code == 201, r.text
    return r.json()["dispatcher_id"], {"Authorization": f"Bearer {r.json()['token']}"}


async def reported(console: httpx.AsyncClient, publisher: RedisBroker) -> dict:
    incident_id = await report(publisher, "noise", priority="P4")

    async def stored() -> dict | None:
        r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        return r.json() if r.status_code == 200 else None

    return await poll_until(stored, "the incident stored")


async def board(console: httpx.AsyncClient, headers: dict[str, str], supervisor: str) -> set[str]:
    r = await console.get("/v1/incidents", headers=headers,
                          params={"district": DISTRICT, "supervisor": supervisor})
    assert r.status_code == 200, r.text
    return {i["incident_id"] for i in r.json()["incidents"]}


async def test_whoever_leads_the_duty_when_it_comes_in_supervises_it_until_done(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    before = await reported(console, publisher)
    assert before["supervisor"] is None  # nobody on duty yet

    wang, wang_desk = await dispatcher(console, "Wang Lei")
    li, li_desk = await dispatcher(console, "Li Na")
    r = await console.put(f"/v1/duty/{DISTRICT}", headers=wang_desk, json={})
    assert r.status_code == 200, r.text
    assert (r.json()["duty"]["dispatcher_id"], r.json()["previous"]) == (wang, None)
    first = await reported(console, publisher)
    assert first["supervisor"] == {"dispatcher_id": wang, "name": "Wang Lei"}
    # Take duty pressed again (or the PUT retried): the duty Wang leads is the same one, since
    # the same time (the console's "on duty since"), and no change of duty is audited
    began = r.json()["duty"]["since"]
    again = await console.put(f"/v1/duty/{DISTRICT}", headers=wang_desk, json={})
    assert again.status_code == 200, again.text
    assert again.json()["duty"] == {"dispatcher_id": wang, "name": "Wang Lei", "since": began}
    assert again.json()["previous"] == again.json()["duty"]
    r = await console.get("/v1/admin/audit", headers=ADMIN)
    assert [e["detail"] for e in r.json()["entries"] if e["action"] == "duty.take"] == [
        f"{wang} after nobody"]

    r = await console.put(f"/v1/duty/{DISTRICT}", headers=li_desk, json={})  # the next shift
    assert r.json()["previous"]["dispatcher_id"] == wang
    second = await reported(console, publisher)
    assert second["supervisor"]["dispatcher_id"] == li
    r = await console.get(f"/v1/incidents/{first['incident_id']}", headers=li_desk)
    assert r.json()["supervisor"]["dispatcher_id"] == wang  # still Wang's until done
    r = await console.get(f"/v1/duty/{DISTRICT}", headers=wang_desk)
    assert r.json()["duty"]["name"] == "Li Na"

    assert await board(console, wang_desk, "me") == {first["incident_id"]}
    assert await board(console, li_desk, "me") == {second["incident_id"]}
    assert await board(console, ADMIN, wang) == {first["incident_id"]}


async def test_who_may_take_the_duty_and_a_revoked_leader_leaves_it(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    wang, wang_desk = await dispatcher(console, "Wang Lei")
    elsewhere, elsewhere_desk = await dispatcher(console, "Zhao", ("xixiangtang",))
    url = f"/v1/duty/{DISTRICT}"
    r = await console.put(url, headers=elsewhere_desk, json={})
    assert r.status_code == 403  # not their district
    r = await console.put(url, headers=wang_desk, json={"dispatcher_id": elsewhere})
    assert r.status_code == 403  # a dispatcher takes it for themselves only
    r = await console.put(url, headers=ADMIN, json={})
    assert r.status_code == 422 and r.json()["error"]["field"] == "dispatcher_id"
    r = await console.put(url, headers=ADMIN, json={"dispatcher_id": elsewhere})
    assert r.status_code == 409  # Zhao does not cover the district
    r = await console.put(url, headers=ADMIN, json={"dispatcher_id": "dsp_nobody"})
    assert r.status_code == 404
    r = await console.put(url, json={})
    assert r.status_code == 401
    r = await console.put(url, headers=ADMIN, json={"dispatcher_id": wang})  # the admin names him
    assert r.status_code == 200 and r.json()["duty"]["name"] == "Wang Lei"

    assert (await console.delete(f"/v1/dispatchers/{wang}", headers=ADMIN)).status_code == 204
    assert (await console.get(url, headers=ADMIN)).json()["duty"] is None
    after = await reported(console, publisher)
    assert after["supervisor"] is None
    r = await console.get("/v1/admin/audit", headers=ADMIN)
    taken = [e for e in r.json()["entries"] if e["action"] == "duty.take"]
    assert [(e["who"], e["target"], e["detail"]) for e in taken] == [
        ("admin:admin", DISTRICT, f"{wang} after nobody")]
    # every change of duty is in the audit log (docs/operations.md): also its end with the
    # leader's token; the revocation names the districts it covered
    ended = [e for e in r.json()["entries"] if e["action"] == "duty.end"]
    assert [(e["who"], e["target"], e["detail"]) for e in ended] == [
        ("admin:admin", DISTRICT, f"{wang}: dispatcher revoked")]
    (revoked,) = [e for e in r.json()["entries"] if e["action"] == "dispatcher.revoke"]
    assert revoked["target"] == wang and revoked["detail"] == f"districts {DISTRICT}"


async def test_an_inspector_reads_every_case_of_their_districts_and_changes_nothing(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id = (await reported(console, publisher))["incident_id"]
    r = await console.post("/v1/dispatchers", headers=ADMIN, json={
        "name": "Inspector Sun", "districts": [DISTRICT], "role": "inspector"})
    assert r.status_code == 201, r.text
    inspector_id = r.json()["dispatcher_id"]
    desk = {"Authorization": f"Bearer {r.json()['token']}"}
    _, elsewhere = await dispatcher(console, "Zhao", ("xixiangtang",))

    for path in (f"/v1/incidents?district={DISTRICT}", f"/v1/incidents/{incident_id}",
                 f"/v1/units?district={DISTRICT}", f"/v1/kpis?district={DISTRICT}",
                 f"/v1/heatmap?district={DISTRICT}", f"/v1/duty/{DISTRICT}",
                 f"/v1/incidents?district={DISTRICT}&problem=routing_timeout"):
        r = await console.get(path, headers=desk)
        assert r.status_code == 200, (path, r.text)
    r = await console.get("/v1/me", headers=desk)
    assert r.json() == {"kind": "inspector", "dispatcher_id": inspector_id,
                        "name": "Inspector Sun", "districts": [DISTRICT], "agency_id": None}
    assert (await console.get("/v1/me", headers=ADMIN)).json()["kind"] == "admin"
    assert (await console.get("/v1/me", headers=elsewhere)).json()["kind"] == "dispatcher"
    r = await console.get("/v1/kpis", headers=desk)
    assert r.status_code == 422 and r.json()["error"]["field"] == "district"
    # said in English, as to a dispatcher ("a dispatcher"): it read "a inspector"
    assert r.json()["error"]["message"] == "district is required for an inspector"
    r = await console.get("/v1/kpis?district=xixiangtang", headers=desk)
    assert r.status_code == 403
    # named as the desk it is: it read "this dispatcher does not cover ..." to an inspector
    assert r.json()["error"]["message"] == "this inspector does not cover district 'xixiangtang'"
    r = await console.get(f"/v1/incidents/{incident_id}", headers=elsewhere)
    assert r.status_code == 403  # a dispatcher of another district, for comparison

    for method, path, body in (
            ("POST", f"/v1/incidents/{incident_id}/assign", {"team_id": "t1"}),
            ("POST", f"/v1/incidents/{incident_id}/close", None),
            ("POST", f"/v1/incidents/{incident_id}/evidence",
             {"evidence": [{"kind": "video", "ref": "v"}]}),
            ("PUT", f"/v1/duty/{DISTRICT}", {}),
            ("PATCH", f"/v1/incidents/{incident_id}", {"priority": "P1"}),
            ("POST", "/v1/orders/ord_x/withdraw", {}),
            ("POST", f"/v1/incidents/{incident_id}/remarks", {"note": "x"}),
            ("POST", "/v1/dispatchers", {"name": "x", "districts": [DISTRICT]})):
        r = await console.request(method, path, headers=desk, json=body)
        assert r.status_code == 403, (path, r.text)
    r = await console.put(f"/v1/duty/{DISTRICT}", headers=ADMIN,
                          json={"dispatcher_id": inspector_id})
    assert r.status_code == 409  # an inspector supervises no duty
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.json()["status"] != "closed"
    r = await console.get("/v1/dispatchers", headers=ADMIN)
    assert {d["name"]: d["role"] for d in r.json()["dispatchers"]} == {
        "Inspector Sun": "inspector", "Zhao": "dispatcher"}


async def test_a_desk_covers_districts_named_as_everywhere_else(console: httpx.AsyncClient) -> None:
    for bad in ("", "d" * 65):
        r = await console.post("/v1/dispatchers", headers=ADMIN,
                               json={"name": "Zhao", "districts": [bad]})
        assert r.status_code == 422 and r.json()["error"]["field"] == "districts.0", r.text


async def test_a_desk_is_made_only_for_districts_whose_roster_was_imported(
        console: httpx.AsyncClient) -> None:
    # A desk for a misspelt district, or one never imported, looked at a board no report of
    # the district's reached, while the district's own reports waited on nobody's.
    r = await console.post("/v1/dispatchers", headers=ADMIN,
                           json={"name": "Zhao", "districts": [DISTRICT, "Xixiangtang"]})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "districts.1")
    assert f"{DISTRICT}, xixiangtang" in error["message"], error
    assert "POST /v1/roster/import" in error["message"] and "Xixiangtang" not in error["message"]
    assert (await console.get("/v1/dispatchers", headers=ADMIN)).json()["count"] == 0
    await dispatcher(console, "Zhao", (DISTRICT, "xixiangtang"))


async def test_a_dispatcher_takes_the_duty_and_takes_an_order_back_without_a_body(
        clean_redis: str, console: httpx.AsyncClient) -> None:
    """operations.md: a dispatcher takes a district's duty with `PUT /v1/duty/{district}`
    (only an admin names someone in a body), and an order's `{"note"}` is optional: a
    request without a body is that request, not a 422 asking for `{}`."""
    wang, wang_desk = await dispatcher(console, "Wang Lei")
    r = await console.put(f"/v1/duty/{DISTRICT}", headers=wang_desk)
    assert r.status_code == 200, r.text
    assert r.json()["duty"]["dispatcher_id"] == wang
    r = await console.put(f"/v1/duty/{DISTRICT}", headers=ADMIN)  # the admin names one
    assert (r.status_code, r.json()["error"]["field"]) == (422, "dispatcher_id")
    # ... of a district the roster holds: one it does not is named first
    r = await console.put("/v1/duty/nowhere", headers=ADMIN)
    assert (r.status_code, r.json()["error"]["field"]) == (422, "district"), r.text
    assert f"holds {DISTRICT}, xixiangtang " in r.json()["error"]["message"], r.text
    r = await console.put("/v1/duty/nowhere", headers=ADMIN, json={"dispatcher_id": wang})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "district"), r.text
    r = await console.put("/v1/duty/nowhere", headers=wang_desk)  # not his, as any other
    assert r.status_code == 403, r.text
    r = await console.post("/v1/orders/ord_nope/withdraw", headers=wang_desk)
    assert r.status_code == 404, r.text  # looked up, as with {"note": ...}
