"""Dispatch's subscribers: each event in, one engine use case, events out."""

from __future__ import annotations

from faststream.redis import RedisBroker

from shared import streams
from shared.bus import consume, consume_batches
from shared.events import (
    IncidentCancelRequested,
    IncidentReported,
    OrderDelivered,
    OrderResponded,
    UnitPosition,
    UnitStatus,
)

from .config import Settings
from .domain import PRIORITY_RANK
from .engine import Dispatcher


def register(broker: RedisBroker, *, engine: Dispatcher, settings: Settings) -> None:
    group = "dispatch"
    # New incidents: a read's reports handled at once, so that their scripts go to Redis
    # together (Dispatcher.scripts), and four reads in hand, so that some are handled while
    # the others' scripts run (two gave ~1,100 incidents/s, four ~1,240/s, six no more);
    # each incident is under its own lock. The most urgent start first: in a burst, a P1
    # claims the nearest team before the P4 read with it. A report given up on flags the
    # incident it left with no team.
    consume(broker, streams.INCIDENT_REPORTED, IncidentReported, engine.on_incident_reported,
            settings=settings, group=group, max_workers=64, readers=4,
            first=lambda event: PRIORITY_RANK[event.priority],
            given_up=engine.on_report_given_up)
    # A reporting system's request to cancel its report: the command room is told (flagged).
    consume(broker, streams.INCIDENT_CANCEL_REQUESTED, IncidentCancelRequested,
            engine.on_cancel_requested, settings=settings, group=group)
    # One at a time, in stream order: a team's answers to one order must not overtake each
    # other (an "acknowledged" handled after "resolved" would be lost).
    # Bookkeeping (the board, the projection of teams): a pause after a read that was not
    # full lets the next take several events (`bookkeeping`); new incidents never wait.
    consume(broker, streams.ORDER_RESPONDED, OrderResponded, engine.on_order_responded,
            settings=settings, group=group, bookkeeping=True)
    consume(broker, streams.ORDER_DELIVERED, OrderDelivered, engine.on_order_delivered,
            settings=settings, group=group, bookkeeping=True)
    consume(broker, streams.UNIT_STATUS, UnitStatus, engine.on_unit_status,
            settings=settings, group=group, bookkeeping=True)
    # Thousands of fixes a second at city scale: read, projected and acknowledged in batches.
    consume_batches(broker, streams.UNIT_POSITION, UnitPosition, engine.on_unit_positions,
                    settings=settings, group=group, batch=200, bookkeeping=True)
