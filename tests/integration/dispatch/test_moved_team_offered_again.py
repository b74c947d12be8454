"""A team dispatch took off an incident for a roster import's move (into volunteers, from
a weapon incident) is offered it again once an import moves it back, the incident still
short of it: dispatch took it off itself, for a reason that holds no more. Before, it was
never offered the incident again, as a team that declined it: the incident waited short of
a unit while the team stood free. (The zone given back to a station: see
tests/integration/test_dispatch_zone_moves.py.)"""

from __future__ import annotations

from faststream.redis import RedisBroker

from tests.helpers import poll_until

from .test_engine import orders_for, report, team, wait_for_units
from .test_station_orders_of_a_moved_team import moved
from .test_station_orders_of_a_removed_team import withdrawn


async def test_a_team_moved_into_volunteers_and_back_is_offered_its_weapon_incident_again(
        dispatch: str, publisher: RedisBroker) -> None:
    await team(publisher, "patrol", kind="police", lat=22.8300, lon=108.3665)
    await team(publisher, "guards", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(dispatch, 2)
    incident_id = await report(publisher, "violence", priority="P1", flags=("weapon",))
    sent = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 2
                            and orders_for(dispatch, incident_id), "the joint response")
    (guards,) = [o for o in sent if o.team_id == "guards"]
    await moved(publisher, "guards", agency_id="ag-residents", kind="volunteer")
    await poll_until(lambda: withdrawn(dispatch, guards.order_id), "the order taken back")
    await moved(publisher, "guards", agency_id="ag-security", kind="security")
    again = await poll_until(lambda: len(orders_for(dispatch, incident_id)) >= 3
                             and orders_for(dispatch, incident_id)[2],
                             "the guards offered the fight again", 20)
    assert (again.team_id, again.kind) == ("guards", "dispatch")

