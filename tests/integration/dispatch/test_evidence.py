"""Body-camera video and photos (references to the system that keeps them), in-process against
a real Redis: a team's answer puts them on the incident's timeline; the command room attaches
more later, also once the incident has ended, and its retry adds nothing twice; a dispatcher
of another district may not; a bad record is refused naming its field."""

from __future__ import annotations

import httpx
import pytest
from faststream.redis import RedisBroker

from shared import streams
from shared.events import Evidence, OrderResponded
from tests.helpers import poll_until

from .test_close import ADMIN, offered
from .test_engine import DISTRICT


async def timeline(console: httpx.AsyncClient, incident_id: str) -> list[dict]:
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["timeline"]


async def test_the_teams_files_and_the_command_rooms_go_on_the_timeline_once(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id, order_id = await offered(clean_redis, publisher)
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order_id, incident_id=incident_id, team_id="t1",
        member_id="m1", response="resolved", evidence=(Evidence(kind="video", ref="bwc-7.mp4"),)),
        stream=streams.ORDER_RESPONDED.name)

    async def resolved() -> list[dict] | None:
        entries = [e for e in await timeline(console, incident_id)
                   if e["kind"] == "response" and e["detail"] == "resolved"]
        return entries or None

    [answer] = await poll_until(resolved, "the resolved answer on the timeline")
    assert answer["evidence"] == [{"kind": "video", "ref": "bwc-7.mp4", "taken_at": None}]

    # At the end of the shift the body cameras are docked: the command room attaches the
    # station's copy of the same file and a photo; the incident has ended already.
    url = f"/v1/incidents/{incident_id}/evidence"
    body = {"evidence": [{"kind": "video", "ref": "bwc-7.mp4"},
                         {"kind": "photo", "ref": "evidence://2026/12/05/0031.jpg",
                          "taken_at": "2026-12-05T21:40:00+08:00"}],
            "note": "the broken window"}
    r = await console.post(url, headers=ADMIN, json=body)
    assert r.status_code == 200, r.text
    assert ([e["ref"] for e in r.json()["attached"]], r.json()["already_there"]) == (
        ["evidence://2026/12/05/0031.jpg"], 1)
    again = await console.post(url, headers=ADMIN, json=body)  # a retry
    assert (again.json()["attached"], again.json()["already_there"]) == ([], 2)

    entries = await timeline(console, incident_id)
    attached = [e for e in entries if e["kind"] == "evidence"]
    assert len(attached) == 1
    assert attached[0]["note"] == "the broken window"
    assert attached[0]["detail"] == "attached by admin:admin"
    assert [(e["kind"], e["ref"]) for e in attached[0]["evidence"]] == [
        ("photo", "evidence://2026/12/05/0031.jpg")]
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    assert r.json()["status"] == "resolved"  # attaching changes no status


@pytest.mark.roster("xixiangtang")
async def test_bad_records_and_other_districts_are_refused(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id, _ = await offered(clean_redis, publisher)
    url = f"/v1/incidents/{incident_id}/evidence"
    for body, field in (({"evidence": []}, "evidence"),
                        ({"evidence": [{"kind": "video"}]}, "evidence.0.ref"),
                        ({"evidence": [{"kind": "video", "ref": "x" * 201}]}, "evidence.0.ref"),
                        ({"evidence": [{"kind": "photo", "ref": "p", "taken_at": "yesterday"}]},
                         "evidence.0.taken_at")):
        r = await console.post(url, headers=ADMIN, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == field
    r = await console.post(url, headers=ADMIN, json={"evidence": {"kind": "video", "ref": "v"}})
    assert r.status_code == 422 and r.json()["error"] == {  # not "a valid tuple"
        "code": "invalid_field", "message": "evidence must be a list", "field": "evidence"}
    # none or too many records: the counts, not pydantic's "Tuple should have ..." (a Python type)
    for records, message in (([], "evidence must hold at least 1 item"),
                             ([{"kind": "video", "ref": f"v{n}"} for n in range(11)],
                              "evidence must hold at most 10 items")):
        r = await console.post(url, headers=ADMIN, json={"evidence": records})
        assert r.status_code == 422 and r.json()["error"] == {
            "code": "invalid_field", "message": message, "field": "evidence"}, r.text
    r = await console.post("/v1/incidents/inc_nope/evidence", headers=ADMIN,
                           json={"evidence": [{"kind": "video", "ref": "v"}]})
    assert r.status_code == 404

    r = await console.post("/v1/dispatchers", headers=ADMIN,
                           json={"name": "other desk", "districts": ["xixiangtang"]})
    other = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await console.post(url, headers=other, json={"evidence": [{"kind": "video", "ref": "v"}]})
    assert r.status_code == 403
    r = await console.post(url, json={"evidence": [{"kind": "video", "ref": "v"}]})
    assert r.status_code == 401
    assert [e for e in await timeline(console, incident_id) if e["kind"] == "evidence"] == []
