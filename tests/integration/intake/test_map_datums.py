"""A report may give its place in the datum of the map it was taken from (`location.datum`:
GCJ-02 for AMap and Tencent, BD-09 for Baidu, where many 110 and video platforms take
theirs): intake takes it to WGS-84 before anything reads it, so a 110 call and a camera's
alert of one fight are one incident, and the teams and zones are judged at the scene, not
hundreds of metres off it."""

from __future__ import annotations

from services.intake.datums import wgs84_to_gcj02
from services.intake.domain import distance_m
from shared import streams
from shared.events import IncidentReported, Location
from tests.helpers import read_stream
from tests.integration.intake.conftest import system_key

SCENE = Location(lat=22.8170, lon=108.3660)  # Minzu Avenue, Nanning, as a phone's GPS says
GCJ_LON, GCJ_LAT = wgs84_to_gcj02(SCENE.lon, SCENE.lat)  # the same spot on AMap


def fight(ref: str, location: dict[str, object]) -> dict[str, object]:
    return {"external_ref": ref, "category": "violence", "district": "d1",
            "location": location, "description": "两名男子在店门口打架"}


async def test_a_110_call_given_in_gcj02_joins_the_camera_alert_of_the_same_fight(
        intake, clean_redis) -> None:
    camera, call_taking = await system_key(intake, ["d1"]), await system_key(intake, ["d1"])
    first = await intake.post("/v1/incidents", headers=camera, json=fight(
        "cam-1", {"lat": SCENE.lat, "lon": SCENE.lon}))
    assert first.status_code == 202, first.text
    given = {"lat": GCJ_LAT, "lon": GCJ_LON, "address": "民族大道12号", "datum": "gcj02"}

    r = await intake.post("/v1/incidents", headers=call_taking, json=fight("110-1", given))
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "linked", r.text
    assert r.json()["linked_to"] == first.json()["incident_id"]
    # the event every service reads carries the scene in WGS-84, and no datum
    events = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)
    place = events[-1].location
    assert distance_m(place, SCENE) < 0.01
    assert place.address == "民族大道12号"
    assert "datum" not in events[-1].model_dump()["location"]
    # the same call again is its retry
    again = await intake.post("/v1/incidents", headers=call_taking, json=fight("110-1", given))
    assert (again.status_code, again.json()["incident_id"]) == (200, r.json()["incident_id"])


async def test_a_datum_intake_does_not_know_is_refused_naming_the_field(intake) -> None:
    key = await system_key(intake, ["d1"])
    r = await intake.post("/v1/incidents", headers=key, json=fight(
        "110-2", {"lat": GCJ_LAT, "lon": GCJ_LON, "datum": "beijing54"}))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "location.datum"
    assert "gcj02" in r.json()["error"]["message"]


async def test_a_datum_is_read_as_vendors_spell_it(intake, clean_redis) -> None:
    # "GCJ-02", "GCJ02", "gcj_02": one datum, as a flag is one word in any case
    key = await system_key(intake, ["d1"])
    for ref, spelt in (("110-3", "GCJ-02"), ("110-4", " Gcj_02 ")):
        r = await intake.post("/v1/incidents", headers=key, json=fight(
            ref, {"lat": GCJ_LAT, "lon": GCJ_LON, "datum": spelt}))
        assert r.status_code == 202, r.text
    events = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)
    assert [distance_m(e.location, SCENE) < 0.01 for e in events] == [True, True]
