"""A hazard reported from the street pays its 3 only once someone other than its reporter's
own team confirmed it, whichever of the resolution and the closing volunteers reads first.

The reporter, on the spot, is the nearest team to their own report and is often sent to it:
their own team's resolution alone would pay them (and their teammates on the shift) for a
report nobody else saw, and anyone could earn points by reporting made-up hazards and
resolving them themselves.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.redis import RedisBroker

from shared.events import IncidentClosed

from .conftest import ADMIN, DISTRICT, Volunteers
from .test_points import hazard_order, points_of, resolved

# Sun patrols with a second volunteer team of the same armbands.
WITH_SUN: dict[str, Any] = copy.deepcopy(DISTRICT)
WITH_SUN["teams"].append({"id": "t-vol2", "agency_id": "v-red", "name": "Aunties 2",
                          "mode": "foot"})
WITH_SUN["members"].append({"id": "m-sun", "name": "Volunteer Sun", "agency_id": "v-red",
                            "team_id": "t-vol2", "role": "volunteer"})

BOTH_ORDERS = pytest.mark.parametrize("first", ["resolution", "closing"])


async def aunties_on_shift(volunteers: Volunteers) -> dict[str, dict[str, str]]:
    """Wang and Chen checked in to t-vol; Sun (t-vol2) is off shift."""
    await volunteers.import_district(WITH_SUN)
    devices = {m: await volunteers.enrol(m) for m in ("m-wang", "m-chen", "m-sun")}
    for member in ("m-wang", "m-chen"):
        r = await volunteers.client.post("/v1/me/shift/start", headers=devices[member])
        assert r.status_code == 200, r.text
    return devices


async def read(volunteers: Volunteers, publisher: RedisBroker, closing: IncidentClosed,
               *, first: str) -> None:
    """t-vol's order of the incident and Wang's "resolved", and the incident's closing, read
    in the order given; each event delivered twice."""
    resolution = [(hazard_order(), "order.issued"), (resolved(), "order.responded")]
    closed = [(closing, "incident.closed")]
    for event, stream in resolution + closed if first == "resolution" else closed + resolution:
        for _ in range(2):
            await publisher.publish(event, stream=stream)
        await volunteers.consumed(stream)


def closing(*, reported_by: str | None, reporter_team: str | None = None) -> IncidentClosed:
    """Dispatch's closing of t-vol's resolution of the hazard (`reporter_team`: the
    reporter's team when they reported; None, as a closing before 2026-12-07 had)."""
    return IncidentClosed(district="d1", incident_id="inc_ord_h", final_status="resolved",
                          resolved_by=("t-vol",), category="hazard_report",
                          reported_by_member=reported_by, reporter_team_id=reporter_team)


async def ledger(volunteers: Volunteers, device: dict[str, str]) -> list[tuple[str, float]]:
    return sorted((e["entry_id"], e["points"])
                  for e in (await points_of(volunteers, device))["history"])


@BOTH_ORDERS
async def test_a_hazard_its_reporters_own_team_resolved_pays_no_hazard_points(
    volunteers: Volunteers, publisher: RedisBroker, first: str,
) -> None:
    # Chen reports a missing manhole cover from the street; his own team, on the spot, is
    # sent and Wang answers "resolved". Nobody but Chen's team ever saw the hole: the 10 for
    # the order are theirs, the hazard's 3 nobody's (not Chen's, nor his teammates').
    devices = await aunties_on_shift(volunteers)
    await read(volunteers, publisher, closing(reported_by="m-chen"), first=first)

    assert await ledger(volunteers, devices["m-chen"]) == [("resolved:ord_h:m-chen", 10)]
    assert await ledger(volunteers, devices["m-wang"]) == [("resolved:ord_h:m-wang", 10)]


@BOTH_ORDERS
async def test_a_hazard_another_team_resolved_pays_its_reporter_and_that_teams_shift(
    volunteers: Volunteers, publisher: RedisBroker, first: str,
) -> None:
    # Sun (t-vol2, off shift) reports it; Wang and Chen's team fence it off: confirmed.
    devices = await aunties_on_shift(volunteers)
    await read(volunteers, publisher, closing(reported_by="m-sun"), first=first)

    assert await ledger(volunteers, devices["m-sun"]) == [("hazard:inc_ord_h:m-sun", 3)]
    for member in ("m-wang", "m-chen"):
        assert await ledger(volunteers, devices[member]) == [
            (f"hazard:inc_ord_h:{member}", 3), (f"resolved:ord_h:{member}", 10)]


@BOTH_ORDERS
async def test_a_hazard_the_command_room_closed_confirms_nothing(
    volunteers: Volunteers, publisher: RedisBroker, first: str,
) -> None:
    # Sun reports it; the command room closes the incident (as dispatch's close sends it:
    # "closed", nobody named) while Wang's "resolved" was on its way, which dispatch then
    # ignored. The command room closes made-up reports and reports nobody went to the same
    # way: no hazard is confirmed, to Sun nor to the team; the team's resolution of the
    # order, as volunteers read it, still earns its 10.
    devices = await aunties_on_shift(volunteers)
    closed = IncidentClosed(district="d1", incident_id="inc_ord_h", final_status="closed",
                            category="hazard_report")
    await read(volunteers, publisher, closed, first=first)

    assert await ledger(volunteers, devices["m-sun"]) == []
    for member in ("m-wang", "m-chen"):
        assert await ledger(volunteers, devices[member]) == [(f"resolved:ord_h:{member}", 10)]


async def test_a_closing_read_again_after_its_reporter_moved_team_decides_as_it_did(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # As above, Chen's own team resolved his report; the coordinator then moves him to
    # t-vol2, and the closing is delivered again (its acknowledgement lost): it is still
    # his own team's confirmation, as the first reading of the closing found it.
    devices = await aunties_on_shift(volunteers)
    await read(volunteers, publisher, closing(reported_by="m-chen"), first="resolution")
    moved = copy.deepcopy(WITH_SUN)
    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)
    await publisher.publish(closing(reported_by="m-chen"), stream="incident.closed")
    await volunteers.consumed("incident.closed")

    assert await ledger(volunteers, devices["m-chen"]) == [("resolved:ord_h:m-chen", 10)]
    assert await ledger(volunteers, devices["m-wang"]) == [("resolved:ord_h:m-wang", 10)]


async def test_a_hazard_closed_after_its_resolving_team_was_removed_pays_that_shift(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Wang and Chen fence off a hole Sun reported; before the incident's closing is read (a
    # backlog, or its entry dead-lettered and replayed), the aunties are merged into t-vol2
    # and t-vol is removed. They were the shift that resolved it: the closing pays them the
    # hazard's 3 as it would have before the removal, each once.
    devices = await aunties_on_shift(volunteers)
    for event, stream in ((hazard_order(), "order.issued"), (resolved(), "order.responded")):
        await publisher.publish(event, stream=stream)
        await volunteers.consumed(stream)
    merged = copy.deepcopy(WITH_SUN)
    for member in merged["members"]:
        if member["team_id"] == "t-vol":
            member["team_id"] = "t-vol2"
    await volunteers.import_district(merged)
    assert (await volunteers.client.delete("/v1/teams/t-vol", headers=ADMIN)).status_code == 204
    for _ in range(2):
        await publisher.publish(closing(reported_by="m-sun"), stream="incident.closed")
        await volunteers.consumed("incident.closed")

    assert await ledger(volunteers, devices["m-sun"]) == [("hazard:inc_ord_h:m-sun", 3)]
    for member in ("m-wang", "m-chen"):
        assert [e for e in await ledger(volunteers, devices[member])
                if not e[0].startswith("patrol:")] == [
            (f"hazard:inc_ord_h:{member}", 3), (f"resolved:ord_h:{member}", 10)]


async def test_a_closing_first_read_after_its_reporter_moved_team_still_sees_their_own_shift(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Chen reports a hole from the street; his own team, Wang and Chen on its shift, is sent
    # and Wang answers "resolved" (volunteers reads it: their 10). Dispatch, catching up
    # after an outage, sends the incident's closing only after the coordinator's import
    # moved Chen to t-vol2. Read then (and again), the closing must not take t-vol for
    # someone else's team: Chen was on the shift that resolved his own report, so nobody
    # but his own team saw the hole, and the hazard's 3 are nobody's.
    devices = await aunties_on_shift(volunteers)
    for event, stream in ((hazard_order(), "order.issued"), (resolved(), "order.responded")):
        await publisher.publish(event, stream=stream)
        await volunteers.consumed(stream)
    moved = copy.deepcopy(WITH_SUN)
    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)
    for _ in range(2):
        await publisher.publish(closing(reported_by="m-chen"), stream="incident.closed")
        await volunteers.consumed("incident.closed")

    assert await ledger(volunteers, devices["m-chen"]) == [("resolved:ord_h:m-chen", 10)]
    assert await ledger(volunteers, devices["m-wang"]) == [("resolved:ord_h:m-wang", 10)]


async def test_a_resolution_read_after_the_closing_with_its_reporter_on_the_shift_pays_no_hazard(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # The same, with volunteers' answers behind its closings: the closing (Chen already on
    # t-vol2) is read first and marks t-vol's resolution as a confirmation; the resolution,
    # read after, finds Chen was on the shift that made it (his stint is kept), and pays
    # only its 10. (The reporter's own 3 were decided by the closing, read first: see the
    # README, Points.)
    devices = await aunties_on_shift(volunteers)
    await publisher.publish(hazard_order(), stream="order.issued")
    await volunteers.consumed("order.issued")
    answered_at = datetime.now(UTC)
    moved = copy.deepcopy(WITH_SUN)
    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    await volunteers.import_district(moved)
    await publisher.publish(closing(reported_by="m-chen"), stream="incident.closed")
    await volunteers.consumed("incident.closed")
    # Wang's "resolved", given while Chen was still on the shift, read only now
    answer = resolved().model_copy(update={"occurred_at": answered_at})
    for _ in range(2):
        await publisher.publish(answer, stream="order.responded")
        await volunteers.consumed("order.responded")

    assert await ledger(volunteers, devices["m-wang"]) == [("resolved:ord_h:m-wang", 10)]
    assert [e for e in await ledger(volunteers, devices["m-chen"])
            if not e[0].startswith("hazard:")] == [("resolved:ord_h:m-chen", 10)]


@BOTH_ORDERS
async def test_a_hazard_its_reporters_team_then_resolved_pays_nothing_after_they_moved_team(
    volunteers: Volunteers, publisher: RedisBroker, first: str,
) -> None:
    # Chen (t-vol), off shift, reports a hole from the street; his own team, Wang alone on
    # its shift, is sent and Wang answers "resolved" (her 10). Before volunteers first reads
    # the closing, an import moves Chen to t-vol2. Volunteers found his team by the roster
    # at that reading: t-vol2, so t-vol looked like someone else's team and its resolution a
    # confirmation (3 to Wang, 3 to Chen) of a report nobody but his own team saw. The
    # closing now carries the team he reported as a member of (intake knew it from his
    # device token): t-vol's word on its own member's report confirms nothing.
    await volunteers.import_district(WITH_SUN)
    devices = {m: await volunteers.enrol(m) for m in ("m-wang", "m-chen", "m-sun")}
    r = await volunteers.client.post("/v1/me/shift/start", headers=devices["m-wang"])
    assert r.status_code == 200, r.text
    moved = copy.deepcopy(WITH_SUN)
    next(m for m in moved["members"] if m["id"] == "m-chen")["team_id"] = "t-vol2"
    closed = closing(reported_by="m-chen", reporter_team="t-vol")
    resolution = [(hazard_order(), "order.issued"), (resolved(), "order.responded")]
    if first == "resolution":
        for event, stream in resolution:
            await publisher.publish(event, stream=stream)
            await volunteers.consumed(stream)
    await volunteers.import_district(moved)
    for _ in range(2):
        await publisher.publish(closed, stream="incident.closed")
        await volunteers.consumed("incident.closed")
    if first == "closing":
        for event, stream in resolution:
            for _ in range(2):
                await publisher.publish(event, stream=stream)
            await volunteers.consumed(stream)

    assert await ledger(volunteers, devices["m-wang"]) == [("resolved:ord_h:m-wang", 10)]
    assert await ledger(volunteers, devices["m-chen"]) == []
    assert await ledger(volunteers, devices["m-sun"]) == []


async def test_a_hazard_another_team_resolved_pays_its_reporter_moved_into_that_team_since(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # The other way round: Sun (t-vol2, off shift) reports it; Wang and Chen's team fence it
    # off; an import then moves Sun into t-vol before the closing is read. Someone else's
    # team confirmed the report he made as a member of t-vol2: paid, to him and the shift.
    devices = await aunties_on_shift(volunteers)
    for event, stream in ((hazard_order(), "order.issued"), (resolved(), "order.responded")):
        await publisher.publish(event, stream=stream)
        await volunteers.consumed(stream)
    moved = copy.deepcopy(WITH_SUN)
    next(m for m in moved["members"] if m["id"] == "m-sun")["team_id"] = "t-vol"
    await volunteers.import_district(moved)
    for _ in range(2):
        await publisher.publish(closing(reported_by="m-sun", reporter_team="t-vol2"),
                                stream="incident.closed")
        await volunteers.consumed("incident.closed")

    assert await ledger(volunteers, devices["m-sun"]) == [("hazard:inc_ord_h:m-sun", 3)]
    for member in ("m-wang", "m-chen"):
        assert await ledger(volunteers, devices[member]) == [
            (f"hazard:inc_ord_h:{member}", 3), (f"resolved:ord_h:{member}", 10)]


async def test_a_closing_read_while_its_reporter_was_off_the_roster_pays_them_nothing_read_again(
    volunteers: Volunteers, publisher: RedisBroker,
) -> None:
    # Sun reports a hole from the street and Wang's team fences it off; the coordinator
    # removes Sun from the roster before the closing is read: Sun is paid nothing, the shift
    # its 3. Sun imported again, the closing delivered again (its acknowledgement lost, or
    # its entry replayed) decides as its first reading did: a redelivery changes nothing
    # (found by volunteers' state machine, which paid the reporter the 3 then).
    devices = await aunties_on_shift(volunteers)
    for event, stream in ((hazard_order(), "order.issued"), (resolved(), "order.responded")):
        await publisher.publish(event, stream=stream)
        await volunteers.consumed(stream)
    assert (await volunteers.client.delete("/v1/members/m-sun", headers=ADMIN)).status_code == 204
    await publisher.publish(closing(reported_by="m-sun"), stream="incident.closed")
    await volunteers.consumed("incident.closed")
    await volunteers.import_district(WITH_SUN)
    sun = await volunteers.enrol("m-sun")
    await publisher.publish(closing(reported_by="m-sun"), stream="incident.closed")
    await volunteers.consumed("incident.closed")

    assert await ledger(volunteers, sun) == []
    for member in ("m-wang", "m-chen"):
        assert await ledger(volunteers, devices[member]) == [
            (f"hazard:inc_ord_h:{member}", 3), (f"resolved:ord_h:{member}", 10)]
