"""A team freed by the end of its order goes to the incident waiting for it, whichever of the
two events that free it (volunteers' unit.status, the order's end) dispatch handles last."""

from __future__ import annotations

from shared import streams
from tests.helpers import poll_until
from tests.integration.stream_probes import (
    _is,
    assigned_in_dispatch,
    dispatch_status,
    incident_reported,
    order_responded,
    running,
    unit_status,
)


async def test_a_waiting_incident_gets_the_team_whose_order_ends_after_it_said_available(
        clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        team, first, order_id = await assigned_in_dispatch(svc, "w1")
        await svc.publish(streams.INCIDENT_REPORTED, incident_reported("inc-w2"))
        await poll_until(lambda: _is(dispatch_status(svc, "inc-w2"), "unassigned"),
                         "the second incident waiting: its only team is busy")
        # volunteers' `available` overtakes the order's end, which dispatch handles after it
        await svc.publish(streams.UNIT_STATUS, unit_status(team))
        await poll_until(lambda: svc.drained(streams.UNIT_STATUS.name), "status handled")
        assert await dispatch_status(svc, "inc-w2") == "unassigned"  # still claimed
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, first, team, "resolved"))
        await poll_until(lambda: _is(dispatch_status(svc, "inc-w2"), "assigned"),
                         "the waiting incident given the team its order freed")


async def test_a_freed_team_goes_to_the_most_urgent_waiting_incident_not_the_oldest(
        clean_redis: str) -> None:
    async with running("dispatch", clean_redis) as svc:
        team, first, order_id = await assigned_in_dispatch(svc, "u1")
        await svc.publish(streams.INCIDENT_REPORTED, incident_reported("inc-noise"))  # P4
        await poll_until(lambda: _is(dispatch_status(svc, "inc-noise"), "unassigned"),
                         "the noise complaint waiting")
        theft = incident_reported("inc-theft", "theft_in_progress").model_copy(
            update={"priority": "P1"})
        await svc.publish(streams.INCIDENT_REPORTED, theft)
        await poll_until(lambda: _is(dispatch_status(svc, "inc-theft"), "unassigned"),
                         "the theft in progress waiting too, behind it")
        await svc.publish(streams.UNIT_STATUS, unit_status(team))
        await svc.publish(streams.ORDER_RESPONDED,
                          order_responded(order_id, first, team, "resolved"))
        await poll_until(lambda: _is(dispatch_status(svc, "inc-theft"), "assigned"),
                         "the P1 given the freed team")
        assert await dispatch_status(svc, "inc-noise") == "unassigned"
