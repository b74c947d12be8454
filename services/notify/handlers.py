"""Notify's subscribers: order.issued, .amended and .withdrawn -> devices; device.revoked ->
close sockets."""

from __future__ import annotations

import logging

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from shared import streams
from shared.bus import Traced, consume, consume_batches
from shared.events import DeviceRevoked, OrderAmended, OrderIssued, OrderWithdrawn

from . import store
from .config import Settings
from .hub import Hub
from .service import Orders

log = logging.getLogger(__name__)


def register(broker: RedisBroker, *, redis: Redis, orders: Orders, hub: Hub,
             settings: Settings) -> None:
    async def on_orders_issued(batch: list[Traced[OrderIssued]]) -> None:
        await orders.issue(batch)

    async def on_order_withdrawn(event: OrderWithdrawn) -> None:
        await orders.withdraw(event)

    async def on_order_amended(event: OrderAmended) -> None:
        await orders.amend(event)

    async def on_device_revoked(event: DeviceRevoked) -> None:
        # One replica reads the event; the control channel tells every replica to close.
        if event.reason == "team_changed" and event.team_id:
            # Its channels stay, now for its new team's orders (not the old team's).
            if not await store.move_device(redis, event.device_id, team_id=event.team_id,
                                           moved_at=event.occurred_at):
                # a later move is known: this one's sockets and channels are gone already
                log.info("device %s: its move to team %s at %s is older than its last: "
                         "ignored", event.device_id, event.team_id,
                         event.occurred_at.isoformat())
                return
            await hub.publish_revoked(event.device_id, team_changed=True,
                                      team_id=event.team_id)
            log.info("device %s moved to team %s: sockets closing to reconnect",
                     event.device_id, event.team_id)
            return
        if event.reason == "agency_changed":
            # The team stayed and so do the channels: the sockets that decided by the old
            # kind what the member may read (a police order's caller) reconnect.
            applied_at = await store.kind_change_applied_at(redis, event.event_id)
            await hub.publish_revoked(event.device_id, agency_changed=True,
                                      team_id=event.team_id, checked_before=applied_at)
            log.info("device %s: its agency's kind changed: sockets checked before closing "
                     "to reconnect", event.device_id)
            return
        await store.forget_device(redis, event.device_id)
        await hub.publish_revoked(event.device_id)
        log.info("device %s revoked: channels forgotten, sockets closing", event.device_id)

    # In batches: at a burst one read, one round trip and one acknowledgement serve many
    # orders; each still has its own span in its incident's trace.
    consume_batches(broker, streams.ORDER_ISSUED, OrderIssued, on_orders_issued,
                    settings=settings, group="notify", batch=50, trace_each=True)
    consume(broker, streams.ORDER_WITHDRAWN, OrderWithdrawn, on_order_withdrawn,
            settings=settings, group="notify")
    consume(broker, streams.ORDER_AMENDED, OrderAmended, on_order_amended,
            settings=settings, group="notify")
    consume(broker, streams.DEVICE_REVOKED, DeviceRevoked, on_device_revoked,
            settings=settings, group="notify")
