"""Fallback timers: an order no device confirmed on its socket in time goes out on the next channel.

Timers live in the `notify:fallback` sorted set, claimed with a lease, so every replica
may run this loop, each timer fires on one of them, and a restart loses none. Each step is
due early enough that the whole chain goes out before the order's acknowledge-by deadline
(domain.fallback). Every attempt and its outcome is recorded with the order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from opentelemetry import trace
from redis.asyncio import Redis

from shared.telemetry import extract_context

from . import store
from .channels import Channel
from .config import Settings
from .domain.fallback import wait_before_step
from .service import Orders

log = logging.getLogger(__name__)
tracer = trace.get_tracer("services.notify")


class FallbackTimers:
    def __init__(self, *, redis: Redis, orders: Orders, chain: Sequence[Channel],
                 settings: Settings) -> None:
        self._redis = redis
        self._orders = orders
        self._chain = tuple(chain)
        self._settings = settings

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fallback tick failed")
            await asyncio.sleep(self._settings.fallback_poll_s)

    async def tick(self) -> None:
        due, leased_until = await store.claim_due_fallbacks(
            self._redis, lease_s=self._settings.fallback_lease_s)
        for order_id in due:
            await self.fire(order_id, leased_until)

    async def _may_send(self, order_id: str, leased_until: float | None) -> bool:
        """Before each message: the timer still ours, the order still unconfirmed (a
        receipt or the order's end may have come while the others were sent)."""
        if leased_until is not None and not await store.holds_fallback(
                self._redis, order_id, leased_until):
            return False
        record = await store.get_order(self._redis, order_id)
        return record is not None and record.needs_fallback

    async def fire(self, order_id: str, leased_until: float | None = None) -> None:
        """One step of the order's fallback chain to every device its channel reaches.
        `leased_until`: the lease this replica holds (None: fire regardless)."""
        if leased_until is not None and not await store.holds_fallback(
                self._redis, order_id, leased_until):
            return  # claimed again by another replica (this lease ran out), or moved on
        record = await store.get_order(self._redis, order_id)
        if record is None or record.order is None or not record.needs_fallback:
            await store.cancel_fallback(self._redis, order_id)
            return
        step = record.fallback_step
        if step >= len(self._chain):
            await store.cancel_fallback(self._redis, order_id)
            return
        channel = self._chain[step]
        ttl = self._settings.order_ttl_s
        with tracer.start_as_current_span(
            f"fallback {channel.name}",
            context=extract_context(record.trace),
            attributes={"lianfang.order_id": order_id, "lianfang.team_id": record.team_id,
                        "lianfang.channel": channel.name},
        ):
            devices = [d for d in await store.team_devices(self._redis, record.team_id)
                       if channel.reaches(d)]
            if not devices:
                await store.record_attempt(self._redis, order_id, channel=channel.name,
                                           outcome="no_recipient", ttl_s=ttl)
            reached = False  # whether a message of this step went out to anybody
            for device in devices:
                if not await self._may_send(order_id, leased_until):
                    log.info("order %s: fallback %s stopped: confirmed, ended or taken over",
                             order_id, channel.name)
                    return
                if not await store.first_fallback_send(self._redis, order_id, step=step,
                                                       device_id=device.device_id, ttl_s=ttl):
                    reached = True  # sent by a replica whose lease ran out meanwhile
                    continue
                try:
                    outcome = await channel.send(record.order, device)
                    status, detail = outcome.status, outcome.detail
                except Exception as exc:  # one broken device must not stop the others
                    status, detail = "failed", type(exc).__name__
                reached = reached or status == "sent"
                await store.record_attempt(
                    self._redis, order_id, channel=channel.name, outcome=status,
                    device_id=device.device_id, member_id=device.member_id, detail=detail,
                    ttl_s=ttl,
                )
                if status == "gone":
                    await store.set_device_channel(self._redis, device.device_id,
                                                   field=channel.contact_field, value=None)
            log.info("order %s: fallback %s tried %d device(s)", order_id, channel.name,
                     len(devices))
        steps_left = len(self._chain) - (step + 1)
        due_at = None
        if steps_left > 0:
            # Read again: an amendment (a more urgent incident) may have brought the
            # deadline forward while this step was sent; the next step must fit it.
            again = await store.get_order(self._redis, order_id)
            ack_by = min((r.order.ack_by for r in (record, again)
                          if r is not None and r.order is not None
                          and r.order.ack_by is not None), default=None)
            now = time.time()
            due_at = now + wait_before_step(
                now=now, ack_by=ack_by.timestamp() if ack_by else None,
                after_s=self._settings.fallback_after_s, steps_left=steps_left,
                reached=reached)
        await store.next_fallback(self._redis, order_id, step=step, due_at=due_at)
