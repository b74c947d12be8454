"""Fallback timers: an order no device confirmed on its socket in time goes out on the next channel.

Timers live in the `notify:fallback` sorted set, claimed with a lease, so every replica
may run this loop, each timer fires on one of them, and a restart loses none. Each step is
due early enough that the whole chain goes out before the order's acknowledge-by deadline
(domain.fallback). A message that failed for a passing reason (a gateway down or
throttling, no answer) to a device no later channel reaches is tried again, by a timer of
its own, while the order can still be answered. Every attempt and its outcome is recorded
with the order.

The team has the order once a device of a member on its shift confirmed it: a receipt
leaves the chain scheduled (store.record_receipt), and each step asks volunteers who is on
the shift (TeamShifts) when some device confirmed; a member off shift (at home, the page open)
having it does not spare the members on shift their Web Push and SMS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, overload
from urllib.parse import quote

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from redis.asyncio import Redis

from shared.failures import RepeatedFailures
from shared.http import STORE_AWAY
from shared.telemetry import extract_context

from . import store
from .channels import Channel, Outcome
from .config import Settings
from .domain.fallback import retry_wait, team_has_order, too_late, wait_before_step
from .domain.phones import e164
from .domain.responses import is_live
from .service import Orders

log = logging.getLogger(__name__)
tracer = trace.get_tracer("services.notify")


# Orders whose step one replica sends at once: a gateway that stops answering holds each
# message up to CHANNEL_TIMEOUT_S, and one order's wait must not be every other order's.
MAX_FIRING = 50
# A sender's mark outlives its send by this much (its outcome is written after it).
MARK_MARGIN_S = 2.0
# How often a sender reads the order again when it was amended as the message was begun.
STALE_READS = 5
# Volunteers' answer about a team's shift serves again this long (the other messages of a
# step, a retry soon after); after it failed to answer, it is not asked for this long
# (unknown at once: a hanging volunteers must not hold every firing task in turn).
SHIFT_KEPT_S = 1.0
SHIFT_RETRY_AFTER_S = 5.0


class Shifts(Protocol):
    async def on_shift(self, team_id: str) -> frozenset[str] | None:
        """The members on the team's shift (empty: nobody); None: not known now."""
        ...


class TeamShifts:
    """Who is on a team's shift, asked of volunteers (the roster's owner) with the services'
    key (shared.tokens.service_key): its team view, `GET /v1/teams/{id}`
    (`state.shift_member_ids`)."""

    def __init__(self, client: httpx.AsyncClient, *, base_url: str, key: str,
                 timeout_s: float) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/v1/teams/"
        self._headers = {"Authorization": f"Bearer {key}"}
        self._timeout = timeout_s
        self._kept: dict[str, tuple[float, frozenset[str] | None]] = {}
        self._failed_at = -math.inf

    async def on_shift(self, team_id: str) -> frozenset[str] | None:
        """The members on the team's shift (empty: nobody); None when volunteers did not say
        within SHIFT_LOOKUP_TIMEOUT_S, or failed to a moment ago, or does not know the team."""
        now = time.monotonic()
        kept = self._kept.get(team_id)
        if kept is not None and kept[0] > now:
            return kept[1]
        if now - self._failed_at < SHIFT_RETRY_AFTER_S:
            return None
        try:
            # httpx's timeout is per read or write: a trickled answer would hold the step
            async with asyncio.timeout(self._timeout):
                response = await self._client.get(self._url + quote(team_id, safe=""),
                                                  headers=self._headers, timeout=self._timeout)
            members = (_shift_members(response.json()) if response.status_code == 200
                       else None)
        except (httpx.HTTPError, TimeoutError, ValueError) as exc:
            self._failed_at = time.monotonic()
            log.warning("team %s: volunteers did not say who is on shift: %s", team_id,
                        type(exc).__name__)
            return None
        if members is None and response.status_code != 404:  # 404: a team it no longer has
            self._failed_at = time.monotonic()
            log.warning("team %s: volunteers answered %s about its shift", team_id,
                        response.status_code)
            return None
        self._keep(team_id, members, now)
        return members

    def _keep(self, team_id: str, members: frozenset[str] | None, now: float) -> None:
        if len(self._kept) > 10_000:
            self._kept = {t: kept for t, kept in self._kept.items() if kept[0] > now}
        self._kept[team_id] = (now + SHIFT_KEPT_S, members)


def _shift_members(team: Any) -> frozenset[str]:
    """`state.shift_member_ids` of volunteers' team view; ValueError when it has none."""
    try:
        ids = team["state"]["shift_member_ids"]
    except (KeyError, TypeError) as exc:
        raise ValueError("no shift_member_ids in the team view") from exc
    if not isinstance(ids, list):
        raise ValueError("shift_member_ids is not a list")
    return frozenset(str(m) for m in ids)


@dataclass(slots=True)
class _StepSend:
    """What came of one device's message of a fallback step."""

    reached: bool = False  # it went (or another replica is sending it)
    stopped: bool = False  # the order needs no more messages, or the timer is not ours
    again_at: float | None = None  # when to try it again (None: not)
    busy: bool = False  # `again_at` is when another replica's send of it is up


@dataclass(frozen=True, slots=True)
class Holders:
    """The devices that confirmed receipt of an order, and their members: a fallback
    message would only tell them again what they have on the page."""

    devices: frozenset[str] = frozenset()
    members: frozenset[str] = frozenset()

    def hold(self, device: store.DeviceRecord) -> bool:
        return device.device_id in self.devices or device.member_id in self.members


async def read_holders(redis: Redis, order_id: str) -> Holders:
    """The order's receipts (store.record_receipt's hash: device -> its member and time)."""
    receipts = await redis.hgetall(f"notify:order:{order_id}:received")
    members = set()
    for receipt in receipts.values():
        try:
            member = json.loads(receipt).get("member_id")
        except (ValueError, AttributeError):
            continue
        if member:
            members.add(str(member))
    return Holders(devices=frozenset(receipts), members=frozenset(members))


def contact_of(device: store.DeviceRecord, channel: Channel) -> str:
    """Where `channel` reaches the device: its number (as the gateway gets it), its push
    subscription's endpoint."""
    if channel.contact_field == "phone":
        return e164(device.phone or "") or device.phone or ""
    if channel.contact_field == "webpush":
        return str((device.webpush or {}).get("endpoint") or device.device_id)
    return device.device_id


def one_per_contact(devices: Sequence[store.DeviceRecord],
                    channel: Channel) -> list[store.DeviceRecord]:
    """The devices a step sends to: one per number or subscription. A member enrolled again
    on the same phone (the old device record kept), or a duty phone two members registered,
    is texted once, not once per record. Always the same one of them (the lowest device
    id): a retry, another replica and the withdrawal's take-back all find that one's mark."""
    chosen: dict[str, store.DeviceRecord] = {}
    for device in sorted(devices, key=lambda d: d.device_id):
        chosen.setdefault(contact_of(device, channel), device)
    return list(chosen.values())


def carried(mark: store.StepMark, updates: Sequence[store.StepMark]) -> int:
    """The latest version of the order the phone of `mark` (an order's fallback message)
    was sent: the message's, or an update of it that went (or may have, and is not to be
    tried again: one `failed` waits for its retry, which a newer version replaces)."""
    return max([mark.version, *(u.version for u in updates
                                if u.step == mark.step and u.device_id == mark.device_id
                                and u.may_have_gone and u.state != "failed")])


def awaits_team(record: store.OrderRecord) -> bool:
    """Issued and neither answered nor withdrawn: the team may still need telling."""
    return (record.order is not None and record.state == "issued" and not record.answered
            and not record.withdrawn)


def taken_from_team(record: store.OrderRecord) -> bool:
    """Withdrawn, or declined by one of its team: no longer the team's (dispatch gives a
    declined order's incident to another team, withdrawing nothing), so the fallback
    messages that went to its phones are taken back."""
    return record.withdrawn or record.state == "declined"


class FallbackTimers:
    def __init__(self, *, redis: Redis, orders: Orders, chain: Sequence[Channel],
                 settings: Settings, shifts: Shifts | None = None) -> None:
        self._redis = redis
        self._orders = orders
        self._chain = tuple(chain)
        self._settings = settings
        self._shifts = shifts  # None: shifts unknown, any receipt counts
        # each firing task with the timer it fires and the lease it holds on it
        self._firing: dict[asyncio.Task[None], tuple[str, float]] = {}

    async def run(self) -> None:
        # a tick every FALLBACK_POLL_S: Redis away or refusing writes (a full disk: hours) is
        # logged when it starts, every 30 s while it lasts and when it ends, not at each tick
        away = RepeatedFailures(log, "fallback tick")
        try:
            while True:
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except STORE_AWAY as exc:
                    away.failed(exc, meanwhile="; the fallback steps wait in Redis")
                except Exception:
                    log.exception("fallback tick failed")
                else:
                    away.ended(now_what="; due fallback steps go now")
                await asyncio.sleep(self._settings.fallback_poll_s)
        finally:
            firing = dict(self._firing)
            for task in firing:
                task.cancel()
            if firing:
                # shielded: stop_task cancels again while this is still at it
                await asyncio.shield(self._hand_back(firing))

    async def _hand_back(self, firing: dict[asyncio.Task[None], tuple[str, float]]) -> None:
        """Stopped (a deploy, a restart): once the firing tasks have ended (each marking its
        message in flight failed), their timers go back due now, for another replica to
        carry on at once; held to their lease, a P1's step would wait FALLBACK_LEASE_S, past
        its deadline."""
        await asyncio.wait(firing, timeout=5)
        try:
            await store.release_fallbacks(self._redis, list(firing.values()))
        except Exception as exc:  # their leases run out: late, not lost
            log.warning("fallback timers not handed back: %s", type(exc).__name__)

    async def tick(self) -> None:
        """Claims the due timers (as many as there is room for) and fires each in a task of
        its own: a step waiting on a slow or hanging service holds up no other order's."""
        room = MAX_FIRING - len(self._firing)
        if room <= 0:
            return
        due, leased_until = await store.claim_due_fallbacks(
            self._redis, lease_s=self._settings.fallback_lease_s, limit=room)
        for timer in due:
            task = asyncio.create_task(self._fire(timer, leased_until),
                                       name=f"fallback {timer}")
            self._firing[task] = (timer, leased_until)
            task.add_done_callback(lambda done: self._firing.pop(done, None))

    async def _fire(self, timer: str, leased_until: float) -> None:
        try:
            await self.fire(timer, leased_until)
        except asyncio.CancelledError:
            raise
        except Exception:  # its lease runs out and the timer comes due again
            log.exception("fallback timer %s failed", timer)

    async def _holders(self, record: store.OrderRecord) -> Holders | None:
        """Who has the order on a device already, not to be sent it again; None when no
        message is to go: the order was answered, ended or withdrawn, or the team has it
        (domain.fallback.team_has_order: volunteers is asked only once a device confirmed)."""
        if not awaits_team(record):
            return None
        if record.received == 0:
            return Holders()
        holders = await read_holders(self._redis, record.order_id)
        on_shift = None
        if self._shifts is not None:
            # in the incident's trace, as the step itself
            attached = otel_context.attach(extract_context(record.trace))
            try:
                on_shift = await self._shifts.on_shift(record.team_id)
            finally:
                otel_context.detach(attached)
        if team_has_order(confirmed_by=holders.members, on_shift=on_shift):
            return None
        return holders

    async def _may_send(self, timer: str, order_id: str,
                        leased_until: float | None) -> Holders | None:
        """Before each message: the timer still ours, the order still not the team's (a
        receipt or the order's end may have come while the others were sent); who has it."""
        if leased_until is not None and not await store.holds_fallback(
                self._redis, timer, leased_until):
            return None
        record = await store.get_order(self._redis, order_id)
        return None if record is None else await self._holders(record)

    async def fire(self, timer: str, leased_until: float | None = None) -> None:
        """One step of the order's fallback chain to every device its channel reaches, or
        (a retry timer, store.retry_timer) that step again for its failed messages.
        `leased_until`: the lease this replica holds (None: fire regardless)."""
        order_id, retrying = store.timer_order(timer)
        if leased_until is not None and not await store.holds_fallback(
                self._redis, timer, leased_until):
            return  # claimed again by another replica (this lease ran out), or moved on
        if store.is_withdrawal_timer(timer):
            await self.take_back(timer, order_id.removesuffix(store.WITHDRAWN_TIMER))
            return
        if store.is_amendment_timer(timer):
            await self.send_amended(timer, order_id, leased_until)
            return
        record = await store.get_order(self._redis, order_id)
        holders = None if record is None else await self._holders(record)
        if record is None or record.order is None or holders is None:
            await store.cancel_fallback(self._redis, timer)
            return
        step = record.fallback_step if retrying is None else retrying
        if step >= len(self._chain):
            await store.cancel_fallback(self._redis, timer)
            return
        channel = self._chain[step]
        ack_by = record.order.ack_by.timestamp() if record.order.ack_by else None
        ttl = self._settings.order_ttl_s
        if too_late(now=time.time(), ack_by=ack_by):
            # e.g. notify back after a restart, reading an order.issued ahead of its
            # withdrawal: no later step or retry of this order is in time either
            await store.record_attempt(
                self._redis, order_id, channel=channel.name, outcome="too_late",
                detail="the acknowledge-by deadline has passed: dispatch withdraws the order",
                ttl_s=ttl)
            log.info("order %s: fallback %s not sent: its acknowledge-by deadline has passed",
                     order_id, channel.name)
            await store.cancel_fallback(self._redis, timer)
            return
        with tracer.start_as_current_span(
            f"fallback {channel.name}",
            context=extract_context(record.trace),
            attributes={"lianfang.order_id": order_id, "lianfang.team_id": record.team_id,
                        "lianfang.channel": channel.name},
        ):
            devices = one_per_contact(
                [d for d in await store.team_devices(self._redis, record.team_id)
                 if channel.reaches(d) and not holders.hold(d)], channel)
            if not devices and retrying is None:
                await store.record_attempt(self._redis, order_id, channel=channel.name,
                                           outcome="no_recipient", ttl_s=ttl)
            # Every phone at once: one after the other, a push service that never answers
            # (dropped by a firewall) held each for CHANNEL_TIMEOUT_S, and a team of two's
            # Web Push outlasted a P1's deadline, its SMS step then too late for anybody.
            sends = [_StepSend() for _ in devices]
            async with asyncio.TaskGroup() as group:
                for listed, sent in zip(devices, sends, strict=True):
                    group.create_task(self._send_step(
                        timer, record, step=step, channel=channel, listed=listed,
                        ack_by=ack_by, leased_until=leased_until, sent=sent))
            if any(s.stopped for s in sends):
                log.info("order %s: fallback %s stopped: confirmed, ended or taken over",
                         order_id, channel.name)
                return
            reached = any(s.reached for s in sends)  # whether it went out to anybody
            # When to try again what did not go through to a device no later channel
            # reaches (a phone with Web Push only; every phone, on the chain's last
            # channel): the strictest Retry-After holds for all; a message another replica
            # is sending, once its time is up.
            failed = [s.again_at for s in sends if s.again_at is not None and not s.busy]
            busy = [s.again_at for s in sends if s.again_at is not None and s.busy]
            again_at = max(failed + [min(busy)] if busy else failed, default=None)
            log.info("order %s: fallback %s tried %d device(s)", order_id, channel.name,
                     len(devices))
        # Read again: an amendment (a more urgent incident) may have brought the deadline
        # forward while this step was sent; what follows must fit it.
        again = await store.get_order(self._redis, order_id)
        ack_by = min((r.order.ack_by.timestamp() for r in (record, again)
                      if r is not None and r.order is not None
                      and r.order.ack_by is not None), default=None)
        if again_at is not None and ack_by is not None and again_at >= ack_by:
            again_at = None  # the order is withdrawn by then
        if retrying is not None:
            if again_at is None:
                await store.cancel_fallback(self._redis, timer)
            else:
                await store.schedule_retry(self._redis, order_id, step=step, due_at=again_at)
            return
        if again_at is not None:
            await store.schedule_retry(self._redis, order_id, step=step, due_at=again_at)
        steps_left = len(self._chain) - (step + 1)
        due_at = None
        if steps_left > 0:
            now = time.time()
            due_at = now + wait_before_step(
                now=now, ack_by=ack_by, after_s=self._settings.fallback_after_s,
                steps_left=steps_left, reached=reached)
        await store.next_fallback(self._redis, order_id, step=step, due_at=due_at)

    async def _send_step(self, timer: str, record: store.OrderRecord, *, step: int,
                         channel: Channel, listed: store.DeviceRecord, ack_by: float | None,
                         leased_until: float | None, sent: _StepSend) -> None:
        """The step's message to one device, unless the order no longer needs it; what came
        of it goes into `sent`."""
        order_id = record.order_id
        ttl = self._settings.order_ttl_s
        budget = self._settings.channel_timeout_s
        later = self._chain[step + 1:]
        holders = await self._may_send(timer, order_id, leased_until)
        if holders is None:
            sent.stopped = True
            return
        if too_late(now=time.time(), ack_by=ack_by):  # a teammate's send outlasted it
            return
        # Read again: the device may have been revoked (a lost phone), moved to another
        # team, or given a new number since the step began; or its member confirmed on
        # another device meanwhile.
        device = await store.get_device(self._redis, listed.device_id)
        if (device is None or device.team_id != record.team_id
                or not channel.reaches(device) or holders.hold(device)):
            return
        alone = not any(c.reaches(device) for c in later)
        for _ in range(STALE_READS):
            now = time.time()
            mark = await store.begin_fallback_send(
                self._redis, order_id, step=step, device_id=device.device_id, now=now,
                till=now + budget + MARK_MARGIN_S, ttl_s=ttl, version=record.version)
            if mark.state != "stale":
                break
            # amended since the step read it: sent as it is now (an amendment made after
            # the mark follows it with an update, send_amended; one made before could not)
            fresh = await store.get_order(self._redis, order_id)
            if fresh is None or fresh.order is None:
                return
            record = fresh
        else:
            return  # amended again at each read (never so in life): not sent by this step
        if mark.state == "busy":  # another replica is sending it (its lease ran out)
            sent.reached = True
            if alone and mark.till is not None:
                sent.again_at, sent.busy = mark.till, True
            return
        if mark.state != "go":
            sent.reached = mark.state == "sent"
            return
        try:
            outcome = await self._send(channel, record, device)
        except asyncio.CancelledError:
            # Stopped mid-send: maybe sent, maybe not. Left `sending`, the message would
            # wait out its time before anyone sent it again; marked failed, the replica
            # carrying on sends it at once (the same reference).
            await store.end_fallback_send(
                self._redis, order_id, step=step, device_id=device.device_id,
                tries=mark.tries, state="failed", went=True)
            raise
        wait = None
        if alone and outcome.status == "failed" and outcome.retry:
            wait = retry_wait(now=time.time(), ack_by=ack_by, tries=mark.tries,
                              after_s=self._settings.fallback_after_s,
                              retry_after_s=outcome.retry_after_s)
        if wait is not None:
            sent.again_at = time.time() + wait
        # a message that went unanswered may have reached the phone, tried again or not: it
        # is taken back if the order is withdrawn; one refused outright (503, 429) is not
        await store.end_fallback_send(
            self._redis, order_id, step=step, device_id=device.device_id,
            tries=mark.tries, state=("sent" if outcome.status == "sent" else
                                     "failed" if wait is not None else "done"),
            went=outcome.status == "sent" or outcome.maybe_sent)
        sent.reached = outcome.status == "sent"
        await store.record_attempt(
            self._redis, order_id, channel=channel.name, outcome=outcome.status,
            device_id=device.device_id, member_id=device.member_id,
            detail=outcome.detail, ttl_s=ttl,
        )
        if outcome.status == "gone":
            await store.forget_dead_channel(
                self._redis, device.device_id, field=channel.contact_field,
                sent_to=getattr(device, channel.contact_field, None))

    async def take_back(self, timer: str, order_id: str) -> None:
        """A withdrawn (or declined: taken_from_team) order's fallback messages taken back
        where their channel can: a Web Push (its Topic replaces the order's push still
        waiting for an offline phone; the page's service worker replaces the order's
        notification), once per message that went or may have gone. An SMS cannot be
        unsent: a second one says the order was withdrawn, not to go (the first stays in the
        inbox). One refused for a passing reason is tried again (as retry_wait says). A
        message still being sent is waited for, lest the order's push reach the push service
        after the one taking it back."""
        record = await store.get_order(self._redis, order_id)
        if record is None or record.order is None or not taken_from_team(record):
            await store.cancel_fallback(self._redis, timer)
            return
        marks = [m for m in await store.step_marks(self._redis, order_id)
                 if m.step < len(self._chain) and m.may_have_gone]
        # an amended order's update under way too (send_amended): the 'do not go' must not
        # reach the phone before a late "P1 (weapon)"
        updates = await store.amended_marks(self._redis, order_id)
        now = time.time()
        sending = [m.till for m in (*marks, *updates)
                   if m.state == "sending" and m.till and m.till > now]
        if sending:
            await store.schedule_timer(self._redis, timer, due_at=max(sending))
            return
        with tracer.start_as_current_span(
            "fallback take back",
            context=extract_context(record.trace),
            attributes={"lianfang.order_id": order_id, "lianfang.team_id": record.team_id},
        ):
            # every message at once: a push service that never answers must not hold up
            # the 'do not go' texts behind each push's CHANNEL_TIMEOUT_S
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._take_back_one(record, mark))
                         for mark in marks]
        # when to try again what failed for a passing reason (the strictest Retry-After
        # holds for all)
        again_at = max((t.result() for t in tasks if t.result() is not None), default=None)
        if again_at is not None:
            await store.schedule_timer(self._redis, timer, due_at=again_at)
        else:
            await store.cancel_fallback(self._redis, timer)

    async def _take_back_one(self, record: store.OrderRecord,
                             mark: store.StepMark) -> float | None:
        """Takes back one fallback message; when to try again (None: not)."""
        order_id = record.order_id
        ttl = self._settings.order_ttl_s
        channel = self._chain[mark.step]
        device = await store.get_device(self._redis, mark.device_id)
        if device is None or not channel.reaches(device):
            return None  # revoked, or its subscription gone: nothing to take back on
        now = time.time()
        begun = await store.begin_fallback_send(
            self._redis, order_id, step=f"withdrawn{mark.step}", device_id=device.device_id,
            now=now, till=now + self._settings.channel_timeout_s + MARK_MARGIN_S, ttl_s=ttl)
        if begun.state == "busy":  # another replica's, or one that died at it: looked at
            return begun.till      # again once its time is up (sent then, or sent now)
        if begun.state != "go":
            return None
        try:
            outcome = await self._send(channel, record, device, take_back=True)
        except asyncio.CancelledError:
            # Stopped mid-send, as _send_step's message may be: marked failed (maybe gone),
            # the replica taking the timer over sends it at once with the same reference,
            # instead of waiting out this sender's time
            await store.end_fallback_send(
                self._redis, order_id, step=f"withdrawn{mark.step}",
                device_id=device.device_id, tries=begun.tries, state="failed", went=True)
            raise
        # refused for a passing reason (a gateway restarting, throttling): tried again, as
        # the order's own message would be; a texted member must learn not to go
        wait = None
        if outcome is not None and outcome.status == "failed" and outcome.retry:
            wait = retry_wait(now=time.time(), ack_by=None, tries=begun.tries,
                              after_s=self._settings.fallback_after_s,
                              retry_after_s=outcome.retry_after_s)
        await store.end_fallback_send(
            self._redis, order_id, step=f"withdrawn{mark.step}", device_id=device.device_id,
            tries=begun.tries,
            state=("sent" if outcome is not None and outcome.status == "sent" else
                   "failed" if wait is not None else "done"))
        if outcome is not None:
            await store.record_attempt(
                self._redis, order_id, channel=channel.name,
                outcome=f"withdrawal_{outcome.status}", device_id=device.device_id,
                member_id=device.member_id, detail=outcome.detail, ttl_s=ttl)
        return None if wait is None else time.time() + wait

    async def send_amended(self, timer: str, order_id: str,
                           leased_until: float | None) -> None:
        """An order raised by an amendment (store.amendment_timer) sent as it is now, marked
        as an update, to each phone a fallback message of it went (or may have gone) to on
        that message's channel: a phone with no data has only that SMS, a closed page only
        that push. Once per version (store.amended_step: an amendment delivered again, a
        timer fired twice, sends nothing twice), not to a phone whose message already
        carried this version (sent after the amendment). A message still being sent is
        waited for, so the update comes after it; one refused for a passing reason is tried
        again, as the order's own would be. Nothing once the order is no longer the team's
        (take_back tells them) or is over, nor past the deadline of an order nobody
        answered (dispatch withdraws it). Answered by the time it fires (an acknowledgement
        after the amendment), not to a phone that already carried the last version that
        raised the priority or flags (OrderRecord.raised_version): a sooner deadline alone
        would send "指令更新…本组已接单", nothing new."""
        record = await store.get_order(self._redis, order_id)
        if (record is None or record.order is None or taken_from_team(record)
                or not is_live(record.state)):
            await store.settle_timer(self._redis, timer, leased_until=leased_until,
                                     due_at=None)
            return
        ack_by = record.order.ack_by.timestamp() if record.order.ack_by else None
        if not awaits_team(record):
            ack_by = None  # answered: the deadline was to answer by
        if too_late(now=time.time(), ack_by=ack_by):
            await store.settle_timer(self._redis, timer, leased_until=leased_until,
                                     due_at=None)
            return
        marks = await store.step_marks(self._redis, order_id)
        updates = await store.amended_marks(self._redis, order_id)
        now = time.time()
        sending = [m.till for m in (*marks, *updates)
                   if m.state == "sending" and m.till and m.till > now]
        if sending:  # the order's message, or an earlier version's update, under way
            await store.settle_timer(self._redis, timer, leased_until=leased_until,
                                     due_at=max(sending))
            return
        behind = [m for m in marks if m.step < len(self._chain) and m.may_have_gone
                  and m.version < record.version]
        if not awaits_team(record):
            # answered: only what raised it whatever the team did (a priority, an urgent
            # flag) is news; a phone that carried it has all an update would say (a sooner
            # deadline alone, set while nobody had answered, no longer holds)
            behind = [m for m in behind
                      if carried(m, updates) < record.raised_version]
        again_at = None
        if behind:
            with tracer.start_as_current_span(
                "fallback amended",
                context=extract_context(record.trace),
                attributes={"lianfang.order_id": order_id, "lianfang.team_id": record.team_id,
                            "lianfang.priority": record.order.priority},
            ):
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(self._send_update_one(record, mark, ack_by))
                             for mark in behind]
            again_at = max((t.result() for t in tasks if t.result() is not None), default=None)
            log.info("order %s: amended (version %d) sent again to %d device(s)", order_id,
                     record.version, len(behind))
        await store.settle_timer(self._redis, timer, leased_until=leased_until,
                                 due_at=again_at)

    async def _send_update_one(self, record: store.OrderRecord, mark: store.StepMark,
                               ack_by: float | None) -> float | None:
        """Sends the amended order on `mark`'s channel to its device; when to try again
        (None: not)."""
        order_id = record.order_id
        ttl = self._settings.order_ttl_s
        channel = self._chain[mark.step]
        device = await store.get_device(self._redis, mark.device_id)
        if device is None or device.team_id != record.team_id or not channel.reaches(device):
            return None  # revoked, moved to another team, or its channel gone
        step = store.amended_step(mark.step, record.version)
        now = time.time()
        begun = await store.begin_fallback_send(
            self._redis, order_id, step=step, device_id=device.device_id, now=now,
            till=now + self._settings.channel_timeout_s + MARK_MARGIN_S, ttl_s=ttl,
            version=record.version)
        if begun.state == "stale":  # amended again: sent as it is then, at once
            return time.time()
        if begun.state == "busy":
            return begun.till
        if begun.state != "go":
            return None
        try:
            outcome = await self._send(channel, record, device, version=record.version,
                                       answered=not awaits_team(record))
        except asyncio.CancelledError:
            # as _send_step's: maybe sent; the replica carrying on sends it at once (the
            # same reference), and a withdrawal takes it back
            await store.end_fallback_send(
                self._redis, order_id, step=step, device_id=device.device_id,
                tries=begun.tries, state="failed", went=True)
            raise
        wait = None
        if outcome.status == "failed" and outcome.retry:
            wait = retry_wait(now=time.time(), ack_by=ack_by, tries=begun.tries,
                              after_s=self._settings.fallback_after_s,
                              retry_after_s=outcome.retry_after_s)
        await store.end_fallback_send(
            self._redis, order_id, step=step, device_id=device.device_id, tries=begun.tries,
            state=("sent" if outcome.status == "sent" else
                   "failed" if wait is not None else "done"),
            went=outcome.status == "sent" or outcome.maybe_sent)
        await store.record_attempt(
            self._redis, order_id, channel=channel.name, outcome=f"update_{outcome.status}",
            device_id=device.device_id, member_id=device.member_id, detail=outcome.detail,
            ttl_s=ttl)
        if outcome.status == "gone":
            await store.forget_dead_channel(
                self._redis, device.device_id, field=channel.contact_field,
                sent_to=getattr(device, channel.contact_field, None))
        return None if wait is None else time.time() + wait

    @overload
    async def _send(self, channel: Channel, record: store.OrderRecord,
                    device: store.DeviceRecord, *, version: int = 0,
                    answered: bool = False) -> Outcome: ...

    @overload
    async def _send(self, channel: Channel, record: store.OrderRecord,
                    device: store.DeviceRecord, *, take_back: bool) -> Outcome | None: ...

    async def _send(self, channel: Channel, record: store.OrderRecord,
                    device: store.DeviceRecord, *, take_back: bool = False,
                    version: int = 0, answered: bool = False) -> Outcome | None:
        """One message (`take_back`: the one taking the order back, None if the channel
        cannot; `version` > 0: the order sent again as amended, `answered`: by then
        acknowledged by the team), within CHANNEL_TIMEOUT_S in all (httpx's timeout is per
        read or write: a service that trickles its answer would hold the step for ever)."""
        assert record.order is not None
        try:
            async with asyncio.timeout(self._settings.channel_timeout_s):
                if take_back:
                    return await channel.take_back(record.order, device,
                                                   barred_by=record.barred_by)
                if version:
                    return await channel.send(record.order, device, version=version,
                                              answered=answered)
                return await channel.send(record.order, device)
        except TimeoutError:
            return Outcome("failed", "Timeout", retry=True, maybe_sent=True)
        except Exception as exc:  # one broken device must not stop the others
            return Outcome("failed", type(exc).__name__)
