"""A reporting system's follow-up of its own report (POST /v1/incidents/{id}/follow-ups): a
110 caller ringing back 11 minutes later ("he has a knife now", "they went into the mall"),
a video system's second alert of one event. Outside the duplicate radius and window it was
a second incident, and a second team; named, it goes to dispatch linked to the report's
incident whatever the distance and the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared import streams
from shared.events import IncidentReported
from tests.helpers import read_stream
from tests.integration.intake.conftest import ADMIN, system_key
from tests.integration.intake.test_api import incident


def reported(url: str) -> list[IncidentReported]:
    return read_stream(url, streams.INCIDENT_REPORTED.name, IncidentReported)


async def first_report(intake: httpx.AsyncClient, key: dict[str, str]) -> str:
    # the call came 11 minutes ago: past the duplicate window already
    at = (datetime.now(UTC) - timedelta(minutes=11)).isoformat()
    r = await intake.post("/v1/incidents", headers=key,
                          json=incident("call-1", category="dispute", reported_at=at))
    assert r.status_code == 202, r.text
    return str(r.json()["incident_id"])


async def test_a_follow_up_far_away_and_late_is_linked_to_the_report_it_names(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    key = await system_key(intake, ["d1"])
    first = await first_report(intake, key)
    # 1.1 km away (they went into the mall), now, another category (he has a knife)
    r = await intake.post(f"/v1/incidents/{first}/follow-ups", headers=key, json=incident(
        "call-2", category="violence", location={"lat": 22.81, "lon": 108.3},
        description="he has a knife now", flags=["weapon"]))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["incident_id"] != first
    assert (body["status"], body["linked_to"], body["follow_up_of"]) == ("linked", first, first)
    assert body["priority"] == "P1"
    [_, event] = reported(clean_redis)
    assert event.incident_id == body["incident_id"]
    assert (event.linked_to, event.follow_up_of) == (first, first)
    assert event.description == "he has a knife now" and event.flags == ("weapon",)
    # the reporting system reads it as its own report
    view = await intake.get(f"/v1/incidents/{body['incident_id']}", headers=key)
    assert view.status_code == 200
    assert (view.json()["linked_to"], view.json()["follow_up_of"]) == (first, first)


async def test_a_follow_up_is_retried_by_its_own_external_ref(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    key = await system_key(intake, ["d1"])
    first = await first_report(intake, key)
    path = f"/v1/incidents/{first}/follow-ups"
    sent = await intake.post(path, headers=key, json=incident("call-2", description="mall"))
    again = await intake.post(path, headers=key, json=incident("call-2", description="mall"))
    assert (sent.status_code, again.status_code) == (202, 200), again.text
    assert again.json() == sent.json()
    # another body under its ref, or the same body as a report of its own, is no retry
    other = await intake.post(path, headers=key, json=incident("call-2", description="park"))
    as_report = await intake.post("/v1/incidents", headers=key,
                                  json=incident("call-2", description="mall"))
    assert (other.status_code, as_report.status_code) == (409, 409)
    assert sent.json()["incident_id"] in other.json()["error"]["message"]
    assert "follows up" in as_report.json()["error"]["message"]
    assert len(reported(clean_redis)) == 2


async def test_a_follow_up_of_another_systems_report_is_403_and_of_none_404(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    mine, theirs = await system_key(intake, ["d1"]), await system_key(intake, ["d1"])
    first = await first_report(intake, theirs)
    other = await intake.post(f"/v1/incidents/{first}/follow-ups", headers=mine,
                              json=incident("call-2"))
    unknown = await intake.post("/v1/incidents/inc_nosuch/follow-ups", headers=mine,
                                json=incident("call-2"))
    assert (other.status_code, unknown.status_code) == (403, 404), (other.text, unknown.text)
    assert len(reported(clean_redis)) == 1
    # the admin reads incidents, but reports none
    admin = await intake.post(f"/v1/incidents/{first}/follow-ups", headers=ADMIN,
                              json=incident("call-2"))
    assert admin.status_code == 403


async def test_a_follow_up_of_a_report_linked_to_another_goes_to_that_incident(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    # The second caller's report was linked to the first caller's incident (another
    # system's): what it adds goes where its report went.
    first_system, second_system = await system_key(intake, ["d1"]), await system_key(intake, ["d1"])
    parent = (await intake.post("/v1/incidents", headers=first_system,
                                json=incident("a-1"))).json()["incident_id"]
    linked = (await intake.post("/v1/incidents", headers=second_system,
                                json=incident("b-1"))).json()
    assert linked["linked_to"] == parent
    r = await intake.post(f"/v1/incidents/{linked['incident_id']}/follow-ups",
                          headers=second_system, json=incident("b-2", flags=["injury"]))
    assert r.status_code == 202, r.text
    assert (r.json()["linked_to"], r.json()["follow_up_of"]) == (parent, linked["incident_id"])


@pytest.mark.roster("d1", "d2")
async def test_a_follow_up_in_another_district_than_its_report_is_refused(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    # the incident it adds to is its report's, in its report's district (dispatch links
    # within one district): another is a mistake, not a move
    key = await system_key(intake, ["d1", "d2"])
    first = await first_report(intake, key)
    r = await intake.post(f"/v1/incidents/{first}/follow-ups", headers=key,
                          json=incident("call-2", district="d2"))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "district"
    assert len(reported(clean_redis)) == 1
