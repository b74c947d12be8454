"""Shift plans: the main/secondary rotation per team, and who is planned on a date."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from faststream.redis import RedisBroker
from redis.asyncio.client import Pipeline

from services.volunteers.store import keys
from tests.helpers import poll_until

from .conftest import ADMIN, Volunteers, running
from .test_forgotten_checkins import check_in_hours_ago, order

MAIN_FIRST = {
    "timezone": "Asia/Shanghai",
    "shifts": {"main": {"start": "08:00", "end": "18:00"},
               "secondary": {"start": "18:00", "end": "08:00"}},
    "rotation": ["main", "secondary"],
    "anchor": "2026-11-23",
}


async def test_teams_are_planned_by_their_daily_rotation(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    client = volunteers.client
    secondary_first = MAIN_FIRST | {"rotation": ["secondary", "main"]}
    assert (await client.put("/v1/teams/t-patrol/shift-plan", json=MAIN_FIRST,
                             headers=ADMIN)).status_code == 200
    assert (await client.put("/v1/teams/t-guards/shift-plan", json=secondary_first,
                             headers=ADMIN)).status_code == 200
    plan = (await client.get("/v1/teams/t-patrol/shift-plan", headers=ADMIN)).json()
    assert plan["rotation"] == ["main", "secondary"]

    async def planned(day: str) -> list[tuple[str, str, str]]:
        response = await client.get("/v1/shifts", params={"district": "d1", "date": day},
                                    headers=ADMIN)
        assert response.status_code == 200
        return [(t["team_id"], t["shift"], t["start"]) for t in response.json()["teams"]]

    assert await planned("2026-11-23") == [
        ("t-patrol", "secondary", "2026-11-22T18:00:00+08:00"),  # the night before's, to 08:00
        ("t-patrol", "main", "2026-11-23T08:00:00+08:00"),
        ("t-guards", "secondary", "2026-11-23T18:00:00+08:00")]
    assert await planned("2026-11-24") == [
        ("t-guards", "secondary", "2026-11-23T18:00:00+08:00"),
        ("t-guards", "main", "2026-11-24T08:00:00+08:00"),
        ("t-patrol", "secondary", "2026-11-24T18:00:00+08:00")]
    day = (await client.get("/v1/shifts", params={"district": "d1", "date": "2026-11-23"},
                            headers=ADMIN)).json()
    assert day["teams"][0]["members"] == [
        {"member_id": "m-officer", "name": "Officer Li", "role": "officer",
         "checked_in": False}]
    # a date the calendar cannot hold a night shift past: 422 naming the field, not a 500
    far = await client.get("/v1/shifts", params={"district": "d1", "date": "9999-12-31"},
                           headers=ADMIN)
    assert far.status_code == 422 and far.json()["error"]["field"] == "date"


async def test_the_night_shift_on_the_street_after_midnight_is_one_of_the_days_shifts(
        volunteers: Volunteers) -> None:
    """At 02:00 the commander asked for today's shifts and was shown those starting today
    (08:00 and later): not the night patrol on the street since 18:00 yesterday, until 08:00.
    A shift that ended at midnight is not one of the day's."""
    await volunteers.import_district()
    client = volunteers.client
    night_first = MAIN_FIRST | {"rotation": ["secondary", "main"]}
    evening_then_off = MAIN_FIRST | {"shifts": {"evening": {"start": "16:00", "end": "00:00"}},
                                     "rotation": ["evening", "off"]}
    for team, plan in (("t-patrol", night_first), ("t-guards", evening_then_off)):
        r = await client.put(f"/v1/teams/{team}/shift-plan", json=plan, headers=ADMIN)
        assert r.status_code == 200, r.text
    r = await client.get("/v1/shifts", params={"district": "d1", "date": "2026-11-24"},
                         headers=ADMIN)
    assert r.status_code == 200, r.text
    assert [(t["team_id"], t["shift"], t["start"], t["end"]) for t in r.json()["teams"]] == [
        ("t-patrol", "secondary", "2026-11-23T18:00:00+08:00", "2026-11-24T08:00:00+08:00"),
        ("t-patrol", "main", "2026-11-24T08:00:00+08:00", "2026-11-24T18:00:00+08:00")]


async def test_a_shift_ending_at_24_00_ends_at_midnight(volunteers: Volunteers) -> None:
    """A Chinese duty roster writes the evening shift 18:00-24:00 (and the day 00:00-24:00):
    the end of the day, taken as midnight. 24:00 as a start is no time of that day."""
    await volunteers.import_district()
    client = volunteers.client
    plan = MAIN_FIRST | {"shifts": {"evening": {"start": "18:00", "end": "24:00"},
                                    "day": {"start": "00:00", "end": "24:00:00"}},
                         "rotation": ["evening", "day"]}
    r = await client.put("/v1/teams/t-vol/shift-plan", json=plan, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["shifts"]["evening"] == {"start": "18:00:00", "end": "00:00:00"}
    r = await client.get("/v1/shifts", params={"district": "d1", "date": "2026-11-24"},
                         headers=ADMIN)
    assert [(t["shift"], t["start"], t["end"]) for t in r.json()["teams"]] == [
        ("day", "2026-11-24T00:00:00+08:00", "2026-11-25T00:00:00+08:00")]
    r = await client.get("/v1/shifts", params={"district": "d1", "date": "2026-11-23"},
                         headers=ADMIN)
    assert [(t["shift"], t["start"], t["end"]) for t in r.json()["teams"]] == [
        ("evening", "2026-11-23T18:00:00+08:00", "2026-11-24T00:00:00+08:00")]

    starting = MAIN_FIRST | {"shifts": {"late": {"start": "24:00", "end": "06:00"}},
                             "rotation": ["late"]}
    r = await client.put("/v1/teams/t-vol/shift-plan", json=starting, headers=ADMIN)
    assert (r.status_code, r.json()["error"]["field"]) == (422, "shifts.late.start")
    assert "00:00" in r.json()["error"]["message"]


async def test_bad_plans_and_unknown_teams_are_refused(volunteers: Volunteers) -> None:
    await volunteers.import_district()
    client = volunteers.client
    bad = MAIN_FIRST | {"rotation": ["main", "night"]}
    response = await client.put("/v1/teams/t-patrol/shift-plan", json=bad, headers=ADMIN)
    assert response.status_code == 422
    unknown = await client.put("/v1/teams/t-none/shift-plan", json=MAIN_FIRST, headers=ADMIN)
    assert unknown.status_code == 404
    assert (await client.get("/v1/teams/t-vol/shift-plan", headers=ADMIN)).status_code == 404


async def test_a_plan_offset_with_impossible_minutes_is_refused_naming_the_field(
        volunteers: Volunteers) -> None:
    """"+05:75" was taken and read as +06:15 (and "+08:60" as +09:00): the shift times the
    command room reads from GET /v1/shifts were off by the excess, with no error to say the
    offset was mistyped. So is one beyond -12:00 or +14:00."""
    await volunteers.import_district()
    for offset in ("+05:75", "+08:60", "-13:00"):
        r = await volunteers.client.put("/v1/teams/t-patrol/shift-plan",
                                        json=MAIN_FIRST | {"timezone": offset}, headers=ADMIN)
        assert r.status_code == 422, (offset, r.json())
        assert r.json()["error"]["field"] == "timezone"
        assert r.json()["error"]["message"].startswith("timezone is not a valid UTC offset")
        assert offset not in r.json()["error"]["message"]
    ok = await volunteers.client.put("/v1/teams/t-patrol/shift-plan",
                                     json=MAIN_FIRST | {"timezone": "+05:45"}, headers=ADMIN)
    assert ok.status_code == 200


async def test_a_plan_stored_with_an_impossible_offset_is_still_listed(
        volunteers: Volunteers) -> None:
    # Stored before offsets were checked: listed with the times it showed then, not a 500.
    await volunteers.import_district()
    client = volunteers.client
    assert (await client.put("/v1/teams/t-patrol/shift-plan", json=MAIN_FIRST,
                             headers=ADMIN)).status_code == 200
    raw = (await volunteers.redis.get("roster:plan:t-patrol")).decode()
    await volunteers.redis.set("roster:plan:t-patrol",
                               raw.replace('"Asia/Shanghai"', '"+05:75"'))
    plan = await client.get("/v1/teams/t-patrol/shift-plan", headers=ADMIN)
    assert plan.status_code == 200 and plan.json()["timezone"] == "+05:75"
    day = await client.get("/v1/shifts", params={"district": "d1", "date": "2026-11-23"},
                           headers=ADMIN)
    assert day.status_code == 200
    assert [t["start"] for t in day.json()["teams"] if t["shift"] == "main"] == [
        "2026-11-23T08:00:00+06:15"]


async def test_a_date_is_a_calendar_date_alone_not_a_midnight(volunteers: Volunteers) -> None:
    """date= is the day on the district's clock: a time with it (a midnight, with or without
    an offset) is a 422 naming `date`, as dispatch's review answers, not taken as that day
    (whose midnight would be another clock's)."""
    await volunteers.import_district()
    client = volunteers.client
    for asked in ("2026-11-23T00:00:00", "2026-11-23T00:00:00Z", "2026-11-23T00:00:00+08:00",
                  "2026-11-23 00:00", "20261123", "1795392000"):
        r = await client.get("/v1/shifts", params={"district": "d1", "date": asked},
                             headers=ADMIN)
        assert r.status_code == 422, (asked, r.text)
        assert r.json()["error"]["field"] == "date", (asked, r.text)
    r = await client.get("/v1/shifts", params={"district": "d1", "date": "2026-11-23"},
                         headers=ADMIN)
    assert r.status_code == 200, r.text


def _at(hours_from_now: int) -> str:
    return f"{(datetime.now(UTC) + timedelta(hours=hours_from_now)).hour:02d}:00"


# Plans on UTC's clock whatever the hour the test runs at: a shift of the whole day, every
# day (being worked now); one of an hour starting two hours from now (not yet, nor still);
# every day off.
ALL_DAY = {"timezone": "UTC", "shifts": {"day": {"start": "00:00", "end": "00:00"}},
           "rotation": ["day"], "anchor": "2026-01-05"}
LATER = {"timezone": "UTC", "shifts": {"later": {"start": _at(2), "end": _at(3)}},
         "rotation": ["later"], "anchor": "2026-01-05"}
OFF = ALL_DAY | {"rotation": ["off"]}


async def test_the_shifts_worked_now_say_which_planned_teams_have_not_checked_in(
        volunteers: Volunteers) -> None:
    """DOMAIN.md: at 08:10 the duty dispatcher must see who was planned for the shift and
    has not checked in, to call them; GET /v1/shifts asks for a day and lists its every
    shift. Now's: each team planned on the shift being worked, with its agency and whether
    anyone of it has checked in; not a team whose shift is later, nor one off today."""
    await volunteers.import_district()
    client = volunteers.client
    for team, plan in (("t-patrol", ALL_DAY), ("t-guards", ALL_DAY), ("t-vol", LATER)):
        r = await client.put(f"/v1/teams/{team}/shift-plan", json=plan, headers=ADMIN)
        assert r.status_code == 200, r.text
    officer = await volunteers.enrol("m-officer")
    assert (await client.post("/v1/me/shift/start", headers=officer)).status_code == 200

    r = await client.get("/v1/shifts/now", params={"district": "d1"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    now = r.json()
    assert now["district"] == "d1" and datetime.fromisoformat(now["at"]).tzinfo is not None
    assert [(t["team_id"], t["team_name"], t["agency_kind"], t["agency_name"], t["shift"],
             t["checked_in"]) for t in now["teams"]] == [
        ("t-guards", "Post 3", "security", "Guard company", "day", False),
        ("t-patrol", "Patrol 1", "police", "Street service station", "day", True)]
    guards, patrol = now["teams"]
    assert guards["checked_in_at"] is None and patrol["checked_in_at"] is not None
    assert datetime.fromisoformat(patrol["start"]) <= datetime.fromisoformat(now["at"]) \
        < datetime.fromisoformat(patrol["end"])
    assert "members" not in patrol  # who is on it is the roster's (admin), not the answer's

    # the patrol checks out, the guards' plan is changed to a day off: nobody is due but
    # the patrol, which is not in
    assert (await client.post("/v1/me/shift/end", headers=officer)).status_code == 200
    r = await client.put("/v1/teams/t-guards/shift-plan", json=OFF, headers=ADMIN)
    assert r.status_code == 200, r.text
    r = await client.get("/v1/shifts/now", params={"district": "d1"}, headers=ADMIN)
    assert [(t["team_id"], t["checked_in"]) for t in r.json()["teams"]] == [("t-patrol", False)]
    # another district's plans are not d1's; a district the roster does not hold is named
    await volunteers.import_district({"district": "d2", "agencies": [
        {"id": "d2-ps", "name": "Station Two", "kind": "police"}]})
    r = await client.get("/v1/shifts/now", params={"district": "d2"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["teams"] == []
    r = await client.get("/v1/shifts/now", params={"district": "d3"}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == "district"
    r = await client.get("/v1/shifts/now", headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == "district"


async def test_the_days_shifts_say_who_is_checked_in_as_it_stands_now(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /v1/shifts gave the stored state: a check-in that ran out (a dead phone, a
    forgotten check-out) kept its team on shift, available, until the sweep came by, and a
    team held on its shift by an order with nobody checked in read as on shift like one that
    was manned. As GET /v1/teams/{id} and /v1/shifts/now: a check-in that ran out is over,
    and whether anyone of the team (and which member) is checked in is said apart."""
    # The sweep comes once, at the start: the reads alone must tell
    async with running(clean_redis, checkin_sweep_s=3600, checkin_grace_hours=0,
                       timezone="UTC") as v:
        await v.import_district()
        for team in ("t-patrol", "t-guards", "t-vol"):
            r = await v.client.put(f"/v1/teams/{team}/shift-plan", json=ALL_DAY, headers=ADMIN)
            assert r.status_code == 200, r.text
        officer, guard, wang = [await v.enrol(m) for m in ("m-officer", "m-guard", "m-wang")]
        await check_in_hours_ago(v, officer, 20, monkeypatch)  # yesterday's, never ended
        assert (await v.client.post("/v1/me/shift/start", headers=guard)).status_code == 200
        # Wang's check-in runs out seconds after an order came: the order holds the team
        await check_in_hours_ago(v, wang, 14 - 8 / 3600, monkeypatch)
        await publisher.publish(order("ord_1"), stream="order.issued")
        await v.consumed("order.issued")

        async def wang_out() -> bool:
            return (await v.client.get("/v1/me", headers=wang)).json()["checked_in"] is False

        # not too often: the member's token has its rate limit
        await poll_until(wang_out, "Wang's check-in ran out", timeout=30, interval=0.25)
        r = await v.client.get("/v1/shifts", headers=ADMIN, params={
            "district": "d1", "date": datetime.now(UTC).date().isoformat()})
        assert r.status_code == 200, r.text
        teams = {t["team_id"]: t for t in r.json()["teams"]}
        assert {team: (t["status"], t["on_shift"], t["checked_in"])
                for team, t in teams.items()} == {
            "t-patrol": ("off_duty", False, False),
            "t-guards": ("available", True, True),
            "t-vol": ("dispatched", True, False)}  # on its shift for its order, nobody in
        assert teams["t-patrol"]["checked_in_at"] is None
        assert teams["t-guards"]["checked_in_at"] is not None
        assert [(m["member_id"], m["checked_in"]) for m in teams["t-vol"]["members"]] == [
            ("m-chen", False), ("m-wang", False)]
        assert [(m["member_id"], m["checked_in"]) for m in teams["t-guards"]["members"]] == [
            ("m-guard", True)]


async def test_a_plan_set_while_its_team_is_removed_is_a_404_and_leaves_nothing(
        volunteers: Volunteers, monkeypatch: pytest.MonkeyPatch) -> None:
    """The removal lands between the plan's read of the team and its write: the plan must
    not stay behind (the old district's GET /v1/shifts would list it under whichever team
    is later imported with that id, anywhere)."""
    await volunteers.import_district()
    client = volunteers.client
    assert (await client.delete("/v1/members/m-guard", headers=ADMIN)).status_code == 204
    write = Pipeline.execute
    removed: list[int] = []

    async def removed_first(self: Pipeline, raise_on_error: bool = True) -> Any:
        # the plan's write, the first time: the admin's DELETE gets in just before it (the
        # DELETE's own write, which names the plan too, passes)
        sets_plan = any(c[0][:2] == ("SET", keys.plan("t-guards")) for c in self.command_stack)
        if sets_plan and not removed:
            removed.append(0)
            removed[0] = (await client.delete("/v1/teams/t-guards", headers=ADMIN)).status_code
        return await write(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", removed_first)
    r = await client.put("/v1/teams/t-guards/shift-plan", json=MAIN_FIRST, headers=ADMIN)
    monkeypatch.undo()
    assert removed == [204]
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"
    assert not await volunteers.redis.exists(keys.plan("t-guards"))
    assert not await volunteers.redis.sismember(keys.plans("d1"), "t-guards")
    assert (await client.get("/v1/teams/t-guards/shift-plan", headers=ADMIN)).status_code == 404


async def test_a_district_s_shifts_list_no_team_of_another_district(
        volunteers: Volunteers) -> None:
    """A plan left filed under d1 by a team removed while its plan was sent (before the
    write was watched), the id imported into d2 since: d1's shifts of the day are not d2's
    team with its members, as GET /v1/shifts/now already says."""
    await volunteers.import_district()
    client = volunteers.client
    assert (await client.delete("/v1/members/m-guard", headers=ADMIN)).status_code == 204
    assert (await client.delete("/v1/teams/t-guards", headers=ADMIN)).status_code == 204
    # what the unwatched write left behind
    await volunteers.redis.set(keys.plan("t-guards"), json.dumps(MAIN_FIRST))
    await volunteers.redis.sadd(keys.plans("d1"), "t-guards")
    await volunteers.import_district({
        "district": "d2",
        "agencies": [{"id": "s-co-2", "name": "Other guards", "kind": "security"}],
        "teams": [{"id": "t-guards", "agency_id": "s-co-2", "name": "Post 9", "mode": "foot"}],
        "members": [{"id": "m-guard-2", "name": "Guard Sun", "agency_id": "s-co-2",
                     "team_id": "t-guards", "role": "guard"}]})
    r = await client.put("/v1/teams/t-patrol/shift-plan", json=MAIN_FIRST, headers=ADMIN)
    assert r.status_code == 200, r.text

    r = await client.get("/v1/shifts", params={"district": "d1", "date": "2026-11-23"},
                         headers=ADMIN)
    assert r.status_code == 200, r.text
    assert {t["team_id"] for t in r.json()["teams"]} == {"t-patrol"}
    assert "Guard Sun" not in r.text
