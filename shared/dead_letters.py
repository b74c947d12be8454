"""Dead letters: list what a service's consumers gave up on, and replay one after a fix.

Each service serves `GET /v1/admin/dead-letters`,
`POST /v1/admin/dead-letters/{stream}/{entry_id}/replay` and
`DELETE /v1/admin/dead-letters/{stream}/{entry_id}` (admin) for the streams it reads.
The list merges those streams newest first, with each stream's true total, and pages back
with `before` (as `GET /v1/admin/audit` does). A replay puts the original payload back on
its stream as a new entry, which every group of the stream reads, and removes the dead
letter. Consumers are idempotent only as long as they remember what they handled, the
shortest for REPLAY_SAFE_S: within it, groups that had processed the event change
nothing; an older dead letter is replayed only when asked with `force` (see replay()).
A discard removes a letter nobody will ever read (garbage, a test's event): replayed, it
would be given up on again by every group. Both are in the service's audit trail.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from faststream.redis.parser.binary import BinaryMessageFormatV1
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind
from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError
from redis.asyncio import Redis

from shared import streams
from shared.http import ApiError, InputFirstRoute, Principal, conflict, not_found, require
from shared.scripts import run_script

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("lianfang.dead_letters")
# Module level: with postponed annotations FastAPI resolves route hints in module globals.
Admin = Annotated[Principal, Depends(require("admin"))]

# A stream entry id as Redis reads it: `<ms>-<seq>`, each an unsigned 64-bit number. ASCII
# digits only: `\d` admits other scripts' digits, and 20 digits go past 2**64 - 1, both of
# which Redis refuses ("Invalid stream ID"), which would be a 500.
ENTRY_ID_PART_MAX = 2**64 - 1


def _fits_redis(value: str) -> str:
    if any(int(part) > ENTRY_ID_PART_MAX for part in value.split("-")):
        raise PydanticCustomError(
            "stream_entry_id", f"is not a stream entry id: each part is at most {ENTRY_ID_PART_MAX}")
    return value


# The pattern inside the type, not in Query()/Path(): so it is checked before the part bound
# and the OpenAPI document shows it.
EntryId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$"),
                    AfterValidator(_fits_redis)]

# How long every consumer surely remembers an event it handled, so that the same event
# again changes nothing: the shortest of their windows. Dispatch's marks of handled events
# (`dispatch:seen:`, services/dispatch/store.py SEEN_TTL_S) last 7 days; notify's orders
# ORDER_TTL_S, 14 (and it drops an order.issued or .amended older than that); volunteers'
# orders and intake's seen updates 30. Dead letters are kept RETENTION_DAYS (30): longer.
# tests/unit/test_dead_letters.py holds this to the services' own figures.
REPLAY_SAFE_S = 7 * 86_400


def page_end(before: str | None) -> str | None:
    """XREVRANGE's `max` for a page newest first ending just before entry `before` (None:
    from the newest); None when nothing can come before it (0-0). As /v1/admin/audit pages."""
    if before is None:
        return "+"
    if before.strip("0-") == "":
        return None
    return f"({before}"


def _text(value: bytes | None) -> str | None:
    return value.decode(errors="replace") if value is not None else None


def _view(stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    payload = fields.get(b"payload", b"")
    return {
        "stream": stream,
        "dead_letter_id": entry_id.decode(),
        "original_entry_id": _text(fields.get(b"entry_id")),
        "group": _text(fields.get(b"group")),
        "reason": _text(fields.get(b"reason")),
        "attempts": int(fields.get(b"attempts", b"0") or 0),
        "dead_at": _text(fields.get(b"dead_at")),
        # the trace the event belonged to (its incident's): where to look in Jaeger
        "trace_id": _text(fields.get(b"trace_id")) or None,
        # the payload may hold personal data: admins only, and never logged
        "payload_base64": base64.b64encode(payload).decode(),
    }


async def list_dead_letters(redis: Redis, stream: str, *, count: int,
                            before: str | None = None) -> list[dict[str, Any]]:
    """The newest `count` dead letters of `stream` (those before `before`), newest first."""
    end = page_end(before)
    if end is None:
        return []
    entries = await redis.xrevrange(f"dlq.{stream}", max=end, count=count)
    return [_view(stream, entry_id, fields) for entry_id, fields in entries]


def _newest_first(row: Mapping[str, Any]) -> tuple[tuple[int, int], str]:
    return streams.entry_id_order(row["dead_letter_id"]), row["stream"]


def merge_newest_first(pages: Sequence[Sequence[Mapping[str, Any]]], *,
                       limit: int) -> tuple[list[Mapping[str, Any]], bool]:
    """One page of several streams' dead letters, newest first by dead-letter id, and
    whether older ones remain. `pages`: each stream's newest `limit + 1` (before the
    cursor), so that one stream's many never hide another's.

    Two streams may hold the same id (written in the same millisecond), and the next page
    starts strictly before the last id shown: a page never ends between two letters of the
    same id. It ends before them instead (they open the next page), or, when they are all
    it holds, takes them all (one per stream, so a little over `limit` at most)."""
    rows = sorted((row for page in pages for row in page), key=_newest_first, reverse=True)
    shown = rows[:limit]
    if len(rows) > limit and rows[limit]["dead_letter_id"] == shown[-1]["dead_letter_id"]:
        tied = shown[-1]["dead_letter_id"]
        shown = ([row for row in shown if row["dead_letter_id"] != tied]
                 or [row for row in rows if row["dead_letter_id"] == tied])
    return shown, len(rows) > len(shown)


# What a field of a dead letter that does not read raises (poison is what they hold)
_UNREADABLE = (KeyError, ValueError, TypeError, AttributeError, OverflowError)


def event_of(fields: Mapping[bytes, bytes]) -> dict[str, Any] | None:
    """The event a dead letter holds, as its JSON body reads; None when it does not read."""
    with contextlib.suppress(*_UNREADABLE):
        body, _ = BinaryMessageFormatV1.parse(fields[b"payload"])
        event = json.loads(body)
        if isinstance(event, dict):
            return event
    return None


def first_seen_ms(dead_letter_id: str | bytes, fields: Mapping[bytes, bytes]) -> int:
    """When the dead letter's event was first on its stream, as near as the letter tells:
    the earliest of its original entry's time (a replay's entry, when it had been replayed
    before), the event's `occurred_at` and the dead letter's own time."""
    times = [streams.entry_id_order(dead_letter_id)[0]]
    with contextlib.suppress(*_UNREADABLE):
        times.append(streams.entry_id_order(fields[b"entry_id"])[0])
    with contextlib.suppress(*_UNREADABLE):
        body, _ = BinaryMessageFormatV1.parse(fields[b"payload"])
        occurred = datetime.fromisoformat(json.loads(body)["occurred_at"])
        if occurred.tzinfo is not None:
            times.append(int(occurred.timestamp() * 1000))
    return min(times)


async def replay(redis: Redis, stream: str, dead_letter_id: str, *, force: bool = False,
                 now: float | None = None, service: str | None = None,
                 who: Principal | None = None) -> str:
    """Puts the dead letter's payload back on `stream` and removes the letter; the new
    entry's id. An event older than REPLAY_SAFE_S (by first_seen_ms) is refused (409)
    unless `force`: a group that handled it may have forgotten it and would act on it
    again (a stale order, an incident twice); forced, the replay is logged as such. Given
    `service` and `who`, the letter's removal writes their audit entry in the same step
    (_REMOVE_AUDITED)."""
    entries = await redis.xrange(f"dlq.{stream}", min=dead_letter_id, max=dead_letter_id)
    if not entries:
        raise not_found("dead letter")
    letter_id, fields = entries[0]
    age_s = (time.time() if now is None else now) - first_seen_ms(letter_id, fields) / 1000
    if age_s > REPLAY_SAFE_S:
        if not force:
            raise conflict(
                f"this dead letter's event is {age_s / 86_400:.1f} days old and consumers "
                f"remember what they handled for {REPLAY_SAFE_S // 86_400} days: a group "
                "that processed it may act on it again. Replay with force=true only if "
                "that is harmless (docs/operations.md, dead letters)")
        log.warning("replaying dead letter %s of %s, %.1f days old, by force: groups that "
                    "handled its event may have forgotten it", dead_letter_id, stream,
                    age_s / 86_400)
    # The entry goes back with its envelope, its trace context too: its groups read it again
    # in its incident's trace. The replay itself is in the operator's request's trace,
    # linked to that one (a trace holds one incident, not the operator's work).
    origin = trace.get_current_span(propagate.extract(_envelope_headers(fields)))
    origin_context = origin.get_span_context()
    with _tracer.start_as_current_span(
            f"{stream} publish", kind=SpanKind.PRODUCER,
            links=[Link(origin_context)] if origin_context.is_valid else None,
            attributes={"messaging.system": "redis", "messaging.destination.name": stream,
                        "messaging.operation": "publish",
                        "lianfang.dead_letter_id": dead_letter_id}) as span:
        entry_id = await redis.xadd(stream, {"__data__": fields[b"payload"]})
        new_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        span.set_attribute("messaging.message.id", new_id)
        if service is not None and who is not None:
            await _remove_audited(redis, stream, dead_letter_id, service=service, who=who,
                                  action="dead_letter.replay",
                                  detail=f"replayed as {new_id}{' by force' if force else ''}")
        else:
            await redis.xdel(f"dlq.{stream}", dead_letter_id)
    into = (f" into trace {format(origin_context.trace_id, '032x')}"
            if origin_context.is_valid else "")
    log.warning("replayed dead letter %s of %s as %s%s", dead_letter_id, stream, new_id, into)
    return new_id


# A letter's removal and its audit entry in one step: removed by one command and audited by
# the next, a discard or replay whose reply was lost (a dropped connection: 503, ask again)
# was made and in no audit trail, the letter gone when asked again (404); a retry of the
# script finds it gone and writes nothing twice. KEYS: the dead letters' stream, the
# audit's; ARGV: the letter's id, the audit's MAXLEN, then the entry's fields and values.
# 1 if the letter was there.
_REMOVE_AUDITED = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
return 1
"""


async def _remove_audited(redis: Redis, stream: str, dead_letter_id: str, *, service: str,
                          who: Principal, action: str, detail: str) -> bool:
    """Removes the dead letter with `service`'s audit entry of `action`; whether it was
    there."""
    from shared import audit  # here: shared.audit reads EntryId from this module

    done = audit.entry(who, action, f"{stream}/{dead_letter_id}", detail)
    return bool(await run_script(
        redis, _REMOVE_AUDITED, [f"dlq.{stream}", audit.audit_key(service)],
        [dead_letter_id, audit.AUDIT_MAXLEN, *(x for pair in done.items() for x in pair)]))


async def discard(redis: Redis, stream: str, dead_letter_id: str, *, service: str,
                  who: Principal) -> None:
    """Removes the dead letter without replaying it, with `service`'s audit entry (its group
    and reason, a field's name, never its value; never the payload) in the same step; 404
    when there is none."""
    entries = await redis.xrange(f"dlq.{stream}", min=dead_letter_id, max=dead_letter_id)
    if not entries:
        raise not_found("dead letter")
    fields = entries[0][1]
    if not await _remove_audited(
            redis, stream, dead_letter_id, service=service, who=who,
            action="dead_letter.discard",
            detail=f"group {_text(fields.get(b'group'))}: {_text(fields.get(b'reason'))}"):
        raise not_found("dead letter")
    log.warning("discarded dead letter %s of %s", dead_letter_id, stream)


def _envelope_headers(fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    """The headers of a dead letter's envelope (its trace context), or none."""
    with contextlib.suppress(*_UNREADABLE):
        _, headers = BinaryMessageFormatV1.parse(fields[b"payload"])
        if isinstance(headers, dict):
            return headers
    return {}


def build_router(*, redis_url: str, service: str) -> APIRouter:
    """`redis_url`: a bytes client is made here, since payloads are binary envelopes."""
    readable = {s.name for s in streams.consumed_by(service)}
    client = Redis.from_url(redis_url, client_name=service)  # CLIENT LIST names it
    router = APIRouter(prefix="/v1/admin", tags=["operations"], route_class=InputFirstRoute)

    def check(stream: str) -> None:
        if stream not in readable:
            raise ApiError(422, "invalid_field",
                           f"stream must be one of: {', '.join(sorted(readable))}", "stream")

    # The routes' input, checked in a dependency, not in the routes: a dependency runs before
    # a token of the wrong kind is refused, so a stream this service does not read is a 422
    # first, as a wrong field is (DESIGN's order). Each holds its route's parameters in the
    # route's order, so that the OpenAPI document lists them as before.
    async def listing(
        stream: str | None = Query(default=None, max_length=64),
        limit: int = Query(default=50, ge=1, le=500),
        before: Annotated[EntryId | None, Query(
            description="a dead_letter_id: page back from it (the answer's next_before)")] = None,
    ) -> tuple[str | None, int, str | None]:
        """The page asked for: (stream, limit, before)."""
        if stream:
            check(stream)
        return stream, limit, before

    async def letter(
        stream: str,
        dead_letter_id: Annotated[EntryId, Path(description="the dead letter's entry id")],
    ) -> tuple[str, str]:
        """The dead letter asked for: (stream, dead_letter_id)."""
        check(stream)
        return stream, dead_letter_id

    @router.get("/dead-letters", summary="Dead letters of the streams this service reads, "
                "newest first")
    async def dead_letters(
        _: Admin, page: tuple[str | None, int, str | None] = Depends(listing),
    ) -> dict[str, Any]:
        stream, limit, before = page
        names = [stream] if stream else sorted(readable)
        end = page_end(before)
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                if end is not None:
                    pipe.xrevrange(f"dlq.{name}", max=end, count=limit + 1)
                pipe.xlen(f"dlq.{name}")
            replies = iter(await pipe.execute())
        pages, totals = [], {}
        for name in names:
            if end is not None:
                pages.append([_view(name, entry_id, fields) for entry_id, fields in next(replies)])
            totals[name] = int(next(replies))
        rows, more = merge_newest_first(pages, limit=limit)
        return {
            "dead_letters": rows,
            "count": len(rows),  # listed here; `total` is how many there are
            "total": sum(totals.values()),
            "totals": totals,
            "next_before": rows[-1]["dead_letter_id"] if more else None,
        }

    @router.post("/dead-letters/{stream}/{dead_letter_id}/replay",
                 summary="Put a dead letter back on its stream")
    async def replay_one(
        who: Admin,
        asked: tuple[str, str] = Depends(letter),
        force: bool = Query(default=False, description=(
            "replay even an event older than consumers remember what they handled "
            f"({REPLAY_SAFE_S // 86_400} days): it may be handled again")),
    ) -> dict[str, str]:
        stream, dead_letter_id = asked
        new_id = await replay(client, stream, dead_letter_id, force=force, service=service,
                              who=who)
        return {"stream": stream, "replayed_as": new_id}

    @router.delete("/dead-letters/{stream}/{dead_letter_id}", status_code=204,
                   summary="Discard a dead letter nobody will read (never replayed)")
    async def discard_one(who: Admin, asked: tuple[str, str] = Depends(letter)) -> Response:
        stream, dead_letter_id = asked
        await discard(client, stream, dead_letter_id, service=service, who=who)
        return Response(status_code=204)

    return router
