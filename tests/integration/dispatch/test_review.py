"""The command room's look back over the API: KPIs by local hour, zone and force, and the
heat map of where and when incidents were reported."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import h3
import pytest
from faststream.redis import RedisBroker

from shared import streams
from shared.events import utcnow
from shared.timezones import parse_timezone
from tests.helpers import poll_until
from tests.integration.stream_probes import (
    ADMIN,
    DISTRICT,
    HERE,
    Service,
    _is,
    assigned_in_dispatch,
    dispatch_status,
    incident_reported,
    order_responded,
    running,
)

from .test_handover import hand_over
from .test_supervision import board, file_case, kpis
from .test_zone_pending import zones_back


async def test_the_review_counts_a_resolved_incident_by_local_hour_place_and_force(
        clean_redis: str) -> None:
    async with running("dispatch", clean_redis, timezone="+08:00") as svc:
        team, incident_id, order_id = await assigned_in_dispatch(svc, "rv")
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, incident_id, team, "resolved"))
        await poll_until(lambda: _is(dispatch_status(svc, incident_id), "resolved"), "resolved")
        hour = datetime.now(parse_timezone("+08:00")).hour  # the report was made just now

        r = await svc.client.get(f"/v1/kpis?district={DISTRICT}", headers=ADMIN)
        assert r.status_code == 200, r.text
        kpis = r.json()
        assert kpis["timezone"] == "UTC+08:00"
        assert sum(kpis["by_hour"]) == 1 and kpis["by_hour"][hour] in (1, 0)
        assert kpis["by_hour"][hour] + kpis["by_hour"][(hour - 1) % 24] == 1  # on the hour
        assert kpis["by_zone"] == {"(unknown)": 1}  # no volunteers here: no zones known
        assert kpis["resolved_by_force"] == {"police:patrol": 1}  # probes' teams: police patrols
        assert kpis["handled_by_force"]["police:patrol"] == {
            "handled": 1, "share": 1.0, "resolved_on_site": 1, "handed_over": 0,
            "resolved_on_site_share": 1.0}
        # resolved without a word on the way: it was on scene by then (the response time)
        scene = kpis["time_to_scene_s"]
        assert scene["count"] == 1 and scene["p50"] >= 0  # after the report, however long
        assert list(scene["by_priority"]) == ["P4"] and scene["by_priority"]["P4"]["count"] == 1

        r = await svc.client.get(f"/v1/heatmap?district={DISTRICT}", headers=ADMIN)
        assert r.status_code == 200, r.text
        heat = r.json()
        assert heat["incidents"] == 1 and heat["resolution"] == 8
        [cell] = heat["hottest"]
        assert cell["cell"] == h3.latlng_to_cell(*HERE, 8) and cell["count"] == 1
        assert cell["by_category"] == {"noise": 1}

        other = (hour + 12) % 24
        r = await svc.client.get(f"/v1/heatmap?district={DISTRICT}&hours={other}",
                                 headers=ADMIN)
        assert r.json()["incidents"] == 0 and r.json()["hottest"] == []


async def test_an_incident_whose_zone_was_never_known_is_not_counted_outside_every_zone(
        clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The review by place: `(none)` is a place outside every zone of the district (the
    console's "outside every zone", 辖区外). An incident reported while dispatch could not
    load the zones (volunteers away) and resolved before they came back has no zone known:
    it is `(unknown)`, not counted as outside every zone (it was, beside the one truly
    outside them)."""
    async with running("dispatch", clean_redis) as svc:
        team, unknown, order_id = await assigned_in_dispatch(svc, "zu")
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, unknown, team, "resolved"))
        await poll_until(lambda: _is(dispatch_status(svc, unknown), "resolved"), "resolved")
        zones_back(monkeypatch, None)  # the zones loaded now: none holds the next scene
        team, outside, order_id = await assigned_in_dispatch(svc, "zo")
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, outside, team, "resolved"))
        await poll_until(lambda: _is(dispatch_status(svc, outside), "resolved"), "resolved")

        r = await svc.client.get("/v1/kpis", headers=ADMIN, params={"district": DISTRICT})
        assert r.status_code == 200, r.text
        assert r.json()["by_zone"] == {"(none)": 1, "(unknown)": 1}


async def test_every_figure_the_kpis_and_the_heat_map_answer_is_said_in_their_description(
        clean_redis: str) -> None:
    """Supervisors act on these numbers: each one the answer holds (a cell's too) is named
    in its route's OpenAPI description, which says what it counts (the KPIs' response
    times, follow-ups, weeks and year before, and the heat map's cells, were not)."""
    async with running("dispatch", clean_redis) as svc:
        team, incident_id, order_id = await assigned_in_dispatch(svc, "fd")
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, incident_id, team, "resolved"))
        await poll_until(lambda: _is(dispatch_status(svc, incident_id), "resolved"), "resolved")
        paths = (await svc.client.get("/openapi.json")).json()["paths"]
        r = await svc.client.get("/v1/kpis", headers=ADMIN, params={
            "district": DISTRICT, "compare": "previous_year"})
        heat = await svc.client.get("/v1/heatmap", headers=ADMIN, params={"district": DISTRICT})
    assert r.status_code == heat.status_code == 200, (r.text, heat.text)
    for path, names in (("/v1/kpis", set(r.json())),
                        ("/v1/heatmap", set(heat.json()) | set(heat.json()["hottest"][0]))):
        said = paths[path]["get"].get("description") or ""
        assert "[since, until)" in said, path
        unsaid = sorted(n for n in names - {"since", "until"} if f"`{n}`" not in said)
        assert unsaid == [], (path, unsaid)


async def test_a_heat_map_asked_for_wrongly_is_refused_naming_the_field(clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        for query, field in (("hours=night", "hours"), ("hours=19-25", "hours"),
                             ("resolution=11", "resolution"),
                             ("since=2026-12-05T00:00:00Z&until=2026-12-01T00:00:00Z", "since"),
                             ("since=2024-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since")):
            r = await svc.client.get(f"/v1/heatmap?district={DISTRICT}&{query}", headers=ADMIN)
            assert r.status_code == 422, query
            assert field in r.text, (query, r.text)


async def test_one_categorys_weeks_and_the_same_period_a_year_earlier(clean_redis: str) -> None:
    now = utcnow()
    reports = [("ebike_theft", timedelta(hours=1)), ("ebike_theft", timedelta(days=8)),
               ("noise", timedelta(hours=2)), ("ebike_theft", timedelta(days=366)),
               ("noise", timedelta(days=367)), ("noise", timedelta(days=400))]
    async with running("dispatch", clean_redis, timezone="+08:00") as svc:
        ids = []
        for n, (category, ago) in enumerate(reports):
            event = incident_reported(f"inc-yoy-{n}", category)
            ids.append(event.incident_id)
            await svc.publish(streams.INCIDENT_REPORTED,
                              event.model_copy(update={"reported_at": now - ago}))
        await poll_until(lambda: all_stored(svc, ids), "every report stored")

        period = {"district": DISTRICT, "since": (now - timedelta(days=14)).isoformat(),
                  "until": now.isoformat()}
        r = await svc.client.get("/v1/kpis", headers=ADMIN, params={
            **period, "category": "ebike_theft", "compare": "previous_year"})
        assert r.status_code == 200, r.text
        kpis = r.json()
        assert (kpis["category"], kpis["incidents"], kpis["by_category"]) == (
            "ebike_theft", 2, {"ebike_theft": 2})
        assert len(kpis["by_week"]) in (3, 4) and sum(w["count"] for w in kpis["by_week"]) == 2
        # this week's: an hour ago, unless that was last week on the district's clock (the
        # first hour of a Monday at +08:00)
        tz = timezone(timedelta(hours=8))
        same_week = ((now - timedelta(hours=1)).astimezone(tz).isocalendar()[:2]
                     == now.astimezone(tz).isocalendar()[:2])
        assert kpis["by_week"][-1]["count"] == (1 if same_week else 0)
        assert (kpis["previous_year"]["incidents"], kpis["previous_year"]["by_category"]) == (
            1, {"ebike_theft": 1})

        r = await svc.client.get("/v1/kpis", headers=ADMIN,
                                 params={**period, "compare": "previous_year"})
        assert r.json()["incidents"] == 3
        assert r.json()["previous_year"]["by_category"] == {"ebike_theft": 1, "noise": 1}

        for path in ("/v1/kpis", "/v1/heatmap"):
            r = await svc.client.get(path, headers=ADMIN,
                                     params={"district": DISTRICT, "category": "e-bike"})
            assert r.status_code == 422 and r.json()["error"]["field"] == "category", path
        r = await svc.client.get("/v1/kpis", headers=ADMIN,
                                 params={"district": DISTRICT, "compare": "last_decade"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "compare"


async def test_a_date_is_counted_from_the_districts_midnight_to_its_next(
        clean_redis: str) -> None:
    """The morning review of yesterday asks for the date: dispatch counts it 00:00 to 24:00 on
    the district's clock (TIMEZONE), whatever the clock of the desk asking. A console on a PC
    set to UTC asked for the UTC day, 08:00 to 08:00 in Nanning."""
    shanghai = parse_timezone("Asia/Shanghai")
    async with running("dispatch", clean_redis, timezone="Asia/Shanghai") as svc:
        day = utcnow().astimezone(shanghai).date() - timedelta(days=3)
        midnight = datetime.combine(day, time(), tzinfo=shanghai)
        # the day's first and last minute, and the seconds either side of it
        times = [midnight, midnight + timedelta(hours=23, minutes=59),
                 midnight - timedelta(seconds=1), midnight + timedelta(days=1)]
        ids = []
        for n, at in enumerate(times):
            event = incident_reported(f"inc-day-{n}", "noise")
            ids.append(event.incident_id)
            await svc.publish(streams.INCIDENT_REPORTED,
                              event.model_copy(update={"reported_at": at}))
        await poll_until(lambda: all_stored(svc, ids), "every report stored")

        before = utcnow().astimezone(shanghai).date()
        r = await svc.client.get("/v1/kpis", headers=ADMIN,
                                 params={"district": DISTRICT, "date": day.isoformat()})
        after = utcnow().astimezone(shanghai).date()
        assert r.status_code == 200, r.text
        kpis = r.json()
        assert (kpis["since"], kpis["until"]) == (
            f"{day}T00:00:00+08:00", f"{day + timedelta(days=1)}T00:00:00+08:00")
        assert kpis["incidents"] == 2
        assert (kpis["by_hour"][0], kpis["by_hour"][23], sum(kpis["by_hour"])) == (1, 1, 2)
        # the district's date now: what a desk on another clock counts yesterday back from
        assert kpis["today"] in {before.isoformat(), after.isoformat()}

        for extra in ({"since": f"{day}T00:00:00+08:00"}, {"until": f"{day}T12:00:00+08:00"}):
            r = await svc.client.get("/v1/kpis", headers=ADMIN, params={
                "district": DISTRICT, "date": day.isoformat(), **extra})
            assert r.status_code == 422 and r.json()["error"]["field"] == "date", r.text
        for wrong in ("2026-12-04T00:00:00+08:00", "yesterday", "1969-12-31", "9999-01-01"):
            r = await svc.client.get("/v1/kpis", headers=ADMIN,
                                     params={"district": DISTRICT, "date": wrong})
            assert r.status_code == 422 and r.json()["error"]["field"] == "date", (wrong, r.text)


async def test_a_hand_over_counts_for_the_force_of_the_team_that_handed_it_over(
        clean_redis: str, publisher: RedisBroker) -> None:
    """DOMAIN.md's "share handled by street patrol" and its on-site rate: an incident a team
    handed over is handled by that team's force, as one it resolved on site is, and stays
    so once the station files it (the station's resolution is not the handling)."""
    _, orders = await hand_over(clean_redis, publisher)  # the guard (security) hands over
    async with board(clean_redis) as client:
        for filed in (False, True):
            if filed:
                await file_case(clean_redis, publisher, orders[-1])
            found = await kpis(client)
            assert found["handed_over"] == 1 and found["resolved_by_force"] == {}
            assert found["handled_by_force"] == {"security": {
                "handled": 1, "share": 1.0, "resolved_on_site": 0, "handed_over": 1,
                "resolved_on_site_share": 0.0}}, filed


async def all_stored(svc: Service, ids: list[str]) -> bool:
    for incident_id in ids:
        r = await svc.client.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        if r.status_code != 200:
            return False
    return True
