"""The look back at the edges of time: a period asked for beyond what dispatch can count in is
a 422 naming since or until, never a 500; a stored incident whose time cannot be read in the
district's local time is left out of the hours, weeks and heat map, and the rest is shown."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from shared.events import IncidentReported, new_id, utcnow
from tests.helpers import poll_until

from .test_engine import DISTRICT, SCENE, report

ADMIN = {"Authorization": "Bearer test-admin-token"}
CHINA = timezone(timedelta(hours=8))
REVIEWS = ("/v1/kpis", "/v1/heatmap", "/v1/incidents")


@pytest.mark.parametrize("path", REVIEWS)
@pytest.mark.parametrize(("query", "field"), [
    pytest.param({"until": "0001-01-01T00:00:00Z"}, "until", id="a-day-before-year-1"),
    pytest.param({"since": "0001-01-01T00:00:00Z", "until": "0001-01-02T00:00:00Z",
                  "compare": "previous_year"}, "since", id="a-year-before-year-1"),
    pytest.param({"since": "1969-12-31T23:59:59Z", "until": "1970-01-02T00:00:00Z"}, "since",
                 id="before-1970"),
    pytest.param({"since": "1970-01-01T00:00:00+01:00", "until": "1970-01-02T00:00:00Z"},
                 "since", id="before-1970-by-its-offset"),
    pytest.param({"since": "9999-12-30T00:00:00Z", "until": "9999-12-31T12:00:00Z"}, "since",
                 id="the-week-after-9999"),
    pytest.param({"since": "9999-12-31T00:00:00Z", "until": "9999-12-31T23:59:59Z"}, "since",
                 id="local-time-after-9999"),
    pytest.param({"since": "9998-12-31T00:00:00Z", "until": "9999-01-01T00:00:00Z"}, "until",
                 id="9999"),
    pytest.param({"since": "9998-12-31T00:00:00Z", "until": "9998-12-31T23:59:59-01:00"},
                 "until", id="9999-by-its-offset"),
    # a number is no time, however pydantic would read it (seconds since 1970)
    pytest.param({"until": "0.5"}, "until", id="a-number"),
    pytest.param({"since": "1700000000"}, "since", id="a-timestamp"),
    pytest.param({"since": "2026-12-05T00:00:00"}, "since", id="no-offset"),  # whose midnight?
    pytest.param({"since": "2026-12-05"}, "since", id="a-date"),
    pytest.param({"until": "tomorrow"}, "until", id="a-word"),
])
async def test_a_time_outside_what_dispatch_counts_in_is_refused_naming_it(
        console: httpx.AsyncClient, path: str, query: dict[str, str], field: str) -> None:
    r = await console.get(path, headers=ADMIN, params={"district": DISTRICT, **query})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", field), error
    assert error["message"].startswith(field), error


@pytest.mark.parametrize(("path", "extra"), [("/v1/kpis", {}), ("/v1/heatmap", {}),
                                            ("/v1/kpis", {"compare": "previous_year"})])
@pytest.mark.parametrize(("since", "until"), [
    ("1970-01-01T00:00:00Z", "1970-01-02T00:00:00Z"),
    ("9998-12-30T00:00:00Z", "9998-12-31T23:59:59.999999Z"),
    ("9998-12-30T00:00:00+08:00", "9999-01-01T09:59:59+14:00"),
    ("2026-12-05T00:00:00+08:00", "2026-12-12T00:00:00Z"),
])
async def test_the_first_and_last_times_dispatch_counts_in_are_answered(
        console: httpx.AsyncClient, path: str, extra: dict[str, str], since: str,
        until: str) -> None:
    r = await console.get(path, headers=ADMIN,
                          params={"district": DISTRICT, "since": since, "until": until, **extra})
    assert r.status_code == 200, r.text
    assert (r.json()["since"], r.json()["until"]) == (since.replace("Z", "+00:00"),
                                                      until.replace("Z", "+00:00"))
    if extra:
        assert r.json()["previous_year"]["since"].startswith(str(int(since[:4]) - 1))


async def test_a_whole_years_period_is_compared_with_a_year_before_holding_a_29_february(
        console: httpx.AsyncClient) -> None:
    """The longest period asked for (366 days) compared with the same period a year earlier,
    which holds 29 February 2024 and so spans 367 days: it was refused, a 422 naming the
    `since` the caller had written right."""
    since, until = "2025-01-01T00:00:00+08:00", "2026-01-02T00:00:00+08:00"  # 366 days
    r = await console.get("/v1/kpis", headers=ADMIN, params={
        "district": DISTRICT, "since": since, "until": until, "compare": "previous_year"})
    assert r.status_code == 200, r.text
    assert r.json()["previous_year"]["since"] == "2024-01-01T00:00:00+08:00"
    assert r.json()["previous_year"]["until"] == "2025-01-02T00:00:00+08:00"
    r = await console.get("/v1/kpis", headers=ADMIN, params={  # a day more is still refused
        "district": DISTRICT, "since": "2024-12-31T00:00:00+08:00", "until": until})
    assert r.status_code == 422 and r.json()["error"]["field"] == "since", r.text


async def test_the_board_takes_a_period_of_iso_times_with_their_offsets(
        console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id = await report(publisher, "noise")
    await poll_until(lambda: on_board(console, incident_id), "the report on the board")
    now = utcnow()
    for since in (now.isoformat().replace("+00:00", "Z"),
                  now.astimezone(CHINA).isoformat()):
        r = await console.get("/v1/incidents", headers=ADMIN,
                              params={"district": DISTRICT, "since": since})
        assert r.status_code == 200 and r.json()["count"] == 0, (since, r.text)
    r = await console.get("/v1/incidents", headers=ADMIN,
                          params={"district": DISTRICT, "since": "1970-01-01T08:00:00+08:00",
                                  "until": "9998-12-31T23:59:59Z"})
    assert [i["incident_id"] for i in r.json()["incidents"]] == [incident_id]


async def test_an_incident_whose_time_has_no_local_hour_is_left_out_of_the_review(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    incident_id = await report(publisher, "noise")
    await poll_until(lambda: on_board(console, incident_id), "the report on the board")
    # A period the API accepts holds no record whose own time is out of reach: these two
    # are damaged, indexed now but their time beyond the year 9999 in the district's time
    # (Asia/Shanghai), or no time at all. Whatever the cause, the review is still shown.
    await stored_as_of_old(clean_redis, "9999-12-31T23:00:00+00:00")
    await stored_as_of_old(clean_redis, "not a time")

    r = await console.get("/v1/kpis", headers=ADMIN, params={"district": DISTRICT})
    assert r.status_code == 200, r.text
    kpis = r.json()
    assert kpis["incidents"] == 3 and kpis["by_category"] == {"noise": 3}
    assert sum(kpis["by_hour"]) == 1  # only the report with a local hour
    assert sum(w["count"] for w in kpis["by_week"]) == 1

    r = await console.get("/v1/heatmap", headers=ADMIN, params={"district": DISTRICT})
    assert r.status_code == 200, r.text
    assert r.json()["incidents"] == 1 and r.json()["hottest"][0]["count"] == 1


async def test_an_incident_at_local_midnight_counts_in_the_day_it_starts_only(
        console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """The morning review asks for yesterday as [00:00, 24:00) local. A 110 report timed to
    the second at exactly 00:00:00 is today's, not yesterday's too: two consecutive daily
    reviews add up to the incidents there were. So on the board and the heat map."""
    midnight = datetime.now(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
    incident_id = new_id("inc")
    await publisher.publish(IncidentReported(
        district=DISTRICT, incident_id=incident_id, system_id="sys", external_ref=incident_id,
        category="noise", priority="P4", location=SCENE, reported_at=midnight),
        stream=streams.INCIDENT_REPORTED.name)
    await poll_until(lambda: on_board(console, incident_id), "the report stored")
    day = timedelta(days=1)
    for path, figure in (("/v1/kpis", "incidents"), ("/v1/heatmap", "incidents"),
                         ("/v1/incidents", "count")):
        counts = []
        for since in (midnight - day, midnight):
            r = await console.get(path, headers=ADMIN, params={
                "district": DISTRICT, "since": since.isoformat(),
                "until": (since + day).isoformat()})
            assert r.status_code == 200, r.text
            counts.append(r.json()[figure])
        assert counts == [0, 1], (path, counts)


async def on_board(console: httpx.AsyncClient, incident_id: str) -> bool:
    r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
    return r.status_code == 200


async def stored_as_of_old(url: str, reported_at: str) -> str:
    """An ended incident as an earlier dispatch may have stored it: reported now by its
    index, at `reported_at` by its record."""
    incident_id = new_id("inc")
    client = aioredis.Redis.from_url(url)
    try:
        await client.hset(store.incident_key(incident_id), mapping={
            "incident_id": incident_id, "district": DISTRICT, "category": "noise",
            "priority": "P4", "status": "closed", "flags": "[]", "lat": repr(SCENE.lat),
            "lon": repr(SCENE.lon), "reported_at": reported_at, "seq": "1"})
        score = utcnow().timestamp() - 60
        await client.zadd(store.ALL_INCIDENTS, {incident_id: score})
        await client.zadd(store.district_key(DISTRICT), {incident_id: score})
    finally:
        await client.aclose()
    return incident_id
