"""Intake in-process against a real Redis: keys, validation, idempotency, duplicates."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
import redis

from services.intake import store
from services.intake.config import Settings
from services.intake.domain import distance_m
from services.intake.main import create_app
from shared import streams
from shared.events import IncidentReported, Location
from tests.helpers import read_stream
from tests.integration.intake.conftest import ADMIN, system_key
from tests.integration.notify.conftest import roster_of


def incident(ref: str = "r1", **over: object) -> dict[str, object]:
    body: dict[str, object] = {"external_ref": ref, "category": "noise", "district": "d1",
                               "location": {"lat": 22.8, "lon": 108.3}}
    body.update(over)
    return body


async def test_an_accepted_incident_is_on_the_stream_before_202(intake, clean_redis) -> None:
    key = await system_key(intake, ["d1"])
    r = await intake.post("/v1/incidents", headers=key,
                          json=incident(flags=["in_progress"], caller={"phone": "13800000000"}))
    assert r.status_code == 202
    body = r.json()
    assert body["priority"] == "P1" and body["status"] == "reported"
    events = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)
    assert [e.incident_id for e in events] == [body["incident_id"]]
    assert events[0].caller is not None and events[0].flags == ("in_progress",)


async def test_the_same_external_ref_is_an_idempotent_retry(intake, clean_redis) -> None:
    key = await system_key(intake, ["d1"])
    first = await intake.post("/v1/incidents", headers=key, json=incident())
    again = await intake.post("/v1/incidents", headers=key, json=incident())
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["incident_id"] == again.json()["incident_id"]
    assert len(read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)) == 1


@pytest.mark.parametrize(("change", "named"), [
    ({"category": "traffic"}, "category"),
    ({"location": {"lat": 22.81, "lon": 108.3}}, "location"),
    ({"flags": ["weapon"]}, "flags, description, caller"),
    ({"description": "now he has a knife"}, "flags, description, caller"),
])
async def test_an_external_ref_used_again_for_another_report_is_refused(
        intake, clean_redis, change: dict[str, object], named: str) -> None:
    # A 110 system whose numbering starts again each day, or one re-sending a call with what
    # the caller added under its first ref: taken as the retry it is not, the second report
    # was answered 200 with the first's incident and reached nobody. A retry sends the report
    # as it was; anything else under the same ref is refused, naming the ref.
    key = await system_key(intake, ["d1"])
    first = await intake.post("/v1/incidents", headers=key, json=incident())
    assert first.status_code == 202
    again = await intake.post("/v1/incidents", headers=key, json=incident(**change))
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert (error["code"], error["field"]) == ("conflict", "external_ref")
    assert first.json()["incident_id"] in error["message"] and named in error["message"]
    assert "knife" not in error["message"]  # nothing of what the report says comes back
    assert len(read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)) == 1
    # the report as it was is still its retry: flags in another order, or spelt otherwise
    same = await intake.post("/v1/incidents", headers=key, json=incident())
    assert same.status_code == 200 and same.json()["incident_id"] == first.json()["incident_id"]


async def test_a_machine_s_restamped_retry_is_told_the_incident_its_ref_made(intake) -> None:
    # A camera platform times out on its alert (the 202 never reached it) and retries at
    # once under the same ref, stamping the time of the retry and a point its tracker moved
    # 3 m: not the report as it was, so 409; but the only word of which incident its ref
    # made was in the message's prose, and without it the platform cannot read its alert's
    # status, follow it up or ask to cancel it. The error names it in a field of its own.
    key = await system_key(intake, ["d1"])
    at = datetime.now(UTC) - timedelta(seconds=30)
    first = await intake.post("/v1/incidents", headers=key, json=incident(
        "cam-17:4711", category="violence", reported_at=at.isoformat()))
    assert first.status_code == 202, first.text
    made = first.json()["incident_id"]
    for change in ({"reported_at": (at + timedelta(seconds=2)).isoformat()},
                   {"location": {"lat": 22.80003, "lon": 108.3}}):
        again = await intake.post("/v1/incidents", headers=key, json=incident(
            "cam-17:4711", category="violence", **({"reported_at": at.isoformat()} | change)))
        assert again.status_code == 409, again.text
        assert again.json()["error"]["incident_id"] == made
    view = await intake.get(f"/v1/incidents/{made}", headers=key)
    assert view.status_code == 200 and view.json()["external_ref"] == "cam-17:4711"


async def test_a_retry_with_its_flags_in_another_order_is_the_same_report(intake) -> None:
    key = await system_key(intake, ["d1"])
    first = await intake.post("/v1/incidents", headers=key,
                              json=incident(flags=["weapon", "injury"]))
    again = await intake.post("/v1/incidents", headers=key,
                              json=incident(flags=["Injury", "weapon "]))
    assert (first.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["incident_id"] == first.json()["incident_id"]


async def test_a_retry_with_its_reported_at_at_another_offset_is_the_same_report(
        intake, clean_redis) -> None:
    # A 110 system sends a call's time on Beijing's clock and retries it from its outbox,
    # where the database gives it in UTC: the same moment, and the same report. It was
    # refused 409, "differs in reported_at", and the retry never had its incident.
    key = await system_key(intake, ["d1"])
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    beijing = at.astimezone(timezone(timedelta(hours=8))).isoformat()
    first = await intake.post("/v1/incidents", headers=key, json=incident(reported_at=beijing))
    for same in (at.isoformat(), at.isoformat().replace("+00:00", "Z"), beijing):
        again = await intake.post("/v1/incidents", headers=key, json=incident(reported_at=same))
        assert (first.status_code, again.status_code) == (202, 200), again.text
        assert again.json()["incident_id"] == first.json()["incident_id"]
    # another moment under the ref is still another report, named as such
    later = await intake.post("/v1/incidents", headers=key,
                              json=incident(reported_at=(at + timedelta(seconds=1)).isoformat()))
    assert later.status_code == 409 and "reported_at" in later.json()["error"]["message"]
    assert len(read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)) == 1


async def test_a_nearby_report_of_the_same_category_is_linked(intake) -> None:
    key = await system_key(intake, ["d1"])
    first = (await intake.post("/v1/incidents", headers=key, json=incident())).json()
    near = await intake.post("/v1/incidents", headers=key, json=incident(
        "r2", location={"lat": 22.8009, "lon": 108.3}))  # 100 m
    far = await intake.post("/v1/incidents", headers=key, json=incident(
        "r3", location={"lat": 22.81, "lon": 108.3}))  # 1.1 km
    other = await intake.post("/v1/incidents", headers=key, json=incident("r4",
                                                                          category="traffic"))
    assert near.status_code == 202
    assert near.json()["status"] == "linked" and near.json()["linked_to"] == first["incident_id"]
    assert far.json()["status"] == "reported" and "linked_to" not in far.json()
    assert other.json()["status"] == "reported"


async def test_a_report_exactly_200_m_from_an_open_incident_is_linked(intake) -> None:
    """DESIGN: a report of the same category "within 200 m" of an open incident is linked.
    Redis measures its search radius on a larger Earth than intake's distance does (and
    rounds the stored place to its geohash): a report intake puts at 200 m, north or south,
    must still be found and judged within; one just past 200 m stays new."""
    key = await system_key(intake, ["d1"])
    metres_per_degree = 2 * math.pi * 6_371_000 / 360  # of latitude, on intake's Earth
    here = Location(lat=22.8, lon=108.3)

    def north(metres: float) -> Location:
        return Location(lat=here.lat + metres / metres_per_degree, lon=here.lon)

    async def post(ref: str, at: Location) -> dict:
        r = await intake.post("/v1/incidents", headers=key, json=incident(
            ref, location={"lat": at.lat, "lon": at.lon}))
        assert r.status_code == 202, r.text
        return dict(r.json())

    first = await post("a", here)
    for ref, at in (("b", north(200)), ("c", north(-200)), ("d", north(-199.9))):
        assert round(distance_m(here, at), 6) <= 200.0
        assert (await post(ref, at)).get("linked_to") == first["incident_id"], ref
    beyond = north(200.5)
    assert round(distance_m(here, beyond), 6) == 200.5
    assert (await post("e", beyond))["status"] == "reported"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"category": "noise", "district": "d1", "location": {"lat": 1, "lon": 1}},
         "external_ref"),
        (incident(category="volcano"), "category"),
        (incident(location={"lat": 91, "lon": 108.3}), "location.lat"),
        (incident(location={"lat": 22.8}), "location.lon"),
        (incident(location="here"), "location"),
        (incident(flags="weapon"), "flags"),
        (incident(caller={"phone": "1" * 41}), "caller.phone"),
        (incident(reported_at="yesterday"), "reported_at"),
        # a number would be Unix time: 1970
        (incident(reported_at=0), "reported_at"),
        # a clock ten years out: a P1 nobody would see on the board
        # (a clock ahead is taken as when the report came: test_report_times.py)
        (incident(reported_at="2016-12-05T19:00:00+08:00"), "reported_at"),
        # past the last moment a time can name in UTC (its retry's digest is in UTC): no 500
        (incident(reported_at="9999-12-31T23:59:59-14:00"), "reported_at"),
        (incident(surprise=1), "surprise"),
    ],
)
async def test_bad_incident_fields_are_named(intake, body, field) -> None:
    key = await system_key(intake, ["d1"])
    r = await intake.post("/v1/incidents", headers=key, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert "13800000000" not in r.text


@pytest.mark.parametrize(("extra", "field", "takes"), [
    ({"confidence": 0.93}, "confidence", "external_ref, category, location, district, "
     "description, caller, flags, reported_at"),
    ({"location": {"lat": 22.8, "lon": 108.3, "camera_id": "cam-17"}}, "location.camera_id",
     "lat, lon, address, datum"),
])
async def test_a_field_a_report_does_not_take_is_named_with_those_it_takes(
        intake, extra: dict[str, object], field: str, takes: str) -> None:
    # A camera platform's firmware update adds the detection's confidence and the camera's
    # id to every alert: each is refused, naming the field; the message also says what a
    # report takes, as an unknown category is told the policy's, so that the integrator
    # mends it from the answer alone.
    key = await system_key(intake, ["d1"])
    r = await intake.post("/v1/incidents", headers=key, json=incident("cam-1", **extra))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field
    assert error["message"] == f"{field} is not a known field (known here: {takes})"


async def test_a_report_a_few_minutes_ahead_or_days_old_is_accepted(intake) -> None:
    key = await system_key(intake, ["d1"])
    for i, at in enumerate((datetime.now(UTC) + timedelta(minutes=2),
                            datetime.now(UTC) - timedelta(days=6))):
        r = await intake.post("/v1/incidents", headers=key, json=incident(
            external_ref=f"skew-{i}", reported_at=at.isoformat(),
            location={"lat": 22.8 + i, "lon": 108.3}))
        assert r.status_code == 202, r.text


async def test_error_order_401_before_400_before_403(intake) -> None:
    r = await intake.post("/v1/incidents", content=b"{broken")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    key = await system_key(intake, ["d1"])
    r = await intake.post("/v1/incidents", headers={**key, "content-type": "application/json"},
                          content=b"{broken")
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
    r = await intake.post("/v1/incidents", headers=key, json=incident(district="d2"))
    assert r.status_code == 403
    assert r.json()["error"]["field"] == "district"  # what to correct, as a 422 names it
    r = await intake.post("/v1/systems", headers=key, json={"name": "x", "districts": ["d1"]})
    assert r.status_code == 403


async def test_systems_validation_names_the_field(intake) -> None:
    r = await intake.post("/v1/systems", headers=ADMIN, json={"name": "x", "districts": []})
    assert r.status_code == 422 and r.json()["error"]["field"] == "districts"
    for bad in ("", "d" * 65):  # a district as long as everywhere else: 1-64
        r = await intake.post("/v1/systems", headers=ADMIN, json={"name": "x", "districts": [bad]})
        assert r.status_code == 422 and r.json()["error"]["field"] == "districts.0"
    r = await intake.post("/v1/systems", headers=ADMIN, json={"districts": ["d1"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "name"


@pytest.mark.roster("Chaoyang", "Haidian")
async def test_a_key_is_made_only_for_districts_whose_roster_was_imported(intake) -> None:
    # `chaoyang` typed for `Chaoyang`, or a district never imported: the key was made, and
    # its system's reports landed where no team is and no desk looks (unassigned, unseen).
    r = await intake.post("/v1/systems", headers=ADMIN,
                          json={"name": "110", "districts": ["Haidian", "chaoyang"]})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "districts.1")
    assert "Chaoyang, Haidian" in error["message"], error
    assert "POST /v1/roster/import" in error["message"] and "chaoyang" not in error["message"]
    assert (await intake.get("/v1/systems", headers=ADMIN)).json()["count"] == 0
    await system_key(intake, ["Haidian", "Chaoyang"])


async def test_a_system_reads_only_its_own_incidents(intake) -> None:
    mine = await system_key(intake, ["d1"])
    theirs = await system_key(intake, ["d1"])
    incident_id = (await intake.post("/v1/incidents", headers=mine,
                                     json=incident())).json()["incident_id"]
    r = await intake.get(f"/v1/incidents/{incident_id}", headers=mine)
    assert r.status_code == 200 and r.json()["status"] == "reported"
    r = await intake.get(f"/v1/incidents/{incident_id}", headers=theirs)
    assert r.status_code == 403
    assert r.json()["error"]["message"] == ("this incident was not reported by this system: "
                                            "a system reads its own reports")
    assert (await intake.get("/v1/incidents/inc_nope", headers=mine)).status_code == 404
    assert (await intake.get(f"/v1/incidents/{incident_id}", headers=ADMIN)).status_code == 200


async def test_categories_list_priorities_and_agency_kinds(intake) -> None:
    key = await system_key(intake, ["d1"])
    r = await intake.get("/v1/categories", headers=key)
    rows = {c["category"]: c for c in r.json()}
    assert rows["violence"]["priority"] == "P1"
    assert rows["dispute"]["agency_kinds"] == ["police:patrol", "security", "police:station"]
    assert len(rows) == 13


async def test_concurrent_retries_of_one_ref_get_one_incident(intake, clean_redis) -> None:
    key = await system_key(intake, ["d1"])
    replies = await asyncio.gather(*(intake.post("/v1/incidents", headers=key, json=incident())
                                     for _ in range(8)))
    assert sorted(r.status_code for r in replies) == [200] * 7 + [202]
    [incident_id] = {r.json()["incident_id"] for r in replies}
    # A retry that finds the incident not yet marked published publishes it again (at least
    # once), but never an incident of its own.
    events = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)
    assert events and {e.incident_id for e in events} == {incident_id}


async def test_concurrent_retries_near_an_open_incident_get_one_incident(intake,
                                                                         clean_redis) -> None:
    key = await system_key(intake, ["d1"])
    first = (await intake.post("/v1/incidents", headers=key, json=incident())).json()
    replies = await asyncio.gather(*(intake.post("/v1/incidents", headers=key, json=incident(
        "r2", location={"lat": 22.8009, "lon": 108.3})) for _ in range(4)))
    assert sorted(r.status_code for r in replies) == [200] * 3 + [202]
    assert {(r.json()["incident_id"], r.json()["linked_to"]) for r in replies} == {
        (replies[0].json()["incident_id"], first["incident_id"])}
    events = read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported)
    assert [e.linked_to for e in events] == [None, first["incident_id"]]


async def test_a_report_near_only_an_old_open_incident_is_new_and_later_ones_link_to_it(
        intake) -> None:
    key = await system_key(intake, ["d1"])
    old = (await intake.post("/v1/incidents", headers=key, json=incident(
        reported_at=(datetime.now(UTC) - timedelta(minutes=11)).isoformat()))).json()
    fresh = await intake.post("/v1/incidents", headers=key, json=incident(
        "r2", location={"lat": 22.8009, "lon": 108.3}))
    assert fresh.status_code == 202 and fresh.json()["status"] == "reported"
    later = (await intake.post("/v1/incidents", headers=key, json=incident(
        "r3", location={"lat": 22.8018, "lon": 108.3}))).json()  # 100 m from fresh
    assert later["status"] == "linked" and later["linked_to"] == fresh.json()["incident_id"]
    assert old["incident_id"] not in (fresh.json()["incident_id"], later["linked_to"])


async def test_two_reports_of_one_event_beside_an_old_incident_are_linked_when_concurrent(
        intake, clean_redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # 110 and the video analytics report the same fight at the same moment, next to an
    # open incident too old to be it: both first look (and find only the old one) before
    # either records. One must still be linked to the other: one incident, one dispatch.
    key = await system_key(intake, ["d1"])
    await intake.post("/v1/incidents", headers=key, json=incident(
        "old", reported_at=(datetime.now(UTC) - timedelta(minutes=11)).isoformat()))
    record = store.record_incident
    both_looked = asyncio.Barrier(2)
    first_looks: set[str] = set()

    async def look_together(redis_: object, **kw: object) -> object:
        out = await record(redis_, **kw)
        if kw.get("unless_near_m") is not None and kw["incident_id"] not in first_looks:
            first_looks.add(str(kw["incident_id"]))
            await both_looked.wait()
        return out

    monkeypatch.setattr(store, "record_incident", look_together)
    here = {"lat": 22.8009, "lon": 108.3}
    a, b = await asyncio.gather(
        intake.post("/v1/incidents", headers=key, json=incident("110-a", location=here)),
        intake.post("/v1/incidents", headers=key, json=incident("video-b", location=here)))
    assert sorted([a.json()["status"], b.json()["status"]]) == ["linked", "reported"]
    new = [e.external_ref for e in read_stream(clean_redis, streams.INCIDENT_REPORTED.name,
                                               IncidentReported) if e.linked_to is None]
    assert sorted(new) in (["110-a", "old"], ["old", "video-b"])


async def test_a_key_whose_system_record_is_gone_is_refused(intake, clean_redis) -> None:
    r = await intake.post("/v1/systems", headers=ADMIN, json={"name": "door", "districts": ["d1"]})
    key = {"Authorization": f"Bearer {r.json()['api_key']}"}
    assert (await intake.get("/v1/categories", headers=key)).status_code == 200
    sync = redis.Redis.from_url(clean_redis)
    sync.delete(f"intake:system:{r.json()['system_id']}")
    sync.close()
    assert (await intake.get("/v1/categories", headers=key)).status_code == 401


async def test_only_the_member_page_s_origin_may_call_from_a_browser(clean_redis) -> None:
    page = "http://127.0.0.1:8004"
    async with roster_of("d1") as volunteers:
        app = create_app(Settings(redis_url=clean_redis, admin_token="test-admin-token",
                                  cors_origins=page, volunteers_url=volunteers.url))
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
            ask = {"Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "authorization,content-type"}
            r = await client.options("/v1/incidents", headers={"Origin": page, **ask})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == page
            r = await client.options("/v1/incidents", headers={"Origin": "http://x.example", **ask})
            assert r.status_code == 400 and "access-control-allow-origin" not in r.headers

            key = await system_key(client, ["d1"])
            r = await client.post("/v1/incidents", headers={**key, "Origin": page},
                                  json=incident("browser-1"))
            assert r.status_code == 202 and r.headers["access-control-allow-origin"] == page
            r = await client.get("/v1/categories", headers={"Origin": page})  # still a token
            assert r.status_code == 401 and r.headers["access-control-allow-origin"] == page


async def test_a_refusal_never_repeats_what_was_sent(intake) -> None:
    # DESIGN.md: a message never echoes the request body
    key = await system_key(intake, ["d1"])
    r = await intake.post("/v1/incidents", headers=key, json=incident(category="Noise<b>x7"))
    assert r.status_code == 422 and r.json()["error"]["field"] == "category"
    assert "x7" not in r.text
    r = await intake.post("/v1/incidents", headers=key, json=incident(district="elsewhere-9"))
    assert r.status_code == 403 and "elsewhere-9" not in r.text
    assert "d1" in r.json()["error"]["message"]  # what it may do instead
