"""Time and the member's day at volunteers: a phone's clock running ahead, and the order in
which the device routes check what they are sent (DESIGN: 400/422 before 403)."""

from __future__ import annotations

from datetime import timedelta

from shared.events import UnitPosition, utcnow

from .conftest import ADMIN, Volunteers


async def test_a_fix_from_a_clock_running_ahead_does_not_outrank_a_later_true_fix(
    volunteers: Volunteers,
) -> None:
    # Wang's phone runs 25 s fast: its fix, stamped 25 s ahead, was taken now. Chen's phone,
    # on time, takes a fix a moment later where the team has gone: that one is the team's.
    await volunteers.import_district()
    wang, chen = await volunteers.enrol("m-wang"), await volunteers.enrol("m-chen")
    client = volunteers.client
    for device in (wang, chen):
        assert (await client.post("/v1/me/shift/start", headers=device)).status_code == 200

    ahead = await client.put("/v1/me/position", headers=wang, json={
        "lat": 22.031, "lon": 108.031, "at": (utcnow() + timedelta(seconds=25)).isoformat()})
    assert ahead.json() == {"accepted": True, "published": True}
    later = await client.put("/v1/me/position", headers=chen, json={
        "lat": 22.035, "lon": 108.035, "at": utcnow().isoformat()})
    assert later.json() == {"accepted": True, "published": True}, later.text
    checked = utcnow()

    team = (await client.get("/v1/teams/t-vol", headers=ADMIN)).json()
    assert (team["position"]["lat"], team["position"]["lon"]) == (22.035, 108.035)
    # Dispatch counts a fix fresh for ten minutes from its time: none is stamped ahead.
    fixes = await volunteers.events("unit.position", UnitPosition)
    assert [e.lat for e in fixes] == [22.031, 22.035]
    assert all(e.at <= checked for e in fixes)


async def test_the_device_routes_check_their_input_before_the_kind_of_token(
    volunteers: Volunteers,
) -> None:
    await volunteers.import_district()
    client = volunteers.client
    wrong = await client.put("/v1/me/status", json={"status": "asleep"}, headers=ADMIN)
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["error"]["field"] == "status"
    page = await client.get("/v1/me/points", params={"offset": -1}, headers=ADMIN)
    assert page.status_code == 422, page.text
    assert page.json()["error"]["field"] == "offset"
    # a page that starts at two places: wrong input too, though no field alone is wrong
    page = await client.get("/v1/me/points", params={"offset": 1, "before": 5}, headers=ADMIN)
    assert page.status_code == 422, page.text
    assert page.json()["error"]["field"] == "before"
    # Input that is right: the admin's token is still not a device's.
    for response in (
        await client.put("/v1/me/status", json={"status": "busy"}, headers=ADMIN),
        await client.get("/v1/me/points", headers=ADMIN),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"


