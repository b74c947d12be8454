"""Intake's contract with the reporting systems (110 call-taking, video analytics, door
access), in-process against a real Redis: what a system may send, and what it is told."""

from __future__ import annotations

import json

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from services.intake import store
from shared import streams
from shared.events import IncidentReported
from tests.helpers import read_stream
from tests.integration.intake.conftest import system_key


def incident(ref: str = "r1", **over: object) -> dict[str, object]:
    body: dict[str, object] = {"external_ref": ref, "category": "violence", "district": "d1",
                               "location": {"lat": 43.8, "lon": 87.6}}
    body.update(over)
    return body


@pytest.mark.parametrize("lat", [87.6, 90.0, -85.06])
async def test_a_latitude_the_map_cannot_hold_is_named_not_answered_retry(
        intake: httpx.AsyncClient, clean_redis: str, lat: float) -> None:
    # Urumqi (43.8 N, 87.6 E) with latitude and longitude swapped: a valid WGS-84 latitude,
    # but beyond the +-85.05112878 that Redis's GEO commands take. Intake answered 503
    # "retry": the system retried for ever, a P1 never reached the command room, and the
    # operators were told Redis was unavailable.
    key = await system_key(intake, ["d1"])
    for _ in range(2):  # the retry is told the same
        r = await intake.post("/v1/incidents", headers=key,
                              json=incident(location={"lat": lat, "lon": 43.8}))
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "location.lat"
    assert read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported) == []


@pytest.mark.parametrize("field", ["lat", "lon"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
async def test_a_coordinate_that_is_no_finite_number_is_named_as_such(
        intake: httpx.AsyncClient, clean_redis: str, field: str, value: float) -> None:
    # Python's json (and so FastAPI's body) reads NaN and Infinity: a NaN latitude was told
    # it lay beyond 85.05112878 degrees with "latitude and longitude swapped?", a NaN
    # longitude that it should be at most 180
    key = await system_key(intake, ["d1"])
    place = {"lat": 22.8, "lon": 108.4, field: value}
    # httpx writes no NaN: the body as Python's json.dumps writes it
    r = await intake.post("/v1/incidents", content=json.dumps(incident(location=place)),
                          headers={**key, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == f"location.{field}"
    assert "finite number" in error["message"], error
    assert "swapped" not in error["message"] and "180" not in error["message"], error
    assert read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported) == []


async def test_the_latitudes_the_map_holds_are_accepted_to_their_edge(
        intake: httpx.AsyncClient) -> None:
    key = await system_key(intake, ["d1"])
    for ref, lat in (("north", 85.05112878), ("south", -85.05112878)):
        r = await intake.post("/v1/incidents", headers=key,
                              json=incident(ref, location={"lat": lat, "lon": 180}))
        assert r.status_code == 202, r.text


async def test_a_flag_is_a_short_word_never_a_text(intake: httpx.AsyncClient,
                                                   clean_redis: str) -> None:
    # Flags travel with every order to every team (volunteers too) and, from a linked report,
    # into another system's view ("flags added: ..."). The command room may add flags of up
    # to 32 characters (dispatch's revise); a system could send 16 of any length, free
    # text with a caller's name and number included.
    key = await system_key(intake, ["d1"])
    said = "caller Zhang San 13800000000 says the man has a knife"
    r = await intake.post("/v1/incidents", headers=key, json=incident(flags=["weapon", said]))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "flags.1" and "13800000000" not in r.text
    r = await intake.post("/v1/incidents", headers=key,
                          json=incident(flags=["x" * 60_000] * 16))
    assert r.status_code == 422 and r.json()["error"]["field"] == "flags.0", r.text
    assert read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported) == []
    r = await intake.post("/v1/incidents", headers=key, json=incident(
        flags=[" In_Progress ", "x" * 32], category="noise"))
    assert r.status_code == 202 and r.json()["priority"] == "P1", r.text


async def test_a_report_not_accepted_now_says_when_to_ask_again(
        intake: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every 503 says when to retry (the OpenAPI document: "Not now: ask again (see
    # Retry-After)"), as the same outage does when it meets the key check first. A report
    # refused while Redis restarts, or whose fsync was not confirmed, said nothing.
    key = await system_key(intake, ["d1"])
    assert (await intake.post("/v1/incidents", headers=key,
                              json=incident("first"))).status_code == 202  # the key is known

    async def away(*_: object, **__: object) -> store.Recording:
        raise RedisConnectionError("Connection refused")

    async def unconfirmed(*_: object, **__: object) -> store.Recording:
        return store.Recording(unconfirmed=True)

    for outcome in (away, unconfirmed):
        monkeypatch.setattr(store, "record_incident", outcome)
        r = await intake.post("/v1/incidents", headers=key,
                              json=incident("second", location={"lat": 22.8, "lon": 108.3}))
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
        assert int(r.headers["retry-after"]) >= 1, outcome.__name__


@pytest.mark.parametrize("content_type", [None, "text/plain",
                                          "application/x-www-form-urlencoded"])
async def test_a_json_report_sent_without_the_json_content_type_is_told_so(
        intake: httpx.AsyncClient, content_type: str | None) -> None:
    # `curl -d '{...}'` sends form-urlencoded, some HTTP libraries no content type at all:
    # intake does not read such a body as JSON, and answered "the request body must be a
    # JSON object" for a body that is one, leaving the system's developer nothing to fix.
    key = await system_key(intake, ["d1"])
    headers = {**key, **({"content-type": content_type} if content_type else {})}
    r = await intake.post("/v1/incidents", headers=headers,
                          content=httpx.Request("POST", "/", json=incident()).content)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "(body)"
    assert "Content-Type: application/json" in error["message"]
    assert "violence" not in r.text
    # a body that is no JSON object, sent as JSON, is told what it is told today
    r = await intake.post("/v1/incidents", headers=key, json=[incident()])
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "the request body must be a JSON object"


async def test_the_openapi_document_says_what_a_report_is_answered_and_may_hold(
        intake: httpx.AsyncClient) -> None:
    # Systems are built against /openapi.json. It gave the 202 as "an object", named no 200
    # (the idempotent retry: a generated client then returns nothing for it, the incident id
    # lost), and allowed flags of 256 characters where 33 are refused.
    spec = (await intake.get("/openapi.json")).json()
    post = spec["paths"]["/v1/incidents"]["post"]
    schemas = spec["components"]["schemas"]
    for status in ("202", "200"):
        ref = post["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        answer = schemas[ref.rsplit("/", 1)[-1]]
        assert {"incident_id", "priority", "status", "linked_to"} <= set(answer["properties"])
        assert set(answer["required"]) == {"incident_id", "priority", "status"}
    assert "retry" in post["responses"]["200"]["description"]
    assert schemas["IncidentIn"]["properties"]["flags"]["items"]["maxLength"] == 32
    # and what is answered is what is documented
    key = await system_key(intake, ["d1"])
    first = await intake.post("/v1/incidents", headers=key, json=incident("doc"))
    again = await intake.post("/v1/incidents", headers=key, json=incident("doc"))
    assert (first.status_code, again.status_code) == (202, 200)
    assert set(first.json()) == set(again.json()) == {"incident_id", "priority", "status"}


async def test_the_openapi_document_keeps_what_a_route_says_of_its_own_errors(
        intake: httpx.AsyncClient) -> None:
    # The report's 409 is no state of an object: another report under a ref already taken.
    # The route says so, but the shared error statuses wrote over every operation's own
    # words: /docs told an integrator "The object's state forbids it" for it.
    spec = (await intake.get("/openapi.json")).json()
    responses = spec["paths"]["/v1/incidents"]["post"]["responses"]
    assert "external_ref" in responses["409"]["description"], responses["409"]
    error = {"$ref": "#/components/schemas/Error"}
    assert responses["409"]["content"]["application/json"]["schema"] == error
    # what a route does not say of its own keeps the shared words
    assert responses["422"]["description"] == "A field is wrong"
    assert responses["422"]["content"]["application/json"]["schema"] == error


async def test_the_openapi_document_says_how_a_system_reports_follows_up_and_retries(
        intake: httpx.AsyncClient) -> None:
    # An integrator given /docs found no word on POST /v1/incidents of what its ref is for,
    # when a report is linked, which flags raise a priority or keep volunteers off, nor how
    # to add to a report or take one back: only the operators' docs had some of it.
    spec = (await intake.get("/openapi.json")).json()
    said = spec["paths"]["/v1/incidents"]["post"].get("description") or ""
    for words in ("external_ref", "retry", "linked", "200 m", "10 min",  # the policy's
                  "weapon, injury, in_progress", "no volunteer", "cancel", "command room",
                  "/v1/incidents/{incident_id}/follow-ups"):
        assert words in said, words
    # and the follow-up's own route says what it is answered
    follow_up = spec["paths"]["/v1/incidents/{incident_id}/follow-ups"]["post"]
    for words in ("whatever the distance and the time", "ended", "403", "404"):
        assert words in follow_up["description"], words
    assert {"200", "202", "409"} <= set(follow_up["responses"])
    # a report made by mistake: the command room is asked to cancel it
    assert "/v1/incidents/{incident_id}/cancel-requests" in said
    assert "not changed or taken back over this API" not in said
    cancel = spec["paths"]["/v1/incidents/{incident_id}/cancel-requests"]["post"]
    for words in ("Nothing is cancelled by the request itself", "reason", "409", "403", "404",
                  "linked_to", "remark_keeps_open"):
        assert words in cancel["description"], words
    assert {"200", "202", "409"} <= set(cancel["responses"])


@pytest.mark.parametrize(("body", "said"), [
    # a call-taking system of its time writes GBK (charset named or not): JSON is UTF-8
    (json.dumps(incident(description="两人争吵"), ensure_ascii=False).encode("gbk"), "UTF-8"),
    (b'{"external_ref": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested"),
    (json.dumps(incident()).replace("43.8", "1" + "0" * 5000).encode(), "number"),
])
async def test_a_body_no_json_parser_reads_is_told_why(
        intake: httpx.AsyncClient, clean_redis: str, body: bytes, said: str) -> None:
    # FastAPI's own parse gives up on these with "There was an error parsing the body",
    # which the answer passed on: the integrator of a system writing GBK was not told that
    # JSON must be UTF-8
    key = await system_key(intake, ["d1"])
    for charset in ("", "; charset=gbk"):
        r = await intake.post("/v1/incidents", content=body,
                              headers={**key, "content-type": f"application/json{charset}"})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "bad_json" and said in error["message"], error
        assert "两人" not in r.text
    assert read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported) == []


@pytest.mark.parametrize(("place", "field"), [
    ({"lat": False, "lon": 108.3}, "location.lat"),  # JS: {lat: fix && fix.lat}, no fix yet
    ({"lat": True, "lon": 108.3}, "location.lat"),
    ({"lat": 22.8, "lon": False}, "location.lon"),
])
async def test_a_true_or_false_is_no_coordinate(intake: httpx.AsyncClient, clean_redis: str,
                                                place: dict[str, object], field: str) -> None:
    # pydantic reads false as 0.0 and true as 1.0: the report was accepted (202) and its
    # incident placed on the equator or the prime meridian, where no team of the district is
    key = await system_key(intake, ["d1"])
    r = await intake.post("/v1/incidents", headers=key, json=incident(location=place))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert read_stream(clean_redis, streams.INCIDENT_REPORTED.name, IncidentReported) == []


async def test_an_unknown_key_that_is_no_field_name_is_not_echoed(
        intake: httpx.AsyncClient) -> None:
    # A message never echoes the body: a system that put the caller's number where a field
    # name goes ({"caller": {"13800138000": "Zhang San"}}) was told
    # "caller.13800138000 is not a known field", in the answer and in whatever logs it.
    key = await system_key(intake, ["d1"])
    r = await intake.post("/v1/incidents", headers=key,
                          json=incident(caller={"13800138000": "Zhang San"}))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "caller" and "13800138000" not in r.text
    r = await intake.post("/v1/incidents", headers=key, json=incident(**{"张三": "x"}))
    assert r.status_code == 422 and r.json()["error"]["field"] == "(body)"
    assert "张三" not in r.text
    # a misspelt field name is still named, so that the system's developer can fix it
    r = await intake.post("/v1/incidents", headers=key, json=incident(caller={"phon": "1"}))
    assert r.status_code == 422 and r.json()["error"]["field"] == "caller.phon", r.text
