"""Intake's HTTP routes: systems, categories, incidents."""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from faststream.redis import RedisBroker
from opentelemetry import trace
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.types import Scope

from shared import audit, streams
from shared.bus import entry_to_write
from shared.districts import require_known_districts
from shared.events import IncidentCancelRequested, IncidentReported, new_id, utcnow
from shared.http import (
    STORE_AWAY,
    ApiError,
    InputFirstRoute,
    Principal,
    describe_away,
    error_response,
    forbidden,
    not_found,
    refusal_cause,
    require,
    unauthorized,
)
from shared.introspect import IntrospectionUnavailable, Introspector
from shared.policy import Policy, normalise_flags
from shared.telemetry import current_trace_id
from shared.tokens import DEVICE_TOKEN_PREFIX

from . import deadline, store
from .config import Settings
from .domain import (
    ENDED_STATUSES,
    MAX_FLAG_CHARS,
    Accepted,
    CancelAccepted,
    CancelRequestIn,
    IncidentIn,
    IncidentView,
    LinkedIncident,
    SystemIn,
    cancel_fingerprint,
    classify,
    differing_part,
    find_duplicate,
    flags_read,
    how_to_cancel,
    how_to_follow_up,
    how_to_report,
    is_retry_of,
    linked_incident,
    linked_now,
    overlong_flag,
    report_fingerprint,
    report_time,
    sent_teams,
    taken_time,
    unknown_category_message,
)

log = logging.getLogger(__name__)


REPORT_PATH = "/v1/incidents"
FOLLOW_UPS = "/follow-ups"
CANCEL_REQUESTS = "/cancel-requests"
AHEAD_TOLD_S = 600.0  # a reporter whose clock is ahead is logged once in this long
MAX_JUDGED = 50  # open incidents near a report judged before it is recorded regardless
# A report refused for now says when to ask again, as every 503 does (shared.http.store_away)
RETRY_AFTER = {"Retry-After": "2"}


def not_accepted(exc: RedisError) -> ApiError:
    """503 for a report Redis could not take (nothing kept): the caller retries. Saying why
    when Redis refuses writes (full, failing over, its disk failing), which may last."""
    cause = refusal_cause(exc)
    why = "" if cause is None else f" (the store is not taking writes now: {cause})"
    return ApiError(503, "unavailable", f"the incident was not accepted{why}; retry",
                    headers=RETRY_AFTER)


def not_answered(timeout_s: float) -> ApiError:
    """503 for a report Redis gave no answer within its bound (REPORT_TIMEOUT_S from its
    arrival): whether it was kept is not known, its retry with the same ref says."""
    return ApiError(503, "unavailable", f"the store gave no answer within {timeout_s:g} s: "
                    "whether the incident was kept is not known; retry with the same "
                    "external_ref (200 if it was)", headers=RETRY_AFTER)


REVOKED = "unknown or revoked token"  # as shared.http.AuthMiddleware says it


def build_router(*, settings: Settings, redis: Redis, broker: RedisBroker, policy: Policy,
                 keys: SystemKeys, http: httpx.AsyncClient) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=InputFirstRoute)
    # A report is kept once dispatch takes it up, until it ends (then RECORDS_DAYS,
    # store.apply_update), as a linked one is until dispatch links it too; recorded, it gets
    # that long plus the stream history's (a dead letter of it may be replayed meanwhile),
    # should dispatch's word never come.
    unheard_ttl_s = round((settings.records_days + settings.retention_days) * 86400)
    # A revoked system's record: as long as the records of its incidents, which name it.
    records_kept_s = round(settings.records_days * 86400)
    fsync = FsyncWait(redis, timeout_ms=settings.waitaof_timeout_ms)

    @router.post("/systems", status_code=201, summary="Register another system (admin)",
                 description="For districts whose roster volunteers holds only (422 naming "
                 "the district that is not; 503 while volunteers does not answer). The key is "
                 "shown once; `key_id` names it (GET /v1/systems, to revoke it alone once "
                 "replaced: POST /v1/systems/{system_id}/keys).")
    async def create_system(
        body: SystemIn, who: Annotated[Principal, Depends(require("admin"))]
    ) -> dict[str, str]:
        # A district no roster holds has no team and no desk: its reports would wait unseen.
        await require_known_districts(http, body.districts, volunteers_url=settings.volunteers_url,
                                      key=settings.service_key())
        system_id, api_key = await store.create_system(
            redis, name=body.name, districts=body.districts
        )
        key_id = store.key_id(store.key_hash(api_key))
        await audit.record(redis, "intake", who, "system.create", system_id,
                           f"districts {','.join(sorted(set(body.districts)))}")
        log.info("system %s registered for %d district(s)", system_id, len(body.districts))
        return {"system_id": system_id, "key_id": key_id, "api_key": api_key}

    @router.get("/systems", summary="Registered systems (admin), each with its live keys")
    async def list_systems(_: Annotated[Principal, Depends(require("admin"))]) -> dict[str, Any]:
        rows = await store.list_systems(redis)
        return {"systems": rows, "count": len(rows)}

    @router.delete("/systems/{system_id}", status_code=204,
                   summary="Revoke a system (admin): every key of it stops working at once",
                   description="A system revoked already is left as it was (204), as long as "
                   "intake keeps its record (RECORDS_DAYS); then, like one never made, 404.")
    async def revoke_system(system_id: str,
                            who: Annotated[Principal, Depends(require("admin"))]) -> None:
        done = await store.revoke_system(redis, system_id, kept_s=records_kept_s)
        if done == "not_found":
            raise not_found("system")
        if done == "revoked":
            await audit.record(redis, "intake", who, "system.revoke", system_id)
            # also here: a restore of Redis takes the audit trail back with the revocation
            log.info("system %s revoked", system_id)

    @router.post("/systems/{system_id}/keys", status_code=201,
                 summary="Another key of a system (admin): to replace its key without losing "
                 "its calls", description="The new key is the same system: its districts, "
                 "its reports (read, retried under their refs, followed up, asked to cancel "
                 "with either key) and its refs. Shown once. The system's other keys go on "
                 "working until each is revoked (DELETE /v1/systems/{system_id}/keys/{key_id}): "
                 "switch the calling system to the new key, then revoke the old one. 404 for a "
                 "system intake does not know, 409 for one revoked.")
    async def add_system_key(system_id: str,
                             who: Annotated[Principal, Depends(require("admin"))]
                             ) -> dict[str, str]:
        made = await store.add_key(redis, system_id)
        if made == "not_found":
            raise not_found("system")
        if made == "system_revoked":
            raise ApiError(409, "conflict", "this system is revoked: it takes no new key (a "
                           "new system is registered with POST /v1/systems)")
        key_id, api_key = made
        await audit.record(redis, "intake", who, "system.key_create", system_id, key_id)
        log.info("system %s given key %s", system_id, key_id)
        return {"system_id": system_id, "key_id": key_id, "api_key": api_key}

    @router.delete("/systems/{system_id}/keys/{key_id}", status_code=204,
                   summary="Revoke one key of a system (admin); it stops working at once",
                   description="The system, its reports and its other keys stay. A key revoked "
                   "already is left as it was (204). The system's last live key is not revoked "
                   "alone (409): revoke the system (DELETE /v1/systems/{system_id}).")
    async def revoke_system_key(system_id: str, key_id: str,
                                who: Annotated[Principal, Depends(require("admin"))]) -> None:
        # (a key taken from memory for reports is refused by the report's own script)
        done = await store.revoke_key(redis, system_id, key_id)
        if done == "not_found":
            raise not_found("key")
        if done == "last":
            raise ApiError(409, "conflict", "this is the system's last key: a system without "
                           f"one reports nothing; revoke the system (DELETE /v1/systems/"
                           f"{system_id}), or give it another key first "
                           f"(POST /v1/systems/{system_id}/keys)")
        if done == "revoked":
            await audit.record(redis, "intake", who, "system.key_revoke", system_id, key_id)
            log.info("system %s: key %s revoked", system_id, key_id)

    @router.get("/categories", summary="Categories, default priorities and who may answer")
    async def categories(
        _: Annotated[Principal, Depends(require("admin", "system", "device"))],
    ) -> list[dict[str, Any]]:
        return [
            {
                "category": name,
                "priority": rule.priority,
                "agency_kinds": list(rule.answer),
                "units": rule.units,
                "skills": list(rule.skills),
            }
            for name, rule in sorted(policy.categories.items())
        ]

    @router.get("/flags", summary="The flags this deployment's dispatch rules read, and what "
                "each does", description=flags_read(policy))
    async def flags(
        _: Annotated[Principal, Depends(require("admin", "system", "device"))],
    ) -> list[dict[str, Any]]:
        return [
            {"flag": flag, "raises_to": "P1" if flag in policy.raise_to_p1_flags else None,
             "bars_volunteers": flag in policy.bar_volunteers_flags}
            for flag in sorted({*policy.raise_to_p1_flags, *policy.bar_volunteers_flags})
        ]

    # When each reporter's clock was last said to be ahead (monotonic): once in AHEAD_TOLD_S
    clock_told: dict[str, float] = {}

    def clock_ahead(who: Principal, ahead: timedelta) -> None:
        """Tells operations that a reporting system's clock is wrong (its reports taken at
        the time they come, domain.taken_time), once in AHEAD_TOLD_S a system: a camera
        firing every second would say it every second. Its id and the gap only."""
        reporter, now = reporter_of(who), time.monotonic()
        if now - clock_told.get(reporter, -math.inf) < AHEAD_TOLD_S:
            return
        if len(clock_told) >= 10_000:  # systems are a few dozen; members' phones more
            clock_told.clear()
        clock_told[reporter] = now
        log.warning("%s sent a reported_at %d s ahead of intake's clock (its clock is wrong, "
                    "or a local time was sent as UTC): its reports are taken at the time they "
                    "come", reporter, ahead.total_seconds())

    def report_deadline() -> deadline.Deadline:
        """The bound of the report (or follow-up, or cancel request) being handled:
        REPORT_TIMEOUT_S from its arrival (ReportDeadlines), else from now."""
        return deadline.current() or deadline.Deadline(settings.report_timeout_s)

    @router.post(REPORT_PATH.removeprefix("/v1"), status_code=202, response_model=None,
                 summary="Report an incident (a system's key, or a member's device token: a "
                 "patrol's own report from the street)",
                 description=how_to_report(policy),
                 responses={
                     202: {"model": Accepted, "description": "Accepted: Redis took the "
                           "incident and its event"},
                     200: {"model": Accepted, "description": "An idempotent retry: this "
                           "system sent this report with this external_ref before; the "
                           "incident it made"},
                     409: {"description": "This system sent another report with this "
                           "external_ref before (the error names the incident it made and "
                           "what differs): a retry sends the report as it was, a new report "
                           "needs an external_ref of its own"},
                 })
    async def report_incident(
        body: IncidentIn,
        response: Response,
        who: Annotated[Principal, Depends(require("system", "device"))],
    ) -> dict[str, Any]:
        # REPORT_TIMEOUT_S from the report's arrival (ReportDeadlines), its key's lookup
        # included: every wait of it on Redis below shares what is left.
        answer_by = report_deadline()

        async def refused(error: ApiError) -> ApiError:
            # 401 comes first: a key taken from memory may have been revoked since
            return unauthorized(REVOKED) if await keys.revoked(who) else error

        if body.category not in policy.categories:
            raise await refused(ApiError(422, "invalid_field", unknown_category_message(policy),
                                         "category"))
        overlong = overlong_flag(body.flags)
        existing: dict[str, str] | None = None
        if overlong is not None:
            # Refused as new; but a report taken before flags were limited (its record keeps
            # no flags) and sent again is the idempotent retry it was: its incident, 200.
            try:
                async with answer_by.within():
                    existing = await store.incident_for_ref(
                        redis, system_id=reporter_of(who), external_ref=body.external_ref,
                        key_hash=who.extra.get("key_hash"))
            except RedisError as exc:
                raise not_accepted(exc) from exc
            except TimeoutError:
                raise not_answered(answer_by.timeout_s) from None
            # (a record made since keeps its fingerprint: no report with this flag made it)
            if (existing is None or existing.get("fingerprint")
                    or body.district not in who.districts):
                raise await refused(ApiError(
                    422, "invalid_field", f"flags.{overlong} is too long: a flag is one word "
                    f"of at most {MAX_FLAG_CHARS} characters", f"flags.{overlong}"))
        if body.district not in who.districts:
            raise await refused(forbidden(
                f"this {who.kind} may not report in the district given; it covers "
                f"{', '.join(sorted(who.districts))}", "district"))
        return await take_report(body, response, who, existing=existing)

    async def take_report(body: IncidentIn, response: Response, who: Principal, *,
                          existing: dict[str, str] | None = None,
                          follow_up: FollowUp | None = None) -> dict[str, Any]:
        """A report checked (its category, flags and district), recorded and published:
        a report's duplicates judged, a `follow_up` linked to where its report went."""
        follow_up_of = follow_up.report if follow_up else None
        flags = normalise_flags(body.flags)
        priority = classify(body.category, flags, policy)
        received_at = utcnow()
        reported_at = taken_time(body.reported_at, received_at)
        if body.reported_at is not None and reported_at != body.reported_at:
            clock_ahead(who, body.reported_at - received_at)
        trace_id = current_trace_id()
        incident_id = new_id("inc")
        key = who.extra.get("key_hash")  # checked by the record script (SystemKeys)
        fingerprint = report_fingerprint(body, follow_up_of=follow_up_of)
        # REPORT_TIMEOUT_S from its arrival (ReportDeadlines), its key's lookup included
        answer_by = report_deadline()

        async def record(linked_to: str | None, *, look_near: bool,
                         judged: Sequence[str] = (), duplicate: bool = False
                         ) -> store.Recording:
            # Recorded and published in one step (the script writes the entry with the record).
            wait_ms = await fsync.timeout_ms()
            event = _reported(incident_id, body, who, flags, priority, reported_at, linked_to,
                              trace_id, follow_up_of)
            async with entry_to_write(streams.INCIDENT_REPORTED, event, incident_id) as entry:
                recording = await store.record_incident(
                    redis, incident_id=incident_id, system_id=reporter_of(who),
                    external_ref=body.external_ref, category=body.category, priority=priority,
                    district=body.district, location=body.location, reported_at=reported_at,
                    linked_to=linked_to, trace_id=trace_id,
                    unless_near_m=policy.duplicate_radius_m if look_near else None,
                    entry=entry, waitaof_timeout_ms=wait_ms,
                    key_hash=key, judged=judged, unheard_ttl_s=unheard_ttl_s,
                    fingerprint=fingerprint, follow_up_of=follow_up_of,
                    sent_reported_at=body.reported_at if reported_at != body.reported_at
                    else None,
                    # a duplicate (not a follow-up) moves its incident's window on
                    duplicate_at=report_time(reported_at, received_at)
                    if duplicate and linked_to else None,
                )
                if recording.waitaof_refused:
                    fsync.refused()
                if recording.existing_id is not None or recording.near or recording.revoked:
                    trace.get_current_span().set_attribute("lianfang.written", False)
            if recording.revoked:  # since this process resolved it (SystemKeys.cached)
                keys.forget(key)
                raise unauthorized(REVOKED)
            return recording

        async def retried(recording: store.Recording) -> dict[str, Any]:
            """The answer to a retry: the incident its ref already has. Unmarked (its fsync
            was not confirmed), its fsync is asked for again first, whenever the retry found
            it (at its first look or while linking): 200 promises it is kept, as 202 does.
            Its event is the one recorded, already in the stream (store.confirm_reported).
            A report that is not the same (its fingerprint another) is no retry: sent
            under a ref already taken it would reach nobody, so it is refused, naming the
            incident the ref made and what differs (a record older than fingerprints, none
            kept, is taken as a retry, as before); the fsync it found unconfirmed is asked
            for all the same (the report the ref made was accepted, whatever came since)."""
            found = recording.existing
            if found and found.get("published") != "1":
                confirmed = await store.confirm_reported(
                    redis, incident_id=found["incident_id"],
                    waitaof_timeout_ms=await fsync.timeout_ms())
                if confirmed == "waitaof_refused":
                    fsync.refused()
                if confirmed == "unconfirmed":
                    raise ApiError(503, "unavailable",
                                   "the incident could not be made durable; retry",
                                   headers=RETRY_AFTER)
            if found and not is_retry_of(found.get("fingerprint"), body,
                                         follow_up_of=follow_up_of):
                raise ApiError(
                    409, "conflict", f"this system sent another report with this "
                    f"external_ref before: incident {found['incident_id']}; this one differs in "
                    f"{differing_part(found, body, follow_up_of=follow_up_of).removeprefix('its ')}"
                    ". A retry sends the "
                    "report as it was; a new report needs an external_ref of its own",
                    "external_ref", incident_id=found["incident_id"])
            return _accepted(found or {"incident_id": recording.existing_id})

        try:
            # Bounded: a Redis that stops answering (its disk stalled under `appendfsync
            # always`, a frozen process) held the report for as long as it stayed so, and
            # the calling system with it; a report is answered 503 by then, whether it was
            # kept not known: its retry (the same ref) is 200 if it was. The bound counts
            # from the report's arrival: a key read from Redis first (not yet in memory)
            # left the report what remains, not the bound afresh (a caller waited twice it).
            async with answer_by.within():
                try:
                    if existing is not None:  # the retry of a report taken before the limit (above)
                        recording = store.Recording(existing_id=existing["incident_id"],
                                                    existing=existing)
                    elif follow_up is not None:  # where its report went, near or not
                        recording = await record(follow_up.incident, look_near=False)
                    else:
                        recording = await record(None, look_near=True)
                    if recording.existing_id is not None:
                        response.status_code = 200
                        return await retried(recording)
                    linked_to = follow_up.incident if follow_up else None
                    judged: list[str] = []
                    while recording.near:
                        # None of them a duplicate: look again past them, so a report of the same
                        # event recorded meanwhile is found (bounded: a busy spot's open incidents)
                        judged += [c.incident_id for c in recording.near]
                        linked_to = find_duplicate(new_at=report_time(reported_at, received_at),
                                                   new_location=body.location,
                                                   candidates=list(recording.near), policy=policy)
                        again = linked_to is None and len(judged) < MAX_JUDGED
                        recording = await record(linked_to, look_near=again, judged=judged,
                                                 duplicate=True)
                        if recording.existing_id is not None:  # a concurrent retry of the same ref won
                            response.status_code = 200
                            return await retried(recording)
                    if recording.unconfirmed:
                        raise ApiError(503, "unavailable", "the incident could not be made durable; retry",
                                       headers=RETRY_AFTER)
                except RedisError as exc:
                    if isinstance(exc, STORE_AWAY):  # a state that passes: the caller retries
                        log.warning("incident not accepted: Redis %s (%s)", describe_away(exc),
                                    type(exc).__name__)
                    else:
                        log.error("incident not accepted, Redis failed: %s", type(exc).__name__)
                    raise not_accepted(exc) from exc
        except TimeoutError:
            log.warning("incident not answered: Redis gave no answer within %g s",
                        answer_by.timeout_s)
            raise not_answered(answer_by.timeout_s) from None
        result: dict[str, Any] = {"incident_id": incident_id, "priority": priority,
                                  "status": "linked" if linked_to else "reported"}
        if linked_to:
            result["linked_to"] = linked_to
        if follow_up_of:
            result["follow_up_of"] = follow_up_of
        return result

    @router.post(REPORT_PATH.removeprefix("/v1") + "/{incident_id}" + FOLLOW_UPS, status_code=202,
                 response_model=None,
                 summary="Add to a report: what the caller adds on calling back, a second alert "
                 "of the same event (the report's own system or member)",
                 description=how_to_follow_up(policy),
                 responses={
                     202: {"model": Accepted, "description": "Accepted: Redis took the "
                           "follow-up and its event; `linked_to` names the incident it joins"},
                     200: {"model": Accepted, "description": "An idempotent retry: this "
                           "follow-up was sent with this external_ref before"},
                     409: {"description": "This system sent another report or follow-up with "
                           "this external_ref before (the error names the incident it made "
                           "and what differs)"},
                 })
    async def follow_up_report(
        incident_id: str,
        body: IncidentIn,
        response: Response,
        who: Annotated[Principal, Depends(require("system", "device"))],
    ) -> dict[str, Any]:
        if body.category not in policy.categories:
            raise ApiError(422, "invalid_field", unknown_category_message(policy), "category")
        overlong = overlong_flag(body.flags)
        if overlong is not None:
            raise ApiError(422, "invalid_field", f"flags.{overlong} is too long: a flag is one "
                           f"word of at most {MAX_FLAG_CHARS} characters", f"flags.{overlong}")
        answer_by = report_deadline()
        try:
            async with answer_by.within():  # the follow-up's bound, as a report's
                data = await store.get_incident(redis, incident_id)
        except RedisError as exc:
            raise not_accepted(exc) from exc
        except TimeoutError:
            raise not_answered(answer_by.timeout_s) from None
        if not data:
            raise not_found("incident")
        check_own_report(data, who, "follows up")
        if body.district not in who.districts:
            raise forbidden(f"this {who.kind} may not report in the district given; it covers "
                            f"{', '.join(sorted(who.districts))}", "district")
        if body.district != data["district"]:
            raise ApiError(422, "invalid_field", "district must be the district of the report "
                           "followed up", "district")
        # A report linked to another's incident is followed up there, where its team is.
        return await take_report(body, response, who, follow_up=FollowUp(
            report=incident_id, incident=linked_now(data) or incident_id))

    @router.post(REPORT_PATH.removeprefix("/v1") + "/{incident_id}" + CANCEL_REQUESTS,
                 status_code=202, response_model=None,
                 summary="Ask the command room to cancel a report made by mistake (the "
                 "report's own system or member): the incident is flagged, not closed",
                 description=how_to_cancel(),
                 responses={
                     202: {"model": CancelAccepted, "description": "Accepted: Redis took the "
                           "request and its event; the command room decides"},
                     200: {"model": CancelAccepted, "description": "An idempotent retry: "
                           "this request was sent with this external_ref before"},
                     409: {"description": "The incident has ended (nothing is left to "
                           "cancel), or this system sent another cancel request with this "
                           "external_ref before"},
                 })
    async def request_cancel(
        incident_id: str,
        body: CancelRequestIn,
        response: Response,
        who: Annotated[Principal, Depends(require("system", "device"))],
    ) -> dict[str, Any]:
        # The reason is the system's words (it may name the caller): never logged or traced.
        answer_by = report_deadline()
        try:
            async with answer_by.within():
                return await take_cancel_request(incident_id, body, response, who)
        except RedisError as exc:
            cause = refusal_cause(exc)
            why = "" if cause is None else f" (the store is not taking writes now: {cause})"
            raise ApiError(503, "unavailable", f"the cancel request was not accepted{why}; "
                           "retry", headers=RETRY_AFTER) from exc
        except TimeoutError:
            raise ApiError(503, "unavailable", f"the store gave no answer within "
                           f"{answer_by.timeout_s:g} s: whether the cancel request was kept "
                           "is not known; retry with the same external_ref (200 if it was)",
                           headers=RETRY_AFTER) from None

    async def take_cancel_request(incident_id: str, body: CancelRequestIn, response: Response,
                                  who: Principal) -> dict[str, Any]:
        data = await store.get_incident(redis, incident_id)
        if not data:
            raise not_found("incident")
        check_own_report(data, who, "asks to cancel")
        # A report linked to another's incident: the request goes there, where its team is.
        target = linked_now(data) or incident_id
        answer = {"incident_id": incident_id, "status": "cancel_requested",
                  **({"linked_to": target} if target != incident_id else {})}
        request_id = new_id("cxl")
        record = {"request_id": request_id, "report": incident_id, "incident": target,
                  "fingerprint": cancel_fingerprint(body, report=incident_id)}
        reporter = reporter_of(who)
        held = await store.cancel_request_for_ref(redis, system_id=reporter,
                                                  external_ref=body.external_ref)
        if held is None:
            # Ended: nothing left to cancel (a hand-over is its station's now). A request
            # accepted before it ended is still answered as the retry it is (above).
            ended = await _ended(data, incident_id, target)
            if ended is not None:
                raise ApiError(409, "conflict", ended)
            event = IncidentCancelRequested(
                event_id=request_id, district=data["district"], incident_id=target,
                report_id=incident_id, system_id=reporter, external_ref=body.external_ref,
                reason=body.reason, requested_at=utcnow())
            async with entry_to_write(streams.INCIDENT_CANCEL_REQUESTED, event,
                                      request_id) as entry:
                made, held = await store.record_cancel_request(
                    redis, system_id=reporter, external_ref=body.external_ref,
                    record=record, entry=entry, ttl_s=unheard_ttl_s)
            if made:
                log.info("cancel request %s for incident %s passed to the command room",
                         request_id, target)
                return {**answer, "request_id": request_id}
        # the ref was taken: this request's retry, or another under its ref
        if held.get("fingerprint") != record["fingerprint"]:
            raise ApiError(409, "conflict", "this system sent another cancel request with this "
                           f"external_ref before (for incident {held.get('report')}): a retry "
                           "sends the request as it was; a new request needs an external_ref "
                           "of its own", "external_ref")
        response.status_code = 200
        return {"incident_id": incident_id, "status": "cancel_requested",
                "request_id": held["request_id"],
                **({"linked_to": held["incident"]} if held["incident"] != incident_id else {})}

    async def _ended(data: dict[str, str], report: str, target: str) -> str | None:
        """Why a cancel request for `report` (its record `data`) going to `target` is
        refused: the incident has ended; None while it is open."""
        if target == report:
            if data["status"] in ENDED_STATUSES:
                return (f"the incident has ended ({data['status']}): there is nothing left "
                        "to cancel")
            return None
        joined = await store.get_incident(redis, target)
        status = joined["status"] if joined else "no longer kept"
        if joined is None or status in ENDED_STATUSES:
            return (f"the incident this report joined ({target}) has ended ({status}): there "
                    "is nothing left to cancel")
        return None

    @router.get("/incidents/{incident_id}", response_model=IncidentView,
                summary="An incident's status (its reporting system or member, admin)",
                description="Status, priority, the teams sent with their status and when "
                "each was assigned, acknowledged, en route, on scene, resolved or handed over "
                "(added 2026-12), the timeline "
                "(a team stood down, and why, among it), when dispatch received the report and "
                "whether late (`received_at`, `late_by_s`). "
                "A report linked to another incident (status `linked`) is sent no team itself: "
                "its `linked_incident` says where the incident it joined stands (status, "
                "priority, teams and when each was assigned, acknowledged, on scene, "
                "resolved; when it ended), never that incident's reporter's words, its "
                "external_ref or anyone's notes. That incident itself stays its own "
                "reporter's: reading it is 403.")
    async def get_incident(
        incident_id: str,
        who: Annotated[Principal, Depends(require("admin", "system", "device"))],
    ) -> dict[str, Any]:
        data = await store.get_incident(redis, incident_id)
        if not data:
            raise not_found("incident")
        if who.kind in ("system", "device") and data["system_id"] != reporter_of(who):
            raise forbidden(
                "this incident was not reported by this member: a member reads their own "
                "reports, from any of their devices" if who.kind == "device" else
                "this incident was not reported by this system: a system reads its own "
                "reports")
        joined: LinkedIncident | None = None
        parent = linked_now(data)
        if parent:
            # Of the other incident's record only what domain.linked_incident takes (never
            # its reporter's words or ref); the record itself stays its reporter's (403).
            record = await store.get_incident(redis, parent)
            if record:
                joined = linked_incident(incident_id=parent, record=record,
                                         timeline=await store.timeline(redis, parent))
        # The teams' times are read from the timeline the view shows (domain.sent_teams).
        timeline = await store.timeline(redis, incident_id)
        return {
            "incident_id": incident_id,
            "external_ref": data["external_ref"],
            "category": data["category"],
            "district": data["district"],
            "priority": data["priority"],
            "status": data["status"],
            "flagged": data.get("flagged") == "1",
            "linked_to": parent,
            "follow_up_of": data.get("follow_up_of") or None,
            "reported_at": data["reported_at"],
            # dispatch's word on the report's arrival (its first incident.updated)
            "received_at": data.get("received_at") or None,
            "late_by_s": int(data["late_by_s"]) if data.get("late_by_s") else None,
            "trace_id": data.get("trace_id") or None,
            "teams": sent_teams(record=data, timeline=timeline),
            "timeline": timeline,
            "linked_incident": joined,
        }

    return router


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A follow-up's `report` (the one it names, its reporter's own) and the `incident` it
    goes to: that report's, or the one the report is linked to."""

    report: str
    incident: str


def _reported(incident_id: str, body: IncidentIn, who: Principal, flags: tuple[str, ...],
              priority: str, reported_at: Any, linked_to: str | None,
              trace_id: str | None, follow_up_of: str | None = None) -> IncidentReported:
    return IncidentReported(
        district=body.district, incident_id=incident_id, system_id=reporter_of(who),
        # the command room's word for who reported (a member's report: none)
        system_name=who.extra.get("name") if who.kind == "system" else None,
        external_ref=body.external_ref, category=body.category, priority=priority,
        flags=flags, location=body.location, description=body.description,
        caller=body.caller, reported_at=reported_at, trace_id=trace_id, linked_to=linked_to,
        # A member's report: the team their token named as they reported (volunteers judges
        # a hazard report by it, whatever team a roster moves them to before its closing).
        reporter_team_id=who.team_id if who.kind == "device" else None,
        follow_up_of=follow_up_of,
    )


def reporter_of(who: Principal) -> str:
    """Who reported, as the incident records it: the system, or `member:<id>` for a
    member's report from the street (any of the member's devices may follow it)."""
    return f"member:{who.member_id}" if who.kind == "device" else who.subject


def _accepted(data: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "incident_id": data["incident_id"],
        "priority": data.get("priority"),
        "status": data.get("status", "reported"),
    }
    if linked := linked_now(data):
        out["linked_to"] = linked
    if data.get("follow_up_of"):
        out["follow_up_of"] = data["follow_up_of"]
    return out


class FsyncWait:
    """How long a report waits for its AOF fsync (WAITAOF_TIMEOUT_MS), or None: not at all,
    where the server cannot confirm one (store.waitaof_supported). Found at the first report
    and kept, until the server refuses a WAITAOF: Redis replaced, under a running intake, by
    one without it, or its AOF switched off (`CONFIG SET appendonly no`). Then it is found
    again: the report that met the refusal was recorded and published, and is answered so
    (202, as on a server never asked), and the next ones do not ask a server that cannot,
    instead of each being answered 503 though dispatched. A server found unable is asked
    again now and then (ASK_AGAIN_S): AOF switched on, or Redis upgraded, under a running
    intake would otherwise leave every report answered without its fsync until a restart.
    """

    ASK_AGAIN_S = 60.0  # two INFO a minute at most, only while no fsync is waited for

    def __init__(self, redis: Redis, *, timeout_ms: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._timeout_ms = timeout_ms
        self._clock = clock
        self._supported: bool | None = None  # None: to be found
        self._found_at = 0.0

    async def timeout_ms(self) -> int | None:
        if self._timeout_ms <= 0:
            return None
        now = self._clock()
        if self._supported is None or (
                not self._supported and now - self._found_at >= self.ASK_AGAIN_S):
            self._supported = await store.waitaof_supported(self._redis)
            self._found_at = now
        return self._timeout_ms if self._supported else None

    def refused(self) -> None:
        log.warning("Redis refused WAITAOF (an older server, or AOF off): reports are "
                    "answered without an fsync wait until it can confirm one again")
        self._supported = None


def token_resolver(keys: SystemKeys, devices: Introspector, *, timeout_s: float
                   ) -> Callable[[str], Awaitable[Principal | None]]:
    """A system's key, else a member's device token (asked of volunteers, who own it).

    A device token is asked afresh every time: intake does not read `device.revoked`, so a
    cached answer would let a phone revoked a moment ago (lost, stolen) still report and read
    its reports. Members' own reports are few; the round trip is cheap next to that.

    A key is read from Redis within the report's bound (deadline.current: REPORT_TIMEOUT_S
    from its arrival, which the report then has what is left of), on another route within
    `timeout_s` (REPORT_TIMEOUT_S too): a key not yet in memory (a new one, or every key
    after intake's restart) was held for as long as a frozen Redis stayed so (redis-py's read
    timeout, tried again: some 100 s), its report with it; now 503 (ask again), as
    AuthMiddleware answers a Redis away. A member's report asks volunteers within its bound
    too (503 when it passes, as when volunteers does not answer)."""
    async def resolve(token: str) -> Principal | None:
        report = deadline.current()
        if token.startswith(DEVICE_TOKEN_PREFIX):
            if report is None:
                return await devices.resolve(token, fresh=True)
            try:
                async with report.within():
                    return await devices.resolve(token, fresh=True)
            except TimeoutError:
                raise IntrospectionUnavailable from None
        bound = report or deadline.Deadline(timeout_s)
        try:
            async with bound.within():
                return await keys.resolve(token)
        except TimeoutError:
            raise RedisTimeoutError(f"no answer within {bound.timeout_s:g} s") from None

    return resolve


class SystemKeys:
    """System keys to principals. `resolve` asks Redis every time; `cached` answers a report
    (`POST /v1/incidents`, nearly all of a system's calls) from memory with what `resolve`
    found before, because the report's own script checks that the key is still the system's
    (store.record_incident's `key_hash`) and writes nothing, answering 401, if it was revoked
    meanwhile: a round trip less per report, and revocation still takes effect at once.

    A key maps to one system for good and a system's districts do not change, so a cached
    principal can only go stale by revocation. Other routes always ask Redis.
    """

    MAX = 10_000  # systems are a few dozen; the bound only keeps a flood of keys harmless

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._known: dict[str, Principal] = {}

    async def resolve(self, token: str) -> Principal | None:
        hashed = store.key_hash(token)
        system = await store.system_for_key(self._redis, hashed)
        if system is None:
            self._known.pop(hashed, None)
            return None
        principal = Principal(kind="system", subject=system["system_id"],
                              districts=tuple(system["districts"]),
                              extra={"key_hash": hashed, "name": system["name"]})
        if len(self._known) >= self.MAX:
            self._known.clear()
        self._known[hashed] = principal
        return principal

    def cached(self, token: str, scope: Scope) -> Principal | None:
        if not is_report(scope):
            return None
        return self._known.get(store.key_hash(token))

    def forget(self, hashed: str) -> None:
        self._known.pop(hashed, None)

    async def revoked(self, who: Principal) -> bool:
        """Whether a system's key was revoked since it was resolved: asked by a report
        refused before its record script (400, 422, 403), which would otherwise answer a key
        taken from memory (`cached`) as if it were good, though 401 comes first. Redis away:
        not known, so the refusal stands (nothing is written either way); so when the
        report's bound passes (deadline.current): a Redis that does not answer held the
        refusal outside any bound (redis-py's read timeout, tried again)."""
        hashed = who.extra.get("key_hash")
        if who.kind != "system" or not hashed:
            return False
        bound = deadline.current()
        try:
            if bound is None:
                found = await store.system_for_key(self._redis, hashed)
            else:
                async with bound.within():
                    found = await store.system_for_key(self._redis, hashed)
        except (RedisError, TimeoutError):
            return False
        if found is not None:
            return False
        self.forget(hashed)
        return True


def check_own_report(data: dict[str, str], who: Principal, doing: str) -> None:
    """Scoped as a read of the incident is (get_incident): a system (or a member) `doing`
    (follows up, asks to cancel) only its own reports; 403 otherwise."""
    if data["system_id"] != reporter_of(who):
        whose = "member" if who.kind == "device" else "system"
        own = "their" if who.kind == "device" else "its"
        raise forbidden(f"this incident was not reported by this {whose}: a {whose} {doing} "
                        f"{own} own reports")


def is_report(scope: Scope) -> bool:
    """A report or a follow-up of one (`POST /v1/incidents/{id}/follow-ups`): each has the
    report's bound from its arrival (ReportDeadlines) and its key kept in memory."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    path: str = scope["path"]
    return path == REPORT_PATH or (path.startswith(REPORT_PATH + "/")
                                   and path.endswith(FOLLOW_UPS) and path.count("/") == 4)


def refuse_revoked_keys_first(app: FastAPI, keys: SystemKeys) -> None:
    """A report whose body FastAPI refused (400, 422: before the route runs) is answered 401
    when its key, taken from memory, was revoked since (`SystemKeys.revoked`). Call it after
    `install_error_handlers`: it wraps that answer."""
    answer = app.exception_handlers[RequestValidationError]

    async def invalid(request: Request, exc: Exception) -> Response:
        who = request.scope.get("state", {}).get("principal")
        if who is not None and is_report(request.scope) and await keys.revoked(who):
            return error_response(unauthorized(REVOKED))
        answered = answer(request, exc)
        return await answered if inspect.isawaitable(answered) else answered

    app.add_exception_handler(RequestValidationError, invalid)

