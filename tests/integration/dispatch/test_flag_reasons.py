"""A flagged incident says why it is flagged: the board turns it red for a dozen reasons
(nobody found, deadlines missed, a second unit none is free for, volunteers with no escort,
a call for backup nobody answered, ...), and the incident's panel showed only "flagged":
a P1 fight with its police unit on its way, red, and the dispatcher left to guess that it
still wants its security unit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from faststream.redis import RedisBroker

from tests.helpers import poll_until

from .test_engine import orders_once, report, team, wait_for_units

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def view_once(console: httpx.AsyncClient, incident_id: str,
                    holds: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """The incident's view (GET /v1/incidents/{id}) once `holds` holds of it."""
    async def seen() -> dict[str, Any] | None:
        r = await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)
        if r.status_code == 404:  # not made yet
            return None
        assert r.status_code == 200, r.text
        return r.json() if holds(r.json()) else None

    return await poll_until(seen, what)


async def test_a_p1_short_of_its_second_unit_says_so(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    await team(publisher, "pol", kind="police", lat=22.8200, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "violence", priority="P1")
    await orders_once(clean_redis, incident_id, 1, "the police order")
    view = await view_once(console, incident_id, lambda v: v["flagged"],
                           "the fight flagged, short of its security unit")
    assert view["status"] == "assigned"
    assert view["flagged_for"] == ["short_of_units"]


async def test_an_incident_nobody_was_found_for_says_so_and_one_not_flagged_says_nothing(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    waiting = await report(publisher, "noise", priority="P4")
    view = await view_once(console, waiting, lambda v: v["status"] == "unassigned",
                           "the noise waiting: nobody on shift")
    assert view["flagged_for"] == ["unassigned"]
    await team(publisher, "guard", kind="security", lat=22.8172, lon=108.3665)
    await orders_once(clean_redis, waiting, 1, "the guard's order")
    view = await view_once(console, waiting, lambda v: not v["flagged"], "the noise assigned")
    assert view["flagged_for"] == []


async def test_a_hand_over_no_station_team_takes_is_not_said_to_have_missed_deadlines(
        clean_redis: str, publisher: RedisBroker) -> None:
    """Dispatch flags such a hand-over by raising its misses to the flag, as it does for
    deadlines missed: nobody missed one, and the panel must not say so."""
    from .conftest import console_of
    from .test_handover import hand_over

    incident_id, _ = await hand_over(clean_redis, publisher, station_team=False)
    async with console_of(clean_redis) as client:
        view = await view_once(client, incident_id, lambda v: v["flagged"],
                               "the hand-over flagged")
    assert view["status"] == "handed_over"
    assert view["flagged_for"] == ["see_timeline"]


async def test_an_incident_every_team_turned_down_says_so_and_its_teams_say_who(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """A festival night: the only guard near a noise complaint declines it ("busy at the
    market") and is free again at once. Dispatch never offers an incident to a team that
    declined it or let its deadline pass, so the noise waits with a free team on the map
    while the panel said "no team free to send: waiting", as if the next freed team would
    take it: none ever would. The panel now says it was turned down (`turned_down`: send
    one by hand), and the list of teams to send names the team that declined it, and when,
    so that the dispatcher re-offering it does so knowingly."""
    from .test_take_back import respond

    await team(publisher, "guard", kind="security", lat=22.8172, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await orders_once(clean_redis, incident_id, 1, "the guard's order")
    await respond(publisher, order, "declined")
    view = await view_once(console, incident_id, lambda v: v["status"] == "unassigned",
                           "the noise waiting after the guard declined it")
    assert view["flagged_for"] == ["unassigned", "turned_down"]
    r = await console.get(f"/v1/incidents/{incident_id}/teams", headers=ADMIN)
    assert r.status_code == 200, r.text
    (guard,) = r.json()["teams"]
    assert guard["team_id"] == "guard" and guard["status"] == "available"
    assert guard["turned_down"]["answer"] == "declined"
    assert guard["turned_down"]["order_id"] == order.order_id
    assert guard["turned_down"]["at"]


@pytest.mark.parametrize("refusal", ["declined", "timed_out"])
async def test_an_incident_every_team_turned_down_says_so_on_its_timeline_once(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        refusal: str) -> None:
    """The board's flag said the noise was turned down, but its timeline, which the command
    room and the morning review read, said "no suitable team available; waiting", as if a
    freed team would take it, with the guard that declined it free on the map. The line
    written as it waits now says who turned it down and that only a freed team or the
    command room will send one; once: a position fix of the free guard (the waiting queue
    looked at again) or another incident of the district adds none."""
    from .test_reinforcement import make_due
    from .test_take_back import respond

    await team(publisher, "guard", kind="security", lat=22.8172, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    (order,) = await orders_once(clean_redis, incident_id, 1, "the guard's order")
    if refusal == "declined":
        await respond(publisher, order, "declined")
    else:
        make_due(clean_redis, f"ack:{order.order_id}")
    await view_once(console, incident_id, lambda v: v["status"] == "unassigned"
                    and "turned_down" in v["flagged_for"],
                    f"the noise waiting after the guard {refusal} it")
    # the free guard's next fix looks at the waiting queue again; another noise takes it
    await team(publisher, "guard", kind="security", lat=22.8173, lon=108.3665)
    other = await report(publisher, "noise", priority="P4")
    await orders_once(clean_redis, other, 1, "the guard's order for the other noise")
    view = await view_once(console, incident_id, lambda v: True, "the noise's timeline")
    waiting = [e for e in view["timeline"] if e["kind"] == "unassigned"]
    assert [(e["detail_code"], e["detail_args"]) for e in waiting] == [
        ("no_team_turned_down", {"teams": "guard"})], waiting
