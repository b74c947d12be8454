"""Notify against a real Redis, driven by a hypothesis state machine: orders issued, amended
and withdrawn (each event also handled again), phones connecting, dropping and reconnecting,
their receipts and answers (also late ones, to orders that ended), fallback timers firing,
deadlines passing, the SMS gateway and the push service failing or hanging, steps that fail
midway (Redis away at their N-th call) and are made again, notify and Redis restarting.
After each step, what notify promises (check()): no SMS or Web Push of an order twice, none
after its withdrawal or at or after its acknowledge-by deadline; each answer taken on
order.responded once, none for an order that had ended; and (heartbeats_then_views) every
phone of a team shows each of its team's live orders where it stands, no ended one as live,
and (all_quiet) a texted or pushed member is told of a withdrawal.

The events are handled as notify's consumers call them (handlers.py), the phones talk to
notify's own socket route (sockets.py) through an in-memory WebSocket, a timer fires leased
as the fallback loop fires it (fallback.py), and the gateway and the push service are fakes
at the HTTP boundary (httpx.MockTransport). Redis is a real redis-server of the test's own,
restarted by a rule. The fallback's clock is the test's (`Clock`): it stands still, so what
notify found in time reaches the outside services in time, and moves when the test moves it
(a deadline passes; in all_quiet, a cut-off sender's time runs out). A message notify began
to send and the test cut off (stopped, Redis away) before it reached the fake may have gone,
as far as notify can tell (`Begun`): notify takes it back on a withdrawal.
STATEFUL_EXAMPLES=500 searches longer than the suite does.

It found two real defects (a fallback message that went unanswered was not taken back on a
withdrawal; one refused outright was), and a third came to light as it was made steady (a
take-back whose sender was stopped mid-send was dropped by the replica carrying on), each
fixed with its own test in test_fallback_failures.py."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
import types
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from opentelemetry import trace
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.websockets import WebSocketState

from services.notify import fallback, sockets, store
from services.notify.config import Settings
from services.notify.domain.responses import is_live
from services.notify.fallback import FallbackTimers
from services.notify.hub import Hub
from services.notify.main import build_channels
from services.notify.service import Orders
from shared import streams
from shared.bus import Traced, create_redis
from shared.events import OrderAmended, OrderIssued, OrderResponded, OrderWithdrawn
from shared.http import Principal
from tests.helpers import decode_entry, run_machine
from tests.integration.dispatch.test_stateful import Failures
from tools.redis_server import RedisServer

from .conftest import ADMIN_TOKEN, an_order
from .test_fallback import Browser, vapid_key
from .test_news_during_a_replay import shown

DEADLINES = {"P1": 30, "P2": 60, "P3": 120, "P4": 300}
RESPONSES = ("acknowledged", "en_route", "on_scene", "resolved", "handover", "declined",
             "reinforce")
ENDED = ("resolved", "handover", "declined", "withdrawn")
CHAIN = ("webpush", "sms")  # the fallback's channels, in their order (notify's as configured)
ACTIONS = ("issue", "withdraw", "amend", "fire", "connect", "confirm", "answer")


@dataclass(frozen=True)
class Kit:
    """A member's device as volunteers enrolled it, and the channels it registered."""

    device_id: str
    member_id: str
    team_id: str
    phone: str | None
    push: bool


KITS = (
    Kit("d1", "m1", "t1", "+8613800000001", True),
    Kit("d2", "m2", "t1", "+8613800000002", False),
    Kit("d3", "m3", "t1", None, True),
    Kit("d4", "m4", "t2", "+8613800000004", True),
)
TEAMS = ("t1", "t2")


class Clock:
    """The fallback's clock (its module's `time`): it stands still until the test moves it,
    so a message notify found in time reaches the outside services at the time it checked
    (with the real time running on, another order's deadline could pass in between)."""

    def __init__(self) -> None:
        self.at = time.time()

    def time(self) -> float:
        return self.at

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


class StoreFailures(Failures):
    """Failures (see the dispatch machine) of notify's store functions."""

    def install(self) -> None:
        for name, value in vars(store).items():
            if inspect.iscoroutinefunction(value) and value.__module__ == store.__name__:
                self._real[name] = value
                setattr(store, name, self._wrap(value))

    def uninstall(self) -> None:
        for name, value in self._real.items():
            setattr(store, name, value)


class Begun:
    """The tries of fallback messages notify began (store.begin_fallback_send asked to mark
    one as being sent, whether the mark was taken or the call cut off: Redis away, notify
    stopped), per channel, order and device. A try begun and cut off before its request
    reached the outside service may have gone as far as notify can tell: it takes it back
    on a withdrawal, though the service never saw it."""

    def __init__(self) -> None:
        self.tries: Counter[tuple[str, str, str]] = Counter()
        self._real: Any = None

    def install(self) -> None:
        real = self._real = store.begin_fallback_send

        async def begin(redis: Redis, order_id: str, *, step: int | str, device_id: str,
                        **kwargs: Any) -> store.SendMark:
            if not isinstance(step, int):  # a take-back's
                return await real(redis, order_id, step=step, device_id=device_id, **kwargs)
            key = (CHAIN[step], order_id, device_id)
            try:
                mark = await real(redis, order_id, step=step, device_id=device_id, **kwargs)
            except BaseException:
                self.tries[key] += 1
                raise
            if mark.state == "go":
                self.tries[key] += 1
            return mark

        store.begin_fallback_send = begin  # type: ignore[assignment]

    def uninstall(self) -> None:
        store.begin_fallback_send = self._real


# --- the outside world at the HTTP boundary ---------------------------------------------------


@dataclass
class Message:
    """One request to the SMS gateway or the push service, as it came."""

    channel: str  # sms, webpush
    kind: str  # order, order_update (the order sent again, raised by an amendment), withdrawn
    order_id: str
    device_id: str
    to: str  # the number, or the push endpoint
    reference: str
    at: float  # the test's clock
    taken: bool  # the outside service took it (whatever notify then heard)
    answered: int | None  # what notify heard (None: nothing, it hung)
    withdrawn: bool  # the order was withdrawn in notify's store when it came
    received_by: frozenset[str]  # the members whose devices had confirmed the order
    at_once: bool  # sent while another step ran (a withdrawal, a receipt may cross it)


class Outside:
    """The SMS gateway and the push service: `mode` ok, failing (503) or hanging (takes the
    message, never answers)."""

    def __init__(self, clock: Clock, browsers: dict[str, Browser]) -> None:
        self.clock = clock
        self.browsers = browsers
        self.mode = "ok"
        self.messages: list[Message] = []
        self.redis: Redis | None = None
        self.arrived = asyncio.Event()  # set at each request
        self.at_once = False  # another step runs meanwhile
        self.reading: set[asyncio.Future[None]] = set()  # notify's store, as each one came

    async def handle(self, request: httpx.Request) -> httpx.Response:
        at = self.clock.time()
        if request.url.path == "/sms":
            body = json.loads(request.content)
            channel, kind, order_id = "sms", body["kind"], body["order_id"]
            device_id, to, reference = body["reference"].split(":")[1], body["to"], body["reference"]
        else:
            device_id = request.url.path.rsplit("/", 1)[-1]
            body = self.browsers[device_id].read(request.content)
            channel, order_id, to = "webpush", body["order_id"], str(request.url)
            kind = ("withdrawn" if body["type"] == "order_withdrawn" else
                    "order_update" if body.get("update") else "order")
            reference = f"{order_id}:{device_id}" + (
                ":withdrawn" if kind == "withdrawn" else
                f":v{body['update']}" if kind == "order_update" else "")
        message = Message(channel, kind, order_id, device_id, to, reference, at,
                          taken=self.mode != "failing", answered=None, withdrawn=False,
                          received_by=frozenset(), at_once=self.at_once)
        # It came: recorded at once, and what notify's store held then read to the end
        # even if notify hangs up meanwhile (stopped mid-send): a message that reached the
        # service and went unrecorded would make its take-back look like one that never went
        self.messages.append(message)
        reading = asyncio.ensure_future(self._read_store(message))
        self.reading.add(reading)
        reading.add_done_callback(self.reading.discard)
        await asyncio.shield(reading)
        self.arrived.set()
        if self.mode == "hanging":
            await asyncio.sleep(5)  # notify's CHANNEL_TIMEOUT_S ends it first
        message.answered = 503 if self.mode == "failing" else 201
        return httpx.Response(message.answered)

    async def _read_store(self, message: Message) -> None:
        assert self.redis is not None
        record = await self.redis.hgetall(f"notify:order:{message.order_id}")
        receipts = await self.redis.hgetall(f"notify:order:{message.order_id}:received")
        message.withdrawn = record.get("withdrawn") == "1"
        message.received_by = frozenset(json.loads(r)["member_id"] for r in receipts.values())

    async def recorded(self) -> None:
        """Every message that came is recorded whole (one whose sender hung up included)."""
        while self.reading:
            await asyncio.gather(*self.reading)


# --- a member's phone: its page, over an in-memory socket to notify's socket route -------------


class Socket:
    """What notify's socket route uses of a Starlette WebSocket; frames sent land on the
    page that holds it."""

    def __init__(self, page: Page) -> None:
        kit = page.kit
        self.page = page
        self.scope = {"type": "websocket", "headers": [], "state": {"principal": Principal(
            kind="device", subject=kit.device_id, districts=("d1",), member_id=kit.member_id,
            team_id=kit.team_id, agency_id="ag-police", agency_kind="police",
            device_id=kit.device_id, extra={"member_name": kit.member_id})}}
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.application_state = WebSocketState.CONNECTED
        self.closed: int | None = None

    async def accept(self, subprotocol: str | None = None) -> None:
        pass

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send_text(self, text: str) -> None:
        self.page.arrived(json.loads(text))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = code
        self.application_state = WebSocketState.DISCONNECTED
        self.inbox.put_nowait({"type": "websocket.disconnect"})

    def send(self, frame: dict[str, Any]) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(frame)})


@dataclass
class Page:
    """The member's page (page.py): what it was sent over all its sockets, the receipts it
    owes (it confirms every `order` frame), and the socket it holds now."""

    kit: Kit
    frames: list[dict[str, Any]] = field(default_factory=list)
    to_confirm: list[str] = field(default_factory=list)
    socket: Socket | None = None
    task: asyncio.Task[None] | None = None
    ponged: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        if frame["type"] == "order":
            self.to_confirm.append(frame["order_id"])
        elif frame["type"] == "pong":
            self.ponged.set()

    @property
    def connected(self) -> bool:
        return self.task is not None and not self.task.done()

    def orders(self) -> set[str]:
        return {f["order_id"] for f in self.frames if "order_id" in f}

    def holding(self) -> list[str]:
        """The orders it shows that it has not seen end (page.py: sent with each hello)."""
        return [o for o in sorted(self.orders())
                if (view := shown(self.frames, o)) is not None and view["state"] not in ENDED]


# --- the machine ----------------------------------------------------------------------------------


class NotifyMachine(RuleBasedStateMachine):
    server: RedisServer
    clock = Clock()
    failures = StoreFailures()
    begun = Begun()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.clock.at = time.time()
        self.leases = 0
        self.browsers = {k.device_id: Browser(f"http://push.test/sub/{k.device_id}")
                         for k in KITS if k.push}
        self.outside = Outside(self.clock, self.browsers)
        self.begun.tries.clear()
        self.pages = {k.device_id: Page(k) for k in KITS}
        self.orders: dict[str, OrderIssued] = {}  # as dispatch issued them (last amended)
        self.handled: list[Any] = []  # events handled, for redelivery
        self.answers: list[tuple[str, str]] = []  # (order, response) notify took
        self.entries_at_end: dict[str, int] = {}  # order.responded entries of an ended order
        self.heard: dict[str, asyncio.Event] = {}  # the test's marks on the fan-out
        self.restarts = 0
        self.made = 0
        self.settings = Settings(
            redis_url=self.server.url, admin_token=ADMIN_TOKEN, vapid_private_key=vapid_key(),
            sms_gateway_url="http://gateway.test/sms", webpush_allow_private_endpoints=True,
            channel_timeout_s=0.05, reinforce_repeat_s=3600, ping_interval_s=3600,
            frame_rate_per_s=10_000, frame_burst=10_000, consumer_name="notify-sm")
        self.run(self._start())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _start(self) -> None:
        self.raw = Redis.from_url(self.server.url)  # the streams' entries, as bytes
        self.stack.push_async_callback(self.raw.aclose)
        self.look = Redis.from_url(self.server.url, decode_responses=True)
        self.stack.push_async_callback(self.look.aclose)
        await self.look.flushdb()
        self.outside.redis = self.look
        self.http = await self.stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.MockTransport(self.outside.handle)))
        for kit in KITS:
            await store.touch_device(self.look, device_id=kit.device_id,
                                     member_id=kit.member_id, team_id=kit.team_id,
                                     agency_kind="police", district="d1")
            if kit.phone:
                await store.set_device_channel(self.look, kit.device_id, field="phone",
                                               value=kit.phone)
            if kit.push:
                await store.set_device_channel(
                    self.look, kit.device_id, field="webpush",
                    value=json.dumps(self.browsers[kit.device_id].subscription))
        await self._notify_up()

    async def _notify_up(self) -> None:
        """A notify process: its Redis clients, hub, operations, fallback and socket route."""
        self.redis = create_redis(self.settings)
        stream_redis = Redis(connection_pool=self.redis.connection_pool,
                             single_connection_client=True)
        self.hub = Hub(self.redis, ttl_s=self.settings.order_ttl_s)
        listening = self.hub._dispatch

        async def noting(message: dict[str, Any]) -> None:  # the test's marks, heard
            data = message.get("data")
            if message.get("type") == "message" and str(data).startswith('{"sentinel"'):
                self.heard.pop(json.loads(data)["sentinel"], asyncio.Event()).set()
                return
            await listening(message)

        self.hub._dispatch = noting  # type: ignore[method-assign]
        await self.hub.start()
        chain, _ = build_channels(self.settings, self.http, push_client=self.http)
        assert tuple(c.name for c in chain) == CHAIN
        self.notify = Orders(redis=self.redis, stream_redis=stream_redis, broker=None,  # type: ignore[arg-type]
                             hub=self.hub, settings=self.settings, fallback_steps=len(chain))
        self.timers = FallbackTimers(redis=self.redis, orders=self.notify, chain=chain,
                                     settings=self.settings)
        router = sockets.build_socket_router(redis=self.redis, hub=self.hub, orders=self.notify,
                                             introspector=None,  # type: ignore[arg-type]
                                             settings=self.settings)
        self.route = router.routes[0].endpoint  # type: ignore[attr-defined]
        self._stream_redis = stream_redis
        # a second replica's stream handlers and fallback loop, on the same Redis
        self.other_redis = create_redis(self.settings)
        self.other = Orders(redis=self.other_redis, stream_redis=self.other_redis,
                            broker=None, hub=self.hub, settings=self.settings,  # type: ignore[arg-type]
                            fallback_steps=len(chain))
        self.other_timers = FallbackTimers(redis=self.other_redis, orders=self.other,
                                           chain=chain, settings=self.settings)

    async def _notify_down(self) -> None:
        await self.hub.stop()  # closes every socket (1012)
        for page in self.pages.values():
            if page.task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(page.task, 5)
        await self._stream_redis.aclose()
        await self.redis.aclose()
        await self.other_redis.aclose()

    def teardown(self) -> None:
        self.failures.disarm()
        self.run(self._notify_down())
        self.run(self.stack.aclose())
        self.loop.close()

    def new_id(self, prefix: str) -> str:
        self.made += 1
        return f"{prefix}-{self.made}"

    # --- steps: each one that can be made again ---------------------------------------------

    def handle(self, event: Any, *, other: bool = False) -> Callable[[], Awaitable[None]]:
        """notify's consumer of the event (handlers.py), in this replica or the `other`."""
        self.handled.append(event)
        notify = self.other if other else self.notify
        if isinstance(event, OrderIssued):
            return lambda: notify.issue([Traced(event, trace.INVALID_SPAN)])
        if isinstance(event, OrderWithdrawn):
            return lambda: notify.withdraw(event)
        assert isinstance(event, OrderAmended)
        return lambda: notify.amend(event)

    async def plan(self, action: str, which: int, arg: int,
                   other: bool = False) -> Callable[[], Awaitable[Any]] | None:
        orders = list(self.orders.values())
        if action == "issue":
            team = TEAMS[which % len(TEAMS)]
            now = self.clock.now()
            priority = ("P1", "P2", "P3", "P4", None)[arg % 5]  # None: a hand-over
            order = an_order(team, order_id=self.new_id("ord"), occurred_at=now,
                             priority=priority or "P3", kind="handover" if priority is None else "dispatch",
                             ack_by=now + timedelta(seconds=DEADLINES[priority]) if priority else None)
            self.orders[order.order_id] = order
            return self.handle(order, other=other)
        if not orders:
            return None
        order = orders[which % len(orders)]
        if action == "withdraw":
            return self.handle(OrderWithdrawn(
                district=order.district, order_id=order.order_id, incident_id=order.incident_id,
                team_id=order.team_id, reason=("timeout", "reassigned", "closed")[arg % 3],
                occurred_at=self.clock.now()), other=other)
        if action == "amend":  # raised to P1 (its deadline sooner), or flags only
            now = self.clock.now()
            sooner = arg % 2 == 0 and order.ack_by is not None
            ack_by = (min(order.ack_by, now + timedelta(seconds=30)) if sooner and order.ack_by
                      else order.ack_by)
            amended = OrderAmended(
                district=order.district, order_id=order.order_id, incident_id=order.incident_id,
                team_id=order.team_id, priority="P1" if sooner else order.priority,
                flags=("weapon",) if sooner else ("in_progress", "injury"), ack_by=ack_by,
                occurred_at=now)
            self.orders[order.order_id] = order.model_copy(update={
                "priority": amended.priority, "flags": amended.flags,
                "ack_by": ack_by})
            return self.handle(amended, other=other)
        raise AssertionError(action)

    async def fire(self, timer: str, timers: FallbackTimers | None = None) -> float:
        """A due timer fired, leased as the fallback loop leases it (store.claim_due_fallbacks)."""
        self.leases += 1  # each lease its own (store.holds_fallback: to a millisecond)
        lease = self.clock.time() + 30 + self.leases / 100
        await self.look.zadd(store.FALLBACK, {timer: lease}, xx=True)
        await (timers or self.timers).fire(timer, lease)
        return lease

    async def connect(self, page: Page) -> None:
        if page.connected:
            return
        page.socket = Socket(page)
        page.task = asyncio.create_task(self.route(page.socket))
        if held := page.holding():  # back after a drop: the orders it still shows
            page.socket.send({"type": "holding", "order_ids": held})
        await self.flush(page)

    async def disconnect(self, page: Page) -> None:
        if page.socket is not None and page.task is not None:
            page.socket.inbox.put_nowait({"type": "websocket.disconnect"})
            await asyncio.wait_for(page.task, 5)
        page.socket = page.task = None

    async def flush(self, page: Page) -> None:
        """Until the socket answered a ping: what it sent before is handled, and what notify
        queued for it before is on the page."""
        if not page.connected:
            return
        assert page.socket is not None and page.task is not None
        page.ponged.clear()
        page.socket.send({"type": "ping"})
        pong = asyncio.create_task(page.ponged.wait())
        await asyncio.wait([pong, page.task], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        pong.cancel()
        assert page.ponged.is_set() or page.task.done(), f"{page.kit.device_id}: no pong"

    async def settle(self) -> None:
        """What Pub/Sub carries reaches the sockets (a mark published after the step heard
        on every team's channel), each socket's queue is written out, and every message
        that reached the outside services is recorded."""
        await self.outside.recorded()
        teams = {p.kit.team_id for p in self.pages.values() if p.connected}
        for team in sorted(teams):
            mark = self.new_id("mark")
            self.heard[mark] = heard = asyncio.Event()
            for _ in range(20):  # published again while the listener resubscribes
                await self.look.publish(store.fanout_channel(team), json.dumps({"sentinel": mark}))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(heard.wait(), 0.5)
                    break
            assert heard.is_set(), f"the fan-out of {team} never heard"
        for page in self.pages.values():
            await self.flush(page)

    async def confirm(self, page: Page) -> None:
        """The page confirms each order frame it got (received)."""
        if not page.connected:
            return
        assert page.socket is not None
        for order_id in page.to_confirm:
            page.socket.send({"type": "received", "order_id": order_id})
        page.to_confirm = []
        await self.flush(page)

    async def answer(self, page: Page, order_id: str, response: str) -> None:
        """A member answers an order the page shows (or showed: a late answer)."""
        if not page.connected:
            return
        assert page.socket is not None
        since = len(page.frames)
        frame: dict[str, Any] = {"type": "response", "order_id": order_id, "response": response}
        if response in ("declined", "handover"):
            frame["note"] = "not ours"
        page.socket.send(frame)
        await self.flush(page)
        # taken: answered with the order's state and this response (another answer from the
        # page may cross it, two at once, and be answered first)
        if any(f["type"] == "order_state" and f.get("order_id") == order_id
               and f.get("response") == response for f in page.frames[since:]):
            self.answers.append((order_id, response))

    async def step(self, action: str, which: int, arg: int,
                   other: bool = False) -> Callable[[], Awaitable[Any]] | None:
        """`action` made by its own means (`other`: the events and timers in the second
        replica), None when there is nothing to act on."""
        if action in ("issue", "withdraw", "amend"):
            return await self.plan(action, which, arg, other)
        if action == "fire":
            timers = await self.look.zrange(store.FALLBACK, 0, -1)
            if not timers:
                return None
            timer = timers[which % len(timers)]
            return lambda: self.fire(timer, self.other_timers if other else None)
        page = self.pages[KITS[which % len(KITS)].device_id]
        if action == "connect":
            return lambda: self.connect(page)
        if action == "confirm":
            return lambda: self.confirm(page)
        assert action == "answer"
        # one of its team's orders: on the page, or known from a Web Push or an SMS
        mine = [o for o, order in self.orders.items() if order.team_id == page.kit.team_id]
        if not mine:
            return None
        order_id = mine[arg % len(mine)]
        response = RESPONSES[arg // 7 % len(RESPONSES)]
        return lambda: self.answer(page, order_id, response)

    async def act(self, action: str, which: int, arg: int) -> None:
        made = await self.step(action, which, arg)
        if made is not None:
            await made()
        await self.settle()

    # --- rules ------------------------------------------------------------------------------

    @initialize(connected=st.sets(st.sampled_from([k.device_id for k in KITS])),
                issued=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4)), max_size=2))
    def phones_on(self, connected: set[str], issued: list[tuple[int, int]]) -> None:
        for device_id in sorted(connected):
            self.run(self.connect(self.pages[device_id]))
        for team, priority in issued:
            self.run(self.act("issue", team, priority))

    @rule(team=st.integers(0, 1), priority=st.integers(0, 4))
    def order_issued(self, team: int, priority: int) -> None:
        self.run(self.act("issue", team, priority))

    @precondition(lambda self: self.orders)
    @rule(which=st.integers(0, 50), reason=st.integers(0, 2))
    def order_withdrawn(self, which: int, reason: int) -> None:
        self.run(self.act("withdraw", which, reason))

    @precondition(lambda self: self.orders)
    @rule(which=st.integers(0, 50), sooner=st.integers(0, 1))
    def order_amended(self, which: int, sooner: int) -> None:
        self.run(self.act("amend", which, sooner))

    @rule(which=st.integers(0, 100))
    def redelivered(self, which: int) -> None:
        """An event handled before, delivered again (delivery is at least once)."""
        if self.handled:
            event = self.handled[which % len(self.handled)]
            self.run(self._again(event))

    async def _again(self, event: Any) -> None:
        await self.handle(event)()
        await self.settle()

    @rule(which=st.integers(0, len(KITS) - 1))
    def phone_connects(self, which: int) -> None:
        self.run(self.act("connect", which, 0))

    @rule(which=st.integers(0, len(KITS) - 1))
    def phone_drops(self, which: int) -> None:
        self.run(self.disconnect(self.pages[KITS[which].device_id]))

    @rule(which=st.integers(0, len(KITS) - 1))
    def phone_confirms(self, which: int) -> None:
        self.run(self.act("confirm", which, 0))

    @rule(which=st.integers(0, len(KITS) - 1), arg=st.integers(0, 48))
    def member_answers(self, which: int, arg: int) -> None:
        self.run(self.act("answer", which, arg))

    @rule(which=st.integers(0, 10))
    def timer_fires(self, which: int) -> None:
        """One of the fallback timers fires (early, on time or late)."""
        self.run(self.act("fire", which, 0))

    @precondition(lambda self: self.orders)
    @rule(exactly=st.booleans())
    def deadline_passes(self, exactly: bool) -> None:
        """The clock moves to the next acknowledge-by deadline (to it, or just past it)."""
        now = self.clock.time()
        later = sorted(o.ack_by.timestamp() for o in self.orders.values()
                       if o.ack_by is not None and o.ack_by.timestamp() > now)
        if later:
            self.clock.at = later[0] + (0 if exactly else 0.5)

    @rule(mode=st.sampled_from(("ok", "failing", "hanging")))
    def outside_services(self, mode: str) -> None:
        """The SMS gateway and the push service work, refuse (503), or take and hang."""
        self.outside.mode = mode

    @rule(action=st.sampled_from(ACTIONS),
          which=st.integers(0, 50), arg=st.integers(0, 48), at=st.integers(1, 8),
          after=st.booleans())
    def fails_midway_and_is_made_again(self, action: str, which: int, arg: int, at: int,
                                       after: bool) -> None:
        """A step that fails midway (Redis away at its `at`-th call, before or after it did
        its work) and is made again: the event redelivered, the timer firing again after its
        lease, the page sending its frame again after the error, or connecting again."""
        self.run(self._fails_midway(action, which, arg, at, after))

    async def _fails_midway(self, action: str, which: int, arg: int, at: int,
                            after: bool) -> None:
        made = await self.step(action, which, arg)
        if made is None:
            return
        self.failures.arm(at, after=after)
        try:
            await made()
        except* RedisConnectionError:
            pass
        finally:
            self.failures.disarm()
        await self.settle()
        if action == "confirm":  # the error frames' orders: the heartbeat sends them again
            await self._heartbeats()
        await made()
        await self.settle()

    @rule(first=st.sampled_from(ACTIONS), second=st.sampled_from(ACTIONS),
          which=st.tuples(st.integers(0, 50), st.integers(0, 50)),
          arg=st.tuples(st.integers(0, 48), st.integers(0, 48)))
    def two_at_once(self, first: str, second: str, which: tuple[int, int],
                    arg: tuple[int, int]) -> None:
        """Two steps at the same time, the second's events and timers in the other replica."""
        self.run(self._two_at_once(first, second, which, arg))

    async def _two_at_once(self, first: str, second: str, which: tuple[int, int],
                           arg: tuple[int, int]) -> None:
        steps = [await self.step(first, which[0], arg[0]),
                 await self.step(second, which[1], arg[1], other=True)]
        made = [m for m in steps if m is not None]
        self.outside.at_once = True
        try:
            done = await asyncio.gather(*(m() for m in made), return_exceptions=True)
            for again, outcome in zip(made, done, strict=True):
                if isinstance(outcome, LookupError):  # amended before the first issued it:
                    await again()  # the entry is retried (service.Orders.amend)
                elif isinstance(outcome, BaseException):
                    raise outcome
        finally:
            self.outside.at_once = False
        await self.settle()

    @rule(which=st.integers(0, 10))
    def stopped_while_sending(self, which: int) -> None:
        """notify stops (a deploy) while a fallback message is on its way: the firing task
        is cancelled and its timer handed back (FallbackTimers.run, _hand_back)."""
        self.run(self._stopped_while_sending(which))

    async def _stopped_while_sending(self, which: int) -> None:
        timers = await self.look.zrange(store.FALLBACK, 0, -1)
        if not timers:
            return
        timer = timers[which % len(timers)]
        mode, self.outside.mode = self.outside.mode, "hanging"
        self.outside.arrived.clear()
        leased: list[float] = []

        async def firing() -> None:
            leased.append(await self.fire(timer))

        task = asyncio.create_task(firing())
        arrived = asyncio.create_task(self.outside.arrived.wait())
        await asyncio.wait([task, arrived], return_when=asyncio.FIRST_COMPLETED)
        arrived.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.outside.mode = mode
        lease = await self.look.zscore(store.FALLBACK, timer)
        if lease is not None:
            await store.release_fallbacks(self.redis, [(timer, lease)])
        await self.settle()

    @precondition(lambda self: self.restarts < 3)
    @rule(redis_too=st.booleans())
    def restart(self, redis_too: bool) -> None:
        """notify restarts (every socket closed; the phones connect again), with Redis
        restarting meanwhile or not (AOF: its data kept, its Pub/Sub messages lost)."""
        self.restarts += 1
        self.run(self._restart(redis_too))

    async def _restart(self, redis_too: bool) -> None:
        back = [p for p in self.pages.values() if p.connected]
        await self._notify_down()
        if redis_too:
            self.server.stop()
            self.server.start()
            for client in (self.raw, self.look):
                await client.connection_pool.disconnect()
        await self._notify_up()
        for page in back:
            page.task = None
            await self.connect(page)
        await self.settle()

    @rule()
    def heartbeats_then_views(self) -> None:
        """Every socket's heartbeat replays: then each phone shows its team's live orders
        where they stand, and no order that ended as live."""
        self.run(self._views())

    async def _heartbeats(self) -> None:
        for conns in list(self.hub._by_device.values()):
            for conn in list(conns):
                await self.hub.replay(conn)
        await self.settle()

    async def _views(self) -> None:
        await self._heartbeats()
        for page in self.pages.values():
            if not page.connected:
                continue
            for order_id in self.orders:
                record = await store.get_order(self.look, order_id)
                if record is None or record.team_id != page.kit.team_id:
                    continue
                view = shown(page.frames, order_id)
                where = f"{page.kit.device_id}: order {order_id} ({record.state}" + (
                    ", withdrawn)" if record.withdrawn else ")")
                if record.order is not None and not record.withdrawn and is_live(record.state):
                    assert view is not None, f"{where} not shown"
                    assert view["state"] == record.state, f"{where} shown {view['state']}"
                elif view is not None:
                    assert view["state"] in ENDED, f"{where} shown {view['state']}"

    @rule()
    def all_quiet(self) -> None:
        """The services work again and every timer fires until none is left: each member
        sent an order by SMS or Web Push that was then withdrawn is told so."""
        self.run(self._all_quiet())

    async def _all_quiet(self) -> None:
        self.outside.mode = "ok"
        await self._dead_senders_run_out()
        for _ in range(40):
            timers = await self.look.zrange(store.FALLBACK, 0, -1)
            if not timers:
                break
            for timer in timers:
                await self.fire(timer)
        await self.settle()
        now = self.clock.time()
        for order_id, order in self.orders.items():
            record = await store.get_order(self.look, order_id)
            if (record is not None and record.state == "issued" and not record.answered
                    and not record.withdrawn and not record.received and record.order
                    and (order.ack_by is None or order.ack_by.timestamp() > now)):
                # nobody has it, and there is time yet: every phone was sent it, by Web
                # Push or by SMS (one that failed by Web Push for a passing reason goes by
                # SMS: fallback.py tries a message again only where no later channel reaches)
                for kit in KITS:
                    went = [m for m in self.outside.messages if m.order_id == order_id
                            and m.kind == "order" and m.device_id == kit.device_id and m.taken]
                    assert kit.team_id != order.team_id or went, (
                        f"order {order_id}: nothing sent to {kit.device_id}")
            if record is None or not record.withdrawn:
                continue
            messages = [m for m in self.outside.messages if m.order_id == order_id]
            for went in {(m.channel, m.device_id) for m in messages
                         if m.kind == "order" and m.taken}:
                told = [m for m in messages if (m.channel, m.device_id) == went
                        and m.kind == "withdrawn" and m.taken]
                assert told, f"order {order_id} withdrawn: its {went[0]} to {went[1]} never taken back"

    async def _dead_senders_run_out(self) -> None:
        """A sender cut off (notify stopped, Redis away) leaves its message marked as being
        sent until its time is up (store.begin_fallback_send), for nobody to send it before:
        the clock moves on till then, as time would while the services wait."""
        tills = [self.clock.at]
        for order_id in self.orders:
            marks = await self.look.hgetall(f"notify:order:{order_id}:fallback_sent")
            tills += [float(mark["till"]) for mark in map(json.loads, marks.values())
                      if mark["state"] == "sending"]
        self.clock.at = max(tills)

    # --- what holds after every step ----------------------------------------------------------

    @invariant()
    def promises_kept(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        await self.outside.recorded()
        check_messages(self.outside.messages, self.orders, self.begun.tries)
        entries = [OrderResponded.model_validate(decode_entry(fields)[0])
                   for _, fields in await self.raw.xrange(streams.ORDER_RESPONDED.name)]
        said = Counter((e.order_id, e.response) for e in entries)
        twice = [k for k, n in said.items() if n > 1]
        assert not twice, f"answers published twice on order.responded: {twice}"
        for order_id, response in self.answers:
            covered = said[(order_id, response)] or (
                response == "acknowledged" and said[(order_id, "reinforce")])
            assert covered, f"{response} to {order_id} taken, never on order.responded"
        per_order = Counter(e.order_id for e in entries)
        for order_id, count in self.entries_at_end.items():
            assert per_order[order_id] == count, (
                f"order {order_id} answered on order.responded after it ended")
        for order_id in self.orders:
            record = await store.get_order(self.look, order_id)
            if record is not None and (record.withdrawn or not is_live(record.state)):
                self.entries_at_end.setdefault(order_id, per_order[order_id])


def check_messages(messages: list[Message], orders: dict[str, OrderIssued],
                   begun: Counter[tuple[str, str, str]]) -> None:
    """No order's SMS or Web Push twice to a device (another reference, or the same one after
    it was taken and said so), none of an order withdrawn, confirmed by its member, or at or
    after its acknowledge-by deadline; none taken back that never went, or may have gone (a
    try `begun` and cut off before it reached the service). An update (the order raised by
    an amendment) goes only where the order's message went or may have gone, once per
    version, never after the order was withdrawn nor after the message taking it back."""
    taken: dict[tuple[str, str, str, str], set[str]] = {}
    answered: set[tuple[str, str]] = set()
    came: Counter[tuple[str, str, str]] = Counter()  # the order's tries that reached it
    taken_back: set[tuple[str, str, str]] = set()
    for m in messages:
        what = f"{m.channel} {m.kind} of {m.order_id} to {m.device_id}"
        key = (m.channel, m.order_id, m.device_id)
        if m.kind in ("withdrawn", "order_update"):  # only what went, or may have gone
            assert (m.channel, "order", m.order_id, m.to) in taken or begun[key] > came[key], (
                f"{what}: its order's message never went")
        else:
            came[key] += 1
        if m.kind == "withdrawn":
            taken_back.add(key)
        elif m.kind == "order_update":
            assert key not in taken_back, f"{what} after the message taking it back"
            assert m.at_once or not m.withdrawn, f"{what} sent after the order was withdrawn"
        assert (m.channel, m.reference) not in answered, f"{what} sent again after it was taken"
        if m.answered is not None and 200 <= m.answered < 300:
            answered.add((m.channel, m.reference))
        if m.taken:
            kind = m.reference if m.kind == "order_update" else m.kind  # one per version
            refs = taken.setdefault((m.channel, kind, m.order_id, m.to), set())
            refs.add(m.reference)
            assert len(refs) == 1, f"{what}: two messages to {m.to}: {sorted(refs)}"
        if m.kind != "order" or m.at_once:  # crossed by the other step: taken back (all_quiet)
            continue
        assert not m.withdrawn, f"{what} sent after the order was withdrawn"
        ack_by = orders[m.order_id].ack_by
        assert ack_by is None or m.at < ack_by.timestamp(), (
            f"{what} sent {m.at - ack_by.timestamp():.3f} s after its deadline")
        assert not m.received_by, f"{what} sent after {sorted(m.received_by)} confirmed it"


def test_notify_keeps_its_promises_whatever_happens(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    NotifyMachine.server = server
    NotifyMachine.failures.install()
    NotifyMachine.begun.install()
    clock = types.SimpleNamespace(time=NotifyMachine.clock.time, monotonic=time.monotonic)
    real_time = fallback.time
    fallback.time = clock  # type: ignore[assignment]
    try:
        run_machine(NotifyMachine, examples=40, steps=40)
    finally:
        fallback.time = real_time  # type: ignore[assignment]
        NotifyMachine.begun.uninstall()
        NotifyMachine.failures.uninstall()
        server.stop()
