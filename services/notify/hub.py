"""The sockets open on this replica, and the Redis Pub/Sub fan-out that reaches every replica.

An order for a team is published once on `notify:fanout:{team}`; each replica that holds a
socket of that team is subscribed and pushes it. Pub/Sub is fire-and-forget, so it only
makes delivery fast: the team's open orders live in Redis, are replayed on every connect,
and each socket's heartbeat replays anything it has not seen, so a lost message costs at
most one heartbeat. Each socket gets an order once (devices drop duplicates too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from typing import Any
from uuid import uuid4

from opentelemetry import trace
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketState

from shared.events import OrderIssued
from shared.http import Principal
from shared.runtime import stop_task
from shared.streams import entry_id_order
from shared.telemetry import extract_context

from . import store
from .domain.orders import (
    amended_frame,
    for_reader,
    left_out_frame,
    order_frame,
    state_frame,
    withdrawn_frame,
)
from .domain.responses import FINISHED, is_ahead, is_live

log = logging.getLogger(__name__)
tracer = trace.get_tracer("services.notify")

CLOSE_REVOKED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TEAM_CHANGED = 4409
CLOSE_RESTARTING = 1012
CLOSE_TRY_LATER = 1013
SENT_KEPT = 2000
MISSED_KEPT = 200
REVOKED_KEPT_S = 60.0  # how long a revocation or move still closes sockets that connect
SUBSCRIBE_WAIT_S = 5.0  # how long a connecting socket waits for its team's fan-out
ATTEMPTS_GRACE_S = 2.0  # how long a stop waits for the delivery attempts being written


class NotSubscribed(Exception):
    """The team's fan-out subscription was not confirmed in time (Redis slow or away): the
    socket is closed with 1013, and the page connects again later."""


class Connection:
    """One device socket; a single writer task sends, so frames never interleave."""

    def __init__(self, ws: WebSocket, who: Principal, *, queue_size: int) -> None:
        self.ws = ws
        self.who = who
        self.device_id = who.device_id or who.subject
        self.member_id = who.member_id or ""
        self.team_id = who.team_id or ""
        # need to know: a police order's caller and description only to a police member
        self.police = who.agency_kind == "police"
        self.sent: dict[str, None] = {}  # order ids pushed on this socket, oldest first
        # Orders this socket's page holds (sent here, or named by its `holding` frame) that
        # it has not been told ended: each replay tells it of those no longer open.
        self.held: dict[str, None] = {}
        self.told_ended: set[str] = set()
        self.versions: dict[str, Version] = {}  # priority, flags, ack_by, escort sent
        # The state each order was last told in here (an `order` frame: issued): each replay
        # tells the page where an order it has stands now, if a Pub/Sub message was lost.
        self.states: dict[str, str] = {}
        # Orders whose receipt from this socket was refused (Redis away, rate limit): each
        # replay sends the order again, which the page confirms again, until one is taken.
        self.unconfirmed: dict[str, None] = {}
        # Orders the fan-out told news of (a revision, a teammate's answer) before this
        # socket had them: a replay that read them before the news reads them again before
        # it sends them, lest it send them as they were (see Hub.replay).
        self.missed: dict[str, None] = {}
        self.conn_id = uuid4().hex
        # Replays running on this socket (the heartbeat's, a `holding` frame's): what one
        # read may still be sent after another ends, so told_ended is trimmed by the last.
        self.replays = 0
        # The team's live orders the last replay left out, and of those unanswered, as this
        # socket was told (an `orders_left_out` frame): told again only when it changes.
        self.left_out = (0, 0)
        # Orders the team was taken off by the incident's flags (a weapon) that this socket
        # has been warned of (its page had the order and was told it was withdrawn, or it
        # was sent the warning with the order: Hub.warn_barred), and whether this socket has
        # read the team's barred withdrawals yet (once; again after one it could not show).
        self.warned: set[str] = set()
        self.barred_checked = False
        self._queue: asyncio.Queue[dict[str, Any] | tuple[int, str]] = asyncio.Queue(queue_size)
        self._closing = False
        # Frames offered before the socket's `hello` (the team's fan-out is heard from the
        # attach on, the `hello` queued after it): kept here, queued behind it (greet).
        self._early: list[dict[str, Any]] | None = []

    def offer(self, frame: dict[str, Any]) -> bool:
        if self._closing:
            return False
        if self._early is not None:  # not greeted yet: the `hello` goes first
            if 0 < self._queue.maxsize <= len(self._early) + 1:
                log.warning("device %s: too many frames before its hello; closing it",
                            self.device_id)
                self.close(CLOSE_TRY_LATER, "too slow")
                return False
            self._early.append(frame)
            return True
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("device %s is not reading its socket; closing it", self.device_id)
            self.close(CLOSE_TRY_LATER, "too slow")
            return False
        return True

    def greet(self, hello: dict[str, Any]) -> bool:
        """Queues the socket's first frame, its `hello`, then what the fan-out pushed to it
        while it was being attached (DESIGN.md: a device takes its first frame for the
        greeting). False: the socket was closed meanwhile (revoked, moved): no `hello`."""
        early, self._early = self._early or [], None
        if not self.offer(hello):
            return False
        return all(self.offer(frame) for frame in early)

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._early = None  # never sent: a socket closed before its `hello` gets its close
        try:
            self._queue.put_nowait((code, reason))
        except asyncio.QueueFull:  # drop the oldest frame to make room for the close
            self._queue.get_nowait()
            self._queue.put_nowait((code, reason))

    @property
    def closing(self) -> bool:
        return self._closing

    def mark_sent(self, order_id: str) -> bool:
        """False when this socket already got the order."""
        if order_id in self.sent:
            return False
        self.sent[order_id] = None
        if len(self.sent) > SENT_KEPT:
            oldest = next(iter(self.sent))
            self.sent.pop(oldest)
            self.versions.pop(oldest, None)
            self.states.pop(oldest, None)
            self.unconfirmed.pop(oldest, None)
        return True

    def told_state(self, order_id: str, state: str) -> None:
        self.states[order_id] = state

    def missed_news(self, order_id: str) -> None:
        """The fan-out told news of an order this socket does not have (yet)."""
        self.missed[order_id] = None
        if len(self.missed) > MISSED_KEPT:
            self.missed.pop(next(iter(self.missed)))

    def receipt_refused(self, order_id: str) -> None:
        """This socket's `received` for the order was not recorded: ask for it again."""
        if order_id in self.sent:
            self.unconfirmed[order_id] = None

    def receipt_taken(self, order_id: str) -> None:
        self.unconfirmed.pop(order_id, None)

    async def write_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, tuple):
                code, reason = item
                if self.ws.application_state == WebSocketState.CONNECTED:
                    with contextlib.suppress(Exception):
                        await self.ws.close(code, reason)
                return
            try:
                await self.ws.send_text(json.dumps(item, ensure_ascii=False, default=str))
            except Exception:  # the peer went away; the reader sees the disconnect
                self._closing = True
                return


# The fan-out messages for a new and a withdrawn order: the store's scripts publish them
# with the state change, in one round trip. A new order's message carries its frame, built
# once, and its trace context, so a replica pushes it without reading the order back.
def order_message(order: OrderIssued, trace_context: dict[str, str]) -> str:
    return json.dumps({
        "event": "order", "order_id": order.order_id, "incident_id": order.incident_id,
        "frame": order_frame(order, traceparent=trace_context.get("traceparent")),
        "trace": trace_context,
    })


def state_message(frame: dict[str, Any], *, origin: str | None) -> str:
    """Where an order stands after an answer; `origin`: the socket that answered, which has
    had its own reply already."""
    return json.dumps({"event": "state", "frame": frame, "origin": origin})


Version = tuple[str, tuple[str, ...], str, str, str, str]


def order_version(order: OrderIssued) -> Version:
    """What a socket was last told of an order's revision: priority, flags, acknowledge-by,
    its volunteers' escort, the volunteers its escort escorts, a police order's description
    (an amendment changes these; sync_amended tells a socket a version it has not seen).
    Of the order as the team's (caller data kept for police only), whoever reads."""
    return (order.priority, tuple(order.flags), order.ack_by.isoformat() if order.ack_by else "",
            order.escort or "", order.description or "",
            "" if order.escorting is None else json.dumps(
                [t.model_dump() for t in order.escorting], sort_keys=True))


def frame_version(frame: dict[str, Any]) -> Version:
    """order_version of an order or order_update frame as made, before `for_reader` (ack_by
    as the frame gives it)."""
    return (frame.get("priority", ""), tuple(frame.get("flags") or ()), frame.get("ack_by") or "",
            frame.get("escort") or "", frame.get("description") or "",
            "" if frame.get("escorting") is None else json.dumps(frame["escorting"],
                                                                 sort_keys=True))


def amended_message(order: OrderIssued) -> str:
    return json.dumps({"event": "amended", "order_id": order.order_id,
                       "frame": amended_frame(order)})


def withdrawn_message(order_id: str, barred_by: tuple[str, ...] = ()) -> str:
    message: dict[str, Any] = {"event": "withdrawn", "order_id": order_id}
    if barred_by:
        message["barred_by"] = list(barred_by)
    return json.dumps(message)


class Hub:
    def __init__(self, redis: Redis, *, ttl_s: int, replay_most: int = store.REPLAY_MOST,
                 barred_warning_s: int = store.BARRED_WARNING_S) -> None:
        self._redis = redis
        self._barred_warning_s = barred_warning_s  # store.barred_warnings
        self._replay_most = replay_most  # the most orders a replay sends (store.open_orders)
        self._by_team: dict[str, set[Connection]] = defaultdict(set)
        self._by_device: dict[str, set[Connection]] = defaultdict(set)
        self._subscribed: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._attempts = store.AttemptLog(redis, ttl_s=ttl_s)
        self._attempt_writer: asyncio.Task[None] | None = None
        self.on_revoked: list[Any] = []  # callbacks(device_id), e.g. dropping cached tokens
        # Devices revoked (None) or moved to a team (its id) in the last REVOKED_KEPT_S,
        # and when the change was applied if it was of their agency's kind (else None): a
        # socket authenticated just before and attached just after is closed as well.
        self._recent: dict[str, tuple[float, str | None, float | None]] = {}
        # The last control message applied, by its id in store.CONTROL_LOG; once the
        # listener has resubscribed, the id from which it reads there what it missed.
        self._control_seen = "0-0"
        self._missed_after: str | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._control_seen = await store.last_control_id(self._redis)
        self._pubsub = self._redis.pubsub()
        self._subscribed[store.CONTROL] = asyncio.Event()
        await self._pubsub.subscribe(store.CONTROL)
        self._listener = asyncio.create_task(self._listen(), name="notify-fanout")
        self._attempt_writer = asyncio.create_task(self._attempts.run(),
                                                   name="notify-attempts")
        await asyncio.wait_for(self._subscribed[store.CONTROL].wait(), timeout=5)

    async def stop(self) -> None:
        for conns in list(self._by_device.values()):
            for conn in list(conns):
                conn.close(CLOSE_RESTARTING, "server restarting")
        # Each task is cancelled until it has ended: on Python 3.11 a cancellation landing
        # as redis-py finishes a write is swallowed (stop_task), and a single one left the
        # stop waiting for ever on a task that carried on.
        if self._listener is not None:
            await stop_task(self._listener)
        if self._attempt_writer is not None:
            self._attempts.close()  # its write under way ends, and so does it
            await stop_task(self._attempt_writer, grace_s=ATTEMPTS_GRACE_S)
            await self._attempts.flush()  # noted after its last write
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    @property
    def sockets(self) -> int:
        return sum(len(c) for c in self._by_device.values())

    # --- sockets ------------------------------------------------------------------------------

    async def attach(self, conn: Connection) -> None:
        """Registers the socket; returns once this replica hears its team's fan-out."""
        self._by_device[conn.device_id].add(conn)
        self._by_team[conn.team_id].add(conn)
        channel = store.fanout_channel(conn.team_id)
        async with self._lock:
            ready = self._subscribed.get(channel)
            if ready is None:
                ready = self._subscribed[channel] = asyncio.Event()
                assert self._pubsub is not None
                try:
                    await self._pubsub.subscribe(channel)
                except BaseException:
                    # not subscribed: the team's next socket subscribes again rather than
                    # waiting for a confirmation that will never come
                    if self._subscribed.get(channel) is ready:
                        self._subscribed.pop(channel, None)
                    raise
        # Orders published after the subscription took effect reach us by Pub/Sub; those
        # before are in the team's open set, read after this returns.
        try:
            await asyncio.wait_for(ready.wait(), timeout=SUBSCRIBE_WAIT_S)
        except TimeoutError:
            raise NotSubscribed(f"team {conn.team_id}'s fan-out not confirmed within "
                                f"{SUBSCRIBE_WAIT_S:g} s") from None
        self._close_if_revoked(conn)

    def _close_if_revoked(self, conn: Connection) -> bool:
        """A socket whose device was revoked or moved while it connected (after its token
        was checked, before it was attached here, so the control message found nothing to
        close) is closed now, as that message would have closed it. True: closed."""
        recent = self._recent.get(conn.device_id)
        if recent is None or time.monotonic() - recent[0] > REVOKED_KEPT_S:
            return False
        if recent[2] is not None:
            # Its agency's kind changed, its team not: a token checked after the change
            # was applied says the new kind (the socket reconnected after it) and stays.
            checked_at = conn.who.checked_at
            if checked_at is not None and checked_at >= recent[2]:
                return False
            conn.close(CLOSE_TEAM_CHANGED, "the device's agency changed; reconnect")
        elif recent[1] is None:
            conn.close(CLOSE_REVOKED, "device revoked")
        elif recent[1] != conn.team_id:
            conn.close(CLOSE_TEAM_CHANGED, "the device's team changed; reconnect")
        else:
            return False
        return True

    async def detach(self, conn: Connection) -> None:
        self._discard(self._by_device, conn.device_id, conn)
        self._discard(self._by_team, conn.team_id, conn)
        channel = store.fanout_channel(conn.team_id)
        async with self._lock:
            if conn.team_id not in self._by_team and channel in self._subscribed:
                self._subscribed.pop(channel, None)
                if self._pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.unsubscribe(channel)

    @staticmethod
    def _discard(index: dict[str, set[Connection]], key: str, conn: Connection) -> None:
        conns = index.get(key)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                index.pop(key, None)

    # --- fan-out ------------------------------------------------------------------------------

    async def publish_revoked(self, device_id: str, *, team_changed: bool = False,
                              agency_changed: bool = False, team_id: str | None = None,
                              checked_before: float | None = None) -> int:
        """Tells every replica to close the device's sockets: revoked (4401: the token is
        refused), moved to another team, `team_id` (4409: it reconnects to it), or its
        agency's kind changed (4409, the sockets whose token was checked before
        `checked_before`, when the change was applied)."""
        event = ("team_changed" if team_changed else
                 "agency_changed" if agency_changed else "revoked")
        message: dict[str, Any] = {"event": event, "device_id": device_id, "team_id": team_id}
        if agency_changed:
            # a string: Redis's cjson, which adds the log's id, keeps 14 digits of a number
            message["checked_before"] = repr(checked_before if checked_before is not None
                                             else time.time())
        return await store.publish_control(self._redis, message)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            assert self._pubsub is not None
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                # redis-py reconnects and resubscribes; the orders published meanwhile
                # are replayed by each socket's heartbeat from the open orders in Redis,
                # the control messages read from their log (_catch_up).
                log.warning("fan-out listener lost Redis (%s); retrying", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if message is not None:
                try:
                    await self._dispatch(message)
                except Exception:
                    log.exception("fan-out message not handled")
            if self._missed_after is not None:
                try:
                    await self._catch_up()
                except (RedisError, OSError) as exc:  # the next turn of the loop tries again
                    log.warning("control messages missed while away not read (%s)",
                                type(exc).__name__)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if message["type"] == "subscribe":
            event = self._subscribed.get(channel) if isinstance(channel, str) else None
            if event is not None:
                if channel == store.CONTROL and event.is_set() and self._missed_after is None:
                    # redis-py resubscribed after a lost connection: what was published
                    # meanwhile is read from the log before the next message is handled
                    self._missed_after = self._control_seen
                event.set()
            return
        if message["type"] != "message" or not isinstance(channel, str):
            return
        data = json.loads(message["data"])
        if channel == store.CONTROL:
            self._on_control(data, replayed=False)
            return
        team_id = channel.removeprefix("notify:fanout:")
        conns = list(self._by_team.get(team_id, ()))
        if not conns:
            return
        kind = data.get("event")
        if kind == "order":
            for conn in conns:
                self._push(conn, data["order_id"], data["incident_id"], data["frame"],
                           data["trace"])
        elif kind == "amended":  # the sockets that have the order; the others get it so
            frame = data["frame"]
            for conn in conns:
                if data["order_id"] in conn.sent:
                    conn.versions[data["order_id"]] = frame_version(frame)
                    conn.offer(for_reader(frame, police=conn.police))
                else:  # a replay reading now must not send it as it was
                    conn.missed_news(data["order_id"])
        elif kind == "withdrawn":
            for conn in conns:
                conn.told_ended.add(data["order_id"])  # the replay need not say it again
                if data.get("barred_by"):
                    if data["order_id"] in conn.sent or data["order_id"] in conn.held:
                        conn.warned.add(data["order_id"])  # its page shows it: told here
                    else:  # the page may not have it (left out): the next replay warns
                        conn.barred_checked = False
                conn.offer(withdrawn_frame(data["order_id"], data.get("barred_by") or ()))
        elif kind == "state":
            frame = data["frame"]
            for conn in conns:
                if frame.get("state") in FINISHED:
                    conn.told_ended.add(frame["order_id"])
                if frame["order_id"] in conn.sent:
                    conn.told_state(frame["order_id"], frame["state"])
                elif frame.get("state") not in FINISHED:  # ended: told_ended keeps it off
                    conn.missed_news(frame["order_id"])
                if conn.conn_id == data.get("origin"):
                    continue  # told by its own reply
                conn.offer(frame)

    def _on_control(self, data: dict[str, Any], *, replayed: bool) -> None:
        if data.get("event") not in ("revoked", "team_changed", "agency_changed"):
            return
        entry_id = data.get("id")  # None: from a replica that keeps no log
        if isinstance(entry_id, str):
            if entry_id_order(entry_id) > entry_id_order(self._control_seen):
                self._control_seen = entry_id
            elif not replayed:
                return  # read from the log already, when the listener resubscribed
        device_id = str(data["device_id"])
        for callback in self.on_revoked:  # what this replica knew of it is stale
            callback(device_id)
        moved = data["event"] == "team_changed"
        rekinded = data["event"] == "agency_changed"
        now = time.monotonic()
        self._recent = {d: r for d, r in self._recent.items() if now - r[0] <= REVOKED_KEPT_S}
        # a move whose new team is not said: any socket connecting now is stale
        self._recent[device_id] = (
            now, (data.get("team_id") or "?") if moved or rekinded else None,
            float(data.get("checked_before") or "inf") if rekinded else None)
        # A socket already on the device's new team connected after the move (or checked
        # its token after the agency's change was applied): it stays, so a message applied
        # twice (heard, and read from the log) closes nothing twice.
        closed = sum(self._close_if_revoked(conn)
                     for conn in list(self._by_device.get(device_id, ())))
        if closed:
            log.info("closed %d socket(s) of device %s (%s)", closed, device_id, data["event"])

    async def _catch_up(self) -> None:
        """Applies the control messages published while the listener was disconnected (up
        to ~5 s): Pub/Sub dropped them; the log kept them. One read per reconnect, where
        re-checking every socket's token would be a request to volunteers per socket."""
        assert self._missed_after is not None
        missed = await store.control_since(self._redis, self._missed_after)
        self._missed_after = None
        for data in missed:
            self._on_control(data, replayed=True)
        if missed:
            log.info("applied %d control message(s) missed while the listener was away",
                     len(missed))

    # --- pushing orders -------------------------------------------------------------------

    def push_order(self, conn: Connection, record: store.OrderRecord) -> None:
        """Sends a stored order to one socket (replays); to a socket that has it, the
        order's priority and flags if they changed since (an amendment it missed)."""
        order = record.order
        if order is None or order.order_id in conn.told_ended:  # ended since it was read
            return
        if order.order_id in conn.sent:
            self.sync_amended(conn, order)
            return
        frame = order_frame(order, traceparent=record.trace.get("traceparent"))
        self._push(conn, order.order_id, order.incident_id, frame, record.trace)

    @staticmethod
    def sync_amended(conn: Connection, order: OrderIssued) -> None:
        now = order_version(order)
        if conn.versions.get(order.order_id, now) != now and not conn.closing:
            conn.versions[order.order_id] = now
            conn.offer(for_reader(amended_frame(order), police=conn.police))

    @staticmethod
    def sync_taken(conn: Connection, record: store.OrderRecord) -> None:
        """Tells a socket of an order its team has taken and is working on (a reloaded
        page, a phone connecting later): where it stands, with the order to show, so the
        member can carry on answering it. Not an order sent again: no alarm, no receipt.
        To a socket that has the order: its new priority and flags, and where it stands
        if that moved on since the socket was last told (an answer whose Pub/Sub message
        was lost: a teammate's acknowledgement)."""
        order = record.order
        if order is not None and order.order_id in conn.told_ended:
            return  # ended since it was read (a withdrawal heard meanwhile): nothing to add
        if order is not None and order.order_id in conn.sent:
            Hub.sync_amended(conn, order)
            told = conn.states.get(order.order_id, "issued")
            if is_ahead(record.state, of=told) and not conn.closing:
                conn.told_state(order.order_id, record.state)
                conn.offer(state_frame(order.order_id, state=record.state, answered=True,
                                       response=record.last_response,
                                       member_name=record.answered_by))
        if order is None or conn.closing or not conn.mark_sent(order.order_id):
            return
        conn.versions[order.order_id] = order_version(order)
        conn.told_state(order.order_id, record.state)
        frame = state_frame(order.order_id, state=record.state, answered=True,
                            response=record.last_response, member_name=record.answered_by)
        frame["order"] = for_reader(
            order_frame(order, traceparent=record.trace.get("traceparent")),
            police=conn.police)
        conn.offer(frame)

    async def push_unconfirmed(self, conn: Connection,
                               records: list[store.OrderRecord]) -> None:
        """Sends again each unanswered order whose receipt from this socket was refused
        (the page confirms every `order` frame and shows it once), unless this device's
        receipt got recorded meanwhile (another of its sockets, or a refusal that came
        after the write). Those answered, withdrawn or ended are forgotten."""
        waiting = {r.order_id: r for r in records
                   if r.order is not None and not r.answered and r.order_id in conn.unconfirmed}
        for order_id in [o for o in conn.unconfirmed if o not in waiting]:
            conn.receipt_taken(order_id)
        for order_id, record in waiting.items():
            if await store.received_by(self._redis, order_id, conn.device_id):
                conn.receipt_taken(order_id)
                continue
            order = record.order
            assert order is not None
            frame = order_frame(order, traceparent=record.trace.get("traceparent"))
            self._push(conn, order_id, order.incident_id, frame, record.trace, again=True)

    def _push(self, conn: Connection, order_id: str, incident_id: str, frame: dict[str, Any],
              trace_context: dict[str, str], *, again: bool = False) -> None:
        """Queues one order's frame on one socket, inside a span continuing the incident's
        trace; the attempt is recorded behind it (store.AttemptLog). `again`: to a socket
        that had it (its receipt was refused), else once per socket. Never an order this
        socket was told has ended: a replay sends what it read, and a withdrawal heard
        meanwhile must not be followed by the order as if it were live."""
        if conn.closing or order_id in conn.told_ended \
                or not (conn.mark_sent(order_id) or again):
            return
        conn.versions[order_id] = frame_version(frame)
        conn.told_state(order_id, "issued")
        with tracer.start_as_current_span(
            "push order",
            context=extract_context(trace_context),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "websocket",
                "messaging.operation": "publish",
                "lianfang.order_id": order_id,
                "lianfang.incident_id": incident_id,
                "lianfang.team_id": conn.team_id,
                "lianfang.device_id": conn.device_id,
            },
        ):
            queued = conn.offer(for_reader(frame, police=conn.police))
        self._attempts.add(order_id, channel="websocket", outcome="sent" if queued else "failed",
                           device_id=conn.device_id, member_id=conn.member_id)

    async def replay(self, conn: Connection) -> None:
        """Pushes the team's open orders this socket has not had; tells it of those that ended.

        An order this socket's page holds (pushed here, or named by the page when it came
        back) that is no longer among the team's open orders has ended: the page is told
        how (withdrawn, or the state it ended in), once. This covers what Pub/Sub lost (a
        withdrawal, a teammate's resolution, also of an order already answered here) and
        what ended while the page was away. The held orders are taken before the open ones
        are read, so an order pushed in between is never taken for an ended one.

        At most `replay_most` orders, those nobody has answered first (store.open_orders):
        the socket is told how many live ones were left out whenever that changes, and an
        order it holds that was left out is left as it is."""
        conn.replays += 1
        try:
            await self._replay(conn)
        finally:
            conn.replays -= 1

    async def _replay(self, conn: Connection) -> None:
        held = [*conn.sent, *conn.held]
        records = await store.open_orders(self._redis, conn.team_id, most=self._replay_most)
        for read in records:
            record = await self._as_it_stands(conn, read)
            if record is None:
                continue
            if record.answered:
                self.sync_taken(conn, record)
            else:
                self.push_order(conn, record)
        if conn.unconfirmed:
            await self.push_unconfirmed(conn, records)
        still_open = {r.order.order_id for r in records if r.order is not None}
        if conn.replays == 1:
            # What it no longer holds needs no memory; unless another replay is still to
            # send what it read before the order ended (it would send it as live).
            conn.told_ended &= set(held)
        # Not among those read: ended, or live and left out by the replay's bound (or not
        # yet in the open set), read together
        unsure = [o for o in dict.fromkeys(held)
                  if o not in still_open and o not in conn.told_ended]
        standing = await store.where_orders_stand(self._redis, unsure) if unsure else []
        for order_id, record in zip(unsure, standing, strict=True):
            if order_id in conn.told_ended:
                continue  # told meanwhile (the fan-out, while it was read)
            if record is not None and record.team_id != conn.team_id:
                continue  # not this team's: nothing to say of it here
            if record is not None and not record.withdrawn and is_live(record.state):
                continue  # not ended: left as it is
            conn.told_ended.add(order_id)
            if record is None or record.withdrawn:
                if record is not None and record.barred_by:
                    conn.warned.add(order_id)  # the page shows it: warned with it
                conn.offer(withdrawn_frame(order_id, record.barred_by if record else ()))
            else:
                conn.offer(state_frame(order_id, state=record.state, answered=True,
                                       response=record.last_response,
                                       member_name=record.answered_by))
        left_out = (records.left_out, records.unanswered_left_out)
        if left_out != conn.left_out and not conn.closing:
            conn.left_out = left_out
            conn.offer(left_out_frame(count=left_out[0], unanswered=left_out[1]))
        if not conn.barred_checked:
            await self.warn_barred(conn)

    async def warn_barred(self, conn: Connection) -> None:
        """Warns a socket of each order its team was taken off in the last BARRED_WARNING_S
        because the incident's flags bar it (a weapon) that its page does not show and this
        device's member has not read the warning of: a page reloaded offline, a browser
        restarted, a teammate's phone connecting later. Only the team's live orders are
        sent on a connect, so without this a volunteer standing at the scene saw the order
        gone, with no word of the knife. The `order_withdrawn` frame carries the order (as
        an `order_state` of a taken order does) and when the team was taken off it; once
        per socket, and at every connect of the device until its member has read it
        (`warning_read`, read_warning)."""
        warnings = await store.barred_warnings(self._redis, conn.team_id, conn.device_id,
                                               warn_s=self._barred_warning_s)
        conn.barred_checked = True
        for warning in reversed(warnings):  # oldest first: the newest ends up on top
            record = warning.record
            order = record.order
            if record.order_id in conn.warned or order is None or conn.closing:
                continue
            conn.warned.add(record.order_id)
            conn.told_ended.add(record.order_id)  # not to be sent as live after this
            frame = withdrawn_frame(record.order_id, record.barred_by)
            frame["order"] = for_reader(
                order_frame(order, traceparent=record.trace.get("traceparent")),
                police=conn.police)
            frame["withdrawn_at"] = warning.at.isoformat()
            conn.offer(frame)

    async def read_warning(self, conn: Connection, order_id: str) -> None:
        """The member has read, on this socket's device, the danger warning of an order the
        team was taken off: its reconnects are not warned of it again."""
        conn.warned.add(order_id)
        await store.read_warning(self._redis, order_id, team_id=conn.team_id,
                                 device_id=conn.device_id, keep_s=self._barred_warning_s)

    async def _as_it_stands(self, conn: Connection,
                            record: store.OrderRecord) -> store.OrderRecord | None:
        """The order as the replay is to send it: as it read it, or, when the fan-out told
        this socket news of it since (a teammate's answer, a revision: heard before the
        socket had the order, so not passed on), as it stands now; None if it has ended.
        Read again until no news came during the read: what comes after is heard by a
        socket that has the order."""
        while record.order_id in conn.missed:
            conn.missed.pop(record.order_id, None)
            again = await store.get_order(self._redis, record.order_id)
            if again is None or again.order is None or again.withdrawn \
                    or not is_live(again.state):
                return None  # its end reached the socket, or the next replay tells it
            record = again
        return record

    async def holding(self, conn: Connection, order_ids: list[str]) -> None:
        """The page (back after a drop) still shows these orders: tell it of those that
        ended meanwhile, now rather than at the next heartbeat."""
        for order_id in order_ids:
            conn.held[order_id] = None
        if len(conn.held) > SENT_KEPT:
            for oldest in list(conn.held)[:len(conn.held) - SENT_KEPT]:
                conn.held.pop(oldest)
        await self.replay(conn)
