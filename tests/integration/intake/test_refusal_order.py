"""Intake's public contract as a reporting system meets it, in-process against a
real Redis: what it may send, and what a revoked key is told."""

from __future__ import annotations

import httpx

from shared import streams
from shared.events import IncidentReported
from tests.helpers import read_stream
from tests.integration.intake.conftest import ADMIN


def incident(ref: str = "r1", **over: object) -> dict[str, object]:
    body: dict[str, object] = {"external_ref": ref, "category": "noise", "district": "d1",
                               "location": {"lat": 22.8, "lon": 108.3}}
    body.update(over)
    return body


async def a_system(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    r = await client.post("/v1/systems", headers=ADMIN,
                          json={"name": "door access", "districts": ["d1"]})
    assert r.status_code == 201, r.text
    return r.json()["system_id"], {"Authorization": f"Bearer {r.json()['api_key']}"}


async def test_a_report_whose_flags_are_null_is_a_report_without_flags(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    # Go writes an empty slice as null, and many serialisers an absent list: "flags"? is as
    # optional as "description"?, "caller"? and "reported_at"?, whose null is taken as absent.
    # A video-analytics system sending it had every report without flags refused (422).
    _, key = await a_system(intake)
    body = incident("cam-7:1", flags=None, description=None, caller=None, reported_at=None)
    r = await intake.post("/v1/incidents", headers=key, json=body)
    assert r.status_code == 202, r.text
    assert r.json()["priority"] == "P4" and r.json()["status"] == "reported"
    again = await intake.post("/v1/incidents", headers=key, json=body)
    assert again.status_code == 200 and again.json()["incident_id"] == r.json()["incident_id"]
    [event] = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)
    assert event.incident_id == r.json()["incident_id"] and event.flags == ()


BAD_REPORTS: list[tuple[str, dict[str, object] | bytes, int]] = [
    ("another district", incident("x1", district="d9"), 403),
    ("an unknown category", incident("x2", category="volcano"), 422),
    ("a missing field", {"category": "noise"}, 422),
    ("a flag that is a text", incident("x3", flags=["x" * 40]), 422),
    ("broken JSON", b"{broken", 400),
]


async def _post(client: httpx.AsyncClient, key: dict[str, str],
                body: dict[str, object] | bytes) -> httpx.Response:
    if isinstance(body, bytes):
        return await client.post("/v1/incidents", content=body,
                                 headers={**key, "content-type": "application/json"})
    return await client.post("/v1/incidents", headers=key, json=body)


async def test_a_revoked_key_is_told_401_whatever_its_report_holds(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    # DESIGN: 401 (missing or unknown token) comes before 400, 422 and 403. A report's key is
    # taken from memory (api.SystemKeys), and the record script refuses a revoked one; but a
    # report refused before it reached the script was judged as from the system still: the
    # revoked door-access gateway was told 403 "it covers d1" or 422, fixed its body, and
    # only then learnt its key was gone.
    system_id, key = await a_system(intake)
    ok = await intake.post("/v1/incidents", headers=key, json=incident())
    assert ok.status_code == 202, ok.text  # the key is now known from memory
    for what, body, status in BAD_REPORTS:  # while the key is good, each its own refusal
        assert (await _post(intake, key, body)).status_code == status, what
    assert (await intake.delete(f"/v1/systems/{system_id}", headers=ADMIN)).status_code == 204
    for what, body, _ in [*BAD_REPORTS, ("its first report again", incident(), 200)]:
        r = await _post(intake, key, body)
        assert r.status_code == 401, (what, r.text)
        assert r.json()["error"]["code"] == "unauthorized" and "d1" not in r.text
    assert len(read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)) == 1


async def test_a_token_of_another_kind_is_told_of_a_wrong_field_before_it_is_refused(
        intake: httpx.AsyncClient, clean_redis: str) -> None:
    # DESIGN: 400/422 before 403. Reports are for system keys and members' devices: the
    # admin's token posting one with a latitude past the pole was told 403 (FastAPI checked
    # the token's kind before the body), not which field was wrong.
    _, key = await a_system(intake)
    wrong = incident("k1", location={"lat": 91, "lon": 108.3})
    r = await intake.post("/v1/incidents", json=wrong)
    assert r.status_code == 401, r.text  # the token before all
    for who in (ADMIN, key):  # a token of another kind, and of the right one
        r = await intake.post("/v1/incidents", headers=who, json=wrong)
        assert (r.status_code, r.json()["error"].get("field")) == (422, "location.lat"), r.text
        assert (await _post(intake, who, b"{broken")).status_code == 400
    r = await intake.post("/v1/incidents", headers=ADMIN, json=incident("k1"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    assert read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported) == []
