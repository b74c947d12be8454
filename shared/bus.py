"""Redis streams plumbing: the broker, consumer groups at id 0, and at-least-once consumption.

`consume()` registers two subscribers in the service's group for one stream:
- the reader takes new entries (XREADGROUP >), up to a batch at a time, and handles each on
  its own under a span continuing its publisher's trace;
- the reclaimer (FastStream `min_idle_time`, i.e. XAUTOCLAIM) takes entries another
  consumer of the group left pending (a crashed process, a failed handler) and retries them.
FastStream's nack/reject do nothing on Redis: a failed entry stays pending until claimed.
An entry that cannot be parsed as its event model is dead-lettered at once (it will never
parse); one whose handler keeps failing is dead-lettered after `max_deliveries`.
Dead letters go to `dlq.<stream>` with the reason and the original payload, never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from faststream._internal._compat import dump_json
from faststream.opentelemetry import TelemetryMiddleware
from faststream.redis import RedisBroker, RedisStreamMessage, StreamSub
from faststream.redis.opentelemetry.provider import RedisTelemetrySettingsProvider
from faststream.redis.parser.binary import BinaryMessageFormatV1
from opentelemetry import context, metrics, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from pydantic import BaseModel, ValidationError
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import streams
from shared.described import describe_failure, describe_validation_error, record_failure
from shared.events import Event, utcnow
from shared.failures import RepeatedFailures
from shared.http import STORE_AWAY, STORE_REFUSING, TryAgain
from shared.logging import READ_FAILURE_LOGGED, faststream_logger, mark_logged
from shared.metrics import HANDLING_BUCKETS_S
from shared.packing import connection_class
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

E = TypeVar("E", bound=BaseModel)
# Failures that say nothing about the event: never a reason to dead-letter it. Redis
# refusing writes (STORE_REFUSING, in STORE_AWAY: full, a replica, or unable to save to
# disk) among them: full one moment, it may take
# the dead letter the next (an expired key freed memory), and a good incident would be gone.
TRANSIENT = (*STORE_AWAY, TryAgain)
Handler = Callable[[E], Awaitable[None]]

DLQ_MAXLEN = 100_000
# Set by `_tolerant_parser` on an entry FastStream itself could not parse.
UNREADABLE = "x-lianfang-unreadable"


def _retry() -> Retry:
    # The asyncio Retry: the sync `redis.retry.Retry` on an asyncio client returns the
    # coroutine unawaited, so nothing was retried and a Pub/Sub connection (notify's
    # fan-out) never reconnected after a Redis restart.
    return Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=8)


def create_redis(settings: ServiceSettings) -> Redis:
    """The service's own client for its keys (decoded strings).

    A blocking pool: under a burst, a request waits up to 5 s for a connection instead of
    failing at once (redis-py's default pool raises past 100 connections)."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=5,
        decode_responses=True,
        retry=_retry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=10,
        connection_class=connection_class(settings.redis_url),
        client_name=settings.service_name,  # CLIENT LIST tells whose connection it is
    )
    return Redis(connection_pool=pool)


def _telemetry_settings(message: Any) -> RedisTelemetrySettingsProvider | None:
    # What FastStream's RedisTelemetryMiddleware uses, except on a batch read: `consume` and
    # `consume_batches` give each entry its own span in its publisher's trace, and a span
    # for the read itself would start a trace of its own at every read.
    if isinstance(message, Mapping) and message.get("type") == "bstream":
        return None
    return RedisTelemetrySettingsProvider()


def create_broker(settings: ServiceSettings) -> RedisBroker:
    return RedisBroker(
        settings.redis_url,
        middlewares=[TelemetryMiddleware(settings_provider_factory=_telemetry_settings,
                                         include_messages_counters=True)],
        # No dependency injection: `consume` hands each handler the raw body and takes the
        # message from FastStream's context. Resolving `msg: RedisStreamMessage` through
        # fast_depends ran a synchronous dependency in a worker thread for every message:
        # 0.26 ms of a consumer's 0.6 ms per message here (docs/benchmarks.md).
        apply_types=False,
        graceful_timeout=10.0,
        connection_class=connection_class(settings.redis_url),
        retry=_retry(),
        # READONLY too (the broker's client only): after a failover every XREADGROUP and
        # XAUTOCLAIM on the replica fails at once, FastStream restarts a subscriber whose
        # read raised without a pause, and each subscriber spun thousands of reads a second
        # (two cores, the log flooded with its restarts) for as long as the failover lasted.
        # Retried, a read waits out redis-py's backoff (up to 2 s a try) on a fresh
        # connection, which after a failover may be the new primary's. Nothing was written.
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ReadOnlyError],
        health_check_interval=10,
        client_name=settings.service_name,
        # Per-message "Received/Processed" lines would flood the log at position rates.
        log_level=logging.DEBUG,
        # our handlers and format, not its own; its read failures logged by _log_reads
        logger=faststream_logger(),
    )


async def ensure_groups(redis: Redis, stream_map: tuple[streams.Stream, ...] = streams.ALL) -> None:
    """Create every consumer group at id 0 (never `$`), creating streams as needed."""
    for stream in stream_map:
        for group in stream.consumers:
            await _create_group(redis, stream.name, group)


def subscribers_running(broker: RedisBroker) -> bool:
    return all(sub.running for sub in broker.subscribers)


def _subscribed(broker: RedisBroker) -> list[tuple[str, str]]:
    return sorted({(sub.stream_sub.name, sub.stream_sub.group) for sub in broker.subscribers
                   if getattr(sub, "stream_sub", None) is not None and sub.stream_sub.group})


async def consumers_ready(broker: RedisBroker, redis: Redis) -> bool:
    """For /readyz: Redis answers, the groups this broker reads exist, and every subscriber
    reads."""
    if not subscribers_running(broker):
        return False
    for stream, group in _subscribed(broker):
        try:
            groups = await redis.xinfo_groups(stream)
        except ResponseError:  # the stream itself is gone (Redis lost its data)
            return False
        if not any(_name(g) == group for g in groups):
            return False
    return True


async def _keep_consuming(broker: RedisBroker, redis: Redis, interval_s: float) -> None:
    # FastStream stops a subscriber for good when its group vanishes (NOGROUP: Redis lost
    # its data or a stream was deleted) and, outside a FastStream app, nothing restarts it.
    # Re-create the groups at 0 (never `$`, which would skip what was published meanwhile)
    # and start the stopped subscribers again.
    while True:
        await asyncio.sleep(interval_s)
        stopped = [sub for sub in broker.subscribers if not sub.running]
        if not stopped:
            continue
        try:
            await ensure_subscribed_groups(redis, broker)
            for sub in stopped:
                await sub.start()
            log.warning("started %d stopped subscriber(s) (their group re-created, or never "
                        "started: a slow start)", len(stopped))
        except Exception as exc:  # Redis still away: try again next round
            log.warning("cannot restart stopped subscribers yet: %s", type(exc).__name__)


async def ensure_subscribed_groups(redis: Redis, broker: RedisBroker) -> None:
    """Create at 0 the groups this broker's subscribers read, and no others: a service's
    Redis user may touch only its own streams (deploy/redis/users.acl.template)."""
    for stream, group in _subscribed(broker):
        await _create_group(redis, stream, group)


async def _create_group(redis: Redis, stream: str, group: str) -> None:
    """XGROUP CREATE at 0, a group that exists being fine. Redis refusing writes (full,
    a replica) refuses XGROUP CREATE before it looks for the group: one that exists is
    fine all the same, so a service (re)started meanwhile starts and reads its backlog,
    rather than die at start until memory is freed; one that does not exist cannot be
    made now, and the refusal stands."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except STORE_REFUSING:
        try:
            groups = await redis.xinfo_groups(stream)
        except ResponseError:  # no such stream
            groups = []
        if not any(_name(g) == group for g in groups):
            raise
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@contextlib.asynccontextmanager
async def consuming(broker: RedisBroker, redis: Redis, *, watch_interval_s: float = 2.0,
                    service: str | None = None,
                    retention_s: float | None = None) -> AsyncIterator[None]:
    """Create the groups at 0, start the broker and keep its subscribers running; with
    `service` and `retention_s`, also trim the streams the service produces by age."""
    from shared.retention import keep_trimming
    from shared.runtime import stop_task

    await ensure_subscribed_groups(redis, broker)
    try:
        await broker.start()
    except TimeoutError:
        # FastStream waits a hard-coded 3 s for each subscriber's first PING, on a busy
        # machine not always enough: the slow one reads all the same, and the watchdog
        # starts those after it (never started) within `watch_interval_s`. /readyz says
        # not ready meanwhile; before, the whole service died at start-up.
        log.warning("a subscriber was slow to start; the others are started by the watchdog")
    except STORE_REFUSING as exc:
        # Redis full, or a replica after a failover: FastStream's own XGROUP CREATE at each
        # subscriber's start is refused (even for a group that exists). The service starts
        # all the same (its HTTP side answers 503 with Retry-After meanwhile, and /readyz not
        # ready); the watchdog starts the subscribers once Redis takes writes, and they read
        # what waited, from where their groups stand.
        log.warning("Redis refuses writes (%s): the subscribers start once it takes them",
                    type(exc).__name__)
    watchdog = asyncio.create_task(_keep_consuming(broker, redis, watch_interval_s),
                                   name="bus-watchdog")
    stop = asyncio.Event()
    trimming = None
    if service and retention_s:
        trimming = asyncio.create_task(
            keep_trimming(redis, service, retention_s=retention_s, stop=stop),
            name="stream-retention")
    try:
        yield
    finally:
        stop.set()
        await stop_task(watchdog)
        if trimming is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(trimming, timeout=5)
        await broker.stop()


def _name(group: dict[Any, Any]) -> str:
    name = group.get("name") or group.get(b"name")
    return name.decode() if isinstance(name, bytes) else str(name)


async def _leave_pending(msg: RedisStreamMessage, exc: BaseException) -> None:
    """Leave a failed read pending for the reclaimer without raising: FastStream would log
    the exception's own text and stack trace (see describe_failure)."""
    record_failure(trace.get_current_span(), exc)
    await msg.nack()  # nothing on Redis: no XACK, the entries stay pending


class HandlerTimeout(Exception):
    """A handler ran past `handler_timeout_s` and was cancelled as hung."""


# A batch's failures that each of its events, handled alone, would meet again.
UNFINISHED = (*TRANSIENT, HandlerTimeout)


async def _handled(handler: Callable[[Any], Awaitable[None]], arg: Any, timeout_s: float) -> None:
    """`handler(arg)`, cancelled after `timeout_s`: a handler that hangs would hold its reader
    (and every entry behind it) and then, retried, each reclaimer in turn, and never fail
    often enough to be dead-lettered."""
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            await handler(arg)
    except TimeoutError:
        if deadline.expired():
            raise HandlerTimeout(f"still running after {timeout_s:g} s, cancelled") from None
        raise


class _Hold:
    """Keeps the entries of a read from the reclaimers while they are being handled.

    A reclaimer takes an entry idle for `claim_idle_ms`, and an entry's idle time runs
    from its delivery, whether its consumer is dead or only slow (an incident's lock held
    by another step for up to 20 s): the slow consumer's entry would be handled a second
    time, at the same time. So every third of `claim_idle_ms` while the block runs, the
    consumer claims its entries again (XCLAIM ... JUSTID: their idle time starts over, their
    delivery count stays). A read handled within that time, nearly all, sends nothing.
    A consumer that dies stops renewing, and its entries are reclaimed as before."""

    def __init__(self, msg: RedisStreamMessage, consumer: str, *, group: str,
                 settings: ServiceSettings) -> None:
        self._client: Redis = msg.consumer
        self._claim = (msg.raw_message["channel"], group, consumer, 0,
                       msg.raw_message["message_ids"])
        self._every_s = settings.claim_idle_ms / 3000
        self._timer: asyncio.TimerHandle | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._held = False

    async def __aenter__(self) -> None:
        self._held = True
        self._timer = asyncio.get_running_loop().call_later(self._every_s, self._renew)

    async def __aexit__(self, *_: object) -> None:
        self._held = False
        if self._timer is not None:
            self._timer.cancel()
        if self._renewing is not None:
            await self._renewing  # a command cut off by a cancellation can stall the client

    def _renew(self) -> None:
        self._renewing = asyncio.ensure_future(self._claim_again())

    async def _claim_again(self) -> None:
        try:  # an entry acknowledged meanwhile is no longer pending: XCLAIM skips it
            await self._client.xclaim(*self._claim, justid=True)
        except RedisError as exc:  # Redis away: its entries are not reclaimed meanwhile either
            log.debug("could not renew the claim on entries being handled: %s",
                      type(exc).__name__)
        if self._held:
            self._timer = asyncio.get_running_loop().call_later(self._every_s, self._renew)


async def dead_letter(
    msg: RedisStreamMessage, *, group: str, reason: str, attempts: int
) -> None:
    await dead_letter_entry(
        msg.consumer,  # the client this entry was read with
        stream=msg.raw_message["channel"], entry_id=msg.raw_message["message_ids"][0],
        fields=msg.raw_message["data"], group=group, reason=reason, attempts=attempts)


def _headers_of(fields: Mapping[bytes, bytes]) -> Mapping[str, Any]:
    """The headers of an entry's FastStream envelope (its trace context), or none."""
    with contextlib.suppress(Exception):
        _, headers = BinaryMessageFormatV1.parse(fields[b"__data__"])
        if isinstance(headers, dict):
            return headers
    return {}


@contextlib.contextmanager
def _span_of_entry(stream: str, group: str, entry_id: bytes | str,
                   fields: Mapping[bytes, bytes], attempts: int) -> Iterator[Span]:
    """The span the entry is being handled under (the reader's entry span, FastStream's
    span of a reclaimed entry); for an entry dead-lettered before any (it did not parse),
    one of its own in its publisher's trace, so that the trace shows where the event went
    (and the log line giving it up names that trace)."""
    current = trace.get_current_span()
    if current.is_recording():
        yield current
        return
    # current while the letter is written, so that its log line names the trace as well
    with trace.use_span(_entry_span(stream, group, entry_id, _headers_of(fields), attempts),
                        end_on_exit=True) as span:
        yield span


async def dead_letter_entry(
    redis: Redis, *, stream: str, entry_id: bytes | str, fields: Mapping[bytes, bytes],
    group: str, reason: str, attempts: int,
) -> None:
    payload = fields.get(b"__data__")
    if payload is None:
        payload = json.dumps(
            {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        ).encode()
    with _span_of_entry(stream, group, entry_id, fields, attempts) as span:
        context = span.get_span_context()
        # The trace the event belongs to (the incident's): the letter's payload holds it only
        # inside its binary envelope, and an operator looks the dead letter up in the traces.
        trace_id = {"trace_id": format(context.trace_id, "032x")} if context.is_valid else {}
        dead_letter_id = await redis.xadd(
            f"dlq.{stream}",
            {
                "stream": stream,
                "entry_id": entry_id,
                "group": group,
                "reason": reason[:2000],
                "attempts": str(attempts),
                "dead_at": utcnow().isoformat(),
                **trace_id,
                "payload": payload,
            },
            maxlen=DLQ_MAXLEN,
            approximate=True,
        )
        # `reason` is what the log line says too: fields and error types, never the values.
        span.add_event("dead-lettered", {
            "messaging.destination.name": f"dlq.{stream}",
            "messaging.message.id": _text(dead_letter_id),
            "reason": reason[:2000], "attempts": attempts})
        span.set_status(Status(StatusCode.ERROR, "dead-lettered"))
        log.error(
            "dead-lettered %s entry %s for group %s after %s attempt(s): %s",
            stream, _text(entry_id), group, attempts, reason,
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _tolerant_parser(
    message: Mapping[str, Any],
    original: Callable[[Mapping[str, Any]], Awaitable[RedisStreamMessage]],
) -> RedisStreamMessage:
    """FastStream's own parser; an entry it cannot parse still becomes a message.

    FastStream raises from its parser, before any handler runs, on entries such as fields
    with non-UTF-8 names and no `__data__`, or a JSON envelope whose `headers` is not an
    object. Such an entry would stay pending for ever, reclaimed and failing again in a
    loop. Instead it comes through without a body, marked, and `process` dead-letters it.
    """
    try:
        return await original(message)
    except Exception as exc:
        stub = await original({**message, "data": {b"__data__": b""}})
        stub.raw_message = message  # type: ignore[assignment]  # the entry as it was, for the dead letter
        stub.headers = {UNREADABLE: f"{type(exc).__name__}: {exc}"[:500]}
        return stub


async def _undecoded(msg: RedisStreamMessage) -> bytes:
    # `process` validates the body against the event model itself. FastStream's decoder
    # would json-load it first and raise, outside the handler, on a body that is not JSON
    # although its envelope says so: that entry would never be dead-lettered.
    return msg.body


def _check_group(stream: streams.Stream, group: str) -> None:
    if group not in stream.consumers:
        raise ValueError(f"{group} is not a consumer of {stream.name} in shared.streams")


async def _given_up(given_up: Handler[E] | None, event: E, timeout_s: float) -> bool:
    """`given_up(event)`, before the event is dead-lettered for its handler's failures;
    False when it could not finish for Redis (or `TryAgain`): the entry then stays pending,
    given up on at its next delivery. A failure of its own is logged, and the event
    dead-lettered all the same."""
    if given_up is None:
        return True
    try:
        await _handled(given_up, event, timeout_s)
    except TRANSIENT as exc:
        log.warning("%s could not finish: %s; the event stays pending",
                    given_up.__name__, describe_failure(exc))
        return False
    except Exception as exc:
        log.error("%s failed: %s", given_up.__name__, describe_failure(exc))
    return True


def _processor(
    stream: streams.Stream, model: type[E], handler: Handler[E], *, settings: ServiceSettings,
    group: str, given_up: Handler[E] | None = None,
) -> Callable[[RedisStreamMessage, int], Awaitable[None]]:
    """Parse, handle; dead-letter what will never parse, and what fails `max_deliveries`
    times (after `given_up`); otherwise leave the failed entry pending for the reclaimer."""

    async def process(msg: RedisStreamMessage, attempt: int) -> None:
        started = time.perf_counter()
        outcome = await attempt_once(msg, attempt)
        HANDLED.record(time.perf_counter() - started,
                       {"stream": stream.name, "group": group, "outcome": outcome})

    async def attempt_once(msg: RedisStreamMessage, attempt: int) -> str:
        """The entry handled, dead-lettered, or left pending: its outcome."""
        if unreadable := msg.headers.get(UNREADABLE):
            await dead_letter(msg, group=group, attempts=attempt,
                              reason=f"unreadable stream entry: {unreadable}")
            return "dead_lettered"
        try:
            event = model.model_validate_json(msg.body)
        except ValidationError as exc:
            await dead_letter(
                msg, group=group, attempts=attempt,
                reason=f"invalid {model.__name__}: {describe_validation_error(exc)}",
            )
            return "dead_lettered"
        try:
            await _handled(handler, event, settings.handler_timeout_s)
        except TRANSIENT as exc:
            # Redis out of reach, or a step to make again: the event is not at fault, and
            # dead-lettering it would drop a good event (an incident) for an outage. It
            # stays pending and is retried until it goes through.
            log.warning("handler for %s could not finish (attempt %s): %s; it stays pending",
                        stream.name, attempt, describe_failure(exc))
            await _leave_pending(msg, exc)
            return "failed"
        except Exception as exc:
            if attempt >= settings.max_deliveries:
                if not await _given_up(given_up, event, settings.handler_timeout_s):
                    await _leave_pending(msg, exc)
                    return "failed"
                await dead_letter(msg, group=group, attempts=attempt,
                                  reason=describe_failure(exc))
                return "dead_lettered"
            log.warning(
                "handler for %s failed (attempt %s of %s), will be reclaimed: %s",
                stream.name, attempt, settings.max_deliveries, describe_failure(exc),
            )
            await _leave_pending(msg, exc)
            return "failed"
        return "handled"

    return process


async def _handle_entry(
    handler: Callable[[Any], Awaitable[None]], arg: Any, *, span: Span, consumer: Redis,
    stream: streams.Stream, group: str, entry_id: bytes, fields: Mapping[bytes, bytes],
    settings: ServiceSettings, given_up: Handler[Any] | None = None,
) -> Exception | None:
    """`handler(arg)` for one entry read (not reclaimed), under its `span`, its outcome timed.
    None: done with (handled, or dead-lettered at once when `max_deliveries` leaves no
    retry); else the failure that leaves it pending for the reclaimer."""
    started = time.perf_counter()
    outcome: str
    failure: Exception | None = None
    with trace.use_span(span, end_on_exit=False):
        try:
            await _handled(handler, arg, settings.handler_timeout_s)
            outcome = "handled"
        except Exception as exc:
            record_failure(span, exc)
            if (settings.max_deliveries <= 1 and not isinstance(exc, TRANSIENT)
                    and await _given_up(given_up, arg, settings.handler_timeout_s)):
                outcome = "dead_lettered"
                await dead_letter_entry(consumer, stream=stream.name, entry_id=entry_id,
                                        fields=fields, group=group, attempts=1,
                                        reason=describe_failure(exc))
            else:
                outcome, failure = "failed", exc
                log.warning("handler for %s failed (attempt 1 of %s), will be reclaimed: %s",
                            stream.name, settings.max_deliveries, describe_failure(exc))
    HANDLED.record(time.perf_counter() - started,
                   {"stream": stream.name, "group": group, "outcome": outcome})
    return failure


def consume(
    broker: RedisBroker,
    stream: streams.Stream,
    model: type[E],
    handler: Handler[E],
    *,
    settings: ServiceSettings,
    group: str,
    max_workers: int = 1,
    batch: int = 16,
    bookkeeping: bool = False,
    readers: int = 1,
    first: Callable[[E], Any] | None = None,
    given_up: Handler[E] | None = None,
) -> None:
    """Subscribe `handler` to `stream` in `group` with reclaiming and dead-lettering.

    Entries are read up to `batch` at a time (one XREADGROUP, one pass through FastStream's
    consume path, one XACK: that path costs more than most handlers) and each is handled on
    its own, under its own consumer span continuing its publisher's trace: one after
    another in stream order, or with `max_workers` > 1 that many at once (for events whose
    order does not matter). An entry whose handler fails stays pending, and only it: the
    reclaimer retries it and dead-letters it after `max_deliveries`, as it would a
    crashed consumer's. A `bookkeeping` stream, one nobody waits on to the tenth of a
    second, pauses after a read that was not full (see _reader). With `readers` > 1
    (events whose order does not matter), that many reads are in hand at once, each as
    its own consumer of the group: while one read's entries wait on Redis, the next
    read's are handled (the slots of `max_workers` are shared). `first`: a key that orders
    a read's events before they are handled (the lowest first; equals keep stream order),
    so that those started first are first to Redis (new incidents, P1 before P4).
    `given_up`: what the service does for an event its handler failed `max_deliveries`
    times, just before its dead letter (dispatch flags the incident its report left with
    no team); one that cannot reach Redis leaves the event pending, to try again."""
    _check_group(stream, group)
    slots = asyncio.Semaphore(max_workers)

    async def handle(consumer: Redis, entry_id: bytes, fields: Mapping[bytes, bytes],
                     parsed: tuple[E, dict[str, Any]] | str) -> bool:
        """True: done with (handled or dead-lettered); False: failed, to be reclaimed."""
        if isinstance(parsed, str):
            await _unreadable_dead_lettered(consumer, stream=stream.name, entry_id=entry_id,
                                            fields=fields, group=group, reason=parsed)
            return True
        event, headers = parsed
        async with slots:
            span = _entry_span(stream.name, group, entry_id, headers)
            try:
                return await _handle_entry(handler, event, span=span, consumer=consumer,
                                           stream=stream, group=group, entry_id=entry_id,
                                           fields=fields, settings=settings,
                                           given_up=given_up) is None
            finally:
                span.end()

    async def read(_: bytes) -> None:
        msg: RedisStreamMessage = broker.context.get_local("message")
        entries = [(entry_id, fields, _event_of(model, fields)) for entry_id, fields
                   in zip(msg.raw_message["message_ids"], msg.raw_message["data"], strict=True)]
        if first is not None:  # what is no event first: it is only dead-lettered
            entries.sort(key=lambda e: (1, first(e[2][0])) if not isinstance(e[2], str)
                         else (0,))
        if max_workers > 1:
            outcomes = await asyncio.gather(*(handle(msg.consumer, *entry) for entry in entries))
        else:
            outcomes = [await handle(msg.consumer, *entry) for entry in entries]
        if not all(outcomes):
            done = [entry_id for (entry_id, _, _), ok in zip(entries, outcomes, strict=True)
                    if ok]
            if done:
                await msg.consumer.xack(stream.name, group, *done)
            await msg.nack()  # nothing on Redis: the failed entries stay pending, unacked

    for n in range(readers):
        _reader(broker, stream, read, settings=settings, group=group, batch=batch,
                description=f"{handler.__name__} ({model.__name__})",
                linger_s=settings.linger_s if bookkeeping else 0.0,
                consumer=f"{settings.consumer_name}-{n + 1}" if n else None)
    _reclaimer(broker, stream, _processor(stream, model, handler, settings=settings, group=group,
                                          given_up=given_up),
               settings=settings, group=group)


def _reader(broker: RedisBroker, stream: streams.Stream, read: Callable[[bytes], Awaitable[None]],
            *, settings: ServiceSettings, group: str, batch: int, description: str,
            linger_s: float = 0.0, consumer: str | None = None) -> None:
    """The group's first subscriber: XREADGROUP > of up to `batch` entries, given to `read`
    unparsed (it parses each entry itself: see _entries_unparsed and _event_of).

    With `linger_s`, a read that was not full is followed by that pause before the next
    one, so that the events arriving meanwhile come in one read: one pass through
    FastStream's consume path, one XREADGROUP and one XACK for several events instead of
    each (about 0.9 ms of CPU per read). For bookkeeping streams, whose consumers a person
    does not wait on to the tenth of a second. The read's entries are handled at once and
    acknowledged before the pause (FastStream then acknowledges nothing twice), so the
    pause never makes them look idle to a reclaimer."""

    name = consumer or settings.consumer_name

    async def held_read(body: bytes) -> None:
        msg: RedisStreamMessage = broker.context.get_local("message")
        async with _Hold(msg, name, group=group, settings=settings):
            await read(body)

    async def read_then_linger(body: bytes) -> None:
        await held_read(body)
        msg: RedisStreamMessage = broker.context.get_local("message")
        if len(msg.raw_message["message_ids"]) < batch:
            await msg.ack()  # no-op when `read` nacked it (a failed entry stays pending)
            await asyncio.sleep(linger_s)

    subscriber = broker.subscriber(
        stream=StreamSub(stream.name, group=group, consumer=name,
                         batch=True, max_records=batch, polling_interval=1000),
        parser=_entries_unparsed, decoder=_undecoded,
        title=f"{group}:{stream.name}" + (f":{consumer}" if consumer else ""),
        description=description,
    )
    subscriber(read_then_linger if linger_s > 0 else held_read)
    _log_reads(subscriber, f"reading {stream.name} for group {group} (consumer {name})")


def _reclaimer(
    broker: RedisBroker, stream: streams.Stream,
    process: Callable[[RedisStreamMessage, int], Awaitable[None]], *,
    settings: ServiceSettings, group: str,
) -> None:
    """The group's second subscriber: XAUTOCLAIMs entries idle for `claim_idle_ms` (a dead
    consumer's, a failed handler's) and retries them one at a time."""
    name = f"{settings.consumer_name}-reclaim"
    subscriber = broker.subscriber(
        stream=StreamSub(stream.name, group=group, consumer=name,
                         min_idle_time=settings.claim_idle_ms, polling_interval=1000),
        parser=_tolerant_parser,
        decoder=_undecoded,
        title=f"{group}:{stream.name}:reclaim",
        description=f"reclaims entries of {stream.name} left pending in {group}",
    )
    _log_reads(subscriber, f"reading {stream.name} for group {group} (consumer {name})")

    @subscriber
    async def reclaim(_: bytes) -> None:
        msg: RedisStreamMessage = broker.context.get_local("message")
        attempt = await msg.get_delivery_count()
        span = trace.get_current_span()  # FastStream's, in the entry's publisher's trace
        if span.is_recording():
            # Named as the reader's entry spans are: FastStream's lack the destination and
            # the group, and its message id is a number made up at each delivery.
            span.set_attributes(_entry_attributes(stream.name, group,
                                                  msg.raw_message["message_ids"][0], attempt))
        async with _Hold(msg, name, group=group, settings=settings):
            await process(msg, attempt)


# A subscriber's read log (_log_reads), for read_failures.
_READ_LOG = "_lianfang_read_log"
# How long a subscriber waits before reading again after Redis refused a read (full, a
# replica, a failing disk): its entries wait in the stream meanwhile.
REFUSED_READ_PAUSE_S = 1.0


def _log_reads(subscriber: Any, what: str) -> None:
    """The log of `subscriber`'s reads while Redis refuses writes or is away (a full disk:
    hours), instead of FastStream's (shared.logging leaves its lines for these out): a
    warning when they start failing, saying why, a reminder at most every 30 s while they
    go on, and a line when a read works again. FastStream has no hook for a read's outcome
    (an empty read logs nothing), so its read loop is wrapped: `_get_msgs` is one read
    (XREADGROUP or XAUTOCLAIM) and the handling of what it returned, `_consume` the loop,
    whose restart after a refused read fails at its first PING. The wrappers only look:
    what they return and raise is FastStream's own. Other failures are FastStream's to
    log, as they were."""
    get_msgs = getattr(subscriber, "_get_msgs", None)
    consume_loop = getattr(subscriber, "_consume", None)
    if get_msgs is None or consume_loop is None:  # a FastStream that renamed them
        log.warning("FastStream's read loop not found: %s failures are logged as it logs them",
                    what)
        return
    failures = RepeatedFailures(log, what)
    setattr(subscriber, _READ_LOG, failures)

    def failed(exc: Exception) -> None:
        if not getattr(exc, READ_FAILURE_LOGGED, False):  # not seen on its way out of a read
            failures.failed(exc, meanwhile="; its entries wait in the stream")
            mark_logged(exc)

    async def one_read(*args: Any) -> Any:
        try:
            result = await get_msgs(*args)
        except STORE_REFUSING as exc:
            # Not raised: FastStream's loop takes a ResponseError as the end of the read
            # task, and its supervisor starts it again at once, whose first PING Redis
            # refuses too: thousands of restarts a second per subscriber, a core burnt and
            # every ended task kept (hundreds of MB within minutes of a full disk). The loop
            # waits here instead and reads again, from where the group stands.
            failed(exc)
            await asyncio.sleep(REFUSED_READ_PAUSE_S)
            return None
        except STORE_AWAY as exc:
            failed(exc)
            raise
        failures.ended()
        return result

    async def read_loop(*args: Any, **kwargs: Any) -> Any:
        try:
            return await consume_loop(*args, **kwargs)
        except STORE_AWAY as exc:
            failed(exc)
            raise

    subscriber._get_msgs = one_read
    subscriber._consume = read_loop


def read_failures(broker: RedisBroker) -> list[RepeatedFailures]:
    """The read logs of `broker`'s subscribers (made by `consume` or `consume_batches`)."""
    return [failures for sub in broker.subscribers
            if (failures := getattr(sub, _READ_LOG, None)) is not None]


BatchHandler = Callable[[list[E]], Awaitable[None]]


async def _entries_unparsed(
    message: Mapping[str, Any],
    original: Callable[[Mapping[str, Any]], Awaitable[RedisStreamMessage]],
) -> RedisStreamMessage:
    """A batch's message without FastStream parsing its entries: `consume_batches` parses
    each itself (FastStream's batch parser decodes every entry, joins them in one JSON list
    and gives up on the whole batch if one entry is unreadable)."""
    stub = await original({**message, "data": []})
    stub.raw_message = message  # type: ignore[assignment]  # every entry, for the handler and the ack
    return stub


def _event_of(model: type[E], fields: Mapping[bytes, bytes]) -> tuple[E, dict[str, Any]] | str:
    """The entry's event and its envelope's headers, or why it is not one. Read as FastStream
    reads an entry: its `__data__` envelope or, written by another client, its fields."""
    try:
        body, headers = BinaryMessageFormatV1.parse(fields.get(b"__data__") or dump_json(fields))
        if not isinstance(headers, dict):  # where FastStream's own parser gives up
            raise TypeError(f"envelope headers are a {type(headers).__name__}, not an object")
    except Exception as exc:
        return f"unreadable stream entry: {type(exc).__name__}: {exc}"[:500]
    try:
        return model.model_validate_json(body), headers
    except ValidationError as exc:
        return f"invalid {model.__name__}: {describe_validation_error(exc)}"


_tracer = trace.get_tracer("lianfang.bus")
HANDLED = metrics.get_meter("lianfang.bus").create_histogram(
    "lianfang.stream.handle_duration", unit="s",
    description="time to handle one stream entry read by `consume` (or of a failed batch of "
                "`consume_batches`, handled alone), by stream, group and outcome (handled, "
                "failed: left for the reclaimer, dead_lettered)",
    explicit_bucket_boundaries_advisory=HANDLING_BUCKETS_S)


async def _unreadable_dead_lettered(redis: Redis, *, stream: str, entry_id: bytes,
                                   fields: Mapping[bytes, bytes], group: str,
                                   reason: str) -> None:
    """An entry a reader read that is no event, dead-lettered at its first read and counted
    as the reclaimer's dead letters are (`outcome="dead_lettered"`)."""
    started = time.perf_counter()
    await dead_letter_entry(redis, stream=stream, entry_id=entry_id, fields=fields,
                            group=group, reason=reason, attempts=1)
    HANDLED.record(time.perf_counter() - started,
                   {"stream": stream, "group": group, "outcome": "dead_lettered"})


@dataclass(slots=True)
class Traced(Generic[E]):
    """An event of a batch with its own consumer span, a child of its publisher's: each
    incident's trace goes on through a batch as it does through `consume`."""

    event: E
    span: Span

    @contextlib.contextmanager
    def current(self) -> Iterator[Span]:
        """Make the entry's span the current one (for what the handler stores or logs)."""
        with trace.use_span(self.span, end_on_exit=False) as span:
            yield span


def _entry_attributes(stream: str, group: str, entry_id: bytes | str,
                      attempt: int) -> dict[str, str | int]:
    """A consumed entry's span attributes (OpenTelemetry's messaging conventions), and which
    delivery of the entry to its group this is (`lianfang.delivery_attempt`: 1 for the
    reader's, the delivery count for the reclaimer's): a redelivery after a consumer died
    or failed says so, although the first delivery's span (a process killed outright) may
    never have been exported."""
    return {"messaging.system": "redis", "messaging.destination.name": stream,
            "messaging.operation": "process", "messaging.consumer.group.name": group,
            "messaging.message.id": _text(entry_id), "lianfang.delivery_attempt": attempt}


def _entry_span(stream: str, group: str, entry_id: bytes | str,
                headers: Mapping[str, Any], attempt: int = 1) -> Span:
    # Named as FastStream's telemetry middleware names a consumed message.
    return _tracer.start_span(
        f"{stream} process", kind=SpanKind.CONSUMER, context=propagate.extract(headers),
        attributes=_entry_attributes(stream, group, entry_id, attempt))


def consume_batches(
    broker: RedisBroker,
    stream: streams.Stream,
    model: type[E],
    handler: BatchHandler[E] | Callable[[list[Traced[E]]], Awaitable[None]],
    *,
    settings: ServiceSettings,
    group: str,
    batch: int = 100,
    trace_each: bool = False,
    bookkeeping: bool = False,
) -> None:
    """`consume` for a stream whose events are each handled idempotently: the handler takes
    up to `batch` events at once, read and acknowledged together (one XREADGROUP and one
    XACK for the batch, and FastStream's consume path once). Entries that are no event are
    dead-lettered at once. A batch whose handler fails is handled again at once event by
    event, as `consume` handles a read: those that go through alone are acknowledged, the
    others stay pending and the reclaimer retries them one at a time, dead-lettering those
    that keep failing. A batch that failed for Redis being away, `TryAgain` or a hang stays
    pending whole, for the reclaimer (each alone would meet it again). With `trace_each`,
    the handler gets each event as `Traced`, with a consumer span continuing its
    publisher's trace (ended when the handler returns; handled alone, the event keeps it);
    without it, no span at all (unit positions: thousands a second, never traced).
    `bookkeeping`: as `consume`."""
    _check_group(stream, group)

    async def read(_: bytes) -> None:
        msg: RedisStreamMessage = broker.context.get_local("message")
        entries: list[tuple[bytes, Mapping[bytes, bytes], Any]] = []  # id, fields, event
        dead: list[bytes] = []
        for entry_id, fields in zip(msg.raw_message["message_ids"], msg.raw_message["data"],
                                    strict=True):
            parsed = _event_of(model, fields)
            if isinstance(parsed, str):
                await _unreadable_dead_lettered(msg.consumer, stream=stream.name,
                                                entry_id=entry_id, fields=fields, group=group,
                                                reason=parsed)
                dead.append(entry_id)
            elif trace_each:
                entries.append((entry_id, fields, Traced(
                    parsed[0], _entry_span(stream.name, group, entry_id, parsed[1]))))
            else:
                entries.append((entry_id, fields, parsed[0]))
        if dead:  # acknowledged now: should the handler fail, only the events are retried
            await msg.consumer.xack(stream.name, group, *dead)
        if not entries:
            return
        events = [event for _, _, event in entries]
        try:
            await _handled(handler, events, settings.handler_timeout_s)
        except UNFINISHED as exc:
            log.warning("handler for %s could not finish a batch of %d, each will be "
                        "reclaimed: %s", stream.name, len(events), describe_failure(exc))
            for item in events if trace_each else ():
                record_failure(item.span, exc)
            await _leave_pending(msg, exc)
        except Exception as exc:
            log.warning("handler for %s failed on a batch of %d, each is handled alone: %s",
                        stream.name, len(events), describe_failure(exc))
            await each_alone(msg, entries)
        finally:
            for item in events if trace_each else ():
                item.span.end()

    async def each_alone(msg: RedisStreamMessage,
                         entries: list[tuple[bytes, Mapping[bytes, bytes], Any]]) -> None:
        """A batch failed for one of its events, not for an outage: handle each on its own
        in stream order, so that the good ones are done now (an order's deadline runs) and
        only the failing ones wait for the reclaimer. Handled again, a good one changes
        nothing (handlers are idempotent); it is acknowledged only once handled alone."""
        done: list[bytes] = []
        for n, (entry_id, fields, event) in enumerate(entries):
            span = event.span if trace_each else trace.INVALID_SPAN
            failure = await _handle_entry(handler, [event], span=span, consumer=msg.consumer,
                                          stream=stream, group=group, entry_id=entry_id,
                                          fields=fields, settings=settings)
            if failure is None:
                done.append(entry_id)
            elif isinstance(failure, UNFINISHED):  # the rest would meet it too: left pending
                for _, _, left in entries[n + 1:] if trace_each else ():
                    record_failure(left.span, failure)
                break
        if len(done) < len(entries):
            if done:
                await msg.consumer.xack(stream.name, group, *done)
            await msg.nack()  # nothing on Redis: the others stay pending, unacknowledged

    _reader(broker, stream, read, settings=settings, group=group, batch=batch,
            description=f"{handler.__name__} ({model.__name__}, in batches of up to {batch})",
            linger_s=settings.linger_s if bookkeeping else 0.0)

    async def one(event: E) -> None:
        # FastStream's span for the reclaimed entry is the current one, its publisher's child.
        await handler([Traced(event, trace.get_current_span())] if trace_each else [event])

    _reclaimer(broker, stream, _processor(stream, model, one, settings=settings, group=group),
               settings=settings, group=group)


# For a script that writes an event's entry (from entry_to_write) in the same step as the
# state it reports: `xadd(stream, maxlen, entry)`, with the stream's approximate MAXLEN as
# `maxlen_arg` gives it ('' keeps everything). Prepend it to the script's text.
XADD_LUA = """
local function xadd(stream, maxlen, entry)
  if maxlen ~= '' then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', '__data__', entry)
  else
    redis.call('XADD', stream, '*', '__data__', entry)
  end
end
"""


def maxlen_arg(stream: streams.Stream) -> str:
    return "" if stream.maxlen is None else str(stream.maxlen)


@contextlib.asynccontextmanager
async def entry_to_write(stream: streams.Stream, event: BaseModel,
                         correlation_id: str) -> AsyncIterator[bytes]:
    """The stream entry FastStream's `publish` would write for `event`, for a script that
    writes it in the same step as the state it reports (a transactional outbox in one
    round trip). The envelope carries the trace context of a producer span, named as
    FastStream's telemetry names a publish, that lasts while the caller writes it. Entries
    written together (dispatch's order.issued and its incident.updated, one within the other)
    are each published from the step that writes them, side by side, not one from another's
    span: their readers' spans would hang under the other event's publish."""
    step = _writing_step.get()
    if step is None:
        step = context.get_current()
    writing = _writing_step.set(step)
    try:
        with _tracer.start_as_current_span(
            f"{stream.name} publish", context=step, kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "redis", "messaging.destination.name": stream.name,
                        "messaging.operation": "publish",
                        "messaging.message.conversation_id": correlation_id},
        ):
            headers = {"content-type": "application/json"}  # as FastStream marks a model
            propagate.inject(headers)
            yield await BinaryMessageFormatV1.encode(
                message=event.model_dump_json().encode(), reply_to=None, headers=headers,
                correlation_id=correlation_id)
    finally:
        _writing_step.reset(writing)


# The context of the step whose entries entry_to_write is making, while it makes them.
_writing_step: ContextVar[context.Context | None] = ContextVar("_writing_step", default=None)


async def queue_publish(pipe: Pipeline, stream: streams.Stream, event: Event) -> None:
    """Queue `event`'s entry on `pipe` (a MULTI, with the state it reports), as FastStream's
    `publish(..., pipeline=pipe)` would: its envelope, under a producer span."""
    async with entry_to_write(stream, event, event.event_id) as entry:
        pipe.xadd(stream.name, {"__data__": entry}, maxlen=stream.maxlen, approximate=True)


async def publish(broker: RedisBroker, stream: streams.Stream, event: BaseModel) -> bytes:
    """Publish an event to its stream; returns the entry id once Redis accepted it."""
    return await broker.publish(event, stream=stream.name, maxlen=stream.maxlen)
