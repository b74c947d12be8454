"""Intake's subscribers: dispatch's incident.updated and incident.closed -> the caller's status view."""

from __future__ import annotations

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from shared import streams
from shared.bus import consume
from shared.events import IncidentClosed, IncidentUpdated

from . import store
from .config import Settings


def register(broker: RedisBroker, *, redis: Redis, settings: Settings) -> None:
    async def on_incident_updated(event: IncidentUpdated) -> None:
        data = await store.get_incident(redis, event.incident_id)
        await store.apply_update(redis, event, category=data["category"] if data else None)

    async def on_incident_closed(event: IncidentClosed) -> None:
        await store.apply_closed(redis, event)

    consume(broker, streams.INCIDENT_UPDATED, IncidentUpdated, on_incident_updated,
            settings=settings, group="intake", bookkeeping=True)
    consume(broker, streams.INCIDENT_CLOSED, IncidentClosed, on_incident_closed,
            settings=settings, group="intake", bookkeeping=True)
