"""Intake's subscribers: dispatch's incident.updated, incident.closed and order.withdrawn (a
team stood down) -> the caller's status view."""

from __future__ import annotations

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from shared import streams
from shared.bus import consume
from shared.events import IncidentClosed, IncidentUpdated, OrderWithdrawn
from shared.scripts import ScriptBatch

from . import store
from .config import Settings

READ = 16  # entries a read takes, all handled at once (so their scripts leave in order)


def register(broker: RedisBroker, *, redis: Redis, settings: Settings) -> None:
    # A read's events are handled at once and their scripts leave in one round trip, in
    # stream order (each handler's one call is queued before the next handler starts), so
    # the timeline keeps dispatch's order; each script is idempotent on the event id.
    scripts = ScriptBatch(redis)
    records_ttl_s = round(settings.records_days * 86400)

    async def on_incident_updated(event: IncidentUpdated) -> None:
        await store.apply_update(scripts, event, records_ttl_s=records_ttl_s)

    async def on_incident_closed(event: IncidentClosed) -> None:
        await store.apply_closed(scripts, event, records_ttl_s=records_ttl_s)

    async def on_order_withdrawn(event: OrderWithdrawn) -> None:
        # only a withdrawal no update says (a team stood down) carries an entry
        await store.apply_stood_down(scripts, event)

    for stream, model, handler in (
        (streams.INCIDENT_UPDATED, IncidentUpdated, on_incident_updated),
        (streams.INCIDENT_CLOSED, IncidentClosed, on_incident_closed),
        (streams.ORDER_WITHDRAWN, OrderWithdrawn, on_order_withdrawn),
    ):
        consume(broker, stream, model, handler, settings=settings, group="intake",
                bookkeeping=True, batch=READ, max_workers=READ)
