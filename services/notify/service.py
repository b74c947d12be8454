"""Notify's operations, shared by the stream handlers, the HTTP routes and the device socket.

A team's answer and its order.responded entry are written by one script
(store.apply_response), as a device's receipt and its order.delivered entry are
(store.record_receipt): nothing is recorded without its event, or published without its
state (the scripts XADD the entry themselves, as intake's and dispatch's do); consumers
deduplicate on `event_id`.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream.redis import RedisBroker
from opentelemetry import trace
from redis.asyncio import Redis

from shared.bus import Traced
from shared.events import (
    Evidence,
    OrderAmended,
    OrderDelivered,
    OrderIssued,
    OrderResponded,
    OrderWithdrawn,
    Response,
    utcnow,
)
from shared.http import Principal, conflict, forbidden, not_found
from shared.telemetry import extract_context, inject_context

from . import store
from .config import Settings
from .domain.fallback import wait_before_step
from .domain.orders import amended as amended_order
from .domain.orders import for_team, outlived, raised, state_frame, withdrawal_cause
from .domain.responses import (
    Decision,
    ResponseRefused,
    allowed_responses,
    decide_response,
    is_live,
)
from .hub import Hub, amended_message, order_message, state_message, withdrawn_message

log = logging.getLogger(__name__)
tracer = trace.get_tracer("services.notify")



class Orders:
    def __init__(self, *, redis: Redis, stream_redis: Redis, broker: RedisBroker, hub: Hub,
                 settings: Settings, fallback_steps: int) -> None:
        self._redis = redis
        self._stream_redis = stream_redis  # issue and withdraw: the stream handlers' connection
        self._broker = broker
        self._hub = hub
        self._settings = settings
        self._fallback_steps = fallback_steps  # the fallback chain's channels (0: none)

    # --- from dispatch ------------------------------------------------------------------

    async def issue(self, batch: list[Traced[OrderIssued]]) -> None:
        """Stores each order once (dedupe on order_id) and fans it out to the team's sockets:
        the batch in one round trip, each order under its own span (its incident's trace).
        An order issued longer ago than notify keeps orders is acknowledged and dropped
        (domain.orders.outlived): its record may be gone, so it could ring as new."""
        new = []
        now = utcnow()
        for item in batch:
            if outlived(item.event, now=now, remembered_s=self._settings.order_ttl_s):
                log.warning("order %s of team %s issued at %s, longer ago than notify keeps "
                            "orders (ORDER_TTL_S %ss): not stored or announced (a replayed "
                            "dead letter, or the stream read again)", item.event.order_id,
                            item.event.team_id, item.event.occurred_at.isoformat(),
                            self._settings.order_ttl_s)
                continue
            order = for_team(item.event)
            with item.current():
                trace_context = inject_context()  # what the device's answers continue
            new.append(store.NewOrder(order, trace_context, order_message(order, trace_context)))
        if not new:
            return
        saved = await store.save_orders(
            self._stream_redis, new,
            fallback_after_s=self._settings.fallback_after_s if self._fallback_steps else None,
            fallback_steps=self._fallback_steps, ttl_s=self._settings.order_ttl_s,
            open_ttl_s=self._settings.live_order_ttl_s,
        )
        for item, outcome in zip(new, saved, strict=True):
            if outcome.replicas is not None:
                # DEBUG, not INFO: a line per order costs ~15 µs of CPU (formatting, a write
                # to stderr); the attempt is recorded with the order (GET
                # /v1/orders/{id}/deliveries) and the order's span marks it processed.
                log.debug("order %s for team %s stored and fanned out to %d replica(s)",
                          item.order.order_id, item.order.team_id, outcome.replicas)

    async def withdraw(self, event: OrderWithdrawn) -> None:
        if await store.withdraw_order(
            self._stream_redis, order_id=event.order_id, team_id=event.team_id,
            incident_id=event.incident_id, district=event.district, reason=event.reason,
            ttl_s=self._settings.order_ttl_s, barred_by=event.barred_by,
            warn_s=self._settings.barred_warning_s,
            fan_out=withdrawn_message(event.order_id, event.barred_by),
        ):
            log.info("order %s withdrawn: %s (reason %s)", event.order_id,
                     withdrawal_cause(event.reason), event.reason)

    async def amend(self, event: OrderAmended) -> None:
        """The command room revised the order's incident, or the police or security going
        with its volunteer team to a P1 changed (`escort`): the stored order and every
        socket that has it follow (a phone that reconnects gets the amended order). Raised
        (more urgent: domain.orders.raised), it is sent again, marked as an update, to each
        phone a fallback message (an SMS, a Web Push) went to: a phone with no data has
        nothing else (fallback.FallbackTimers.send_amended)."""
        record = await store.get_order(self._stream_redis, event.order_id)
        if record is None:
            if outlived(event, now=utcnow(), remembered_s=self._settings.order_ttl_s):
                # its order forgotten (or, issued as long ago, never stored): retrying would
                # only end in a dead letter
                log.warning("order %s amended at %s, longer ago than notify keeps orders: "
                            "nothing to amend", event.order_id, event.occurred_at.isoformat())
                return
            # its order.issued not handled here yet: the entry is retried
            raise LookupError(f"order {event.order_id} amended before notify stored it")
        if record.order is None or record.withdrawn or not is_live(record.state):
            return  # over (withdrawn, or the team's answer ended it): nothing to tell
        amended = amended_order(record.order, event)
        # more urgent now: the phone's countdown, and the fallback, follow
        sooner = amended.ack_by != record.order.ack_by
        fallback_due = None
        if sooner and self._fallback_steps:
            assert event.ack_by is not None
            now = utcnow().timestamp()
            fallback_due = now + wait_before_step(
                now=now, ack_by=event.ack_by.timestamp(),
                after_s=self._settings.fallback_after_s,
                steps_left=max(1, self._fallback_steps - record.fallback_step))
        if await store.amend_order(self._stream_redis, record, amended,
                                   fan_out=amended_message(amended),
                                   revised_at=event.occurred_at, fallback_due=fallback_due,
                                   raised=raised(record.order, amended),
                                   raised_answered=raised(record.order, amended,
                                                          answered=True)):
            log.info("order %s amended: %s", event.order_id, event.priority)

    # --- from devices -------------------------------------------------------------------

    async def _team_order(self, order_id: str, who: Principal) -> store.OrderRecord:
        record = await store.get_order(self._redis, order_id)
        if record is None or record.order is None:
            raise not_found("order")
        if who.kind != "device" or who.team_id != record.team_id:
            raise forbidden("this order was given to another team")
        return record

    async def respond(
        self, *, order_id: str, who: Principal, response: Response, note: str | None,
        evidence: tuple[Evidence, ...] | None = None, origin: str | None = None,
    ) -> dict[str, Any]:
        """Applies a team's response; `origin` is the answering socket, if it came by one."""
        # A decline without a note is taken (DESIGN.md: `note` optional; a device built to
        # it is not refused): refused, the team's "no" went unheard and the incident waited
        # for the order's deadline before the next team was offered it. The device page
        # asks for the reason; the command room's timeline says when none was given.
        note = (note or "").strip() or None
        record = await self._team_order(order_id, who)
        current = trace.get_current_span().get_span_context()
        with tracer.start_as_current_span(
            "respond to order",
            context=extract_context(record.trace),
            links=[trace.Link(current)] if current.is_valid else None,
            attributes={"lianfang.order_id": order_id, "lianfang.incident_id": record.incident_id,
                        "lianfang.team_id": record.team_id, "lianfang.response": response},
        ):
            now = utcnow()
            name = who.extra.get("member_name") or None  # shown to the team: who answered

            def decide(rec: store.OrderRecord) -> tuple[Decision, OrderResponded | None]:
                decision = decide_response(
                    state=rec.state, response=response, last_reinforce_at=rec.last_reinforce_at,
                    now=now, reinforce_repeat_s=self._settings.reinforce_repeat_s,
                    kind=rec.order.kind if rec.order is not None else "dispatch",
                )
                if not decision.emit:
                    return decision, None
                return decision, OrderResponded(
                    district=rec.district,
                    order_id=order_id, incident_id=rec.incident_id, team_id=rec.team_id,
                    member_id=who.member_id or "", device_id=who.device_id,
                    response=response, note=note, evidence=evidence or None,
                )

            def fan_out(decision: Decision) -> str:
                # the team's other sockets learn where the order stands; `origin` has its reply
                return state_message(state_frame(order_id, state=decision.state, answered=True,
                                                 response=response, member_name=name),
                                     origin=origin)

            try:
                outcome = await store.apply_response(
                    self._redis, order_id, decide=decide, fan_out=fan_out, response=response,
                    member_id=who.member_id or "", device_id=who.device_id,
                    member_name=name, ttl_s=self._settings.order_ttl_s, record=record,
                    open_ttl_s=self._settings.live_order_ttl_s,
                )
            except ResponseRefused as exc:
                repeat = await self._repeated(order_id, who=who, response=response)
                if repeat is None:
                    raise conflict(exc.message) from None
                return order_view(repeat)
            if outcome is None:
                raise not_found("order")
            if outcome.event_id is not None:
                log.info("order %s: team %s answered %s", order_id, record.team_id, response)
        return order_view(outcome.record)

    async def _repeated(self, order_id: str, *, who: Principal,
                        response: Response) -> store.OrderRecord | None:
        """The order as it stands when this device sends again an answer that was taken
        (its reply lost: a dead spot, a dropped socket) and a teammate's answer has moved the
        live order on since: a repeat, answered as one (200, nothing published), not
        refused as going back. None: not a repeat, or the order has ended (409 says so)."""
        if response == "reinforce":
            return None  # a repeat only within REINFORCE_REPEAT_S, which decide_response keeps
        record = await store.get_order(self._redis, order_id)
        if record is None or record.withdrawn or not is_live(record.state):
            return None
        if not await store.gave_response(self._redis, order_id, device_id=who.device_id,
                                         response=response):
            return None
        return record

    async def confirm_received(self, *, order_id: str, who: Principal, channel: str) -> bool:
        """Records a device's receipt; True (and one OrderDelivered) only the first time."""
        record = await self._team_order(order_id, who)
        with tracer.start_as_current_span(
            "order received",
            context=extract_context(record.trace),
            attributes={"lianfang.order_id": order_id, "lianfang.device_id": who.device_id or ""},
        ):
            event = OrderDelivered(
                district=record.district, order_id=order_id, incident_id=record.incident_id,
                team_id=record.team_id, member_id=who.member_id or "",
                device_id=who.device_id or who.subject, channel=channel,
            )
            first = await store.record_receipt(self._redis, event,
                                               ttl_s=self._settings.order_ttl_s)
        return first

    async def view(self, *, order_id: str, who: Principal) -> dict[str, Any]:
        if who.kind == "admin":
            record = await store.get_order(self._redis, order_id)
            if record is None:
                raise not_found("order")
        else:
            record = await self._team_order(order_id, who)
        return order_view(record)


def order_view(record: store.OrderRecord) -> dict[str, Any]:
    return {
        "order_id": record.order_id,
        "incident_id": record.incident_id,
        "team_id": record.team_id,
        "state": record.state,
        "answered": record.answered,
        "withdrawn": record.withdrawn,
        "last_response": record.last_response,
        "allowed": list(allowed_responses(
            record.state, kind=record.order.kind if record.order is not None else "dispatch")),
        "updated_at": record.updated_at,
    }
