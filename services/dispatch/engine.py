"""Dispatch's use cases: an incident arrives, a team answers, a deadline passes, the command
room steps in. Each runs under the incident's lock, reads the state from `store`, asks
`domain` what to do, writes the result and publishes the events. Every step is idempotent:
a redelivered event finds the work done and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Literal

from faststream.redis import RedisBroker
from opentelemetry import trace
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from shared import streams
from shared.bus import entry_to_write, queue_publish
from shared.events import (
    Assignment,
    Caller,
    EscortedTeam,
    Evidence,
    IncidentCancelRequested,
    IncidentClosed,
    IncidentHandedOver,
    IncidentReported,
    IncidentUpdated,
    Location,
    OrderAmended,
    OrderDelivered,
    OrderEscalated,
    OrderIssued,
    OrderResponded,
    OrderWithdrawn,
    TimelineEntry,
    UnitPosition,
    UnitStatus,
    new_id,
    utcnow,
)
from shared.http import ApiError, TryAgain, conflict, not_found
from shared.metrics import RESPONSE_BUCKETS_S, meter
from shared.policy import Policy, normalise_flags
from shared.scripts import ScriptBatch, queued_commands
from shared.telemetry import current_trace_id, extract_context, inject_context
from shared.timezones import parse_timezone
from shared.zones import Zone

from . import domain, linked, locks, store
from .config import Settings
from .timeline_text import Detail, entry_detail
from .zones import ZoneProjection, ZonesUnavailable

log = logging.getLogger(__name__)
tracer = trace.get_tracer("lianfang.dispatch")
_meter = meter("dispatch")
TIME_TO_ASSIGN = _meter.create_histogram(
    "lianfang.dispatch.time_to_assign", unit="s",
    description="from the report to the first order issued",
    explicit_bucket_boundaries_advisory=RESPONSE_BUCKETS_S)
TIME_TO_ACK = _meter.create_histogram(
    "lianfang.dispatch.time_to_acknowledge", unit="s",
    description="from the report to the first acknowledgement",
    explicit_bucket_boundaries_advisory=RESPONSE_BUCKETS_S)
TIME_TO_SCENE = _meter.create_histogram(
    "lianfang.dispatch.time_to_scene", unit="s",
    description="from the report to the first team on scene: the response time",
    explicit_bucket_boundaries_advisory=RESPONSE_BUCKETS_S)
ROUTING_TIMEOUTS = _meter.create_counter(
    "lianfang.dispatch.routing_timeouts", description="orders withdrawn for a missed deadline")
ANSWERS_READ_AFTER_TIMEOUT = _meter.create_counter(
    "lianfang.dispatch.answers_read_after_timeout",
    description="answers given by their order's deadline, read after it timed the order out "
                "(of the routing timeouts, those that were not the team's)")

class ReportNotYetHandled(Exception):
    """An event about an incident whose report dispatch has not handled (yet): its consumer
    fails it, to be asked again by the reclaimer (CLAIM_IDLE_MS), then dead-lettered
    (MAX_DELIVERIES) should the report never come (itself dead-lettered: replay it first)."""

    def __init__(self, incident_id: str) -> None:
        super().__init__(f"incident {incident_id} not known to dispatch yet")


TERMINAL = ("resolved", "handed_over", "closed", "linked")
ENDED = ("resolved", "handed_over", "closed")  # a report of the event is then a new one
# Orders that occupy a team (claimed); hand-over and follow-up orders are tasks that do not.
CLAIMING_KINDS = ("dispatch", "reinforcement", "manual")
STATION_KINDS = domain.STATION_KINDS  # the station's tasks: no claim, no deadline
DONE = ("resolved", "closed", "linked")
# How many ended incidents a linked report follows on (each sent on as the next report of
# its event) to the one still open: a chain longer than this is an old event's.
MAX_SENT_ON = 3
# The retries of a hand-over, a visit and a backup nobody could be found for, and the
# revisit of a category without its own interval, are the policy's (handover_retry_min,
# followup_retry_h, reinforce_retry_s, followup_default_days): a station tunes them.

# An incident reported while its district's zones could not be loaded (volunteers away)
# looks its zone up again this often, for ZONE_WAIT at most: a category sent to its zone's
# own station waits for it that long, then goes to any station's team, flagged.
ZONE_RETRY = timedelta(seconds=15)
ZONE_WAIT = timedelta(minutes=10)
# A report linked to an incident dispatch does not know, whose wait (LINKED_WAIT_S) passed
# while that incident's own report is still in dispatch's stream, looks again this often.
LINK_LOOK_AGAIN = timedelta(seconds=1)
# A linked report the command room unlinked (an assignment to it, or its unlink) is looked at
# again this long after the unlink's write (the `unlinked:{report}` timer, on_unlinked_due):
# a step that died after that write and was never asked again (the process killed, the
# desk gone) left it `dispatching`, its orders not given and the board not told. Longer
# than the desk takes to ask again after a failed answer, whose retry finishes it with the
# team it chose; the timer finds a finished unlink as it is and changes nothing.
UNLINK_FINISHED_WITHIN = timedelta(seconds=15)
# Each timer's step (its span's name, in its incident's trace); these name an order.
TIMER_STEPS = {"ack": "acknowledgement deadline", "followup": "follow-up visit due",
               "handover": "hand-over retried", "zone": "zone looked up again",
               "reinforce": "backup looked for again", "offshift": "team off shift on an order",
               "removed": "station order of a removed team handed on",
               "moved": "order of a team a roster import moved judged",
               "rezoned": "order judged again after an import gave its zone to another station",
               "visit": "follow-up visit order unanswered",
               "link": "linked report judged again",
               "unlinked": "unlinked report's orders made"}
ORDER_TIMERS = ("ack", "reinforce", "offshift", "removed", "moved", "rezoned", "visit")
# What a follow-up visit checks (its order's instructions): a mediated agreement, unless
# the category's visit is for something else (DOMAIN.md: "after mediation or a fraud warning").
MEDIATED_CHECK = "check that the mediated agreement holds."
VISIT_CHECKS = {"fraud_warning": "check on those warned of the fraud (no further contact "
                                 "from the fraudsters, no money sent)."}
# What the timeline says of a visit that did not find it so (answered `handover`), as
# timeline_text codes: (visited again, the visits run out).
MEDIATED_VERDICTS = ("agreement_revisit", "agreement_failed")
VISIT_VERDICTS = {"fraud_warning": ("warning_revisit", "warning_failed")}
# A safeguard only: every search that ends without a claim is another incident's claim.
SEARCH_ROUNDS = 64
# A deadline due while answers given before it still wait unread (dispatch back after an
# outage, a backlog) is looked at again this often, for ANSWERS_CATCH_UP at most; an answer
# reaches its stream up to ANSWER_IN_FLIGHT after it was given.
ANSWERS_WAIT = timedelta(seconds=0.25)
ANSWERS_CATCH_UP = timedelta(minutes=2)
ANSWER_IN_FLIGHT = timedelta(seconds=0.25)
# An order announced this long after it was written was sent late (a failure in between):
# its deadline counts from its announcement.
SENT_LATE = timedelta(seconds=1)


@contextlib.contextmanager
def in_incident_trace(name: str, trace_ctx: str | None, **attributes: str) -> Iterator[None]:
    """Run a step of an incident in a span of the incident's own trace (`trace_ctx`, stored
    from its report's span), linked to the span current here (the command room's request,
    the event that freed a team) so that that trace still shows what it caused: the orders,
    withdrawals and events the step publishes, and every answer to them, then belong to
    the incident's one trace (DESIGN). Already in that trace (a step within a timer's
    firing), or with no stored context (an archived incident), a child of the current span.
    `attributes`: ids (`lianfang.incident_id`, ...), never a caller's data."""
    stored = extract_context(json.loads(trace_ctx or "{}"))
    home = trace.get_current_span(stored).get_span_context()
    cause = trace.get_current_span().get_span_context()
    if not home.is_valid or home.trace_id == cause.trace_id:
        with tracer.start_as_current_span(name, attributes=attributes):
            yield
        return
    with tracer.start_as_current_span(name, context=stored, attributes=attributes,
                                      links=[trace.Link(cause)] if cause.is_valid else None):
        yield


@contextlib.contextmanager
def _odd_record_passed(incident_id: str) -> Iterator[None]:
    """Around a step a waiting incident is judged or offered a team in, for another event
    than its own (a freed team's, the sweep's): a record that step fails on for what it
    holds (a field it lacks, a value it cannot read) is logged and passed over, left
    queued, so that one odd record neither keeps the team from the incidents behind it nor
    fails the event that freed it. Redis away, a lock held long and zones not loaded pass
    through: the event is handled again."""
    try:
        yield
    except (RedisError, TimeoutError, TryAgain, ZonesUnavailable):
        raise
    except Exception:
        log.exception("waiting incident %s could not be judged or offered: passed over",
                      incident_id)


def _reporting_member(inc: dict[str, str]) -> str | None:
    """The member who reported the incident from the street (intake records such a report
    as `member:<id>`), None for a system's report."""
    kind, _, member_id = (inc.get("system_id") or "").partition(":")
    return member_id if kind == "member" and member_id else None


def _late_note(reported_at: datetime, received_at: datetime) -> TimelineEntry | None:
    """The note a report that reached dispatch late (domain.late_by) has on its timeline
    beside its own entry, at its receipt; None for one that came in time."""
    late = domain.late_by(reported_at, received_at)
    if late is None:
        return None
    return TimelineEntry(at=received_at, kind="note", **entry_detail(
        "reported_late", minutes=int(late.total_seconds() // 60),
        reported_at=reported_at.isoformat()))


def _arrival(inc: dict[str, str]) -> dict[str, Any]:
    """The report's arrival at dispatch, for the incident's first incident.updated: when it
    came, and whether late (the seconds, the note its timeline has, as written with the
    incident: _late_note of the same times), which no update carries otherwise; nothing
    for an incident whose record does not say when it came."""
    try:
        reported_at = datetime.fromisoformat(inc["reported_at"])
        received_at = datetime.fromisoformat(inc["received_at"])
    except (KeyError, ValueError):
        return {}
    return {"received_at": received_at,
            "late_by_s": domain.late_by_s(reported_at, received_at),
            "late_note": _late_note(reported_at, received_at)}


def _sent_as(order: dict[str, str]) -> str:
    return domain.sent_as(order["agency_kind"], order.get("agency_role"))


_counted_as = domain.counted_as  # the by-hand list (by_hand.py) counts the same way


def _units_and_alongside(orders: list[dict[str, str]]) -> tuple[list[str], list[str]]:
    """The incident's live orders that claim a team, as domain.choose_units counts them:
    its units, and apart the teams that go with them without being one (a backup, on top of
    the units it wants; a P1's escort marked `escort`, sent only so that volunteers are not
    alone there and not answering the category: a police car without first aid on a
    medical call). A unit that declines, misses its deadline or is taken back is replaced
    whoever of those stays. So is one whose resolution or hand-over left the P1 to the
    police (`left_to_police`): its part is done, and nobody is sent in its place (the
    incident is not short of it), while a police team that leaves is replaced."""
    units: list[str] = []
    alongside: list[str] = []
    for order in orders:
        if order.get("kind") in CLAIMING_KINDS and (
                order["state"] in domain.LIVE_ORDER_STATES
                or order.get("left_to_police") == "1"):
            with_units = order["kind"] == "reinforcement" or order.get("escort") == "1"
            (alongside if with_units else units).append(_counted_as(order))
    return units, alongside


def _escort_said(order: dict[str, str]) -> Literal["awaited", "sent"] | None:
    said = order.get("escort_said")
    return "awaited" if said == "awaited" else "sent" if said == "sent" else None


def _escort_news(inc: dict[str, str], orders: list[dict[str, str]], *,
                 barred: bool = False) -> dict[str, str]:
    """The live orders claiming a team whose phones are to be told something new of the
    police or security going with them (domain.escort_news; "" for nothing): by order id,
    what, where it differs from what the order last said (its `escort_said` mark). None
    while the incident's flags bar volunteers (`barred`): they are being taken off it."""
    if barred:
        return {}
    claiming = [o for o in orders if o["state"] in domain.LIVE_ORDER_STATES
                and o.get("kind") in CLAIMING_KINDS]
    live = domain.counted_for_escort(claiming)
    news = {}
    for order in claiming:
        said = domain.escort_news(inc["priority"], _counted_as(order), live) or ""
        if said != (order.get("escort_said") or ""):
            news[order["order_id"]] = said
    return news


def _escorting_said(order: dict[str, str], *, nobody: tuple[EscortedTeam, ...] | None = None
                    ) -> tuple[EscortedTeam, ...] | None:
    """The volunteer teams the order last said it escorts (its `escorting_said` mark);
    `nobody` when it says none."""
    said = order.get("escorting_said")
    if not said:
        return nobody
    return tuple(EscortedTeam(team=name, state=state) for name, state in json.loads(said))


def _escorting_news(inc: dict[str, str], orders: list[dict[str, str]], *,
                    barred: bool = False) -> dict[str, str]:
    """The live orders claiming a police or security team whose phones are to be told
    something new of the volunteers they escort on a P1 (domain.escorting_news, as a JSON
    list; "" for nobody): by order id, what, where it differs from what the order last said
    (its `escorting_said` mark). While the incident's flags bar volunteers (`barred`), they
    are being taken off it: the escort escorts nobody."""
    claiming = [o for o in orders if o["state"] in domain.LIVE_ORDER_STATES
                and o.get("kind") in CLAIMING_KINDS]
    live = [] if barred else [(_counted_as(o), o.get("team_name") or o["team_id"], o["state"])
                              for o in claiming]
    news = {}
    for order in claiming:
        escorted = domain.escorting_news(inc["priority"], _counted_as(order), live)
        said = json.dumps(escorted, ensure_ascii=False) if escorted else ""
        if said != (order.get("escorting_said") or ""):
            news[order["order_id"]] = said
    return news


def _station_order_backed(orders: list[dict[str, str]],
                          order: dict[str, str]) -> dict[str, str] | None:
    """The station's hand-over or follow-up order that `order` backs up, when `order` is a
    backup a station team asked for: its answers end its own order, never the case."""
    if order.get("kind") != "reinforcement":
        return None
    asked = next((o for o in orders if o["order_id"] == order.get("for_order")), None)
    return asked if asked is not None and asked.get("kind") in STATION_KINDS else None


def _with_another_visit(orders: list[dict[str, str]], backup: dict[str, str],
                        ending: dict[str, str]) -> bool:
    """Whether `backup` backs up a station order other than `ending` that is still live (a
    visit going on while the station files the case): it stays, with that visit."""
    asked = _station_order_backed(orders, backup)
    return (asked is not None and asked["order_id"] != ending["order_id"]
            and asked["state"] in domain.LIVE_ORDER_STATES)


def _police(order: dict[str, str]) -> bool:
    """Whether the order's team counts as police (of any role), as the incident counts it."""
    return _counted_as(order).partition(":")[0] == "police"


def _sentence(words: str) -> str:
    """A team's words as a sentence of the station's instructions (a full stop added)."""
    return words + ("" if words[-1] in ".!?。！？" else ".")


def _records_in(timeline: list[dict[str, Any]]) -> list[Evidence]:
    """The records on an incident's timeline (answers' and the command room's), once each,
    in the order they came."""
    seen: dict[tuple[str, str], Evidence] = {}
    for entry in timeline:
        for record in TimelineEntry.model_validate(entry).evidence or ():
            seen.setdefault((record.kind, record.ref), record)
    return list(seen.values())


def _handed_to_police(timeline: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """The hand-overs that left a P1 to the police (`handover_left_to_police` notes): each
    team, as the note names it, and its words, in the order they came."""
    return [((e.get("detail_args") or {}).get("team") or e.get("team_id") or "a team",
             e.get("note") or None)
            for e in timeline if e.get("detail_code") == "handover_left_to_police"]


def _handed_over_by(orders: list[dict[str, str]]) -> dict[str, str]:
    """The order whose team handed the incident over to the station: the last handed over,
    but not one whose hand-over left a P1 to the police (`left_to_police`: the police's own
    hand-over handed it over); a stand-in naming no team when none is known."""
    return next((o for o in reversed(orders) if o["state"] == "handover"
                 and o.get("left_to_police") != "1"), {"team_id": "a team"})


_of_a_station = store.of_a_station


def _the_station_s(unit: domain.Unit | None, order: dict[str, str]) -> bool:
    """Whether `unit` is still a team of the station its order `order` was given to."""
    return (unit is not None and unit.agency_id == order.get("agency_id")
            and _of_a_station(unit.agency_kind, unit.agency_role))


def _since_report(inc: dict[str, str], at: str) -> float:
    """Seconds from the report to `at`, as the KPIs count them (`domain.acted_from`)."""
    return max(0.0, (datetime.fromisoformat(at) - domain.acted_from(inc)).total_seconds())


def _first_times(inc: dict[str, str], order: dict[str, str], new_state: str,
                 at: str) -> tuple[bool, bool]:
    """Whether a team's answer given `at`, moving its order to `new_state`, is the
    incident's first acknowledgement, and its first team on scene: nothing of the kind
    before it, only this very answer's (an attempt that failed after writing it), or one
    given later (another team's answer handled first: its first attempt failed, and the
    reclaimer took this one up after it)."""
    def first(field: str) -> bool:
        known = inc.get(field)
        return order.get("kind") in CLAIMING_KINDS and (
            not known or datetime.fromisoformat(at) <= datetime.fromisoformat(known))

    # Any answer but a refusal means the team took the order, even if it skipped
    # "acknowledged" (the design lets responses skip steps). On scene, or past it: a team
    # that answers resolved or hands over has been there.
    return (new_state != "declined" and first("first_ack_at"),
            new_state in ("on_scene", "resolved", "handover") and first("first_on_scene_at"))


# How far a team's own answers took its order (a refusal, a withdrawal or a timeout is no
# step of the team's).
_TEAM_STEPS = {"acknowledged": 1, "en_route": 2, "on_scene": 3, "resolved": 4, "handover": 4}


def _passed_by_its_order(order: dict[str, str], response: str) -> bool:
    """Whether `response` is a step (acknowledged, en route, on scene) that the team's own
    later answer already took its order past (or, an acknowledgement, to: its call for
    backup acknowledged it): the step was given, and handled late."""
    step = _TEAM_STEPS.get(domain.RESPONSE_STATE.get(response, ""), 0)
    reached = _TEAM_STEPS.get(order["state"], 0)
    return (order.get("kind") in CLAIMING_KINDS and 0 < step < 4
            and (reached > step or _acknowledged_by_its_call(order, response)))


def _acknowledged_by_its_call(order: dict[str, str], response: str) -> bool:
    """Whether `response` is an acknowledgement of an order its team's call for backup has
    acknowledged already (_taken_by_call): not that answer's own write made again."""
    return (response == "acknowledged" and order["state"] == "acknowledged"
            and order.get("acknowledged_by") == "reinforce")


def _given_while_live(order: dict[str, str], event: OrderResponded) -> bool:
    """Whether an answer to an order since withdrawn (the command room's close or take-back,
    another team's resolution) was given while the order was still live: the team's phone
    still showed it, and what the team said happened (notify took it before it read the
    withdrawal, or dispatch handled the close first)."""
    withdrawn_at = order.get("withdrawn_at")
    return (order["state"] == "withdrawn" and order.get("kind") in CLAIMING_KINDS
            and event.response in domain.RESPONSE_STATE and bool(withdrawn_at)
            and event.occurred_at <= datetime.fromisoformat(withdrawn_at))


def _call_entry(order: dict[str, str], event: OrderResponded) -> TimelineEntry:
    """A team's call for backup on the timeline: at the team's time, in its words."""
    return TimelineEntry(at=event.occurred_at, kind="response", team_id=order["team_id"],
                         order_id=order["order_id"], detail=event.response,
                         note=event.note or None, evidence=event.evidence or None)


def _call_fields(order: dict[str, str], event: OrderResponded) -> dict[str, str]:
    """The incident's mark of its latest call for backup (api's `backup_call`: the board
    row's "backup called at 13:05 by team X, sent team Y / none yet"): a call on a P3 or P4
    neither flags the incident nor is a new P1, and the board showed nothing of it. The
    backup sent for it is set by _emit_reinforcement, emptied again when the one sent
    failed with nobody else free (_reinforce)."""
    return {"backup_call_at": event.occurred_at.isoformat(),
            "backup_call_team": order["team_id"],
            "backup_call_team_name": order.get("team_name") or "",
            "backup_call_order": order["order_id"],
            "backup_call_sent": "", "backup_call_sent_name": ""}


def _same_answer(known: TimelineEntry, entry: TimelineEntry) -> bool:
    """Whether the timeline's `known` entry is `entry`'s answer, written already."""
    return (known.kind, known.order_id, known.detail, known.at) == (
        entry.kind, entry.order_id, entry.detail, entry.at)


def _answered_before_its_timeout(order: dict[str, str], event: OrderResponded) -> bool:
    """Whether an answer to an order timed out was given by its deadline: dispatch's
    answers were behind past ANSWERS_CATCH_UP when the deadline fired. Its first such
    answer (`answered_in_time`): a later one (en route after the acknowledgement) adds
    nothing. A call for backup is _called_while_live's (and _first_in_time's)."""
    return event.response in domain.RESPONSE_STATE and _first_in_time(order, event)


def _first_in_time(order: dict[str, str], event: OrderResponded) -> bool:
    """Whether `event` is the team's first answer given by the deadline of its order, which
    that deadline timed out before dispatch read it (`answered_in_time`)."""
    due = _ts(order.get("ack_by"))
    return (order["state"] == "timed_out" and due is not None
            and not order.get("answered_in_time") and event.occurred_at <= due)


def _refusals(orders: list[dict[str, str]]) -> list[dict[str, str]]:
    """The incident's orders its teams declined or let time out (flag_reasons'
    `turned_down`): dispatch never offers it to those teams again (_not_offered_again)."""
    return [o for o in orders if o["state"] in ("declined", "timed_out")
            and o.get("kind") in CLAIMING_KINDS]


def _turned_down_detail(refused: list[dict[str, str]]) -> Detail:
    """The line of an incident waiting after `refused`: who turned it down, each once."""
    names = dict.fromkeys(o.get("team_name") or o["team_id"] for o in refused)
    return entry_detail("no_team_turned_down", teams=", ".join(names))


def _answered_in_time(event: OrderResponded) -> dict[str, str]:
    """What an order timed out keeps of its team's answer given by its deadline: the answer
    (`answered_in_time`) and when the team gave it (`answered_in_time_at`: the list of teams
    to send by hand says "declined it at 22:03", not at the deadline dispatch read it after)."""
    return {"answered_in_time": event.response,
            "answered_in_time_at": event.occurred_at.isoformat()}


# When an order ended, by its end: taken from its team (its withdrawal, its deadline's
# timeout), or by the team's own last answer.
_ENDED_AT = {"withdrawn": "withdrawn_at", "timed_out": "timed_out_at",
             "resolved": "resolved_at", "handover": "handover_at"}


def _called_while_live(order: dict[str, str], event: OrderResponded) -> bool:
    """Whether a call for backup on an order that has ended was made while the order was
    live: before its withdrawal or timeout (notify took it before it read that, or dispatch
    timed the order out with the press in flight), or before the team's own end of it. An
    order timed out before `timed_out_at` was kept counts from its deadline."""
    ended = order.get(_ENDED_AT.get(order["state"], "")) or (
        order.get("ack_by") if order["state"] == "timed_out" else None)
    return (event.response == "reinforce" and bool(ended)
            and event.occurred_at <= datetime.fromisoformat(ended))


def _record_first_times(inc: dict[str, str], at: str, *, ack: bool, on_scene: bool) -> None:
    if ack:
        TIME_TO_ACK.record(_since_report(inc, at), {"priority": inc["priority"]})
    if on_scene:
        TIME_TO_SCENE.record(_since_report(inc, at), {"priority": inc["priority"]})


def observe_incidents(redis_url: str) -> None:
    """Gauge of incidents by status, from the counts `_emit` keeps (read at collection)."""
    import redis as sync_redis
    from opentelemetry.metrics import Observation

    client = sync_redis.Redis.from_url(redis_url, socket_timeout=1.0, decode_responses=True,
                                       client_name="dispatch")  # CLIENT LIST names it

    def by_status(_: object) -> list[Observation]:
        try:
            counts = client.hgetall(store.STATUS_COUNTS)
        except sync_redis.RedisError:
            return []
        return [Observation(int(n), {"status": status}) for status, n in counts.items()]

    _meter.create_observable_gauge("lianfang.incidents", callbacks=[by_status],
                                   description="incidents by status")


def _sent_not_knowing_the_station(inc: dict[str, str], order: dict[str, str]) -> bool:
    """Whether `order` was issued while the incident's zone, given up on after ZONE_WAIT
    (`zone_unknown`), was not known: still unknown, or learnt since (`place_known_at`)."""
    if inc.get("zone_unknown") == "1":
        return True
    known_at, issued_at = _ts(inc.get("place_known_at")), _ts(order.get("issued_at"))
    return known_at is not None and issued_at is not None and issued_at < known_at


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _made_before_end(inc: dict[str, str], made_at: datetime | None) -> bool:
    """Whether a report made at `made_at` came before the ended incident `inc` first ended
    (resolved, handed over or closed)."""
    ends = [t for t in map(_ts, (inc.get("resolved_at"), inc.get("handed_over_at"),
                                 inc.get("closed_at"))) if t is not None]
    return made_at is not None and bool(ends) and made_at < min(ends)


def _may_unlink(inc: dict[str, str]) -> None:
    """A linked report the command room may make an incident of its own: any kept whole."""
    if inc.get("archived_at"):
        raise conflict(f"the incident is linked and was archived on {inc['archived_at']} "
                       "(only its figures are kept): it cannot be sent a team")


def _unlink_unfinished(inc: dict[str, str]) -> bool:
    """Whether the incident is a report unlinked (by the command room's assignment or
    unlink) whose step failed after the unlink's write, before its orders were announced:
    `dispatching`, which no event brings it back from (a request is not redelivered); the
    request asked again makes the rest, whatever else it answers (a 409: _fill), and its
    `unlinked:` timer does when nobody asks again (on_unlinked_due)."""
    return inc["status"] == "dispatching" and bool(inc.get("unlinked_from"))


def _unlinked_from(order: dict[str, str], parent: str | None) -> dict[str, str]:
    """A manual order as the command room's assignment returns it: with `unlinked_from`
    when the assignment unlinked the report (for the audit), never stored."""
    return order if parent is None else {**order, "unlinked_from": parent}


@dataclasses.dataclass(frozen=True, slots=True)
class StepEnd:
    """How a step under an incident's lock ends (Dispatcher._end): the consumed event's done
    mark, the lock, the team the step freed (team, district) if any, a claim (team, order)
    to release before the step's last writes, and what to record in the metrics once the
    step is done (recorded before, a step that failed and was made again counted twice)."""

    held: locks.Held
    done: str
    freed: tuple[str, str] | None = None
    release_claim: tuple[str, str] | None = None
    recorded: Callable[[], None] | None = None
    answered_by: str | None = None  # a team's answer: its run of missed orders ends


# A freed team is offered to the waiting incidents it may answer, read a page at a time.
WAITING_PAGE = 50
WAITING_PAGES = 10
# The sweep of a district's queue (sweep_waiting) looks at this many waiting incidents a
# round at most, fewer with many teams free: each is checked against every free team (~8
# us a check; 400 teams free for none of 500 incidents took 1.6 s a round), this many
# checks in all. It tries this many of them at most (each a search under its lock).
SWEEP_LOOK = WAITING_PAGES * WAITING_PAGE
SWEEP_CHECKS = 10_000
SWEEP_FILLS = 20
# A free team's position fix (every 5 s) reads the first page of the queue; one of its fixes
# in this many seconds reads on past it. Every fix read all WAITING_PAGES: a backlog the team
# may not answer cost each fix of each free team hundreds of commands. What a fix changes is
# where the team is (an incident queued and a team freed run searches of their own): one
# further down that the team came within reach of waits this long and one fix at most, the
# 30 s the sweep (WAITING_SWEEP_S) would let it wait.
FIX_LOOKS_ON_EVERY_S = 25.0
# A freed team's offer stops after this many searches (_fill, each under its incident's
# lock) that did not send it: another team was sent instead, or nobody (the look at the
# incident said the team would go, the search found otherwise: the team just past the
# radius, say). It went on through WAITING_PAGES, hundreds of searches with a backlog, on
# the consumer that reads the answers in order. The team's next look (its position fix,
# every 5 s, past the first page once in FIX_LOOKS_ON_EVERY_S) and the sweep
# (WAITING_SWEEP_S), which leaves an incident it tried to the others for a while, go on.
WAITING_FILLS_MISSED = 4


class Dispatcher:
    def __init__(self, *, redis: Redis, broker: RedisBroker, policy: Policy, settings: Settings,
                 zones: ZoneProjection) -> None:
        self.redis = redis
        self.broker = broker
        self.policy = policy
        self.settings = settings
        self.tz = parse_timezone(settings.timezone)
        self.zones = zones
        self.locks = locks.IncidentLocks(redis)
        # The scripts of concurrent incidents (first steps, searches, offers), one round
        # trip for those made in the same turn of the event loop.
        self.scripts = ScriptBatch(redis)
        # Teams this process is offering right now (to one incident each), with what their
        # offer's end sets: a concurrent incident that chose one of them waits for that
        # instead of sending an offer that would lose the claim.
        self._offering: dict[str, asyncio.Future[None]] = {}
        # Timers (by name) waiting for the answers given before them (_answers_behind):
        # since when (monotonic), and up to when answers count.
        self._awaiting_answers: dict[str, tuple[float, datetime]] = {}
        self._awaiting_swept = time.monotonic()

    @property
    def _handover_retry(self) -> timedelta:
        """A hand-over no team of its station on shift took is tried again after this."""
        return timedelta(minutes=self.policy.handover_retry_min)

    @property
    def _followup_retry(self) -> timedelta:
        """A visit no team of the station could be given is ordered again after this."""
        return timedelta(hours=self.policy.followup_retry_h)

    @property
    def _reinforce_retry(self) -> timedelta:
        """A backup nobody was free for is looked for again after this."""
        return timedelta(seconds=self.policy.reinforce_retry_s)

    def _followup_retry_args(self) -> dict[str, str]:
        """A visit's time to answer, or to be ordered again, as a timeline entry says it."""
        hours = self.policy.followup_retry_h
        return {"span": "an hour" if hours == 1 else f"{hours:g} h", "hours": f"{hours:g}"}

    @contextlib.contextmanager
    def _offering_to(self, team_ids: list[str]) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        mine = {team_id: loop.create_future() for team_id in team_ids}
        self._offering.update(mine)
        try:
            yield
        finally:
            for team_id, done in mine.items():
                del self._offering[team_id]
                done.set_result(None)

    # --- plumbing ---------------------------------------------------------------------

    def _locked(self, incident_id: str) -> AbstractAsyncContextManager[locks.Held]:
        return self.locks.hold(incident_id)

    @contextlib.asynccontextmanager
    async def _locked_state(self, incident_id: str, *, seen: str
                            ) -> AsyncIterator[tuple[locks.Held, store.IncidentState]]:
        """The incident's lock and its state (with whether `seen` is marked): when the lock
        is free, taken and read in one round trip; else read once the lock is ours."""
        token = locks.new_token()
        state = await store.lock_and_state(self.redis, incident_id, lock_key=locks.key(incident_id),
                                           token=token, ttl_ms=self.locks.ttl_ms, seen=seen)
        if state is None:  # another step holds it: wait for it, then read
            async with self.locks.hold(incident_id) as held:
                yield held, await store.incident_state(self.redis, incident_id, seen=seen)
            return
        async with self.locks.hold(incident_id, token=token) as held:
            yield held, state

    async def _publish(self, stream: streams.Stream, event: Any) -> None:
        await self.broker.publish(event, stream=stream.name, maxlen=stream.maxlen)

    async def _zone_of(self, district: str, lat: float, lon: float) -> Zone | None:
        """The zone holding the point (None: outside every zone); ZonesUnavailable when
        the district's zones could not be loaded."""
        return await self.zones.lookup(district, lat=lat, lon=lon)

    async def _place(self, district: str, lat: float, lon: float) -> tuple[Zone | None, bool]:
        """The zone holding the point, and whether that is known (False: the zones could
        not be loaded, the zone is None but the place may well have one)."""
        try:
            return await self._zone_of(district, lat, lon), True
        except ZonesUnavailable:
            return None, False

    def _awaits_station(self, inc: dict[str, str]) -> bool:
        """Whether the incident waits for its zone before any order: the zone is not known
        yet and the category goes to the zone's own station only (fraud warnings), which
        another station's team must not get instead."""
        return (inc.get("zone_pending") == "1"
                and self.policy.rule(inc["category"]).zone_station)

    def _query(self, facts: domain.IncidentFacts, now: datetime) -> domain.CandidateQuery:
        """The candidate search `_fill` runs (also run ahead, with a new incident's creation)."""
        return domain.candidate_query(facts, self.policy, now)

    def _facts(self, inc: dict[str, str], excluded: set[str]) -> domain.IncidentFacts:
        return domain.IncidentFacts(
            incident_id=inc["incident_id"], district=inc["district"], category=inc["category"],
            priority=inc["priority"], flags=tuple(json.loads(inc.get("flags") or "[]")),
            lat=float(inc["lat"]), lon=float(inc["lon"]), zone_id=inc.get("zone_id") or None,
            station_agency_id=inc.get("station_agency_id") or None,
            excluded=frozenset(excluded),
        )

    def _not_offered_again(self, state: store.IncidentState) -> set[str]:
        """The teams the incident's search leaves out: those it was offered to (they
        declined it, missed its deadline, the command room took them off it, or they hold
        it), and, of a category sent to its zone's own station only (a fraud warning), a
        team dispatch took off it for a roster or zone move (`team_moved`: off the offered
        set then, and offered it again once the rules send it) while this process's zones
        were read before that take-off. Another replica may have judged the zones up to
        ZONES_REFRESH_S newer than this one's: judged by the older ones, the zone still the
        team's station's, the team would be offered the warning again and taken off again
        when they are read, and again. Read after the take-off, they hold whatever made it."""
        excluded = set(state.offered)
        inc = state.incident
        if inc is None or not self.policy.rule(inc["category"]).zone_station:
            return excluded
        read_at = self.zones.read_at(inc["district"])
        for order in state.orders:
            if (order["state"] == "withdrawn" and order.get("team_moved") == "1"
                    and order["team_id"] not in excluded):
                at = order.get("withdrawn_at")
                # not written back to the order in hand: taken off in this very step
                if (read_at is None or not at
                        or datetime.fromisoformat(at).timestamp() >= read_at):
                    excluded.add(order["team_id"])
        return excluded

    async def _facts_now(self, inc: dict[str, str], excluded: set[str]) -> domain.IncidentFacts:
        """_facts, with the station that owns the place now (_station_known) for a category
        sent to its zone's own station only (fraud warnings): an import since the report may
        have given the zone to another station, whose teams go then, as a hand-over does
        (the stored one while the zones cannot be loaded)."""
        facts = self._facts(inc, excluded)
        if not self.policy.rule(inc["category"]).zone_station:
            return facts
        station, _ = await self._station_known(inc)
        return dataclasses.replace(facts, station_agency_id=station or None)

    async def _emit(self, incident_id: str, entry: TimelineEntry, status: str | None = None, *,
                    state: store.IncidentState | None = None,
                    also: Callable[[Pipeline], Awaitable[None]] | None = None,
                    end: StepEnd | None = None,
                    release_claim: tuple[str, str] | None = None,
                    missed: tuple[str, datetime] | None = None) -> bool:
        """Store the incident's new status and the timeline entry and publish incident.updated,
        in one transaction (with whatever `also` queues first). `state`, when the caller
        holds it current, saves reading it again; it is updated in place. `release_claim`
        (team, order): an order these writes end, whose claim on its team goes with them
        (released apart, first, a failure in between left the order live while another
        incident could take its team). `missed` (team, when): these writes count one more
        order the team let time out, on its record if the projection holds it (not with
        `end`).

        Given the step's `end`, these are the step's last writes: they go with its end in one
        script (`store.end_step`: one round trip for the writes, the done mark and the lock);
        returns then what _end returns."""
        state = state or await store.incident_state(self.redis, incident_id)
        inc = state.incident
        if inc is None:
            return await self._end(end) if end is not None else False
        changes, entry, event = self._update(state, entry, status)
        # A volunteer team's phone told whether police or security goes with it to a P1:
        # an order not yet announced says it in its order.issued (this step's `also` may
        # announce it), one announced already by order.amended.
        # So is a police or security team's phone, of the volunteers it escorts there.
        news = _escort_news(inc, state.orders, barred=self._barred(inc))
        escorting = _escorting_news(inc, state.orders, barred=self._barred(inc))
        announced = {o["order_id"] for o in state.orders if o.get("published") == "1"}
        for order in state.orders:
            if order["order_id"] in news:
                order["escort_said"] = news[order["order_id"]]
            if order["order_id"] in escorting:
                order["escorting_said"] = escorting[order["order_id"]]
        # Never sent as queued: the same commands go in a script that makes them once.
        async with self.redis.pipeline(transaction=False) as pipe:
            if also is not None:
                await also(pipe)
            for order in state.orders:
                if order["order_id"] in news or order["order_id"] in escorting:
                    await self._queue_escort_news(pipe, inc, order, seq=changes["seq"],
                                                  announced=order["order_id"] in announced,
                                                  escort=order["order_id"] in news,
                                                  escorting=order["order_id"] in escorting)
            store.queue_incident_change(pipe, inc, changes, entry=entry)
            await queue_publish(pipe, streams.INCIDENT_UPDATED, event)
            commands = queued_commands(pipe)
        if end is not None:
            assert missed is None, "a miss is counted by write_incident_step only"
            if release_claim is not None:
                end = dataclasses.replace(end, release_claim=release_claim)
            free = await self._end(end, commands)
        elif await store.write_incident_step(self.redis, commands, incident_id=incident_id,
                                             seq=inc.get("seq") or "0", token=locks.new_token(),
                                             release_claim=release_claim, missed=missed):
            free = False
        else:  # another step changed the incident: this one's lock had expired
            log.warning("incident %s changed under a step whose lock expired: nothing "
                        "written, the step will run again", incident_id)
            raise locks.LockLost(incident_id)
        inc.update(changes)
        return free

    async def _queue_escort_news(self, pipe: Pipeline, inc: dict[str, str],
                                 order: dict[str, str], *, seq: str, announced: bool,
                                 escort: bool = True, escorting: bool = False) -> None:
        """Queue the order's new `escort_said` mark (`escort`: a volunteer team's) or
        `escorting_said` mark (`escorting`: its escort's) and, when it was announced
        already, order.amended saying it (with the order's priority, flags and deadline as
        they stand: an amendment is the order as it is now)."""
        said = order.get("escort_said") or ""
        marks = {"escort_said": said} if escort else {}
        if escorting:
            marks["escorting_said"] = order.get("escorting_said") or ""
        store.queue_order_change(pipe, order["order_id"], marks)
        if not announced:
            return
        await queue_publish(pipe, streams.ORDER_AMENDED, OrderAmended(
            event_id=f"escort-{order['order_id']}-{seq}", district=inc["district"],
            order_id=order["order_id"], incident_id=inc["incident_id"],
            team_id=order["team_id"], priority=inc["priority"],
            flags=tuple(json.loads(inc.get("flags") or "[]")), ack_by=_ts(order.get("ack_by")),
            escort=(said or "none") if escort else None,
            escorting=_escorting_said(order, nobody=()) if escorting else None))

    def _update(self, state: store.IncidentState, entry: TimelineEntry, status: str | None
                ) -> tuple[dict[str, str], TimelineEntry, IncidentUpdated]:
        """The incident's changed fields, its timeline entry and its incident.updated, for a
        step that leaves it in `state` (status None: as its orders make it)."""
        inc = state.incident
        assert inc is not None
        orders = state.orders  # an order is written only with its claim: none half-made
        if status is None:
            status = inc["status"]
            if status not in TERMINAL:
                live = [o["state"] for o in orders if o["state"] in domain.LIVE_ORDER_STATES]
                status = domain.incident_status(live, current=status) if live else "unassigned"
        flagged = bool(self.flag_reasons(inc, orders, status))
        # Under the incident's lock nobody else writes it: the next seq is the stored one + 1.
        seq = int(inc.get("seq") or 0) + 1
        # DESIGN's timeline names each status change: on the step's own entry (a team's
        # answer, a timeout, a close) whenever the step moved the incident
        if entry.kind == "status" or status != inc["status"]:
            entry = entry.model_copy(update={"status": status})
        assignments = tuple(
            Assignment(order_id=o["order_id"], team_id=o["team_id"],
                       team_name=o.get("team_name") or None, agency_kind=o["agency_kind"],
                       status=o["state"], eta_s=float(o["eta_s"]) if o.get("eta_s") else None)
            for o in orders
        )
        changes = {"status": status, "flagged": "1" if flagged else "0", "seq": str(seq)}
        return changes, entry, IncidentUpdated(
            district=inc["district"], incident_id=inc["incident_id"], seq=seq, status=status,
            priority=inc["priority"], flagged=flagged, assignments=assignments, entry=entry,
            linked_to=inc.get("linked_to") or None, **(_arrival(inc) if seq == 1 else {}))

    def flag_reasons(self, inc: dict[str, str], orders: list[dict[str, str]],
                     status: str) -> list[str]:
        """Why the incident in `status` with `orders` is flagged for the command room (none:
        it is not), each a code the console says in words: `unassigned`, `missed_deadlines`,
        `turned_down` (waiting, or short of a unit, after a team declined it or let its
        deadline pass: never offered to that team again, only sent by hand),
        `volunteers_alone` (no escort), `short_of_units` (a unit it wants with nobody free),
        `unknown_category`, `backup_wanted` (a call for backup nobody was free for),
        `backup_volunteers_only` (a volunteer team's call answered by volunteers only: no
        police or security team free yet), `team_off_shift` (its team went off shift on it),
        `visit_stuck`, `report_given_up`, `agreement_failed`, `cancel_requested` (its reporting
        system asks to cancel it: the command room decides), `see_timeline` (a step that
        needs the command room said why on the timeline: a hand-over no station team takes,
        a report dispatch never got)."""
        misses = int(inc.get("misses") or 0)
        timeouts = int(inc.get("timeouts") or 0) >= self.policy.flag_after_misses
        # Volunteers sent to a P1 with no police or security team free to escort them, or
        # an incident short of a unit it wants with no team free to be it (one of two found;
        # the only other that could go declined or missed its deadline, never offered it
        # again): it waits in the queue with nobody to send. The command room is told at
        # once, as it is of an incident no team was found for (the unit joins when a team
        # comes free, and the flag goes); not when it sent a team by hand itself. A
        # hand-over's station orders are no units.
        claiming = [o for o in orders if o["state"] in domain.LIVE_ORDER_STATES
                    and o.get("kind") in CLAIMING_KINDS]
        by_hand = any(o.get("kind") == "manual" for o in claiming)
        unescorted = not by_hand and domain.volunteers_alone_on_p1(
            inc["priority"], domain.counted_for_escort(claiming))
        short = (not by_hand and status not in TERMINAL
                 and domain.short_of_units(self._facts(inc, set()), self.policy,
                                           *_units_and_alongside(orders)))
        # An incident done with (resolved, closed, a linked report) needs nobody: not
        # flagged however many deadlines it missed; a hand-over still may (no station team).
        # But a case filed (resolved) whose follow-up visits found the agreement broken to
        # the last waits for the command room's decision, its close.
        undecided = status == "resolved" and inc.get("followup_failed") == "1"
        # A category dispatch's policy does not have went to police by default
        # (policy.UNKNOWN_CATEGORY): the command room checks it, until it sends a team itself.
        unknown = (inc["category"] not in self.policy.categories
                   and not any(o.get("kind") == "manual" for o in orders))
        # A live order whose team asked for backup nobody was free for (_reinforce: until a
        # backup goes), or went off shift while on it (on_off_shift_due: until the command
        # room takes it back): the command room is told while the order lasts.
        live_orders = [o for o in orders if o["state"] in domain.LIVE_ORDER_STATES]
        backup_wanted = any(o.get("backup_wanted") == "1" for o in live_orders)
        # A volunteer team's call answered by volunteers only (nobody else was free): still
        # open for police or security, looked for by the retry (_emit_reinforcement) till
        # one of them goes, then not flagged; derived from the orders, so a backup's decline
        # or end says it again at once.
        volunteers_only = any(domain.backed_up_by_volunteers_only(o, orders)
                              for o in live_orders)
        off_shift = any(o.get("off_shift_at") for o in live_orders)
        # A follow-up visit no team of the station could be given (`followup_unstaffed`,
        # until one is), or whose order its team left unanswered past the policy's
        # followup_retry_h (`unanswered_at`, while unanswered): told to the command room
        # also once the case is filed (resolved), as a hand-over waiting for a team is.
        visit_stuck = status not in ("closed", "linked") and (
            inc.get("followup_unstaffed") == "1"
            or any(o.get("kind") == "followup" and o["state"] == "offered"
                   and o.get("unanswered_at") for o in orders)
            # taken, and no verdict given within followup_verdict_h: no next visit without
            or any(o.get("kind") == "followup" and o.get("no_verdict_at")
                   and o["state"] in domain.LIVE_ORDER_STATES and o["state"] != "offered"
                   for o in orders))
        # An incident whose report was dead-lettered after creating it, before any team
        # (on_report_given_up): nothing seeks one for it, until the command room assigns
        # one or the report is replayed. So is a linked report given up on before its link
        # was judged (its incident may have ended): until the replay judges it (_judge_link
        # takes the mark off as it links it) or the command room sends it a team.
        given_up = status in ("dispatching", "linked") and inc.get("report_given_up") == "1"
        # Teams that declined it or let its deadline pass are never offered it again
        # (_not_offered_again): waiting, or short of a unit, after one did, it is not for
        # want of a free team alone. A free team on the map may be one of them, and only
        # the command room can send it (the list of teams says which).
        turned_down = (status == "unassigned" or short) and bool(_refusals(orders))
        reasons = [reason for reason, holds in (
            ("agreement_failed", undecided), ("visit_stuck", visit_stuck),
            ("report_given_up", given_up)) if holds]
        if status not in DONE:
            reasons += [reason for reason, holds in (
                ("unassigned", status == "unassigned"), ("turned_down", turned_down),
                # `misses` is also raised to the flag by steps that need the command room
                # (a hand-over no station team takes, a lost report, a zone never known):
                # deadlines missed only when the timeouts reach it, else see the timeline
                ("missed_deadlines", misses >= self.policy.flag_after_misses and timeouts),
                ("see_timeline", misses >= self.policy.flag_after_misses and not timeouts),
                ("volunteers_alone", unescorted), ("short_of_units", short),
                ("unknown_category", unknown), ("backup_wanted", backup_wanted),
                ("backup_volunteers_only", volunteers_only),
                ("team_off_shift", off_shift),
                # a reporting system asked to cancel it (on_cancel_requested): until the
                # command room closes it or keeps it open with a remark, or it ends
                ("cancel_requested", bool(inc.get("cancel_requested"))
                 and status not in TERMINAL)) if holds]
        return reasons

    # --- an incident arrives ----------------------------------------------------------

    async def on_incident_reported(self, event: IncidentReported) -> None:
        # Nearly every report is new: its lock, its creation and its candidate search are
        # one round trip (store.first_step), its order, incident.updated and the lock's
        # release another after the offer. A redelivered report finds the incident and
        # carries on from its state.
        zone, known = await self._place(event.district, event.location.lat,
                                        event.location.lon)
        fields = self._incident_fields(event, zone, known=known)
        inc = {"incident_id": event.incident_id, **fields}
        query = (None if event.linked_to or self._awaits_station(inc)
                 else self._query(self._facts(inc, set()), utcnow()))

        received_at = datetime.fromisoformat(fields["received_at"])
        entries = [] if event.linked_to else [TimelineEntry(
            at=received_at, kind="reported", **self._reported_detail(event))]
        if late_note := _late_note(event.reported_at, received_at):
            # the scene is that old: said at once, beside the report (the command room decides)
            entries.append(late_note)

        async def first_step(token: str) -> tuple[int, list[domain.Unit]]:
            return await store.first_step(
                self.scripts, incident_id=event.incident_id, district=event.district,
                reported_ts=event.reported_at.timestamp(),
                received_ts=received_at.timestamp(), fields=fields, entries=entries,
                lock_key=locks.key(event.incident_id), token=token,
                ttl_ms=self.locks.ttl_ms, query=query)

        token = locks.new_token()
        created, found = await first_step(token)
        if created < 0:  # another worker holds the lock: wait for it, then the same step
            async with self.locks.hold(event.incident_id) as held:
                created, found = await first_step(held.token)
                revised = await self._after_first_step(event, inc, held, created, found)
        else:
            async with self.locks.hold(event.incident_id, token=token) as held:
                revised = await self._after_first_step(event, inc, held, created, found)
        if revised is not None:
            await self._finish_revision_by_report(revised, event)

    async def on_report_given_up(self, event: IncidentReported) -> None:
        """A report whose step kept failing, just before its dead letter: the incident it
        created with no team on it yet (`dispatching`, no live order) is in no queue and
        has no timer, so nothing would seek a team for it; it is flagged for the command
        room, with a note, until a team is assigned (by hand, or by the report replayed
        once fixed). So is a linked report sent out as its own (its incident had ended).
        One whose event went out as another incident (store.sent_on) is flagged too, its
        note naming that one, which has the team: not a second team to send. A report still
        `linked` is no incident to send a team to, or has its link's timer, once its link
        is judged; one whose step stopped before that (_link_unjudged) may be of something
        still going on, its incident ended: flagged with a note naming that incident, until
        the report replayed judges the link (the judgement needs the step that fails:
        made here, it would fail as that did, and leave nothing said)."""
        async with self._locked(event.incident_id):
            state = await store.incident_state(self.redis, event.incident_id)
            inc = state.incident
            if inc is None or inc.get("report_given_up"):
                return
            unjudged = await self._link_unjudged(inc)
            if not unjudged and (inc["status"] != "dispatching" or any(
                    o["state"] in domain.LIVE_ORDER_STATES for o in state.orders)):
                return
            inc["report_given_up"] = "1"
            if unjudged:
                detail = entry_detail("report_not_handled_link", parent=inc["linked_to"])
            # its event went out as another incident, with its team (a dead letter replayed
            # after a report linked to it was sent out in its place): not one to send to
            elif not event.linked_to and (onward := await store.sent_on(self.redis,
                                                                        event.incident_id)):
                detail = entry_detail("report_not_handled_sent_on", onward=onward)
            else:
                detail = entry_detail("report_not_handled")

            async def mark(pipe: Pipeline) -> None:
                store.queue_incident_fields(pipe, event.incident_id, {"report_given_up": "1"})

            await self._emit(event.incident_id, TimelineEntry(kind="note", **detail),
                             status=inc["status"], state=state, also=mark)

    async def _link_unjudged(self, inc: dict[str, str]) -> bool:
        """Whether a linked report's record was made and its link never judged (_record_link):
        its step stopped in between, and perhaps it was given up on since (on_report_given_up:
        its note's write). Every judgement that leaves the report `linked` puts the `linked`
        entry on its timeline; nothing else does. `seq` 0 (nothing written since its
        creation) says so without a read, but not the converse: the command room may write on
        the report meanwhile (a remark, evidence), and its retry then skipped the judgement,
        for good when its incident was lost (no `link:` timer)."""
        if inc["status"] != "linked" or inc.get("archived_at"):
            return False
        if inc.get("seq") == "0" or inc.get("report_given_up") == "1":
            return True
        return not any(e.get("kind") == "linked"
                       for e in await store.timeline(self.redis, inc["incident_id"]))

    def _reported_detail(self, event: IncidentReported) -> Detail:
        known = event.category in self.policy.categories
        return entry_detail("reported" if known else "reported_unknown_category",
                            category=event.category, priority=event.priority)

    async def _after_first_step(self, event: IncidentReported, inc: dict[str, str],
                                held: locks.Held, created: int,
                                found: list[domain.Unit]) -> str | None:
        """The report's step after its first round trip, under its lock. Returns the
        incident a linked report unlinked since may have revised (its step failed after the
        revision's write), whose revision is to be finished once this lock is let go
        (_finish_revision_by_report); else None."""
        if created:
            if created == store.SENT_OUT:
                await self._join_sent_out(event, held)
            elif not event.linked_to:
                await self._fill(event.incident_id, store.IncidentState(inc, [], set()),
                                 held=held, found=found)
            elif not await self._record_link(event):
                await self._fill(event.incident_id, held=held)
            return None
        state = await store.incident_state(self.redis, event.incident_id)
        if state.incident is None:  # gone since (retention): the retry creates it
            raise RuntimeError(f"incident {event.incident_id} vanished while read")
        if state.incident["status"] != "linked":
            if (state.incident["status"] == "dispatching" and not state.orders
                    and not event.linked_to
                    and await store.sent_on(self.redis, event.incident_id)):
                # created after a report was sent out in its place, and never linked to
                # that one (the step stopped in between; given up on since, perhaps, with
                # its note: `seq` is not 0 then)
                await self._join_sent_out(event, held)
            else:
                await self._fill(event.incident_id, state)
            # unlinked by the command room since an attempt of this step that may have
            # revised the incident it was linked to and failed before the rest
            return (state.incident.get("unlinked_from") or None) if event.linked_to else None
        elif (await self._link_unjudged(state.incident)
              and not await self._record_link(event)):
            # created, and the link never judged (the step stopped in between; given up on
            # since, perhaps, with its note)
            await self._fill(event.incident_id, held=held)
        return None

    async def _finish_revision_by_report(self, parent: str, event: IncidentReported) -> None:
        """A linked report's step that revised the open incident `parent` (a knife: P1, and
        `weapon`) and failed before the rest, its report unlinked by the command room before
        it came again: the rest made, as _judge_link makes it for a report still linked
        (volunteers barred taken off, the units the incident now wants sent). An unlink
        keeps a revision a whole step made: what the report said of that place stands.
        After the report's lock is let go (a step reassigning a team between the two
        incidents takes their locks in the order of their ids)."""
        report = event.incident_id
        if not await self._revised_by_report(parent, report):
            return
        async with self._locked(parent):
            state = await store.incident_state(self.redis, parent)
            other = state.incident
            if other is None or other["status"] in TERMINAL:
                return
            with in_incident_trace("a linked report revises the incident",
                                   other.get("trace_ctx"), **{"lianfang.incident_id": parent}):
                off = await self._revised(
                    state, priority=None, add_flags=(), note=None,
                    by=self._linked_report(report), report=report,
                    words=event.description if event.follow_up_of else None)
        for order in off:
            await self.retry_waiting(other["district"], freed=order["team_id"])

    def _incident_fields(self, event: IncidentReported, zone: Zone | None, *,
                         known: bool) -> dict[str, str]:
        return {
            "district": event.district,
            "system_id": event.system_id,
            # the system's name, for the dispatcher (a camera's alert or a 110 call)
            "system_name": event.system_name or "",
            # a member's report: their team as they reported it (incident.closed carries it)
            "reporter_team_id": event.reporter_team_id or "",
            "external_ref": event.external_ref,
            "category": event.category,
            "priority": event.priority,
            "flags": json.dumps(list(event.flags)),
            "lat": repr(event.location.lat),
            "lon": repr(event.location.lon),
            "address": event.location.address or "",
            "zone_id": zone.zone_id if zone else "",
            "station_agency_id": zone.owner_agency_id if zone else "",
            # "1": the zones could not be loaded; looked up again (_zone_still_pending)
            "zone_pending": "" if known else "1",
            "status": "linked" if event.linked_to else "dispatching",
            "linked_to": event.linked_to or "",
            # a reporting system's follow-up of its own report: judged as one (_judge_link)
            **({"follow_up_of": event.follow_up_of} if event.follow_up_of else {}),
            "misses": "0",
            "seq": "0",
            "flagged": "0",
            "reported_at": event.reported_at.isoformat(),
            "received_at": utcnow().isoformat(),
            "trace_id": event.trace_id or current_trace_id() or "",
            "trace_ctx": json.dumps(inject_context()),
            # Need to know: kept for police orders only, never logged.
            "caller": event.caller.model_dump_json() if event.caller else "",
            "description": event.description or "",
        }

    async def _record_link(self, event: IncidentReported) -> bool:
        """Records a duplicate report as linked to the open incident intake found for it;
        False if that incident had ended when dispatch came to the report (intake judged it
        on its own view, which follows dispatch's by a moment): the report was then of
        something still going on, and is dispatched as its own incident. The ended one
        remembers it (`sent_on_as`): the next report of the same event that intake links to
        the ended one joins it, not a second team sent to one event. Decided under the
        other incident's lock, so its end and this judgement come in one order. A report
        intake made (its event's `occurred_at`) before that incident ended was right when
        made, and is of the event its team saw to: it joins it, ended, whenever dispatch
        comes to it (a dead letter replayed, a backlog), and no team is sent again.

        An incident dispatch does not know (its own report handled at this very moment, or
        lost to the dead letters) is linked to all the same, and the link judged again
        after LINKED_WAIT_S (the `link:{report}` timer, on_link_due)."""
        assert event.linked_to is not None
        return await self._judge_link(
            event.incident_id, event.linked_to, district=event.district,
            priority=event.priority, flags=event.flags, waited=False, made_at=event.occurred_at,
            follow_up=bool(event.follow_up_of), words=event.description)

    async def _join_sent_out(self, event: IncidentReported, held: locks.Held) -> None:
        """The report of an incident that reaches dispatch only after a report intake linked
        to it was sent out in its place (_sent_out_unheard: its own report was dead-lettered,
        and replayed since): the same event, which has its team; the incident is linked to
        that report, as a report linked to it is (_judge_link: what it knows revises that
        one), never sent a second team."""
        onward = await store.sent_on(self.redis, event.incident_id)
        if onward is None:  # expired this very moment (SENT_ON_TTL_S)
            await self._fill(event.incident_id, held=held)
            return
        await self.redis.hset(store.incident_key(event.incident_id), "linked_to", onward)
        if not await self._judge_link(
                event.incident_id, onward, district=event.district, priority=event.priority,
                flags=event.flags, waited=False, made_at=event.occurred_at):
            await self._fill(event.incident_id, held=held)

    async def _judge_link(self, incident_id: str, parent: str, *, district: str, priority: str,
                          flags: Collection[str], waited: bool,
                          made_at: datetime | None = None, follow_up: bool = False,
                          words: str | None = None) -> bool:
        """_record_link's judgement of the report `incident_id` linked to `parent`; `waited`:
        the judgement again of on_link_due, once parent was not known for LINKED_WAIT_S;
        `made_at`: when intake made the report (None: not known); `follow_up`: the report is
        its reporting system's follow-up of its own (intake linked it whatever the distance
        and the time), judged as a duplicate is, its timeline saying so, and its `words`
        (its description) added to the open incident's, for its police teams (_revised)."""
        linked_to = parent
        told_code = "follow_up_linked" if follow_up else "report_linked"
        off: list[dict[str, str]] = []
        for hop in range(MAX_SENT_ON + 1):
            async with self._locked(parent):
                state = await store.incident_state(self.redis, parent)
                other = state.incident
                if other is None:
                    # one report of the event was sent out in its place (_sent_out_unheard)
                    onward = await store.sent_on(self.redis, parent)
                    if onward and onward != incident_id and hop < MAX_SENT_ON:
                        parent = onward  # judged again, under that one's lock
                        continue
                    if waited:
                        await self._sent_out_unheard(incident_id, parent)
                        return False
                elif waited and hop == 0 and other["status"] in TERMINAL:
                    return True  # it came after the report, which joined it
                if (other is not None and other.get("status") in ENDED
                        and not _made_before_end(other, made_at)):
                    onward = other.get("sent_on_as")
                    if onward and onward != incident_id and hop < MAX_SENT_ON:
                        parent = onward  # judged again, under that one's lock
                        continue
                    mine = await store.incident_state(self.redis, incident_id)

                    async def remember(pipe: Pipeline, ended: str = parent,
                                       first: bool = not onward,
                                       report: dict[str, str] | None = mine.incident) -> None:
                        if first:
                            store.queue_incident_fields(pipe, ended,
                                                        {"sent_on_as": incident_id})
                        if report is not None:  # counted under an incident not known then
                            store.queue_link_unindexed(pipe, report)

                    await self._emit(incident_id, TimelineEntry(
                        kind="note", **entry_detail(
                            "follow_up_of_ended" if follow_up else "duplicate_of_ended",
                            parent=parent, status=other["status"])),
                        status="dispatching", state=mine, also=remember)
                    return False
                if other is not None and other["status"] not in TERMINAL:
                    # What this report knows that the open incident did not (a second
                    # caller: "he has a knife"): its flags and a more urgent priority, as the
                    # command room's revision would bring them, before the link is recorded
                    # (a step made again after a failure does the revision again, which
                    # writes nothing twice: found written, by its timeline entry, the
                    # revision's sequel is made all the same: volunteers barred taken off,
                    # the units the incident now wants sent).
                    known = set(json.loads(other.get("flags") or "[]"))
                    added = tuple(f for f in normalise_flags(flags) if f not in known)
                    sooner = priority if priority < other["priority"] else None
                    # a follow-up's words: its reporting system's, for the police on it
                    said = words if follow_up and words else None
                    if (added or sooner or said
                            or await self._revised_by_report(parent, incident_id)):
                        # in the open incident's trace: the orders and amendments it makes
                        # are that incident's (linked to the report's span)
                        with in_incident_trace("a linked report revises the incident",
                                               other.get("trace_ctx"),
                                               **{"lianfang.incident_id": parent}):
                            off = await self._revised(
                                state, priority=sooner, add_flags=added, note=None,
                                by=self._linked_report(incident_id), report=incident_id,
                                words=said)
                if waited and hop == 0:
                    # it came after the report, which joined it: told now, as it would have
                    # been had the report come after it (the report marked, so a firing
                    # made again tells it once)
                    mine = await store.incident_state(self.redis, incident_id)

                    async def told(pipe: Pipeline, to: str = parent,
                                   report: dict[str, str] | None = mine.incident) -> None:
                        store.queue_incident_fields(pipe, incident_id, {"link_told": "1"})
                        if report is not None:  # among the incident's reports, now known
                            store.queue_link_indexed(pipe, report, parent=to,
                                                     source=linked.report_source(report))

                    await self._emit(parent, TimelineEntry(
                        kind="note", **entry_detail(told_code, report=incident_id)),
                        also=told)
                    break
                if parent != linked_to:  # followed on from the incident intake named
                    await self.redis.hset(store.incident_key(incident_id), "linked_to", parent)
                detail = entry_detail("follow_up" if follow_up else "duplicate", parent=parent)
                if other is None:
                    detail = entry_detail("duplicate_not_known", parent=parent,
                                          seconds=f"{self.settings.linked_wait_s:g}")
                # given up on before (on_report_given_up: its link not judged, or its
                # incident sent out in its place): judged now, it is flagged no more (the
                # mark taken off `mine`, which the write's `flagged` reads, and the record)
                mine = await store.incident_state(self.redis, incident_id)
                given_up = bool(mine.incident and mine.incident.pop("report_given_up", None))

                async def judged(pipe: Pipeline, unknown: bool = other is None,
                                 given_up: bool = given_up, to: str = parent,
                                 report: dict[str, str] | None = mine.incident) -> None:
                    if report is not None and not unknown:  # among the incident's reports
                        store.queue_link_indexed(pipe, report, parent=to,
                                                 source=linked.report_source(report))
                    if given_up:
                        store.queue_incident_fields(pipe, incident_id, {"report_given_up": ""})
                    if unknown:  # judged again after LINKED_WAIT_S
                        store.queue_schedule(pipe, f"link:{incident_id}",
                                             utcnow() + self._linked_wait)

                await self._emit(incident_id, TimelineEntry(kind="linked", **detail),
                                 status="linked", state=mine, also=judged)
                if other is not None:
                    await self._emit(parent, TimelineEntry(
                        kind="note", **entry_detail(told_code, report=incident_id)))
                break
        for order in off:
            await self.retry_waiting(district, freed=order["team_id"])
        return True

    async def _revised_by_report(self, parent: str, report: str) -> bool:
        """Whether the linked report `report` revised the open incident `parent` already (an
        attempt of its step that failed after the revision's write)."""
        by = f" by {self._linked_report(report)}"
        return any(e.get("kind") == "revised" and str(e.get("detail") or "").endswith(by)
                   for e in await store.timeline(self.redis, parent))

    @staticmethod
    def _linked_report(report: str) -> str:
        """Who revises an incident for a report linked to it, on its timeline."""
        return f"a linked report ({report})"

    @property
    def _linked_wait(self) -> timedelta:
        """A report linked to an incident dispatch did not know is judged again after this."""
        return timedelta(seconds=self.settings.linked_wait_s)

    @property
    def _dead_lettered_within(self) -> timedelta:
        """The time a report that keeps failing takes to reach the dead letters: the
        reclaimer retries it every CLAIM_IDLE_MS, MAX_DELIVERIES times."""
        return timedelta(milliseconds=self.settings.claim_idle_ms * self.settings.max_deliveries)

    async def _sent_out_unheard(self, incident_id: str, unknown: str) -> None:
        """The report linked to `unknown`, an incident dispatch never received, made an
        incident of its own, flagged (the command room looks for the lost one: the dead
        letters), with a note saying why; the next reports intake links to `unknown` join it
        (store.sent_on). Its orders are the caller's to give (_fill)."""
        mine = await store.incident_state(self.redis, incident_id)
        inc = mine.incident
        assert inc is not None
        misses = self._flag(inc)

        async def remember(pipe: Pipeline) -> None:
            store.queue_sent_on(pipe, unknown, incident_id)
            store.queue_incident_fields(pipe, incident_id, {"misses": misses})
            store.queue_link_unindexed(pipe, inc)  # no longer among the unknown's reports

        await self._emit(incident_id, TimelineEntry(
            kind="note", **entry_detail("duplicate_never_received", parent=unknown,
                                        seconds=f"{self.settings.linked_wait_s:g}")),
            status="dispatching", state=mine, also=remember)

    async def on_link_due(self, incident_id: str) -> datetime | None:
        """A report linked to an incident dispatch did not know, LINKED_WAIT_S on: nothing to
        do if that incident came meanwhile (the report joined it); else the report is sent
        out as an incident of its own (_sent_out_unheard), or joins the one sent out for the
        same lost incident. While the lost incident's report may still come (not read yet,
        or read and pending: handled now, or failed and waiting for its reclaimer) the
        judgement waits for it, as long as a report that keeps failing takes to be
        dead-lettered at most: the time to look again."""
        async with self._locked(incident_id):
            state = await store.incident_state(self.redis, incident_id)
            inc = state.incident
            if inc is None:
                return None
            if inc["status"] != "linked":
                if inc["status"] not in TERMINAL:  # sent out; the step stopped before orders
                    await self._fill(incident_id, state)
                return None
            parent = inc["linked_to"]
            if await store.get_incident(self.redis, parent) is not None:
                # it came after the report, which joined it: what the report knows is
                # brought to it (its flags, a more urgent priority), once
                if not inc.get("link_told"):
                    await self._judge_link(
                        incident_id, parent, district=inc["district"], priority=inc["priority"],
                        flags=json.loads(inc.get("flags") or "[]"), waited=True,
                        follow_up=bool(inc.get("follow_up_of")),
                        words=inc.get("description") or None)
                return None
            now = utcnow()
            received = datetime.fromisoformat(inc["received_at"])
            if (now - received < self._linked_wait + self._dead_lettered_within
                    and await store.unhandled_entries(
                        self.redis, streams.INCIDENT_REPORTED.name, group="dispatch", upto=now,
                        concerning=parent)):
                return now + LINK_LOOK_AGAIN
            if not await self._judge_link(
                    incident_id, parent, district=inc["district"], priority=inc["priority"],
                    flags=json.loads(inc.get("flags") or "[]"), waited=True,
                    follow_up=bool(inc.get("follow_up_of")),
                    words=inc.get("description") or None):
                await self._fill(incident_id)
        return None

    async def _no_team_detail(self, inc: dict[str, str]) -> Detail:
        """Why no team was found: none free that may go (it waits), or none of the district
        ever placed within the search's radius of the place (0, 0 from a camera without a
        fix, swapped coordinates, another city's): the location is to be checked, not a
        free team waited for."""
        radius = self.policy.search_radius_km
        if await store.place_in_reach(self.redis, district=inc["district"],
                                       lat=float(inc["lat"]), lon=float(inc["lon"]),
                                       radius_km=radius):
            return entry_detail("no_team")
        return entry_detail("no_team_in_reach", km=f"{radius:g}")

    async def _fill(self, incident_id: str, state: store.IncidentState | None = None, *,
                    held: locks.Held | None = None,
                    found: list[domain.Unit] | None = None) -> None:
        """Issue orders until the incident has the units it needs (idempotent). `found`:
        candidates already searched for this state; `held`: the step's lock, released with
        the orders' announcement when this is the step's last write."""
        state = state or await store.incident_state(self.redis, incident_id)
        inc = state.incident
        if inc is None or inc["status"] in TERMINAL:
            return
        # Orders offered but never announced (the step's last write failed, or a crash came
        # between an offer and its publication): announced with this step's status below,
        # so the incident's status and incident.updated follow them too.
        unannounced = [o for o in state.orders
                       if o["state"] == "offered" and o.get("published") != "1"]
        if inc.get("zone_pending") == "1" and await self._zone_still_pending(state):
            for order in unannounced:
                await self._announce(inc, order)
            return
        live = [o for o in state.orders if o["state"] in domain.LIVE_ORDER_STATES
                and o.get("kind") in CLAIMING_KINDS]
        facts = await self._facts_now(inc, self._not_offered_again(state))
        wanted = domain.units_wanted(facts, self.policy)
        now = utcnow()
        query: domain.CandidateQuery | None = None  # built when a search is run here
        issued: list[dict[str, str]] = list(unannounced)
        # Each round that ends without its orders is someone else's progress: a team of
        # this incident's choice was being offered to another incident of this process
        # (wait for that offer, then search again) or was claimed by another (search
        # again). The free teams only get fewer, so this ends; the bound is a safeguard.
        for _ in range(SEARCH_ROUNDS):
            if found is None:
                query = query or self._query(facts, now)
                found = await store.candidates(self.scripts, query)
            ranked = domain.rank_candidates(found, facts, self.policy, now)
            found = None
            units, alongside = _units_and_alongside(live)
            chosen = domain.choose_units(ranked, facts, self.policy, wanted=wanted,
                                         already=units, alongside=alongside)
            # A P1's escort that does not answer the incident itself (only in
            # ranked.escorts) is marked so on its order: it is not one of its units.
            answering = {r.unit.team_id for r in ranked}
            escorts = {c.unit.team_id for c in chosen if c.unit.team_id not in answering}
            if busy := [self._offering[c.unit.team_id] for c in chosen
                        if c.unit.team_id in self._offering]:
                await asyncio.wait(busy)
                continue
            with self._offering_to([c.unit.team_id for c in chosen]):
                if len(chosen) == 1 and not issued and not self._tells_others(inc, state,
                                                                              chosen[0]):
                    # The common case: one order, and with it the step's last writes, in
                    # one script (nothing written if the claim is lost: then search again).
                    sent = domain.sent_as(chosen[0].unit.agency_kind, chosen[0].unit.agency_role)
                    escort = chosen[0].unit.team_id in escorts
                    short_after = domain.short_of_units(
                        facts, self.policy, units if escort else [*units, sent],
                        [*alongside, sent] if escort else alongside)
                    if await self._offer_last(
                            state, chosen[0], held, marks=self._escort_marks(escort),
                            short_score=self._waiting_score(inc, now) if short_after else None):
                        return
                    continue
                lost_race = False
                for choice in chosen:
                    order = await self._offer(inc, choice.unit, kind="dispatch",
                                              eta_s=choice.eta_s,
                                              marks=self._escort_marks(
                                                  choice.unit.team_id in escorts))
                    if order is None:  # claimed meanwhile by another incident: search again
                        lost_race = True
                    else:
                        live.append(order)
                        issued.append(order)
                        state.orders.append(order)
                        state.offered.add(order["team_id"])
            if not lost_race:
                break
        else:
            log.warning("incident %s: still no claim after %d searches; it waits for a "
                        "freed team", incident_id, SEARCH_ROUNDS)
        district = facts.district
        # An incident short of a unit (one of two found, a P1 with volunteers only) stays
        # in the queue: the next freed team that may go joins the response.
        short = domain.short_of_units(facts, self.policy, *_units_and_alongside(live))
        if issued:
            # The lock is released after this transaction (by the step's exit), not in it:
            # redis-py sends a transaction again when it lost the reply (Redis restarted
            # after running it), and a lock released by the first run could let another
            # step change the incident before the second wrote its stale status over it.
            async def announce(pipe: Pipeline) -> None:
                for order in issued:
                    await self._queue_order_issued(pipe, inc, order)
                if short:
                    store.queue_waiting(pipe, district=district, incident_id=incident_id,
                                        score=self._waiting_score(inc, now))
                else:
                    store.queue_not_waiting(pipe, district=district, incident_id=incident_id)

            await self._emit(incident_id, TimelineEntry(kind="status"), state=state,
                             also=announce)
        elif live:
            if not short:
                await store.remove_waiting(self.redis, district=district,
                                           incident_id=incident_id)
            elif await store.add_waiting(self.redis, district=district, incident_id=incident_id,
                                         score=self._waiting_score(inc, now)):
                await self._fill(incident_id, state, held=held)  # see below
        else:
            queued = await store.add_waiting(self.redis, district=district,
                                             incident_id=incident_id,
                                             score=self._waiting_score(inc, now))
            refused = _refusals(state.orders)
            # Turned down (flag_reasons' `turned_down`): the refusal's own step set the
            # status (its answer's or timeout's entry), so "waiting" would go unsaid. Said
            # once per refusal that left it waiting (`turned_down_said`, their count, in the
            # same write): not again by a sweep or a step made again.
            said = str(len(refused))
            if inc["status"] != "unassigned" or (refused
                                                 and inc.get("turned_down_said") != said):
                async def turned_down(pipe: Pipeline) -> None:
                    store.queue_incident_fields(pipe, incident_id, {"turned_down_said": said})

                await self._emit(incident_id, TimelineEntry(
                    kind="unassigned", **(_turned_down_detail(refused) if refused
                                          else await self._no_team_detail(inc))),
                    status="unassigned", state=state,
                    also=turned_down if refused else None)
                if refused:
                    inc["turned_down_said"] = said
            if queued:
                # A team freed after this search and before the incident joined the queue
                # looked at the queue without it, and would wait for its next position fix
                # (5-30 s) to be offered: one more search, now that it is queued, finds it.
                # Only once: queued again changes nothing.
                await self._fill(incident_id, state, held=held)

    def _barred(self, inc: dict[str, str]) -> bool:
        """Whether the incident's flags bar volunteers (a weapon)."""
        return domain.volunteers_barred(json.loads(inc.get("flags") or "[]"), self.policy)

    def _tells_others(self, inc: dict[str, str], state: store.IncidentState,
                      choice: domain.Ranked) -> bool:
        """Whether offering `choice` tells the teams already on the incident something new
        of their escort (police or security joining volunteers on a P1) or of the volunteers
        they escort (volunteers joining police or security on one): their order.amended goes
        with _emit's writes, not _offer_last's one script."""
        probe = {"order_id": "", "state": "offered", "kind": "dispatch",
                 "team_id": choice.unit.team_id, "team_name": choice.unit.name or "",
                 "agency_kind": choice.unit.agency_kind,
                 "agency_role": choice.unit.agency_role or ""}
        orders, barred = [*state.orders, probe], self._barred(inc)
        news = (_escort_news(inc, orders, barred=barred).keys()
                | _escorting_news(inc, orders, barred=barred).keys())
        return bool(news - {""})  # "": the probe

    @staticmethod
    def _escort_marks(escort: bool) -> dict[str, str] | None:
        """The mark of an order sent only as a P1's escort (see _units_and_alongside)."""
        return {"escort": "1"} if escort else None

    def _queue_waiting(self, pipe: Pipeline, inc: dict[str, str]) -> None:
        """With a withdrawal: the incident waits for a freed team until its refill, which
        comes next, takes it off the queue. Should the refill fail (Redis away, a crash),
        the incident is still offered the next freed team instead of being stuck with no
        order, whoever asks again."""
        store.queue_waiting(pipe, district=inc["district"], incident_id=inc["incident_id"],
                            score=self._waiting_score(inc, utcnow()))

    @staticmethod
    def _waiting_score(inc: dict[str, str], now: datetime) -> float:
        received = inc.get("received_at")
        return store.waiting_score(
            inc["priority"], (datetime.fromisoformat(received) if received else now).timestamp())

    async def _offer(self, inc: dict[str, str], unit: domain.Unit, *, kind: str,
                     eta_s: float | None = None, instructions: str | None = None,
                     filing_due: datetime | None = None, require_available: bool = True,
                     request: str = "", marks: dict[str, str] | None = None
                     ) -> dict[str, str] | None:
        """Write a new order and claim its team in one step; None if the claim was lost.
        The order still has to be announced (published): see _announce. `request`: the
        event that asked for it, kept on the order; `marks`: other fields kept on it (a
        backup's `for_order`, the order of the team it backs up; a follow-up's `visit`)."""
        order, deadline, entry = self._new_order(inc, unit, kind=kind, eta_s=eta_s,
                                                 instructions=instructions,
                                                 filing_due=filing_due)
        if request:
            order["request"] = request
        order.update(marks or {})
        return await self._write_order(inc, order, deadline, entry,
                                       require_available=require_available)

    def _new_order(self, inc: dict[str, str], unit: domain.Unit, *, kind: str,
                   eta_s: float | None = None, instructions: str | None = None,
                   filing_due: datetime | None = None
                   ) -> tuple[dict[str, str], datetime | None, TimelineEntry]:
        """A new order's fields (not yet written), its acknowledge deadline and its
        timeline entry."""
        order_id = new_id("ord")
        issued_at = utcnow()
        claims = kind in CLAIMING_KINDS
        deadline = domain.ack_deadline(issued_at, inc["priority"], self.policy) if claims else None
        order = {
            "order_id": order_id, "incident_id": inc["incident_id"],
            "team_id": unit.team_id, "team_name": unit.name or "",
            "agency_kind": unit.agency_kind, "agency_id": unit.agency_id, "kind": kind,
            "agency_role": unit.agency_role or "", "state": "offered",
            "issued_at": issued_at.isoformat(),
            "ack_by": deadline.isoformat() if deadline else "",
            "filing_due": filing_due.isoformat() if filing_due else "",
            "eta_s": f"{eta_s:.1f}" if eta_s is not None else "",
            "instructions": instructions or "", "published": "0",
            "skills": domain.skills_signature(unit.skills),
        }
        offered = {"kind": kind, "team": unit.name or unit.team_id,
                   "agency_kind": unit.agency_kind}
        entry = TimelineEntry(kind="offer", team_id=unit.team_id, order_id=order_id,
                              **(entry_detail("offer", **offered) if eta_s is None else
                                 entry_detail("offer_eta", **offered,
                                              minutes=f"{eta_s / 60:.1f}")))
        return order, deadline, entry

    async def _write_order(self, inc: dict[str, str], order: dict[str, str],
                           deadline: datetime | None, entry: TimelineEntry, *,
                           require_available: bool = True,
                           last: store.LastWrites | None = None) -> dict[str, str] | None:
        claims = order["kind"] in CLAIMING_KINDS
        fields = {k: v for k, v in order.items() if k not in ("order_id", "incident_id")}
        offered, first = await store.offer_order(
            self.scripts, order_id=order["order_id"], incident_id=inc["incident_id"],
            fields=fields, claim=claims, require_available=require_available,
            ack_by=deadline, entry=entry,
            first_assignment_at=order["issued_at"] if claims else None, last=last,
            lock=self.locks.guard(inc["incident_id"]))
        if not offered:
            return None
        if first:
            TIME_TO_ASSIGN.record(_since_report(inc, order["issued_at"]),
                                  {"priority": inc["priority"]})
        return order

    async def _offer_last(self, state: store.IncidentState, choice: domain.Ranked,
                          held: locks.Held | None, *, short_score: float | None = None,
                          marks: dict[str, str] | None = None) -> bool:
        """_fill's one new order with the step's last writes in the same script: what
        _offer, then _emit with _announce's writes (and the lock's release) would write,
        in one round trip instead of two. False, with nothing written, if the claim was
        lost. `short_score`: the incident is still short of a unit after this order, and
        stays waiting at that score; `marks`: as _offer's."""
        inc = state.incident
        assert inc is not None
        order, deadline, entry = self._new_order(inc, choice.unit, kind="dispatch",
                                                 eta_s=choice.eta_s)
        order.update(marks or {})
        after = store.IncidentState(inc, [*state.orders, order], state.offered)
        # what its order.issued says of its escort (nobody else is told anything new here:
        # _fill's _tells_others)
        order["escort_said"] = _escort_news(inc, after.orders, barred=self._barred(inc)).get(
            order["order_id"], "")
        order["escorting_said"] = _escorting_news(
            inc, after.orders, barred=self._barred(inc)).get(order["order_id"], "")
        changes, status_entry, updated = self._update(after, TimelineEntry(kind="status"), None)
        issued = self._order_issued(inc, order)
        async with entry_to_write(streams.ORDER_ISSUED, issued, issued.event_id) as issued_entry:
            issued_span = trace.get_current_span()
            async with entry_to_write(streams.INCIDENT_UPDATED, updated,
                                      updated.event_id) as updated_entry:
                lock_key, lock_token = (self.locks.release_in_script(held) if held is not None
                                        else ("", ""))
                written = await self._write_order(inc, order, deadline, entry, last=store.LastWrites(
                    order_issued=issued_entry, incident_changes=changes,
                    old_status=inc["status"], status_entry=status_entry,
                    incident_updated=updated_entry, district=inc["district"],
                    lock_key=lock_key, lock_token=lock_token, short_score=short_score,
                    reported_ts=store.reported_ts(inc)))
                if written is None:  # the claim was lost: neither event was written
                    for span in (issued_span, trace.get_current_span()):
                        span.set_attribute("lianfang.written", False)
        if written is None:
            if held is not None:  # nor the lock released: the step goes on holding it
                self.locks.kept_by_script(held)
            return False
        order["published"] = "1"
        state.orders.append(order)
        state.offered.add(order["team_id"])
        inc.update(changes)
        return True

    async def _offer_and_announce(self, inc: dict[str, str], unit: domain.Unit, *, kind: str,
                                  **options: Any) -> dict[str, str] | None:
        order = await self._offer(inc, unit, kind=kind, **options)
        if order is not None:
            await self._announce(inc, order)
        return order

    def _order_issued(self, inc: dict[str, str], order: dict[str, str]) -> OrderIssued:
        police = order["agency_kind"] == "police"
        caller = Caller.model_validate_json(inc["caller"]) if police and inc.get("caller") else None
        return OrderIssued(
            event_id=f"issued-{order['order_id']}",
            district=inc["district"], order_id=order["order_id"],
            incident_id=inc["incident_id"], team_id=order["team_id"],
            agency_kind=order["agency_kind"], kind=order["kind"], category=inc["category"],
            priority=inc["priority"],
            location=Location(lat=float(inc["lat"]), lon=float(inc["lon"]),
                              address=inc.get("address") or None),
            flags=tuple(json.loads(inc.get("flags") or "[]")),
            instructions=order.get("instructions") or None,
            ack_by=_ts(order.get("ack_by")), filing_due=_ts(order.get("filing_due")),
            eta_s=float(order["eta_s"]) if order.get("eta_s") else None,
            caller=caller,
            description=(inc.get("description") or None) if police else None,
            escort=_escort_said(order),
            escorting=_escorting_said(order),
        )

    async def _queue_order_issued(self, pipe: Pipeline, inc: dict[str, str],
                                  order: dict[str, str]) -> None:
        """Queue order.issued and the order's `published` mark on one transaction. An order
        sent late (dispatch failed or died between writing and announcing it) is given its
        whole deadline from now: its team never had it, and must not be timed out for it or
        handed a deadline already past."""
        if (order.get("ack_by") and order.get("published") != "1"
                and utcnow() - datetime.fromisoformat(order["issued_at"]) > SENT_LATE):
            sent_at = utcnow()
            deadline = domain.ack_deadline(sent_at, inc["priority"], self.policy)
            # `sent_late_at`: a deadline timer that fired for the old deadline (waiting for
            # this step's lock meanwhile) leaves it to the new one
            changes = {"ack_by": deadline.isoformat(), "sent_late_at": sent_at.isoformat()}
            order.update(changes)
            store.queue_order_change(pipe, order["order_id"], changes)
            store.queue_schedule(pipe, f"ack:{order['order_id']}", deadline)
        await queue_publish(pipe, streams.ORDER_ISSUED, self._order_issued(inc, order))
        store.queue_order_change(pipe, order["order_id"], {"published": "1"})
        order["published"] = "1"

    async def _announce(self, inc: dict[str, str], order: dict[str, str]) -> None:
        """Publish order.issued (again, if a crash came between the offer and this), once:
        not if the order is marked published."""
        async with self.redis.pipeline(transaction=False) as pipe:  # sent by the script
            await self._queue_order_issued(pipe, inc, order)
            commands = queued_commands(pipe)
        await store.write_order_once(self.redis, commands, order_id=order["order_id"],
                                     unless=("published", "1"))

    async def _withdraw(self, inc: dict[str, str], order: dict[str, str], *,
                        reason: str, why: Detail) -> None:
        """Take an order back as what it was for ends without it (the incident resolved,
        handed over or closed, the order a backup came for ended): its state, its deadline,
        order.withdrawn, its timeline entry (`why` its team was stood down) and its team's
        claim released, in one write made once. Written apart, a failure between the state
        and the event left a withdrawn order that no retry published (the device kept
        showing it and volunteers kept its team busy), one between the claim's release and
        the state a live order whose team another incident could take, and an entry
        written apart was lost or written twice by a step made again. The entry goes on the
        timeline alone: the step's own entry after it carries the incident's new status
        and incident.updated."""
        order_id = order["order_id"]
        entry = TimelineEntry(kind="withdrawn", team_id=order["team_id"], order_id=order_id,
                              **why)
        async with self.redis.pipeline(transaction=False) as pipe:  # sent by the script
            # when: an answer the team gave before it still counts (_given_while_live)
            store.queue_order_change(pipe, order_id, {"state": "withdrawn",
                                                      "withdrawn_at": utcnow().isoformat()})
            store.queue_cancel(pipe, f"ack:{order_id}")
            if order.get("kind") == "followup":  # its time to answer (on_visit_unanswered_due)
                store.queue_cancel(pipe, f"visit:{order_id}")
            # the entry with it: no incident.updated carries it, and the reporting system
            # (intake) is told its team stood down, and why, from this event
            await queue_publish(pipe, streams.ORDER_WITHDRAWN,
                                self._order_withdrawn(inc, order, reason, entry=entry))
            store.queue_entry(pipe, inc["incident_id"], entry)
            commands = queued_commands(pipe)
        await store.write_order_once(self.redis, commands, order_id=order_id,
                                     unless=("state", "withdrawn"),
                                     release_claim=(order["team_id"], order_id))

    @staticmethod
    def _order_withdrawn(inc: dict[str, str], order: dict[str, str], reason: str, *,
                         entry: TimelineEntry | None = None,
                         barred_by: tuple[str, ...] = ()) -> OrderWithdrawn:
        return OrderWithdrawn(
            event_id=f"withdrawn-{order['order_id']}", district=inc["district"],
            order_id=order["order_id"], incident_id=inc["incident_id"],
            team_id=order["team_id"], reason=reason, barred_by=barred_by,
            delivered=bool(order.get("delivered_at")),
            ack_by=_ts(order.get("ack_by")),  # a raised priority's sooner one (_revised)
            entry=entry)

    # --- teams answer -----------------------------------------------------------------

    async def on_order_delivered(self, event: OrderDelivered) -> None:
        # Marked done only once recorded, after the transaction: marked first (or inside
        # it: a failed command does not stop the others), an attempt that failed halfway
        # made every retry a no-op and the receipt was lost, not even dead-lettered.
        done = f"delivered:{event.order_id}:{event.device_id}"
        async with self._locked_state(event.incident_id, seen=done) as (held, state):
            if state.seen:
                return

            async def record(pipe: Pipeline) -> None:
                store.queue_order_first(pipe, event.order_id, "delivered_at",
                                        event.occurred_at.isoformat())

            await self._emit(event.incident_id, TimelineEntry(
                at=event.occurred_at, kind="receipt", team_id=event.team_id,
                order_id=event.order_id,
                **entry_detail("received", channel=event.channel)), state=state, also=record,
                end=StepEnd(held, done))

    async def on_order_responded(self, event: OrderResponded) -> None:
        done = f"responded:{event.event_id}"
        frees = domain.RESPONSE_STATE.get(event.response) in domain.FINAL_ORDER_STATES
        others: set[str] = set()  # the other teams' live orders before the answer
        async with self._locked_state(event.incident_id, seen=done) as (held, state):
            inc = state.incident
            order = next((o for o in state.orders if o["order_id"] == event.order_id), None)
            if order is None or inc is None:
                log.warning("response to unknown order %s ignored", event.order_id)
                return
            if state.seen:
                # Handled before, and here again: what may have failed is the freed team's
                # offer to the waiting incidents, which comes after the step's done mark.
                free = frees
            else:
                others = {o["order_id"] for o in state.orders
                          if o["state"] in domain.LIVE_ORDER_STATES
                          and o.get("kind") in CLAIMING_KINDS and o is not order}
                free = await self._respond(state, order, event, held, done=done, frees=frees)
                if free is None:
                    return
        if free:
            await self.retry_waiting(event.district, freed=event.team_id,
                                     known_free=not state.seen)
        # The teams the answer took off the incident with it (a resolution or hand-over
        # ends the other units' orders, an order's end its backups'): offered as a close's
        # are (retry_waiting: nothing while volunteers says the team busy).
        for other in state.orders:
            if other["order_id"] in others and other["state"] not in domain.LIVE_ORDER_STATES:
                await self.retry_waiting(event.district, freed=other["team_id"])

    async def _respond(self, state: store.IncidentState, order: dict[str, str],
                       event: OrderResponded, held: locks.Held, *, done: str,
                       frees: bool) -> bool | None:
        """Under the incident's lock, an answer not handled before: whether it freed the
        team while incidents wait; None if it was ignored."""
        inc = state.incident
        assert inc is not None
        allowed, why = domain.response_allowed(order["state"], event.response)
        # The order already in the state this response leads to, and this event not
        # done: an earlier attempt failed after moving the order (its first write).
        # Finish the steps after it, all idempotent, or the incident never closes.
        resuming = (order["state"] == domain.RESPONSE_STATE.get(event.response)
                    and not _acknowledged_by_its_call(order, event.response))
        if not allowed and not resuming:
            if (_passed_by_its_order(order, event.response)
                    or _given_while_live(order, event)):
                return await self._answer_handled_late(state, order, event,
                                                       StepEnd(held, done, answered_by=event.team_id))
            if _called_while_live(order, event):
                return await self._call_handled_late(
                    state, order, event, StepEnd(held, done, answered_by=event.team_id))
            if _answered_before_its_timeout(order, event):
                return await self._answer_read_after_timeout(state, order, event,
                                                             StepEnd(held, done, answered_by=event.team_id))
            log.info("response %s to order %s ignored: %s", event.response,
                     event.order_id, why)
            return None
        end = StepEnd(held, done, freed=(event.team_id, event.district) if frees else None,
                      answered_by=event.team_id)
        if event.response == "reinforce":
            if order["state"] == "offered":
                await self._taken_by_call(state, order, event)
            else:
                await self._call_heard(state, order, event)
            await self._reinforce(inc, order, request=event.event_id)
            return await self._end(end)
        return await self._apply_response(state, order, event, end)

    async def _taken_by_call(self, state: store.IncidentState, order: dict[str, str],
                             event: OrderResponded) -> None:
        """A call for backup on an order not yet acknowledged (a guard sees a fight and
        presses "need backup" first): the team has taken the order, as notify records it
        (DESIGN: an order is answered once its team sent any response). Acknowledged at the
        call's time, its deadline gone (timed out, it would be taken from the phones of a
        team on its way and given to another), the incident's first acknowledgement
        counted, and the call on the timeline with the team's words; the backup follows.
        Made again after a failure, the order is acknowledged already and this is skipped."""
        inc = state.incident
        assert inc is not None
        now = event.occurred_at.isoformat()
        moved = {"state": "acknowledged", "acknowledged_at": now, "acknowledged_by": "reinforce"}
        order.update(moved)
        first_ack, _ = _first_times(inc, order, "acknowledged", now)
        ack_new = first_ack and inc.get("first_ack_at") in (None, "", now)
        called = _call_fields(order, event)

        async def taken(pipe: Pipeline) -> None:
            store.queue_order_change(pipe, order["order_id"], moved)
            store.queue_cancel(pipe, f"ack:{order['order_id']}")
            store.queue_incident_fields(pipe, inc["incident_id"], {
                **called, **({"first_ack_at": now} if first_ack else {})})

        await self._emit(inc["incident_id"], _call_entry(order, event), state=state, also=taken)
        inc.update(called)
        if ack_new:
            _record_first_times(inc, now, ack=True, on_scene=False)

    async def _call_heard(self, state: store.IncidentState, order: dict[str, str],
                          event: OrderResponded) -> None:
        """A call for backup on an order its team has taken: the call on the timeline with the
        team's words and records (why it asks: how many, armed, hurt), before the backup
        (whose entry names only the team sent). Once: made again after a failure (or after
        _taken_by_call's write, which was this entry), the step finds it there."""
        inc = state.incident
        assert inc is not None
        entry = _call_entry(order, event)
        if any(_same_answer(TimelineEntry.model_validate(known), entry)
               for known in await store.timeline(self.redis, inc["incident_id"])):
            return
        called = _call_fields(order, event)

        async def marked(pipe: Pipeline) -> None:
            store.queue_incident_fields(pipe, inc["incident_id"], called)

        await self._emit(inc["incident_id"], entry, state=state, also=marked)
        inc.update(called)

    async def _answer_handled_late(self, state: store.IncidentState, order: dict[str, str],
                                   event: OrderResponded, end: StepEnd) -> bool | None:
        """An answer the team gave that the order has gone past by the time dispatch handles
        it: a step (acknowledged, en route, on scene) handled after a later answer of the
        same order (its first attempt failed and the reclaimer took it up after the next
        answer went through), or an answer given while the order was live that dispatch
        handles after its withdrawal (the command room closed the incident meanwhile). The
        order and the incident stay where they are (a close stands), but what the team did
        is on the timeline and in the KPIs: the incident's first acknowledgement and first
        arrival are the earliest the team gave (else the time to acknowledge and response
        time count a later answer's time), a resolution given before the command room
        closed the incident counts as resolved on site, and a hand-over so given as handed
        over (by its team's force; the station is sent nothing for a closed case). None
        (ignored, as before) when it changes nothing: a step already known as early."""
        inc = state.incident
        assert inc is not None
        at = event.occurred_at
        new_state = domain.RESPONSE_STATE[event.response]
        took = new_state != "declined"
        there = new_state in ("on_scene", "resolved", "handover")
        fields = {name: at.isoformat() for name, applies in (
            ("first_ack_at", took), ("first_on_scene_at", there))
            if applies and (not inc.get(name) or at < datetime.fromisoformat(inc[name]))}
        if new_state == "resolved" and inc["status"] == "closed" and not inc.get("resolved_at"):
            fields.update(resolved_at=at.isoformat(), resolved_by_force=_sent_as(order))
            if not inc.get("handed_over_at"):
                fields["handled_by_force"] = _sent_as(order)
        if (new_state == "handover" and inc["status"] == "closed"
                and not inc.get("handed_over_at") and not inc.get("resolved_at")):
            # handed over, as the KPIs count it (its force too); the close stands: no station
            # order, nor a filing owed (it has no due: domain.filing_of judges none)
            fields.update(handed_over_at=at.isoformat(), handled_by_force=_sent_as(order))
        step_at = f"{new_state}_at"
        # known, but from a later answer (a call for backup that acknowledged the order)
        sooner = bool(order.get(step_at)) and at < datetime.fromisoformat(order[step_at])
        if not fields and order.get(step_at) and not sooner:
            return None

        async def earlier(pipe: Pipeline) -> None:
            if sooner:
                store.queue_order_change(pipe, order["order_id"], {step_at: at.isoformat()})
            else:
                store.queue_order_first(pipe, order["order_id"], step_at, at.isoformat())
            if fields:
                store.queue_incident_fields(pipe, inc["incident_id"], fields)

        return await self._emit(inc["incident_id"], TimelineEntry(
            at=at, kind="response", team_id=order["team_id"], order_id=order["order_id"],
            detail=event.response, note=event.note or None, evidence=event.evidence or None),
            state=state, also=earlier, end=end)

    async def _call_handled_late(self, state: store.IncidentState, order: dict[str, str],
                                 event: OrderResponded, end: StepEnd) -> bool:
        """A call for backup the team made while its order was live, handled after the order
        ended: timed out or withdrawn (the command room's take-back or close, another team's
        resolution) with the press in flight, or ended by the team's own later answer. As
        for the answers _answer_handled_late takes, the order and the incident stay where
        they are and the call is on the timeline, in the team's words, and counts as the
        team taking the order (the incident's first acknowledgement, if earliest). No
        backup: it would go for an order no longer the team's, whose phones were told to
        leave. But an order taken from its team flags the incident: the command room
        decides (send the team again, a backup, or nobody). A call made by the order's
        deadline and read after it timed the order out answered it in time (DESIGN: any
        response; read in time, it takes the order): as _answer_read_after_timeout's answer,
        the timeout is not counted as the team's (volunteers, reading the same call, takes
        no missed-order points for it). One write, with the step's end."""
        inc = state.incident
        assert inc is not None
        at = event.occurred_at
        fields: dict[str, str] = {}
        if order.get("kind") in CLAIMING_KINDS and (
                not inc.get("first_ack_at") or at < datetime.fromisoformat(inc["first_ack_at"])):
            fields["first_ack_at"] = at.isoformat()
        if order["state"] in ("withdrawn", "timed_out"):
            fields["misses"] = self._flag(inc)
        in_time = _first_in_time(order, event)
        answered = _answered_in_time(event)
        if in_time:
            fields["timeouts"] = inc["timeouts"] = str(max(int(inc.get("timeouts") or 0) - 1, 0))
            order.update(answered)

        async def flagged(pipe: Pipeline) -> None:
            if in_time:
                store.queue_order_change(pipe, order["order_id"], answered)
            if fields:
                store.queue_incident_fields(pipe, inc["incident_id"], fields)

        log.info("call for backup on order %s handled after the order was %s: on the "
                 "timeline, no backup sent%s", order["order_id"], order["state"],
                 "; made by its deadline: not counted as the team's timeout" if in_time else "")
        free = await self._emit(inc["incident_id"], _call_entry(order, event), state=state,
                                also=flagged, end=end)
        if in_time:
            ANSWERS_READ_AFTER_TIMEOUT.add(1, {"priority": inc["priority"]})
        return free

    async def _answer_read_after_timeout(self, state: store.IncidentState,
                                         order: dict[str, str], event: OrderResponded,
                                         end: StepEnd) -> bool:
        """An answer the team gave by its order's deadline, read only after the deadline's
        firing had timed the order out (dispatch's answers behind past ANSWERS_CATCH_UP).
        The order stays withdrawn: the team's phones were told so, the incident went on to
        another team (notify refuses an answer after the withdrawal, 409), and sending it
        again would make two teams of one. But the timeline says the team answered in time,
        and the timeout is not counted as the team's routing timeout (the board's, the
        KPIs'). Its miss stays among the incident's misses: they hold the board's flag, and
        which of them is this timeout's cannot be told once a hand-over has set them to
        nought or _flag raised them over it (the command room must act for another reason);
        taken off, it dropped such a flag, a case nobody had. A flag kept for an incident
        whose team had in fact answered is the lesser harm: the note says why. Nor is it the
        incident's first acknowledgement: the team was taken off before it went. One write,
        with the step's end."""
        inc = state.incident
        assert inc is not None
        fields = {"timeouts": str(max(int(inc.get("timeouts") or 0) - 1, 0))}
        if event.response == "declined":  # not the team's timeout: its refusal
            fields["declines"] = str(int(inc.get("declines") or 0) + 1)
        inc.update(fields)
        answered = _answered_in_time(event)
        order.update(answered)

        async def not_theirs(pipe: Pipeline) -> None:
            store.queue_order_change(pipe, order["order_id"], answered)
            store.queue_incident_fields(pipe, inc["incident_id"], fields)

        log.warning("order %s answered %s by its deadline, read after it timed the order "
                    "out (answers behind): not counted as the team's timeout",
                    order["order_id"], event.response)
        free = await self._emit(inc["incident_id"], TimelineEntry(
            kind="note", team_id=order["team_id"], order_id=order["order_id"],
            **entry_detail("answer_read_after_timeout",
                           team=order.get("team_name") or order["team_id"],
                           response=event.response, at=event.occurred_at.isoformat(),
                           ack_by=order["ack_by"])),
            state=state, also=not_theirs, end=end)
        ANSWERS_READ_AFTER_TIMEOUT.add(1, {"priority": inc["priority"]})
        return free

    async def _end(self, end: StepEnd, commands: list[Any] | None = None) -> bool:
        """A step's end after its writes, in one round trip (`store.end_step`, with the step's
        last writes, `commands`, if given): the event's done mark (after the writes, which a
        retry must be able to run again), the lock's release, and for a team whose order the
        step ended whether it is free while incidents of its district wait (then
        retry_waiting offers it). The lock counts as released from the moment the script is
        sent (locks.release_in_script); if the script fails, the step's exit releases it."""
        lock_key, token = self.locks.release_in_script(end.held)
        if end.answered_by:
            commands = [*(commands or []), store.answered_command(end.answered_by)]
        free = await store.end_step(self.redis, commands or [], done=end.done, lock_key=lock_key,
                                    lock_token=token, freed=end.freed,
                                    release_claim=end.release_claim)
        if free is None:  # the lock expired (Redis away too long): another step may hold it
            log.warning("lock on %s lost before the step ended: nothing written, the event "
                        "will be handled again", end.held.incident_id)
            raise locks.LockLost(end.held.incident_id)
        if end.recorded is not None:
            end.recorded()
        return free

    async def _apply_response(self, state: store.IncidentState, order: dict[str, str],
                              event: OrderResponded, end: StepEnd) -> bool:
        """Move the order and the incident in one transaction (a refusal then offers the
        incident again), and `end` the step; returns what _end returns. The common answers
        (taken, on the way, on scene, resolved) write and end in one round trip."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        new_state = domain.RESPONSE_STATE[event.response]
        again = order["state"] == new_state  # made again after an attempt that failed
        now = event.occurred_at.isoformat()
        moved = {"state": new_state, f"{new_state}_at": now}
        order.update(moved)
        # at the team's time, as the order's step (dispatch may handle it minutes later)
        entry = TimelineEntry(at=event.occurred_at, kind="response", team_id=order["team_id"],
                              order_id=order["order_id"], detail=event.response,
                              note=event.note or None, evidence=event.evidence or None)
        first_ack, first_on_scene = _first_times(inc, order, new_state, now)
        # in the metrics once per incident: not again for an earlier answer handled second
        ack_new, on_scene_new = (first_ack and inc.get("first_ack_at") in (None, "", now),
                                 first_on_scene
                                 and inc.get("first_on_scene_at") in (None, "", now))
        if ack_new or on_scene_new:
            end = dataclasses.replace(end, recorded=lambda: _record_first_times(
                inc, now, ack=ack_new, on_scene=on_scene_new))
        ends = new_state not in ("acknowledged", "en_route", "on_scene")

        async def move(pipe: Pipeline) -> None:
            store.queue_order_change(pipe, order["order_id"], moved)
            store.queue_cancel(pipe, f"ack:{order['order_id']}")
            if order.get("kind") == "followup" and ends:
                store.queue_cancel(pipe, f"visit:{order['order_id']}")  # its verdict given
            elif order.get("kind") == "followup" and not again:
                # taken: its time to answer is moot, the one to give the verdict (holds, or
                # not) starts; without a verdict no next visit is ever ordered
                store.queue_schedule(pipe, f"visit:{order['order_id']}", event.occurred_at
                                     + timedelta(hours=self.policy.followup_verdict_h))
            if first_ack:
                store.queue_incident_fields(pipe, incident_id, {"first_ack_at": now})
            if first_on_scene:
                store.queue_incident_fields(pipe, incident_id, {"first_on_scene_at": now})
            if order.get("kind") == "followup" and new_state in ("resolved", "handover"):
                # the last visit's verdict (the KPIs' agreements holding) and visits made
                store.queue_incident_fields(pipe, incident_id, {
                    "followup_held": "1" if new_state == "resolved" else "0",
                    "followup_visits_made": order.get("visit") or "1"})

        if not ends:
            return await self._emit(incident_id, entry, state=state, also=move, end=end)
        if order.get("kind") == "followup" and new_state == "handover":
            return await self._revisit(state, order, entry, move, end)
        if new_state != "declined" and (order.get("kind") == "followup"
                                        or _station_order_backed(state.orders, order)):
            return await self._ended_alone(state, order, entry, move, end)
        others = [o for o in state.orders if o["order_id"] != order["order_id"]
                  and o["state"] in domain.LIVE_ORDER_STATES and o.get("kind") in CLAIMING_KINDS
                  and not _with_another_visit(state.orders, o, order)]
        police = [o for o in others if _police(o)]
        if new_state in ("resolved", "handover") and (
                (again and order.get("left_to_police") == "1")  # its note may be missing
                or (inc["priority"] == "P1" and not _police(order) and police)):
            # The police are the authority on a serious incident (DOMAIN: security and
            # volunteers go first, police follow): a guard's "resolved" or "hand over" ends
            # the guard's order, never the police's on a knife fight.
            return await self._left_to_police(state, order, entry, move, police, end,
                                              again=again)
        if new_state == "resolved" and not others:
            # The team's claim released first in the same script: a command failing inside a
            # transaction does not stop the others, and a retry would then publish the
            # incident's end a second time; a script stops at the failing command.
            return await self._resolve(state, order, entry, move, now, end=end,
                                       release_claim=(order["team_id"], order["order_id"]))
        # In the script of the order's end, for the reason above (and released apart, first, a
        # failure in between left the order live while another incident could take its team).
        release = (order["team_id"], order["order_id"])
        if again:  # released with the order's end written before: harmless made again
            await store.release_unit(self.redis, team_id=release[0], order_id=release[1])
        if new_state == "declined":
            station_kind = order.get("kind") in STATION_KINDS
            if not again:  # made again: the refusal is written, the offer to another is not
                await self._emit(incident_id, entry, state=state, also=self._declining(
                    inc, self._station_declining(inc, order, move) if station_kind else move),
                    release_claim=release)
            await self._fill(incident_id, state)
            if order.get("kind") == "reinforcement":
                await self._backup_again(state, order)
            elif station_kind:
                await self._station_declined(state, order)
            return await self._end(end)
        # the other teams stood down: the incident ended by this team's answer
        ended_by = entry_detail(
            "stood_down_resolved" if new_state == "resolved" else "stood_down_handed_over",
            team=order.get("team_name") or order["team_id"])
        for other in others:
            await self._withdraw(inc, other, reason="closed", why=ended_by)
            other["state"] = "withdrawn"
        if new_state != "resolved":
            async def ended(pipe: Pipeline) -> None:
                await move(pipe)
                store.queue_not_waiting(pipe, district=inc["district"], incident_id=incident_id)

            await self._hand_over(state, order, entry, also=ended, again=again,
                                  release_claim=release)
            return await self._end(end)
        return await self._resolve(state, order, entry, move, now, end=end,
                                   release_claim=release)

    async def _ended_alone(self, state: store.IncidentState, order: dict[str, str],
                           entry: TimelineEntry, move: Callable[[Pipeline], Awaitable[None]],
                           end: StepEnd) -> bool:
        """An order whose end is not the case's: a follow-up visit's verdict ("the agreement
        holds"), or the end of a backup a station team asked for. The case is as it was:
        handed over until the station files it (its hand-over order live), or filed, its
        resolution written once and incident.closed sent once. The backups the order had go
        with it, and its team's claim is released in the step's last write."""
        inc = state.incident
        assert inc is not None
        await self._withdraw_backups(state, order)
        return await self._emit(inc["incident_id"], entry, state=state, also=move,
                                end=dataclasses.replace(end, release_claim=(
                                    order["team_id"], order["order_id"])))

    async def _left_to_police(self, state: store.IncidentState, order: dict[str, str],
                              entry: TimelineEntry, move: Callable[[Pipeline], Awaitable[None]],
                              police: list[dict[str, str]], end: StepEnd, *,
                              again: bool) -> bool:
        """A P1's resolution or hand-over by a team that is not police while police orders
        are live (`police`): the team's order ends as resolved or handed over (its claim
        released, its backups but the police ones withdrawn: they came for its team, and the
        police stay on a P1 whoever called them), the incident stays open with the police,
        whose own answer ends it (resolved, or handed over to the station), and the timeline
        says so (`resolved_left_to_police`, `handover_left_to_police`). A hand-over's note
        keeps the team's words (the answer's entry has them and its records too): the
        station's instructions, should the police hand the case over, carry them
        (_station_order). Volunteers reads the team's answer itself: a resolved order earns
        its points as any does, a hand-over none. Two writes, the answer's (with
        incident.updated, as any answer) and then the note's with the step's end; made
        again (the order already ended), the answer is not written twice, nor the note once
        it is there (written then, it names the incident's police teams, also when they
        have ended their orders meanwhile)."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        police = police or [o for o in state.orders
                            if o.get("kind") in CLAIMING_KINDS and _police(o)]
        await self._withdraw_backups(state, order, keep_police=True)
        order["left_to_police"] = "1"  # its part done: the incident is not short of it
        if not again:
            async def ended(pipe: Pipeline) -> None:
                await move(pipe)
                store.queue_order_change(pipe, order["order_id"], {"left_to_police": "1"})

            await self._emit(incident_id, entry, state=state, also=ended,
                             release_claim=(order["team_id"], order["order_id"]))
        code = f"{order['state']}_left_to_police"
        if again and any(e.get("detail_code") == code and e.get("order_id") == order["order_id"]
                         for e in await store.timeline(self.redis, incident_id)):
            return await self._end(end)
        log.info("order %s %s on P1 incident %s, which stays with the police's orders %s",
                 order["order_id"], order["state"], incident_id,
                 ", ".join(o["order_id"] for o in police))
        return await self._emit(incident_id, TimelineEntry(
            kind="note", team_id=order["team_id"], order_id=order["order_id"],
            note=entry.note if order["state"] == "handover" else None,
            **entry_detail(code,
                           team=order.get("team_name") or order["team_id"],
                           police=", ".join(o.get("team_name") or o["team_id"]
                                            for o in police))),
            state=state, end=end)

    async def _withdraw_backups(self, state: store.IncidentState, order: dict[str, str], *,
                                keep_police: bool = False) -> None:
        """The live backups of an order that has ended (`order` in its final state): they
        came for its team. With `keep_police`, not the police ones (a P1 left to them)."""
        inc = state.incident
        assert inc is not None
        why = entry_detail("stood_down_backed_order_ended",
                           team=order.get("team_name") or order["team_id"], state=order["state"])
        for backup in state.orders:
            if (backup.get("for_order") == order["order_id"]
                    and backup["state"] in domain.LIVE_ORDER_STATES
                    and not (keep_police and _police(backup))):
                await self._withdraw(inc, backup, reason="closed", why=why)
                backup["state"] = "withdrawn"

    async def _resolve(self, state: store.IncidentState, order: dict[str, str],
                       entry: TimelineEntry, move: Callable[[Pipeline], Awaitable[None]],
                       now: str, *, end: StepEnd, release_claim: tuple[str, str]) -> bool:
        """The incident resolved by `order`'s team, its claim released (`release_claim`, as
        _emit's) and the step's end in the same write; or, when the resolution owes the
        station's follow-up visit (_visit_owed), the step's end in the visit's write, after
        it (_plan_visit: made again, the resolution is written again, the visit once)."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        resolving = self._resolving(inc, order, move, now)
        days = self._visit_owed(inc, order)
        if not days:
            return await self._emit(incident_id, entry, status="resolved", state=state,
                                    also=resolving, end=end, release_claim=release_claim)
        await self._emit(incident_id, entry, status="resolved", state=state, also=resolving,
                         release_claim=release_claim)
        # NX: a step made again (or an answer read twice) never moves the visit
        return await self._plan_visit(incident_id, datetime.fromisoformat(now)
                                      + timedelta(days=days), nx=True, end=end)

    @staticmethod
    def _resolving(inc: dict[str, str], order: dict[str, str],
                   move: Callable[[Pipeline], Awaitable[None]], now: str
                   ) -> Callable[[Pipeline], Awaitable[None]]:
        """The writes of an incident its team resolved, before its incident.updated."""
        incident_id = inc["incident_id"]

        async def resolve(pipe: Pipeline) -> None:
            await move(pipe)
            store.queue_not_waiting(pipe, district=inc["district"], incident_id=incident_id)
            store.queue_incident_fields(pipe, incident_id, {
                "resolved_at": now,
                "resolved_by_force": _sent_as(order)})
            if not inc.get("handed_over_at"):  # resolved on site: who handled it
                store.queue_incident_fields(pipe, incident_id, {
                    "handled_by_force": _sent_as(order)})
            elif order.get("kind") == "handover":  # the station filed it
                store.queue_filed(pipe, incident_id)
            await queue_publish(pipe, streams.INCIDENT_CLOSED, IncidentClosed(
                event_id=f"closed-{incident_id}", district=inc["district"],
                incident_id=incident_id, final_status="resolved",
                resolved_by=(order["team_id"],), category=inc["category"],
                reported_by_member=_reporting_member(inc),
                reporter_team_id=inc.get("reporter_team_id") or None))

        return resolve

    async def _plan_visit(self, incident_id: str, due: datetime, *, nx: bool = False,
                          station: str | None = None, end: StepEnd | None = None) -> bool:
        """The station's follow-up visit planned for `due` (its `followup:` timer; `nx`: not
        moved if one is set), in one write with its timeline entry, which says by when and
        which station (`station`, else the owner now: the one owning the place then gets
        the order), and with the mark `followup_due`: a step made again that finds the
        visit planned for `due` writes neither again. With the step's `end`, if given (as
        _emit's); returns what _emit returns."""
        state = await store.incident_state(self.redis, incident_id)
        inc = state.incident
        if inc is None or inc.get("followup_due") == due.isoformat():
            return await self._end(end) if end is not None else False
        if station is None:
            station = await self._station_of(inc)
        said = {"date": f"{due.astimezone(self.tz):%Y-%m-%d}", "timezone": self.settings.timezone}
        detail = (entry_detail("followup_planned", **said, station=station) if station
                  else entry_detail("followup_planned_no_station", **said))

        async def planned(pipe: Pipeline) -> None:
            store.queue_incident_fields(pipe, incident_id, {"followup_due": due.isoformat()})
            store.queue_schedule(pipe, f"followup:{incident_id}", due, nx=nx)

        return await self._emit(incident_id, TimelineEntry(kind="followup", **detail),
                                state=state, also=planned, end=end)

    def _visit_owed(self, inc: dict[str, str], order: dict[str, str]) -> float | None:
        """The days to the station's follow-up visit that the incident's resolution by
        `order` owes (policy followup_resolved_days: a dispute mediated on site, a fraud
        warning given), None for none: a category without, a case whose hand-over planned
        its visit already (followup_days), one visited or being visited, or whose visit
        is planned (`followup_due`: a resolution made again, or read twice)."""
        days = self.policy.followup_resolved_days.get(inc["category"])
        if (not days or inc.get("followup_order") or inc.get("followup_visits")
                or inc.get("followup_due")):
            return None
        if inc.get("handed_over_at") and (order.get("kind") != "handover"
                                          or inc["category"] in self.policy.followup_days):
            return None
        return days

    def _flag(self, inc: dict[str, str]) -> str:
        """The incident's `misses`, raised to the policy's flag: the command room must act.
        Set on `inc` too, which incident.updated's `flagged` reads; returned to be written."""
        misses = str(max(int(inc.get("misses") or 0), self.policy.flag_after_misses))
        inc["misses"] = misses
        return misses

    def _handover_instructions(self, order: dict[str, str], note: str | None,
                               filing_due: datetime, records: list[Evidence],
                               earlier: Collection[tuple[str, str | None]] = ()) -> str:
        """What the station's officers read: who handed it over, what they said, what the
        teams whose hand-over left the P1 to the police said before them (`earlier`: each
        team and its words; _handed_to_police), the records to file with the case
        (body-camera video, photos) and the filing deadline in the district's local time."""
        by = order.get("team_name") or order["team_id"]
        said = (f" They say: {_sentence(note)}") if note else ""
        before = "".join(f" Earlier {team} handed it over to the police"
                         + (f": {_sentence(words)}" if words else ".")
                         for team, words in earlier)
        kept = (" Records: " + "; ".join(f"{r.kind} {r.ref}" for r in records) + "."
                if records else "")
        due = filing_due.astimezone(self.tz)
        return (f"Handed over by {by}.{said}{before}{kept} File the case by "
                f"{due:%Y-%m-%d %H:%M} ({self.settings.timezone}).")

    async def _records_of(self, incident_id: str) -> list[Evidence]:
        """The records on the incident's timeline (answers' and the command room's), once
        each, in the order they came."""
        return _records_in(await store.timeline(self.redis, incident_id))

    async def _hand_over(self, state: store.IncidentState, order: dict[str, str],
                         entry: TimelineEntry, *, also: Callable[[Pipeline], Awaitable[None]],
                         again: bool = False,
                         release_claim: tuple[str, str] | None = None) -> None:
        """Hand the incident over to its owning station: its status (with `release_claim`,
        as _emit's), then an order to the station's nearest team. `again`: the step is made
        again after an attempt that failed after its first write (the status is there; the
        station's order may be; the case may have moved on since: closed, or filed)."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        now = utcnow()

        async def handed(pipe: Pipeline) -> None:
            await also(pipe)
            # what the team said, for the station's order should it be made later
            store.queue_incident_fields(pipe, incident_id, {"handed_over_at": now.isoformat(),
                                                            "handover_note": entry.note or ""})
            if not inc.get("handed_over_at"):  # a station team's own hand-over keeps the first
                # the filing's due while no station order carries it (nobody on shift, all
                # declined): the day the station's first order has (_station_order)
                due = now + timedelta(hours=self.policy.handover_filing_h)
                store.queue_incident_fields(pipe, incident_id, {
                    "handled_by_force": _sent_as(order), "filing_due": due.isoformat()})
                store.queue_filing_due(pipe, incident_id, due)
            store.queue_handed_over(pipe, incident_id, now)

        if not again:
            await self._emit(incident_id, entry, status="handed_over", state=state, also=handed,
                             release_claim=release_claim)
        elif inc["status"] != "handed_over":
            # The case moved on between the attempt that wrote the hand-over and this one:
            # the command room closed it, or the station filed it (its order was made). The
            # station gets no order: a second one, or one for a closed case, live for ever
            # (nobody may close it again), its filing owed. A filed case still owes the
            # follow-up visit of its hand-over (followup_days), from the hand-over's time
            # (set once: not moved if the first attempt set it); one its filing owes
            # (followup_resolved_days: a fraud warning) the filing's own step planned, as
            # the normal path's (_visit_owed), and a case resolved by a team sent by hand
            # owes none there either.
            days = self.policy.followup_days.get(inc["category"])
            if days and inc["status"] == "resolved":
                await self._plan_visit(incident_id, datetime.fromisoformat(
                    inc["handed_over_at"]) + timedelta(days=days), nx=True)
            return
        station, known = await self._station_known(inc)
        handover_order = await self._station_order(state, station, by=order, note=entry.note)
        if handover_order is None and inc.get("handover_unstaffed") != "1":
            # Flagged for the command room, with one note, in one write: made again after a
            # later failure, the step finds the mark and writes neither twice. It is tried
            # again (on_handover_due) until a station's team is on shift.
            now_state = await store.incident_state(self.redis, incident_id)
            assert now_state.incident is not None  # under the lock: still there
            if known and not station:
                # No station owns the place (in no zone): tried again as one whose zone was
                # removed since, so that a station given the ground later gets it (flagged
                # with station_none's note, it was never tried again). Its own mark keeps a
                # step made again from writing twice.
                await self._station_gone(now_state, now + self._handover_retry)
            else:
                misses = self._flag(now_state.incident)

                async def flagged(pipe: Pipeline) -> None:
                    store.queue_incident_fields(pipe, incident_id, {"handover_unstaffed": "1",
                                                                    "misses": misses})
                    store.queue_schedule(pipe, f"handover:{incident_id}",
                                         now + (self._handover_retry if known else ZONE_RETRY))

                detail = (entry_detail("station_unstaffed",
                                       minutes=f"{self.policy.handover_retry_min:g}")
                          if known  # else the zones not loaded: the station not known *yet*
                          else entry_detail("station_not_known"))
                await self._emit(incident_id, TimelineEntry(kind="note", **detail),
                                 state=now_state, also=flagged)
        if handover_order is not None:
            await self._record_station_order(inc, handover_order, station)
        await self._publish(streams.INCIDENT_HANDED_OVER, IncidentHandedOver(
            event_id=f"handover-{incident_id}", district=inc["district"],
            incident_id=incident_id, station_agency_id=station or "unknown",
            order_id=handover_order["order_id"] if handover_order else None))
        # Also where no station owns the place yet: the hand-over is tried again until one
        # does (_station_gone), and the station that takes the case then owes its visit.
        # From the hand-over's time: made again, the step finds the visit planned for it.
        days = self.policy.followup_days.get(inc["category"])
        if days:
            handed_at = datetime.fromisoformat(inc["handed_over_at"]) if again else now
            await self._plan_visit(incident_id, handed_at + timedelta(days=days),
                                   station=station)

    async def owning_station(self, inc: dict[str, str]) -> str:
        """The police station owning the incident's place now, as hand-overs and fraud
        warnings go to it (_station_of): the by-hand list's other_station warning."""
        return await self._station_of(inc)

    async def _station_of(self, inc: dict[str, str]) -> str:
        """The police station that owns the incident's place: as reported, else its zone's."""
        return (await self._station_known(inc))[0]

    async def _station_known(self, inc: dict[str, str]) -> tuple[str, bool]:
        """_station_of, and whether that is known: False when the district's zones could
        not be loaded and none was stored (no station found, but the place may well have
        one). The owner now, not the one stored at the report: an import in between may
        have given the zone to another station and made the old one a street patrol, whose
        cars would get the case (its hand-over, its retries, its follow-up a week later).
        The stored one while the zones cannot be loaded."""
        zone, known = await self._place(inc["district"], float(inc["lat"]), float(inc["lon"]))
        if known:
            return (zone.owner_agency_id if zone else ""), True
        station = inc.get("station_agency_id") or ""
        return station, bool(station)

    # --- a place whose zone was not known -----------------------------------------------

    async def _zone_still_pending(self, state: store.IncidentState) -> bool:
        """An incident reported while its district's zones could not be loaded: its zone
        looked up again. Once known, the zone and its station are written (with a note)
        and its timer ends; until then the timer (`zone:{id}`, on_zone_due) looks again.
        True while the incident must wait for it (_awaits_station)."""
        inc = state.incident
        assert inc is not None
        try:
            zone = await self._zone_of(inc["district"], float(inc["lat"]), float(inc["lon"]))
        except ZonesUnavailable:
            await store.schedule(self.redis, f"zone:{inc['incident_id']}",
                                 utcnow() + ZONE_RETRY, nx=True)
            if not self._awaits_station(inc):
                return False
            # No order while it waits; one the command room gave by hand stands.
            live = [o for o in state.orders if o["state"] in domain.LIVE_ORDER_STATES]
            if not live and inc["status"] != "unassigned":
                await self._emit(inc["incident_id"], TimelineEntry(
                    kind="unassigned",
                    **entry_detail("awaiting_station", category=inc["category"])),
                    status="unassigned", state=state)
            return True
        await self._place_known(state, zone)
        return False

    async def _place_known(self, state: store.IncidentState, zone: Zone | None, *,
                           waited: bool = False) -> None:
        """The zone and owning station of an incident whose zone was pending, written with
        a timeline note; the status is left as it is. `waited`: it waited for its station
        (_awaits_station) out of the queue of waiting incidents, and joins it in this
        write (on_zone_due); its orders take it off. One given up on (`zone_unknown`,
        _place_unknown) keeps when its place became known (`place_known_at`): its orders
        issued before were sent not knowing its station (_not_sent_now)."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        fields = {"zone_id": zone.zone_id if zone else "",
                  "station_agency_id": zone.owner_agency_id if zone else "",
                  "zone_pending": "", "zone_unknown": ""}
        if inc.get("zone_unknown") == "1":
            fields["place_known_at"] = utcnow().isoformat()

        async def known(pipe: Pipeline) -> None:
            store.queue_incident_fields(pipe, incident_id, fields)
            store.queue_cancel(pipe, f"zone:{incident_id}")
            if waited:
                self._queue_waiting(pipe, inc)

        detail = (entry_detail("place_known", zone=zone.name, station=zone.owner_agency_id)
                  if zone else entry_detail("place_outside_zones"))
        await self._emit(incident_id, TimelineEntry(kind="note", **detail),
                         status=inc["status"], state=state, also=known)
        inc.update(fields)

    async def on_zone_due(self, incident_id: str) -> None:
        """The zone of an incident reported while its district's zones could not be loaded,
        looked up again (every ZONE_RETRY, for ZONE_WAIT at most). An incident that waited
        for its station (_awaits_station) gets its orders once it is known; after ZONE_WAIT
        without it, from any station's team: flagged, with a note, for the command room.
        It waited out of the queue of waiting incidents and joins it with the write that
        ends the wait: its timer then ends, or finds the wait over, and a search that failed
        after that write (Redis away) left it unassigned for good, offered no freed team
        and never swept, while its station's team stood free."""
        async with self._locked(incident_id):
            state = await store.incident_state(self.redis, incident_id)
            inc = state.incident
            if inc is None or inc.get("zone_pending") != "1" or inc["status"] in TERMINAL:
                return
            waited = self._awaits_station(inc)
            try:
                zone = await self._zone_of(inc["district"], float(inc["lat"]), float(inc["lon"]))
            except ZonesUnavailable:
                now = utcnow()
                if now - datetime.fromisoformat(inc["received_at"]) < ZONE_WAIT:
                    await store.schedule(self.redis, f"zone:{incident_id}", now + ZONE_RETRY)
                    return
                await self._place_unknown(state, waited=waited)
            else:
                await self._place_known(state, zone, waited=waited)
            if waited:
                await self._fill(incident_id, state)

    async def _place_unknown(self, state: store.IncidentState, *, waited: bool) -> None:
        """ZONE_WAIT passed and the zones are still away: the incident stops waiting for
        them, flagged when it waited for its station (any station's team may go now), and
        then in the queue of waiting incidents, as _place_known puts it; marked as never
        placed (`zone_unknown`)."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        # `zone_unknown`: its zone never known, which the review by place says as such
        # (review.zone_of), not as a place outside every zone
        fields = {"zone_pending": "", "zone_unknown": "1"}
        if waited:
            fields["misses"] = self._flag(inc)

        async def given_up(pipe: Pipeline) -> None:
            store.queue_incident_fields(pipe, incident_id, fields)
            if waited:
                self._queue_waiting(pipe, inc)

        minutes = ZONE_WAIT.seconds // 60
        detail = entry_detail("station_still_unknown" if waited else "zone_unknown",
                              minutes=minutes)
        await self._emit(incident_id, TimelineEntry(kind="note", **detail),
                         status=inc["status"], state=state, also=given_up)
        inc.update(fields)

    async def _station_order(self, state: store.IncidentState, station: str, *,
                             by: dict[str, str], note: str | None,
                             excluded: Collection[str] = (),
                             team: domain.Unit | None = None) -> dict[str, str] | None:
        """The station's hand-over order: the live one an earlier attempt made (announced,
        should it not have been: the station gets no second), else a new one to the
        station's nearest team on shift but `excluded` (or to `team`, the command room's
        choice), with what the handing-over team (`by`) said; None when the station has no
        such team (or none is known)."""
        inc = state.incident
        assert inc is not None
        order = next((o for o in state.orders if o.get("kind") == "handover"
                      and o["state"] in domain.LIVE_ORDER_STATES), None)
        if order is not None:
            if order.get("published") != "1":
                await self._announce(inc, order)
            return order
        owner = station
        if team is None:
            team = (await self._station_team(inc, station, excluded=excluded)
                    if station else None)
        else:  # the command room's choice: maybe another station's team
            owner = await self._station_of(inc)
        if team is None:
            return None
        # The owning station's 24 h run from the hand-over: the hours it had nobody on shift
        # for it count (a car checking in 30 h later was given a fresh day: the case never
        # showed as filing overdue); another station given it, from its first order. One of
        # its teams that declines it, is taken off it or hands it over again gives a
        # colleague what is left, never a new day.
        handed_at = _ts(inc.get("handed_over_at")) if team.agency_id == owner else None
        filing_due = min([datetime.fromisoformat(o["filing_due"]) for o in state.orders
                          if o.get("kind") == "handover" and o.get("filing_due")
                          and o.get("agency_id") == team.agency_id],
                         default=(handed_at or utcnow())
                         + timedelta(hours=self.policy.handover_filing_h))
        timeline = await store.timeline(self.redis, inc["incident_id"])
        return await self._offer_and_announce(
            inc, team, kind="handover", filing_due=filing_due,
            instructions=self._handover_instructions(by, note, filing_due,
                                                     _records_in(timeline),
                                                     _handed_to_police(timeline)))

    async def _record_station_order(self, inc: dict[str, str], order: dict[str, str],
                                    station: str, *, by: str | None = None) -> None:
        """The incident's hand-over order, on it and its timeline (once), `by` the command
        room when it chose the team. The station has it now: the board's flag (a station
        with nobody on shift, teams that declined) and the retry's timer go with it, and so
        does the mark of a note that no station owned the place (_station_gone): should a
        refusal and the zone's removal take the case from the station again, that is said
        again (the timeline's last word was the station's)."""
        incident_id, order_id = inc["incident_id"], order["order_id"]
        if inc.get("handover_order") == order_id:
            return
        state = await store.incident_state(self.redis, incident_id)
        assert state.incident is not None  # under the lock: still there
        state.incident["misses"] = "0"  # read by the write's `flagged`

        async def recorded(pipe: Pipeline) -> None:
            store.queue_incident_fields(pipe, incident_id, {"handover_order": order_id,
                                                            "misses": "0",
                                                            "handover_station_gone": ""})
            store.queue_cancel(pipe, f"handover:{incident_id}")

        await self._emit(incident_id, TimelineEntry(
            kind="handover", team_id=order["team_id"], order_id=order_id,
            **(entry_detail("handed_over_by", station=station, by=by) if by
               else entry_detail("handed_over", station=station))), state=state, also=recorded)
        inc.update(handover_order=order_id, misses="0", handover_station_gone="")

    async def on_handover_due(self, incident_id: str) -> None:
        """A hand-over whose station had no team on shift, tried again (every
        handover_retry_min of the policy) until one is: then its order, as the hand-over
        would have made it; also while no station owns the place now (_station_gone).
        Nothing once the command room has acted (an assignment by hand, a close)."""
        async with self._locked(incident_id):
            state = await store.incident_state(self.redis, incident_id)
            inc = state.incident
            if inc is None or inc["status"] != "handed_over" or inc.get("handover_order"):
                return
            station, known = await self._station_known(inc)
            if known and inc.get("zone_pending") == "1":  # the zones are back: the place too
                zone, _ = await self._place(inc["district"], float(inc["lat"]),
                                            float(inc["lon"]))
                await self._place_known(state, zone)
            by = _handed_over_by(state.orders)
            order = await self._station_order(state, station, by=by,
                                              note=inc.get("handover_note") or None)
            if order is None:  # still nobody on shift (or the offer lost its team)
                again = utcnow() + (self._handover_retry if known else ZONE_RETRY)
                if station or not known:
                    await store.schedule(self.redis, f"handover:{incident_id}", again)
                else:
                    await self._station_gone(state, again)
                return
            await self._record_station_order(inc, order, station)

    async def _station_gone(self, state: store.IncidentState, again: datetime) -> None:
        """A hand-over waiting for a station's team whose place no station owns now (its
        zone removed, or re-cut, since; or in no zone at the hand-over, or once the zones
        were back): still flagged, said once, and tried again at `again`, as a station with
        nobody on shift is, so that a station given the ground later gets it. Its retry
        stopped for good, its note's "tried again" untrue (and one in no zone at the
        hand-over was never tried); the command room may assign or close."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        if inc.get("handover_station_gone") == "1":  # flagged and noted already
            await store.schedule(self.redis, f"handover:{incident_id}", again)
            return
        fields = {"handover_station_gone": "1", "misses": self._flag(inc)}

        async def gone(pipe: Pipeline) -> None:
            store.queue_incident_fields(pipe, incident_id, fields)
            store.queue_schedule(pipe, f"handover:{incident_id}", again)

        await self._emit(incident_id, TimelineEntry(kind="note", **entry_detail(
            "station_gone", minutes=f"{self.policy.handover_retry_min:g}")),
            state=state, also=gone)

    async def _station_team(self, inc: dict[str, str], station: str, *,
                            excluded: Collection[str] = ()) -> domain.Unit | None:
        """The station's on-shift team nearest the scene: of those with a fresh fix, else of
        those with an older one; a team nobody knows the place of only when no team has a
        position (it is not standing on the scene). Never one of `excluded` (teams that
        declined it), nor one of the agency while it is no longer a police station (an
        import made it a street patrol: its station orders are handed on)."""
        teams = [u for u in await store.units_of_agency(self.redis, district=inc["district"],
                                                         agency_id=station)
                 if u.on_shift and u.team_id not in excluded
                 and _of_a_station(u.agency_kind, u.agency_role)]
        if not teams:
            return None
        lat, lon = float(inc["lat"]), float(inc["lon"])
        placed = [u for u in teams if u.lat is not None and u.lon is not None]
        if not placed:
            return min(teams, key=lambda u: u.team_id)
        oldest = utcnow() - timedelta(seconds=self.policy.fix_max_age_s)

        def nearest_first(u: domain.Unit) -> tuple[bool, float, str]:
            assert u.lat is not None and u.lon is not None
            fresh = u.fix_at is not None and u.fix_at >= oldest
            return not fresh, domain.distance_m(lat, lon, u.lat, u.lon), u.team_id

        return min(placed, key=nearest_first)

    async def _reinforce(self, inc: dict[str, str], order: dict[str, str], *,
                         request: str) -> None:
        """Send the nearest free team as backup for `order`'s team, asked by the answer
        `request` (an event id: an answer handled again after a failure that came after
        its offer finds that order and sends no second team). With nobody free the
        incident is flagged and the backup looked for again every reinforce_retry_s of the
        policy (on_reinforce_due) while the team that asked is still on the incident. A
        volunteer team's call already answered by volunteers only (no police or security
        team was free) is answered now by police or security only, or looked for again
        (flag_reasons' `backup_volunteers_only` says it meanwhile)."""
        incident_id = inc["incident_id"]
        orders = await store.orders_of(self.redis, incident_id)
        sent = next((o for o in orders if o.get("request") == request), None)
        if sent is not None:  # made again: that order's announcement and entry, if missing
            if sent.get("published") != "1":
                await self._announce(inc, sent)
            if not any(e.get("kind") == "reinforcement" and e.get("order_id") == sent["order_id"]
                       for e in await store.timeline(self.redis, incident_id)):
                await self._emit_reinforcement(inc, order, sent)
            return
        # Not a team already on it, nor one that declined it, missed its deadline or was
        # taken off it: every team that had an order for this incident.
        engaged = {o["team_id"] for o in orders}
        facts = await self._facts_now(inc, engaged)
        now = utcnow()
        # Police and security are searched for as a P1's escorts are, whatever the category
        # lists (domain.backups_for): first for a volunteer team's call, after the
        # category's own teams for another's (a fraud warning lists no patrol police).
        volunteers_asking = domain.asks_as_volunteers(order)
        escorts_only = domain.backed_up_by_volunteers_only(order, orders)
        query = domain.candidate_query(facts, self.policy, now, keep=3, radius_km=1000,
                                       escorts=True)
        # A search again after each claim lost to another incident, as _fill does: five
        # rounds left a burst's backup request escalated as "none available" while teams
        # were free (test_reinforcement.py).
        for _ in range(SEARCH_ROUNDS):
            ranking = domain.rank_candidates(await store.candidates(self.redis, query), facts,
                                             self.policy, now, escorts=True)
            backups = (ranking.escorts if escorts_only else
                       domain.backups_for(ranking, volunteers_asking=volunteers_asking))
            if not backups:
                break
            choice = backups[0]
            # A backup of a kind the category does not list (or without its skills) is
            # marked as a P1's escort is: not judged against the category (_not_sent_now).
            answering = {r.unit.team_id for r in ranking}
            marks = {"for_order": order["order_id"],
                     **(self._escort_marks(choice.unit.team_id not in answering) or {})}
            backup = await self._offer_and_announce(inc, choice.unit, kind="reinforcement",
                                                    eta_s=choice.eta_s, request=request,
                                                    marks=marks)
            if backup is not None:
                await self._emit_reinforcement(inc, order, backup)
                return
        retry = f"reinforce:{order['order_id']}"
        asked = next((o for o in orders if o["order_id"] == order["order_id"]), order)
        if escorts_only or (asked.get("backup_wanted") == "1" and await self.redis.zscore(
                store.TIMERS, retry) is not None):
            # Answered by volunteers only, or looked for already with nobody found: the
            # command room was told then (the flag holds while it lasts); looked for again.
            await store.schedule(self.redis, retry, utcnow() + self._reinforce_retry)
            return
        state = await store.incident_state(self.redis, incident_id)
        assert state.incident is not None  # under the lock: still there
        # Flagged by a mark on the order that asked (not by the incident's misses, which
        # never go down): the flag goes once a backup is sent (_emit_reinforcement) or
        # that order ends.
        for asking in state.orders:
            if asking["order_id"] == order["order_id"]:
                asking["backup_wanted"] = "1"

        # the call's row says none yet again: the backup sent for it failed (_backup_again)
        unsent = ({"backup_call_sent": "", "backup_call_sent_name": ""}
                  if state.incident.get("backup_call_order") == order["order_id"] else {})

        async def flagged(pipe: Pipeline) -> None:
            store.queue_order_change(pipe, order["order_id"], {"backup_wanted": "1"})
            store.queue_schedule(pipe, retry, utcnow() + self._reinforce_retry)
            if unsent:
                store.queue_incident_fields(pipe, incident_id, unsent)
            await queue_publish(pipe, streams.ORDER_ESCALATED, OrderEscalated(
                event_id=f"escalated-{request}", district=inc["district"],
                order_id=order["order_id"], incident_id=incident_id,
                team_id=order["team_id"], reason="no reinforcement available"))

        await self._emit(incident_id, TimelineEntry(
            kind="note", team_id=order["team_id"], order_id=order["order_id"],
            **entry_detail("reinforcement_unavailable",
                           seconds=f"{self.policy.reinforce_retry_s:g}",
                           team=order.get("team_name") or order["team_id"])),
            state=state, also=flagged)
        state.incident.update(unsent)

    async def _backup_again(self, state: store.IncidentState, failed: dict[str, str]) -> None:
        """A backup order ended without its team going (declined, or its deadline missed):
        another backup for the team that asked, while that team is still on the incident
        and no other backup of it is live."""
        inc = state.incident
        asked_by = failed.get("for_order")
        # Not the incident's status: a station team on a handed-over or filed case asks too
        # (a revisit turns violent); the order that asked being live is what counts.
        if inc is None or not asked_by:
            return
        order = next((o for o in state.orders if o["order_id"] == asked_by), None)
        if order is None or order["state"] not in domain.LIVE_ORDER_STATES:
            return
        # Each backup that failed gets its replacement (a team that asked twice has two);
        # made again after a failure, the step finds that replacement by its request.
        await self._reinforce(inc, order, request=f"backup-{failed['order_id']}")

    async def _backup_for(self, inc: dict[str, str], asked_by: str,
                          orders: list[dict[str, str]]) -> None:
        """A backup for the order `asked_by` unless it has ended or has one live (but
        volunteers only, for a volunteer team's call: then police or security). The
        request's id counts the backups sent before: made again after a failure, the step
        finds its own offer and sends no second."""
        order = next((o for o in orders if o["order_id"] == asked_by), None)
        if order is None or order["state"] not in domain.LIVE_ORDER_STATES:
            return
        backups = [o for o in orders if o.get("for_order") == asked_by]
        if live := [o for o in backups if o["state"] in domain.LIVE_ORDER_STATES]:
            # made again after a failure: each backup's announcement and entry, if missing
            # (the police or security team a retry found for volunteers, beside them)
            for backup in live:
                if backup.get("request"):
                    await self._reinforce(inc, order, request=backup["request"])
                elif backup.get("published") != "1":
                    await self._announce(inc, backup)
            if not domain.backed_up_by_volunteers_only(order, orders):
                return
            # a volunteer team's call answered by volunteers only: police or security
            # looked for again (_reinforce), under a request of its own
        await self._reinforce(inc, order, request=f"backup-{asked_by}-{len(backups)}")

    async def on_reinforce_due(self, order_id: str) -> datetime | None:
        """A backup nobody could be sent for, looked for again; not while the asking team's
        answers may wait unread (it may have resolved the incident): the time to look
        again then."""
        order = await store.get_order(self.redis, order_id)
        if order is None:
            return None
        async with self._locked(order["incident_id"]):
            state = await store.incident_state(self.redis, order["incident_id"])
            inc = state.incident
            # as _backup_again: while the order that asked is live, whatever the status
            if inc is None or not any(o["order_id"] == order_id
                                      and o["state"] in domain.LIVE_ORDER_STATES
                                      for o in state.orders):
                return None
            if await self._answers_behind(f"reinforce:{order_id}", order["incident_id"],
                                          utcnow()):
                return utcnow() + ANSWERS_WAIT
            await self._backup_for(inc, order_id, state.orders)
        return None

    async def _emit_reinforcement(self, inc: dict[str, str], order: dict[str, str],
                                  backup: dict[str, str]) -> None:
        """The backup on the timeline; the flag of a backup nobody was free for goes with it.
        A volunteer team's call answered by volunteers only (nobody else was free) stays
        open for police or security: flagged (flag_reasons' `backup_volunteers_only`), and
        one looked for again after reinforce_retry_s (on_reinforce_due), in the same
        write."""
        state = await store.incident_state(self.redis, inc["incident_id"])
        found = [o for o in state.orders
                 if o["order_id"] == order["order_id"] and o.get("backup_wanted") == "1"]
        for asking in found:
            asking["backup_wanted"] = ""
        open_for_escort = any(domain.backed_up_by_volunteers_only(o, state.orders)
                              for o in state.orders if o["order_id"] == order["order_id"])
        assert state.incident is not None  # under the lock: still there
        # the backup of the incident's latest call (its board row), not of an earlier one's
        answered = ({"backup_call_sent": backup["team_id"],
                     "backup_call_sent_name": backup.get("team_name") or ""}
                    if state.incident.get("backup_call_order") == order["order_id"] else {})

        async def sent(pipe: Pipeline) -> None:
            if found:
                store.queue_order_change(pipe, order["order_id"], {"backup_wanted": ""})
            if open_for_escort:
                store.queue_schedule(pipe, f"reinforce:{order['order_id']}",
                                     utcnow() + self._reinforce_retry)
            if answered:
                store.queue_incident_fields(pipe, inc["incident_id"], answered)

        await self._emit(inc["incident_id"], TimelineEntry(
            kind="reinforcement", team_id=backup["team_id"], order_id=backup["order_id"],
            **entry_detail("reinforcement_for", team=order.get("team_name") or order["team_id"])),
            state=state, also=sent)
        state.incident.update(answered)

    # --- time passes ------------------------------------------------------------------

    async def fire_timer(self, member: str) -> datetime | None:
        """Handle a due timer, in its incident's trace; or the time to fire it again, not
        handled yet."""
        kind, _, ident = member.partition(":")
        step = TIMER_STEPS.get(kind)
        if step is None:
            log.error("unknown timer %s dropped", member)
            return None
        attributes: dict[str, str] = {}
        if kind in ORDER_TIMERS:
            attributes["lianfang.order_id"] = ident
            incident_id, trace_ctx = await store.timer_incident(self.redis, order_id=ident)
        else:
            incident_id, trace_ctx = await store.timer_incident(self.redis, incident_id=ident)
        if incident_id:
            attributes["lianfang.incident_id"] = incident_id
        with in_incident_trace(step, trace_ctx, **attributes):
            return await self._fire(kind, ident)

    async def _fire(self, kind: str, ident: str) -> datetime | None:
        if kind == "ack":
            return await self.on_ack_deadline(ident)
        elif kind == "followup":
            await self.on_followup_due(ident)
        elif kind == "handover":
            await self.on_handover_due(ident)
        elif kind == "zone":
            await self.on_zone_due(ident)
        elif kind == "reinforce":
            return await self.on_reinforce_due(ident)
        elif kind == "offshift":
            return await self.on_off_shift_due(ident)
        elif kind in ("removed", "moved"):
            return await self.on_removed_team_order_due(ident, timer=kind)
        elif kind == "rezoned":
            return await self.on_moved_team_order_due(ident, timer=kind)
        elif kind == "visit":
            return await self.on_visit_unanswered_due(ident)
        elif kind == "link":
            return await self.on_link_due(ident)
        elif kind == "unlinked":
            await self.on_unlinked_due(ident)
        return None

    async def _answers_behind(self, timer: str, incident_id: str, upto: datetime, *,
                              stream: str = streams.ORDER_RESPONDED.name) -> bool:
        """Whether answers about the incident given up to `upto` (at the timer's first
        firing here) still wait in order.responded for this service (it was down, or is
        catching up on a backlog): a timer that judges a team's order before them (its
        deadline, its check-out, its request for backup) judges on what the team no longer
        is: a team that answered is timed out (its order withdrawn from the phones while it
        is on its way, a routing timeout, a volunteer shift's penalty) and another team
        sent; a team that resolved the incident and went home is replaced, or sent backup.
        Only the incident's own answers count (another team's answer stuck in the stream
        holds no deadline back), waited for at most ANSWERS_CATCH_UP per timer. With
        `stream` another of dispatch's streams, its entries naming `incident_id` (a team's
        id: its statuses in unit.status), under the timer's name (`timer`) given."""
        now = time.monotonic()
        if now - self._awaiting_swept > ANSWERS_CATCH_UP.total_seconds():
            # Timers cancelled while they waited (an answer made them moot) never come
            # back: their marks are dropped, once in a while (not at every firing: a
            # catch-up has thousands waiting).
            self._awaiting_swept = now
            for waited in [k for k, (t, _) in self._awaiting_answers.items()
                           if now - t > 2 * ANSWERS_CATCH_UP.total_seconds()]:
                del self._awaiting_answers[waited]
        since, upto = self._awaiting_answers.setdefault(timer, (now, upto))
        if now - since > ANSWERS_CATCH_UP.total_seconds():
            log.warning("%s: %s entries still unhandled after %s; judged without them",
                        timer, stream, ANSWERS_CATCH_UP)
            behind = False
        else:
            behind = await store.unhandled_entries(
                self.redis, stream, group="dispatch", upto=upto, concerning=incident_id)
        if not behind:
            self._awaiting_answers.pop(timer, None)
        return behind

    async def on_ack_deadline(self, order_id: str) -> datetime | None:
        """An offer's deadline: the order timed out and the incident offered to the next
        team; or, while answers given by the deadline wait unread, the time to look again."""
        order = await store.get_order(self.redis, order_id)
        if order is None:
            return None
        incident_id = order["incident_id"]
        async with self._locked(incident_id):
            state = await store.incident_state(self.redis, incident_id)
            inc = state.incident
            order = next((o for o in state.orders if o["order_id"] == order_id), None)
            # Timed out already: an earlier firing failed after its write (the timer stays
            # until the firing succeeds). The offer again is made again, or the incident
            # would keep no live order and never be offered again.
            if order is None or inc is None or order["state"] not in ("offered", "timed_out"):
                return None
            if order["state"] == "offered":
                if order.get("published") != "1":
                    # Never sent (dispatch failed or died between writing and announcing
                    # it): sent now, with its whole deadline, as the step made again would.
                    await self._fill(incident_id, state)
                due = _ts(order.get("ack_by"))
                if order.get("sent_late_at") and due is not None and due > utcnow():
                    return due  # sent late: its new deadline has not passed yet
                # A deadline first judged late (dispatch was down: the phones kept the
                # order, and notify took answers to it) counts the answers up to then, as
                # one judged on time does.
                if due is not None and await self._answers_behind(
                        f"ack:{order_id}", incident_id, max(due + ANSWER_IN_FLIGHT, utcnow())):
                    return utcnow() + ANSWERS_WAIT
            with in_incident_trace("acknowledgement deadline missed", inc.get("trace_ctx"),
                                   **{"lianfang.incident_id": incident_id,
                                      "lianfang.order_id": order_id}):
                if order["state"] == "offered":
                    await self._time_out(state, order)  # its team's claim released with it
                else:  # timed out by an earlier firing: harmless made again
                    await store.release_unit(self.redis, team_id=order["team_id"],
                                             order_id=order_id)
                await self._fill(incident_id, state)
                if order.get("kind") == "reinforcement":
                    await self._backup_again(state, order)
        await self.retry_waiting(inc["district"], freed=order["team_id"])
        return None

    async def _time_out(self, state: store.IncidentState, order: dict[str, str]) -> None:
        """An offered order's deadline passed: the order timed out, order.withdrawn and
        order.escalated, the incident's misses counted with its timeline entry and
        incident.updated, and its team's claim released, in one write made once."""
        inc = state.incident
        assert inc is not None
        counts = {name: str(int(inc.get(name) or 0) + 1) for name in ("misses", "timeouts")}
        inc.update(counts)  # the incident is flagged by its misses
        order["state"] = "timed_out"
        # the team's run of orders let time out (its record on the units' screen): counted
        # by the same script, unless it left the roster (store.MISSED_FIELDS)
        now = utcnow()

        async def timed_out(pipe: Pipeline) -> None:
            # when: a call for backup made before it still counts (_called_while_live)
            store.queue_order_change(pipe, order["order_id"], {
                "state": "timed_out", "timed_out_at": now.isoformat()})
            store.queue_incident_fields(pipe, inc["incident_id"], counts)
            await queue_publish(pipe, streams.ORDER_WITHDRAWN,
                                self._order_withdrawn(inc, order, "timeout"))
            await queue_publish(pipe, streams.ORDER_ESCALATED, OrderEscalated(
                event_id=f"escalated-{order['order_id']}", district=inc["district"],
                order_id=order["order_id"], incident_id=inc["incident_id"],
                team_id=order["team_id"], reason="acknowledgement deadline missed",
                misses=int(counts["misses"])))
            self._queue_waiting(pipe, inc)

        await self._emit(inc["incident_id"], TimelineEntry(
            kind="timeout", team_id=order["team_id"], order_id=order["order_id"],
            **entry_detail("routing_timeout", ack_by=order["ack_by"])),
            state=state, also=timed_out, release_claim=(order["team_id"], order["order_id"]),
            missed=(order["team_id"], now))
        ROUTING_TIMEOUTS.add(1, {"priority": inc["priority"]})

    async def _revisit(self, state: store.IncidentState, order: dict[str, str],
                       entry: TimelineEntry, move: Callable[[Pipeline], Awaitable[None]],
                       end: StepEnd) -> bool:
        """A follow-up visit found the mediated agreement not holding, or those warned of a
        fraud still at risk (VISIT_VERDICTS; its team answered `handover`: back to the
        station): the station visits again after the category's
        interval, until `followup_max_visits` visits; past those the command room decides
        (the incident is flagged). One write with the step's end."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        visits = int(inc.get("followup_visits") or 1)
        revisit, failed = VISIT_VERDICTS.get(inc["category"], MEDIATED_VERDICTS)
        if visits >= self.policy.followup_max_visits:
            # `followup_failed`: flagged also once the case is filed (resolved), the usual
            # case by the last visit, until the command room closes it
            inc["followup_failed"] = "1"
            fields = {"misses": self._flag(inc), "followup_failed": "1"}
            detail = entry_detail(failed, visits=visits)
            due = None
        else:
            days = (self.policy.followup_days.get(inc["category"])
                    or self.policy.followup_default_days)
            due = utcnow() + timedelta(days=days)
            fields = {"followup_order": "", "followup_visits": str(visits + 1),
                      "followup_note": entry.note or ""}
            detail = entry_detail(revisit, visit=visits + 1,
                                  date=f"{due.astimezone(self.tz):%Y-%m-%d}",
                                  timezone=self.settings.timezone)

        async def written(pipe: Pipeline) -> None:
            await move(pipe)
            store.queue_incident_fields(pipe, incident_id, fields)
            if due is not None:
                store.queue_schedule(pipe, f"followup:{incident_id}", due)

        await self._withdraw_backups(state, order)
        return await self._emit(incident_id, TimelineEntry(
            kind="followup", team_id=order["team_id"], order_id=order["order_id"],
            **detail, note=entry.note), state=state, also=written, end=end)

    async def on_followup_due(self, incident_id: str) -> None:
        async with self._locked(incident_id):
            state = await store.incident_state(self.redis, incident_id)
            inc = state.incident
            # Closed meanwhile: the close cancels the timer, but not a firing already under
            # way (leased, waiting for the close's lock); nobody revisits a closed case.
            if inc is None or inc.get("followup_order") or inc["status"] in ("closed", "linked"):
                return
            await self._order_followup(state)

    async def _order_followup(self, state: store.IncidentState, *,
                              excluded: Collection[str] = (),
                              nobody: TimelineEntry | None = None,
                              also: Callable[[Pipeline], Awaitable[None]] | None = None) -> bool:
        """The follow-up visit's order to the station's nearest team on shift but
        `excluded`, which its team has followup_retry_h to answer (a `visit:{order}` timer,
        on_visit_unanswered_due); False when there is none: looked for again after the
        policy's followup_retry_h, and the incident flagged for the command room with a
        note (`nobody`, or one saying no team is on shift, written with `also`), once, until
        a team is given the visit (`followup_unstaffed`, cleared by the order's record), as
        a hand-over waiting for a station team is."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        # An earlier firing that failed after its offer (the timer stays until a firing
        # succeeds): that live order is the follow-up, the station gets no second one.
        order = next((o for o in state.orders if o.get("kind") == "followup"
                      and o["state"] in domain.LIVE_ORDER_STATES), None)
        if order is None:
            visit = int(inc.get("followup_visits") or 1)
            station, known = await self._station_known(inc)
            # A case a station was handed still owes its visit when no station owns the
            # place any more (its zone removed, or re-cut, since): flagged and looked for
            # again below, as a station with nobody on shift, never dropped unsaid. So does
            # a case handed over where no station owned the place, its hand-over still
            # tried again (_station_gone) when the visit comes due.
            handed = bool(inc.get("handed_over_at")) or any(
                o.get("kind") == "handover" for o in state.orders)
            if not station and known and not handed:
                # Scheduled while the zones could not be loaded; now known: no station owns
                # the place, so nobody visits (the timer ends with this firing).
                if inc.get("followup_unowned") != "1":
                    async def unowned(pipe: Pipeline) -> None:
                        store.queue_incident_fields(pipe, incident_id, {"followup_unowned": "1"})

                    await self._emit(incident_id, TimelineEntry(
                        kind="note", **entry_detail("followup_unowned")), state=state,
                        also=unowned)
                return False
            team = (await self._station_team(inc, station, excluded=excluded)
                    if station else None)
            if team is None:
                again = utcnow() + self._followup_retry
                if inc.get("followup_unstaffed") == "1":  # flagged and noted already
                    await store.schedule(self.redis, f"followup:{incident_id}", again)
                    return False
                inc["followup_unstaffed"] = "1"  # read by the write's `flagged`

                async def unstaffed(pipe: Pipeline) -> None:
                    if also is not None:
                        await also(pipe)
                    store.queue_incident_fields(pipe, incident_id, {"followup_unstaffed": "1"})
                    store.queue_schedule(pipe, f"followup:{incident_id}", again)

                await self._emit(incident_id, nobody or TimelineEntry(
                    kind="note", **entry_detail(
                        "followup_unstaffed" if station
                        else "followup_station_gone" if known else "followup_station_not_known",
                        **self._followup_retry_args())),
                    state=state, also=unstaffed)
                return False
            last = inc.get("followup_note")
            order = await self._offer_and_announce(
                inc, team, kind="followup", marks={"visit": str(visit)},
                instructions="Follow-up visit" + (f" {visit}" if visit > 1 else "")
                + ": " + VISIT_CHECKS.get(inc["category"], MEDIATED_CHECK)
                + (f" Last visit: {last}" if visit > 1 and last else ""))
            if order is None:
                return False
        elif order.get("published") != "1":
            await self._announce(inc, order)
        order_id = order["order_id"]
        answer_by = datetime.fromisoformat(order["issued_at"]) + self._followup_retry
        now_state = await store.incident_state(self.redis, incident_id)
        assert now_state.incident is not None  # under the lock: still there
        now_state.incident["followup_unstaffed"] = ""  # read by the write's `flagged`

        async def recorded(pipe: Pipeline) -> None:
            # a team has the visit: the board's flag of a visit nobody could be given goes
            store.queue_incident_fields(pipe, incident_id, {"followup_order": order_id,
                                                            "followup_unstaffed": ""})
            store.queue_schedule(pipe, f"visit:{order_id}", answer_by)

        await self._emit(incident_id, TimelineEntry(
            kind="followup", team_id=order["team_id"], order_id=order_id,
            **entry_detail("followup_ordered")), state=now_state, also=recorded)
        inc.update(followup_order=order_id, followup_unstaffed="")
        return True

    async def on_visit_unanswered_due(self, order_id: str) -> datetime | None:
        """A follow-up visit's order its team has not answered (`received` is no answer)
        within the policy's followup_retry_h: the incident is flagged for the command room
        (which may take it back for another team) with one note, while the order stays
        unanswered (its `unanswered_at` mark; _update). So is one its team took (the timer
        set again by its answer, policy followup_verdict_h on) and gave no verdict, holds or
        does not, while it stays so (its `no_verdict_at` mark): no next visit is ordered
        without one. While the team's answers given before may still wait unread, the time
        to look again."""
        held = await store.get_order(self.redis, order_id)
        if (held is None or held.get("kind") != "followup"
                or held["state"] not in domain.LIVE_ORDER_STATES):
            return None
        async with self._locked(held["incident_id"]):
            state = await store.incident_state(self.redis, held["incident_id"])
            inc = state.incident
            order = next((o for o in state.orders if o["order_id"] == order_id), None)
            if (inc is None or order is None or order["state"] not in domain.LIVE_ORDER_STATES
                    or inc["status"] in ("closed", "linked")):
                return None
            taken = order["state"] != "offered"
            mark = "no_verdict_at" if taken else "unanswered_at"
            if order.get(mark):
                return None
            if await self._answers_behind(f"visit:{order_id}", inc["incident_id"], utcnow()):
                return utcnow() + ANSWERS_WAIT
            order[mark] = utcnow().isoformat()  # read by the write's `flagged`
            name = order.get("team_name") or order["team_id"]

            async def flagged(pipe: Pipeline) -> None:
                store.queue_order_change(pipe, order_id, {mark: order[mark]})

            detail = (entry_detail("followup_no_verdict", team=name,
                                   hours=f"{self.policy.followup_verdict_h:g}") if taken
                      else entry_detail("followup_unanswered", team=name,
                                        **self._followup_retry_args()))
            await self._emit(inc["incident_id"], TimelineEntry(
                kind="note", team_id=order["team_id"], order_id=order_id, **detail),
                state=state, also=flagged)
        return None

    @staticmethod
    def _declining(inc: dict[str, str], move: Callable[[Pipeline], Awaitable[None]]
                   ) -> Callable[[Pipeline], Awaitable[None]]:
        """The writes of a refusal with the incident's count of them (`declines`, on the
        board's head fields: the inspector's ?problem=declined and the KPIs read it)."""
        declines = str(int(inc.get("declines") or 0) + 1)

        async def declining(pipe: Pipeline) -> None:
            await move(pipe)
            store.queue_incident_fields(pipe, inc["incident_id"], {"declines": declines})
            inc["declines"] = declines

        return declining

    def _station_declining(self, inc: dict[str, str], order: dict[str, str],
                           move: Callable[[Pipeline], Awaitable[None]]
                           ) -> Callable[[Pipeline], Awaitable[None]]:
        """The writes of a station team's refusal of its hand-over or follow-up order: the
        order's mark on the incident cleared and the retry's timer set with the refusal, so
        a step that fails after them still ends in an order (_station_declined)."""
        incident_id = inc["incident_id"]
        handover = order.get("kind") == "handover"
        mark = "handover_order" if handover else "followup_order"
        timer = (f"handover:{incident_id}", utcnow() + self._handover_retry) if handover else (
            f"followup:{incident_id}", utcnow() + self._followup_retry)

        async def declining(pipe: Pipeline) -> None:
            await move(pipe)
            if inc.get(mark) == order["order_id"]:
                store.queue_incident_fields(pipe, incident_id, {mark: ""})
                store.queue_schedule(pipe, *timer)
                inc[mark] = ""

        return declining

    async def _station_declined(self, state: store.IncidentState, order: dict[str, str]) -> None:
        """A station's team declined its hand-over or follow-up order (on another case, off
        sick): the order goes to another of the station's teams on shift; with none, the
        hand-over is flagged for the command room and tried again (the policy's
        handover_retry_min), the visit ordered again (followup_retry_h). The backups its
        team had asked for go with it."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        await self._withdraw_backups(state, order)
        handover = order.get("kind") == "handover"
        if inc.get("handover_order" if handover else "followup_order"):
            return  # made again: another team has it already (or the mark was not this one's)
        # Made again (the command room's take-back asked again) after the case moved on: a
        # hand-over is owed only while handed over, a visit until the case is closed (a
        # filed case is still visited), as their timers (on_handover_due, on_followup_due)
        # judge; a closed case's station gets no order.
        if (inc["status"] != "handed_over" if handover
                else inc["status"] in ("closed", "linked")):
            return
        # Not again to a team that declined it or was taken off it now; the retry later
        # asks every team.
        declined = {o["team_id"] for o in state.orders if o.get("kind") == order.get("kind")
                    and o["state"] in ("declined", "withdrawn")
                    and o.get("visit") == order.get("visit")}
        why = ("declined" if order["state"] == "declined"
               else "removed" if order.get("team_removed") == "1"
               else "moved" if order.get("team_moved") == "1" else "taken_back")
        # The note of nobody left is written once per refused order (with this mark), should
        # the step or the command room's take-back be made again.
        noted = inc.get("station_noted") == order["order_id"]

        async def mark(pipe: Pipeline) -> None:
            store.queue_incident_fields(pipe, incident_id, {"station_noted": order["order_id"]})

        if not handover:
            # flagged, with this note, as a visit due with nobody on shift is
            await self._order_followup(state, excluded=declined, also=mark, nobody=TimelineEntry(
                kind="note", team_id=order["team_id"], order_id=order["order_id"],
                **entry_detail("followup_refused", refusal=why,
                               **self._followup_retry_args())))
            return
        station = await self._station_of(inc)
        by = _handed_over_by(state.orders)
        again = await self._station_order(state, station, by=by,
                                          note=inc.get("handover_note") or None,
                                          excluded=declined)
        if again is not None:
            await self._record_station_order(inc, again, station)
            return
        if noted:
            return
        misses = self._flag(inc)

        async def flagged(pipe: Pipeline) -> None:
            await mark(pipe)
            store.queue_incident_fields(pipe, incident_id, {"misses": misses})

        await self._emit(incident_id, TimelineEntry(
            kind="note", team_id=order["team_id"], order_id=order["order_id"],
            **entry_detail("handover_refused", refusal=why,
                           minutes=f"{self.policy.handover_retry_min:g}")),
            state=state, also=flagged)

    # --- units ------------------------------------------------------------------------

    async def on_unit_status(self, event: UnitStatus) -> None:
        applied, free = await store.save_unit_status(self.redis, at=event.occurred_at, fields={
            "team_id": event.unit_id, "district": event.district, "status": event.status,
            "name": event.name or "", "agency_id": event.agency_id,
            "agency_kind": event.agency_kind, "agency_role": event.agency_role or "",
            "mode": event.mode, "skills": json.dumps(list(event.skills)),
            "home_zone_id": event.home_zone_id or "", "on_shift": "1" if event.on_shift else "0",
        }, removed=event.removed, removed_kept_s=self._removed_kept_s)
        if applied and not event.on_shift:
            await self._off_shift_holding(event.unit_id, removed=event.removed)
        if free:
            await self.retry_waiting(event.district, freed=event.unit_id, known_free=True)

    @property
    def _removed_kept_s(self) -> int:
        """How long a removed team's removal is remembered: an older status or fix of it
        can be read until the stream history (RETENTION_DAYS) trims it, and a dead letter
        is kept as long again."""
        return round(2 * self.settings.retention_days * 86400)

    async def _off_shift_holding(self, team_id: str, *, removed: bool = False) -> None:
        """A team that went off shift while an order of ours holds it (dispatch offered it
        the order before it saw the check-out; its last member was removed from the
        roster; the team itself was removed): handled by an `offshift:{order}` timer due
        now (on_off_shift_due), which a failure fires again and which names the order
        however far its step got (the withdrawal releases the claim this reads first).
        Set LT, not NX: a check-out read while that timer fires (the team back on shift
        when the firing read it, off again since) brings it forward from its lease, so the
        firing's end leaves it to fire again; NX left it at the lease, removed as handled,
        and the second check-out was never judged."""
        holder = await store.claim_of(self.redis, team_id)
        held = await store.get_order(self.redis, holder) if holder else None
        # The command room may send a team off shift by hand, knowingly: its order stands;
        # not a team that no longer exists, whom nobody could answer for.
        if (held is None or held["state"] not in domain.LIVE_ORDER_STATES
                or (held.get("kind") == "manual" and not removed)):
            return
        await store.schedule(self.redis, f"offshift:{held['order_id']}", utcnow(), lt=True)

    async def on_zones_changed(self, district: str) -> int:
        """The district's zones as read from volunteers changed (an import re-cut them,
        gave one to another station, removed one), or were read for the first time by this
        process (it may have missed a change): each live order dispatch sent a police
        station's team for a category sent to its zone's own station only (a fraud
        warning), whose place another station owns now, gets a `rezoned:{order}` timer due
        REZONED_GRACE_S later (set once), which judges it as a moved team's
        (on_moved_team_order_due: taken off, the timeline saying why, and the zone's
        station's team offered; at the scene it goes on, as a team moved is). No status of
        the team comes to do it when the team did not move, its ground did; when one import
        moved the team with its ground, volunteers published the team's status after
        writing the zones, and it may be read after them: judged at once, the team, still
        the old station's as dispatch held it, would be taken off and the warning offered
        again. A warning is no emergency: judged after the grace, the team is as its status
        made it. A hand-over or visit the old station was given stays with it (whoever
        takes a case owns it until done). Returns the timers set."""
        if not any(rule.zone_station for rule in self.policy.categories.values()):
            return 0
        held = [(unit, claim) for unit, claim in await store.units_in(self.redis, district)
                if claim and _of_a_station(unit.agency_kind, unit.agency_role)]
        if not held:
            return 0
        orders = await store.orders_bulk(self.redis, [claim for _, claim in held])
        judged = [(unit, order) for (unit, _), order in zip(held, orders, strict=True)
                  if order.get("team_id") == unit.team_id
                  and order.get("state") in domain.LIVE_ORDER_STATES
                  and order.get("kind") in ("dispatch", "reinforcement")
                  and order.get("escort") != "1"]
        if not judged:
            return 0
        incidents = {inc["incident_id"]: inc for inc in await store.incidents_bulk(
            self.redis, {order["incident_id"] for _, order in judged})}
        due, timers = utcnow() + timedelta(seconds=self.settings.rezoned_grace_s), 0
        for unit, order in judged:
            inc = incidents.get(order["incident_id"])
            if (inc is None or inc["district"] != district
                    or not self.policy.rule(inc["category"]).zone_station):
                continue
            zone, known = await self._place(district, float(inc["lat"]), float(inc["lon"]))
            if known and zone is not None and zone.owner_agency_id != unit.agency_id:
                await store.schedule(self.redis, f"rezoned:{order['order_id']}", due, nx=True)
                timers += 1
        return timers

    async def on_moved_team_order_due(self, order_id: str, *, timer: str = "moved"
                                      ) -> datetime | None:
        """A team's order after a roster import moved the team to another agency, kind or
        role, or gave it other skills, than the order was sent to it as (or last judged
        as), or gave the zone of its incident to another police station (a `rezoned:`
        timer, on_zones_changed). It is taken back, as the command room's revision adding a
        weapon flag takes volunteers off, with a timeline entry saying why, and the incident
        gets the units it wants (a backup taken off, another backup for the team that
        asked): from an incident whose flags bar volunteers (a weapon), a team now of a
        volunteer agency; and an order dispatch sent for the incident's category whose
        category does not list the team's new kind or role, goes to its zone's own station
        only and the team is another station's now, or requires a skill it no longer has
        (DESIGN's "who may answer": an e-bike theft, a police case, is no security
        company's; a fight no volunteers'; a fraud warning the zone's station's; a collapse
        wants first aid), but not one the command room sent by hand (it may send any team,
        knowingly) nor a P1's escort (sent whatever the category) (_not_sent_now).
        Elsewhere the team goes on (the same people on their way), counted as volunteers
        while of a volunteer agency (_counted_as): a P1's escort so moved leaves volunteers
        alone there, which the timeline says, and another escort is sought (or, nobody
        free, the incident flagged and waiting for one); one moved back out of volunteers
        counts as its kind again (_moved_back). The kind, skills and agency judged are kept
        on the order (`judged_as`, `judged_skills`, `judged_agency`): the team's next
        statuses set no timer (store.save_unit_status). A team taken off may be offered
        the incident again once the rules send it (the zone given back, the team moved
        back), as one that went off shift: not while this process's zones are older than
        the take-off (_not_offered_again).
        Nothing once the order ended. A firing made again after a failure finds the order
        withdrawn (or marked) and finishes the refill. While the team's answers may wait
        unread, the time to look again."""
        held = await store.get_order(self.redis, order_id)
        if held is None:
            return None
        unit = await store.get_unit(self.redis, held["team_id"])
        if unit is None:
            return None
        incident_id = held["incident_id"]
        now_as = domain.sent_as(unit.agency_kind, unit.agency_role)
        judged = {"judged_as": now_as, "judged_skills": domain.skills_signature(unit.skills),
                  "judged_agency": unit.agency_id}
        volunteers = unit.agency_kind == "volunteer"
        if timer == "rezoned":
            # Set by the replica that read the zone change; this one may have read the zones
            # before it (up to ZONES_REFRESH_S behind): by them the zone still the car's
            # station's, the car kept on and the timer spent. They are read again first.
            await self.zones.refresh(unit.district)
        async with self._locked(incident_id):
            state = await store.incident_state(self.redis, incident_id)
            inc = state.incident
            order = next((o for o in state.orders if o["order_id"] == order_id), None)
            if inc is None or order is None:
                return None
            if (inc.get("zone_unknown") == "1" and order["state"] in domain.LIVE_ORDER_STATES
                    and self.policy.rule(inc["category"]).zone_station):
                # Given up on after ZONE_WAIT, its teams sent from any station: the zones
                # are back, and the place is written (with its note) before its orders are
                # judged against them.
                zone, known = await self._place(inc["district"], float(inc["lat"]),
                                                float(inc["lon"]))
                if known:
                    await self._place_known(state, zone)
            flags = json.loads(inc.get("flags") or "[]")
            barring = ([f for f in flags if f in self.policy.bar_volunteers_flags]
                       if volunteers else [])
            off = (entry_detail("team_now_volunteers",
                                team=order.get("team_name") or order["team_id"],
                                agency=unit.agency_id, flags=", ".join(barring)) if barring
                   else await self._not_sent_now(inc, order, unit))
            if off is None:
                if order["state"] not in domain.LIVE_ORDER_STATES:
                    return None
                if not volunteers and order.get("moved_to_volunteers") == "1":
                    await self._moved_back(state, order, unit)
                elif volunteers and inc["status"] not in TERMINAL:
                    if order.get("moved_to_volunteers") != "1":
                        if await self._answers_behind(f"{timer}:{order_id}", incident_id,
                                                      utcnow()):
                            return utcnow() + ANSWERS_WAIT
                        await self._counted_as_volunteers(state, order, unit)
                    await self._fill(incident_id, state)
                if changed := {k: v for k, v in judged.items() if order.get(k) != v}:
                    await store.update_order(self.redis, order_id, changed)
                return None
            # Whatever the incident's status: a backup a station team asked for on a case
            # handed over or filed is live while that team's order is (_backup_again).
            if order["state"] in domain.LIVE_ORDER_STATES:
                # A zone given to another station: the import that did it may have moved
                # the team with its ground, its status still unhandled here (dispatch back
                # after an outage, or behind on a backlog): judged once it is read.
                if timer == "rezoned" and await self._answers_behind(
                        f"{timer}:{order_id}#status", order["team_id"], utcnow(),
                        stream=streams.UNIT_STATUS.name):
                    return utcnow() + ANSWERS_WAIT
                if await self._answers_behind(f"{timer}:{order_id}", incident_id, utcnow()):
                    return utcnow() + ANSWERS_WAIT
                # Dispatch's own decision, for a reason that may pass (the zone given
                # back, the team moved back): the team may be offered the incident again
                # once the rules send it (_not_offered_again), as one that went off shift;
                # not one that turned it down before.
                refused = any(o["team_id"] == order["team_id"]
                              and o["state"] in ("declined", "timed_out")
                              for o in state.orders)
                await self._taken_back(state, order, detail=off,
                                       marks={"team_moved": "1", **judged},
                                       offer_again=not refused, barred_by=tuple(barring))
            elif order["state"] != "withdrawn" or order.get("team_moved") != "1":
                return None
            await self._fill(incident_id, state)
            if order.get("kind") == "reinforcement":
                await self._backup_again(state, order)
        await self.retry_waiting(inc["district"], freed=order["team_id"])
        return None

    async def _not_sent_now(self, inc: dict[str, str], order: dict[str, str],
                            unit: domain.Unit) -> Detail | None:
        """Why dispatch would not send `order`'s team (`unit`, as it is now) to the
        incident, as the timeline says it when taking the team off: the category does not
        list its kind and role, goes to its zone's own station only (the owner now, as
        _fill's search has it) and the team is another station's, or requires a skill it
        lacks (domain.is_eligible's rules); a team at the scene is judged by its kind only.
        None when it would, or when `order` is none dispatch sent for the category (an order
        of its own or a backup are: not the command room's by hand, nor a P1's escort)."""
        if order.get("kind") not in ("dispatch", "reinforcement") or order.get("escort") == "1":
            return None
        rule = self.policy.rule(inc["category"])
        name = order.get("team_name") or order["team_id"]
        if rule.kind_rank(unit.agency_kind, unit.agency_role) is None:
            return entry_detail("team_now_unlisted", team=name, agency=unit.agency_id,
                                kind=domain.sent_as(unit.agency_kind, unit.agency_role),
                                category=inc["category"])
        if order["state"] == "on_scene":
            # At the scene: the same people are there, helping; an edit of the roster moving
            # the team to another station or taking a skill off it does not pull them off
            # (the command room may, by hand). A kind the category does not list does.
            return None
        if rule.zone_station and _of_a_station(unit.agency_kind, unit.agency_role):
            # _station_known's owner, with its zone for the timeline
            zone, known = await self._place(inc["district"], float(inc["lat"]),
                                            float(inc["lon"]))
            if known and unit.agency_id != (zone.owner_agency_id if zone else unit.agency_id):
                # Not as dispatch last read the zones: one import may have moved the team
                # with its ground to the other station (its status, read at once, tells of
                # zones read up to ZONES_REFRESH_S later). Its zones are read again first.
                await self.zones.refresh(inc["district"])
                zone, known = await self._place(inc["district"], float(inc["lat"]),
                                                float(inc["lon"]))
            station = ((zone.owner_agency_id if zone else "") if known
                       else inc.get("station_agency_id") or "")
            if station and unit.agency_id != station:
                if zone is not None and _sent_not_knowing_the_station(inc, order):
                    # sent after ZONE_WAIT, by any station: no import changed anything
                    return entry_detail("station_now_known", station=station, zone=zone.name,
                                        category=inc["category"], team=name,
                                        agency=unit.agency_id)
                if zone is not None and unit.agency_id == (order.get("judged_agency")
                                                           or order.get("agency_id")):
                    # the team is where it was: an import gave the zone to another station
                    return entry_detail("zone_now_other_station", zone=zone.name,
                                        station=station, category=inc["category"],
                                        team=name, agency=unit.agency_id)
                return entry_detail("team_now_other_station", team=name,
                                    agency=unit.agency_id, category=inc["category"],
                                    station=station)
        if missing := domain.missing_skills(rule, unit.skills):
            return entry_detail("team_lacks_skills", team=name, skills=", ".join(missing),
                                category=inc["category"])
        return None

    async def _moved_back(self, state: store.IncidentState, order: dict[str, str],
                          unit: domain.Unit) -> None:
        """Under the incident's lock: a live order counted as volunteers
        (_counted_as_volunteers) whose team a roster import has moved back out of
        volunteers: counted as sent again; when that left volunteers alone on a P1, with a
        timeline entry saying so, and the incident as its orders now make it (an escort no
        longer wanted: the flag gone, off the waiting queue)."""
        inc = state.incident
        assert inc is not None
        incident_id, order_id = inc["incident_id"], order["order_id"]
        claiming = [_counted_as(o) for o in state.orders if o.get("kind") in CLAIMING_KINDS
                    and o["state"] in domain.LIVE_ORDER_STATES]
        mark = {"moved_to_volunteers": "",
                "judged_as": domain.sent_as(unit.agency_kind, unit.agency_role)}
        order.update(mark)
        if not domain.volunteers_alone_on_p1(inc["priority"], claiming):
            # it left nobody alone (no timeline entry said so): nothing else changes
            await store.update_order(self.redis, order_id, mark)
            return

        async def unmarked(pipe: Pipeline) -> None:
            store.queue_order_change(pipe, order_id, mark)

        await self._emit(incident_id, TimelineEntry(
            kind="note", team_id=order["team_id"], order_id=order_id,
            **entry_detail("team_no_longer_volunteers",
                           team=order.get("team_name") or order["team_id"],
                           agency=unit.agency_id, kind=unit.agency_kind)),
            state=state, also=unmarked)
        await self._fill(incident_id, state)

    async def _counted_as_volunteers(self, state: store.IncidentState, order: dict[str, str],
                                     unit: domain.Unit) -> None:
        """The order of a team moved into a volunteer agency marked so (its team counts as
        volunteers among the incident's units); when that leaves volunteers alone on a P1,
        with a timeline entry saying so, which flags the incident until an escort joins."""
        inc = state.incident
        assert inc is not None
        mark = {"moved_to_volunteers": "1", "judged_as": "volunteer"}
        order.update(mark)
        claiming = [_counted_as(o) for o in state.orders if o.get("kind") in CLAIMING_KINDS
                    and o["state"] in domain.LIVE_ORDER_STATES]
        if not domain.volunteers_alone_on_p1(inc["priority"], claiming):
            await store.update_order(self.redis, order["order_id"], mark)
            return

        async def marked(pipe: Pipeline) -> None:
            store.queue_order_change(pipe, order["order_id"], mark)

        await self._emit(inc["incident_id"], TimelineEntry(
            kind="note", team_id=order["team_id"], order_id=order["order_id"],
            **entry_detail("team_now_volunteers_alone",
                           team=order.get("team_name") or order["team_id"],
                           agency=unit.agency_id)), state=state, also=marked)

    async def on_off_shift_due(self, order_id: str) -> datetime | None:
        """An offer nobody will acknowledge is taken back and the incident offered to the
        next team at once, not left for its deadline (a withdrawal made before a failure:
        the refill finished); an order the team had taken flags the incident with a note,
        once, for the command room to decide. Nothing if the team is back on shift. While
        the team's answers may still wait unread (dispatch back after an outage read its
        check-out first: it had resolved the order and gone home), the time to look again."""
        held = await store.get_order(self.redis, order_id)
        if held is None:
            return None
        unit = await store.get_unit(self.redis, held["team_id"])
        if unit is not None and unit.on_shift:
            return None
        async with self._locked(held["incident_id"]):
            state = await store.incident_state(self.redis, held["incident_id"])
            inc = state.incident
            order = next((o for o in state.orders if o["order_id"] == order_id), None)
            if inc is None or order is None:
                return None
            if (order["state"] in domain.LIVE_ORDER_STATES and not order.get("off_shift_at")
                    and await self._answers_behind(f"offshift:{order_id}",
                                                   inc["incident_id"], utcnow())):
                return utcnow() + ANSWERS_WAIT
            if order["state"] in ("offered", "withdrawn"):
                # Nobody turned the team down for the incident: back on shift (the next
                # crew, or imported again), it may be offered it as any free team.
                await self._take_back(inc["incident_id"], order_id,
                                      by="dispatch: the team went off shift", note=None,
                                      offer_again=True)
            elif order["state"] in domain.LIVE_ORDER_STATES and not order.get("off_shift_at"):
                # flagged by the mark while the order is live (_update), not by the
                # incident's misses, which never go down
                order["off_shift_at"] = utcnow().isoformat()
                name = order.get("team_name") or order["team_id"]

                async def flagged(pipe: Pipeline) -> None:
                    store.queue_order_change(pipe, order_id,
                                             {"off_shift_at": order["off_shift_at"]})

                await self._emit(inc["incident_id"], TimelineEntry(
                    kind="note", team_id=order["team_id"], order_id=order_id,
                    **entry_detail("off_shift" if unit else "off_roster", team=name,
                                   state=order["state"])),
                    state=state, also=flagged)
        return None

    async def on_removed_team_order_due(self, order_id: str, *, timer: str = "removed"
                                        ) -> datetime | None:
        """A station's hand-over or follow-up order whose team was removed from the roster
        (its removal set this `removed:` timer, store.save_unit_status; such orders hold no
        team, so volunteers lets the team go), or is no longer a team of the order's
        station (a roster import moved it to a security company or another station: a
        `moved:` timer, set by its status, store.save_unit_status): nobody of the
        station will answer it. It is handed on as the command room's take-back of it is:
        withdrawn, with a timeline entry saying why, and the case to another of the
        station's teams on shift (the station's `filing_due` kept), or flagged and tried
        again (_station_declined). A firing made again after a failure finishes the handing
        on (the order's `team_removed` or `team_moved` mark), once; nothing for a team
        imported again or moved back meanwhile (its phones get the order), nor for an order
        answered or withdrawn by
        anyone else first. While the team's answers given before may still wait unread
        (volunteers' removal and the team's answers come on two streams: a station team
        that filed its case and was then removed has filed it), the time to look again."""
        held = await store.get_order(self.redis, order_id)
        if held is None:
            return None
        if held.get("kind") in CLAIMING_KINDS and timer == "moved":
            return await self.on_moved_team_order_due(order_id)
        if held.get("kind") not in STATION_KINDS:
            return None
        unit = await store.get_unit(self.redis, held["team_id"])
        if _the_station_s(unit, held) and held["state"] in domain.LIVE_ORDER_STATES:
            # The station's team still (imported again, moved back): its next removal or
            # move finds the order in its index again, which a removal dropped; read again
            # after, a removal made before it found none (one made after brings this timer
            # forward: it fires again).
            await store.index_station_order(self.redis, held["team_id"], order_id)
            unit = await store.get_unit(self.redis, held["team_id"])
        if _the_station_s(unit, held):
            return None
        async with self._locked(held["incident_id"]):
            state = await store.incident_state(self.redis, held["incident_id"])
            inc = state.incident
            order = next((o for o in state.orders if o["order_id"] == order_id), None)
            if inc is None or order is None:
                return None
            if (order["state"] in domain.LIVE_ORDER_STATES
                    and await self._answers_behind(f"{timer}:{order_id}",
                                                   inc["incident_id"], utcnow())):
                return utcnow() + ANSWERS_WAIT
            if order["state"] in domain.LIVE_ORDER_STATES:
                name = order.get("team_name") or order["team_id"]
                if unit is None:
                    mark, detail = "team_removed", entry_detail("station_team_removed", team=name)
                elif unit.agency_id != order.get("agency_id"):
                    mark, detail = "team_moved", entry_detail(
                        "station_team_moved", team=name, station=order.get("agency_id"),
                        agency=unit.agency_id)
                else:
                    mark, detail = "team_moved", entry_detail(
                        "station_team_not_police", team=name, station=order.get("agency_id"))
                await self._taken_back(state, order, marks={mark: "1"}, detail=detail)
            elif (order["state"] != "withdrawn"
                  or "1" not in (order.get("team_removed"), order.get("team_moved"))
                  or inc["status"] in ("closed", "linked")):
                return None
            await self._station_declined(state, order)
        # the removed or moved team itself was held by nothing (a station order claims
        # nobody): its status event offered it, if free; its backups' teams are freed here
        await self._offer_backups_of(inc["district"], order)
        return None

    async def on_unit_positions(self, events: list[UnitPosition]) -> None:
        latest: dict[str, UnitPosition] = {}
        for event in events:  # an older fix of the same team would change nothing
            if event.unit_id not in latest or event.at > latest[event.unit_id].at:
                latest[event.unit_id] = event
        fixes = list(latest.values())
        saved = await store.save_unit_positions(
            self.redis, [(e.unit_id, e.lat, e.lon, e.at) for e in fixes])
        for event, (_, free) in zip(fixes, saved, strict=True):
            if free:
                await self.retry_waiting(event.district, freed=event.unit_id, known_free=True,
                                         fix=True)

    async def retry_waiting(self, district: str, *, freed: str | None = None,
                            known_free: bool = False, fix: bool = False) -> None:
        """Offer the waiting incidents (unassigned, or short of a unit) again, the most
        urgent first and the oldest among equals (store.waiting_score), until `freed` (the
        team that became available) is taken: one team serves one incident, and offering
        every waiting incident on every status or position event makes a backlog feed
        itself.

        A team becomes free through two events in either order: its order's end (which
        releases the claim) and volunteers' unit.status (available). Whichever is handled
        second finds the team free and offers it to the waiting incidents. `fix`: the free
        team's position fix, which reads past the first page once in FIX_LOOKS_ON_EVERY_S."""
        if freed and not known_free and not await store.free_with_waiting(
                self.redis, team_id=freed, district=district):
            return
        unit = await store.get_unit(self.redis, freed) if freed else None
        after: float | None = None
        missed = 0  # the searches that did not send `freed`
        # Past the first page only for a known team: a backlog of incidents it may not
        # answer (P1s that bar volunteers, say) must not hide one it may, further down.
        for n in range(WAITING_PAGES if unit is not None else 1):
            if n == 1 and fix and unit is not None and not await store.mark_looked_on(
                    self.redis, unit.team_id, for_s=FIX_LOOKS_ON_EVERY_S):
                return
            page = await store.waiting(self.redis, district, after=after, limit=WAITING_PAGE)
            if not page:
                return
            after = page[-1][1]
            waiting, offered = await store.waiting_incidents(
                self.redis, district, page, offered_to=[unit.team_id] if unit else [])
            if unit is not None:
                # Only the incidents this team would be sent to: trying each waiting
                # incident in turn, under its lock, cost dozens of round trips per freed
                # team with a backlog of incidents it could not serve, on the consumers
                # that handle answers in order (and, for the position fixes of free teams,
                # on every fix).
                now = utcnow()
                waiting = [inc for inc in waiting if await self._may_send(
                    unit, inc, now, offered=inc["incident_id"] in offered)]
            for inc in waiting:
                incident_id = inc["incident_id"]
                # In its own trace, not that of the event that freed the team (another
                # incident's), which the span links to.
                with (in_incident_trace("waiting incident offered again", inc.get("trace_ctx"),
                                        **{"lianfang.incident_id": incident_id}),
                      _odd_record_passed(incident_id)):
                    async with self._locked(incident_id):
                        await self._fill(incident_id)
                if freed and await store.claim_of(self.redis, freed):
                    return
                missed += 1
                if freed and missed >= WAITING_FILLS_MISSED:
                    log.info("team %s: %d waiting incidents' searches did not send it; "
                             "left to its next look and the sweep", freed, missed)
                    return
            if len(page) < WAITING_PAGE:
                return

    async def _may_send(self, unit: domain.Unit, inc: dict[str, str], now: datetime, *,
                        offered: bool | None = None,
                        states: dict[str, store.IncidentState] | None = None) -> bool:
        """_would_send; False for a record it cannot judge (logged, left queued)."""
        with _odd_record_passed(inc["incident_id"]):
            return await self._would_send(unit, inc, now, offered=offered, states=states)
        return False

    async def _would_send(self, unit: domain.Unit, inc: dict[str, str], now: datetime, *,
                          offered: bool | None = None,
                          states: dict[str, store.IncidentState] | None = None) -> bool:
        """Whether _fill could send this team to this waiting incident: one it may answer,
        unassigned, or short of a unit the team can be (the escort of a P1 that has
        volunteers only: any police or security team, also one the category does not
        list or without its skills), and within the search's radius (with a margin:
        Redis's GEO distance is not ours to the metre). `inc`: the record's
        store.WAITING_FIELDS at least; `offered`: whether the team was offered the incident,
        when read with them (None: asked here, when it matters); `states`: the states of
        incidents short of a unit read for other teams' looks, by incident, read once and
        kept there for the next (the sweep judges an incident for each team free)."""
        if inc["status"] in TERMINAL:  # its end takes it off the queue; should it be left
            await store.remove_waiting(self.redis, district=inc["district"],
                                       incident_id=inc["incident_id"])
            return False
        if offered:  # never offered it again: excluded from its search (_fill's facts)
            return False
        facts = await self._facts_now(inc, set())
        answers = domain.may_answer(unit, facts, self.policy, now)
        if not answers and not domain.may_escort(unit, facts, self.policy, now):
            return False
        assert unit.lat is not None and unit.lon is not None  # either: a fresh fix
        if domain.distance_m(float(inc["lat"]), float(inc["lon"]), unit.lat,
                             unit.lon) > self.policy.search_radius_km * 1000 * 1.01:
            return False
        if inc["status"] == "unassigned":
            # An escort goes only with volunteers already sent. A team the incident was
            # offered before (it declined, missed its deadline: notify away, every team
            # does) is never offered it again: no search for it at each of its fixes.
            if offered is None:
                offered = await self.redis.sismember(store.offered_key(inc["incident_id"]),
                                                     unit.team_id)
            return answers and not offered
        state = states.get(inc["incident_id"]) if states is not None else None
        if state is None:
            state = await store.incident_state(self.redis, inc["incident_id"])
            if states is not None:
                states[inc["incident_id"]] = state
        facts = dataclasses.replace(facts, excluded=frozenset(self._not_offered_again(state)))
        units, alongside = _units_and_alongside(state.orders)
        ranked = domain.rank_candidates([unit], facts, self.policy, now)
        return bool(domain.choose_units(ranked, facts, self.policy,
                                        wanted=domain.units_wanted(facts, self.policy),
                                        already=units, alongside=alongside))

    async def sweep_waiting(self, district: str, *, after: float | None = None,
                            again_after_s: float) -> float | None:
        """The backstop of retry_waiting (WAITING_SWEEP_S): the district's waiting incidents
        offered the teams free in dispatch's view that no event offered them (the event
        missed, or its offer failed: a close whose retry_waiting met a Redis error is not
        made again). Nothing more while no team of the district is free; else the waiting
        incidents in offer order (the most urgent first, the longest waiting among equals)
        from just past `after`, SWEEP_LOOK at most (fewer with many teams free:
        SWEEP_CHECKS), and each one a free team would be sent to (_would_send: no search
        for the others; whether each team free was offered it read with the page, a few
        round trips a page however many teams are free) filled as a freed team's would be,
        under its lock, SWEEP_FILLS at most, and none a sweep tried in the last
        `again_after_s` (this replica's or another's: store.mark_swept); past the queue's
        end, on from its head. Where the
        next round looks on from: the last incident looked at when that bound stopped this
        one (a longer queue is looked through over several rounds), else None (the head).
        The lock and the claim rules keep two replicas' sweeps to one order per team."""
        free = await store.free_units(self.redis, district)
        budget = min(SWEEP_LOOK, SWEEP_CHECKS // max(1, len(free))) or 1
        looked = filled = 0
        wrapped = after is None
        while free and looked < budget:
            limit = min(WAITING_PAGE, budget - looked)
            page = await store.waiting(self.redis, district, after=after, limit=limit)
            looked += len(page)
            now = utcnow()
            # whether each team free was offered each incident, read with the page
            asked = {unit.team_id for unit in free}
            waiting, offered = await store.waiting_incidents(self.redis, district, page,
                                                             offered_to=sorted(asked))
            for inc in waiting:
                if not await self._sends_any(free, inc, now, asked=asked,
                                             offered=offered.get(inc["incident_id"], set())):
                    continue
                incident_id = inc["incident_id"]
                if not await store.mark_swept(self.redis, incident_id, for_s=again_after_s):
                    continue
                log.info("incident %s waits while a team is free: offered again by the sweep",
                         incident_id)
                with (in_incident_trace("waiting incident swept", inc.get("trace_ctx"),
                                        **{"lianfang.incident_id": incident_id}),
                      _odd_record_passed(incident_id)):
                    async with self._locked(incident_id):
                        await self._fill(incident_id)
                filled += 1
                free = await store.free_units(self.redis, district)
                if not free or filled >= SWEEP_FILLS:
                    return None
            if len(page) < limit:  # the end of the queue: on from its head, once
                if wrapped:
                    return None
                after, wrapped = None, True
            else:
                after = page[-1][1]
        return after if free else None

    async def _sends_any(self, free: list[domain.Unit], inc: dict[str, str], now: datetime,
                         *, asked: set[str], offered: set[str]) -> bool:
        """Whether _fill could send one of the `free` teams to the waiting incident.
        `offered`: those of the teams `asked` (read with the page) it was offered; a team
        freed since the page was read (the free teams are read again after each search) is
        asked here. The state of an incident short of a unit is read once, for the first
        team the look gets that far with, not once for each: with teams that may answer it
        and would not be sent (another volunteer is no escort), that was a read per team."""
        states: dict[str, store.IncidentState] = {}
        for unit in free:
            if await self._may_send(unit, inc, now, states=states, offered=(
                    unit.team_id in offered if unit.team_id in asked else None)):
                return True
            if inc["status"] in TERMINAL:  # taken off the queue by _would_send
                return False
        return False

    # --- the command room -------------------------------------------------------------

    async def assign(self, incident_id: str, team_id: str, *, reassign: bool = False,
                     by: str = "the command room",
                     may_change: Callable[[dict[str, str]], None] | None = None,
                     ) -> dict[str, str]:
        """The command room sends a team. With `reassign`, a team on another incident's order
        is taken off it first (`take_back`; that incident goes to its next candidate), both
        incidents locked meanwhile, so no other step can claim the team in between.
        `may_change(incident)` raises when the caller may not change that other incident
        (another district's: the team was sent there as reinforcement).

        A handed-over incident (no station team took it) goes to the police station's team
        named, as the station's hand-over order (_hand_over_by_hand): a task that occupies
        no team, so `reassign` takes it off nothing. A linked report the command room sends
        a team to is another event than the one it was linked to: it is unlinked first
        (_unlink), an incident of its own. Asked again after a failure that came after the
        unlink, it makes what that left undone (_unlink_unfinished: the order; the note on
        the incident it was linked to, also when only that note failed)."""
        inc = await store.get_incident(self.redis, incident_id)
        with in_incident_trace("command room assigns a team", inc.get("trace_ctx") if inc else None,
                               **{"lianfang.incident_id": incident_id,
                                  "lianfang.team_id": team_id}):
            if inc is not None and inc["status"] == "handed_over":
                async with self._locked(incident_id):
                    return await self._assign_or_hand_over(incident_id, team_id, by=by)
            unfinished = inc is not None and _unlink_unfinished(inc)
            if inc is not None and inc.get("unlinked_from"):
                # the incident it was linked to told, once (under that one's lock alone),
                # should the attempt that unlinked it have failed before or after its order
                await self._tell_unlinked(inc["unlinked_from"], incident_id,
                                          by=inc.get("unlinked_by") or by)
            try:
                return await self._assign_retrying(incident_id, team_id, reassign=reassign,
                                                   by=by, may_change=may_change)
            except ApiError:
                if inc is not None and (inc["status"] == "linked" or unfinished):
                    # Unlinked for this assignment (or by an attempt before it that
                    # failed), whose team another incident claimed before its order: an
                    # incident of its own now, dispatched as any (_fill does nothing while
                    # it is still linked).
                    async with self._locked(incident_id):
                        await self._fill(incident_id)
                raise

    async def _assign_retrying(self, incident_id: str, team_id: str, *, reassign: bool, by: str,
                               may_change: Callable[[dict[str, str]], None] | None,
                               ) -> dict[str, str]:
        # With reassign, round again when another incident's offer claimed the team
        # between the look at its claim and this one's (it was free then): take it off
        # that, as asked.
        for attempt in range(3 if reassign else 1):
            try:
                return await self._assign_once(incident_id, team_id, reassign=reassign,
                                               by=by, may_change=may_change)
            except ApiError as exc:
                if exc.status != 409 or attempt == 2 or not reassign:
                    raise
                holder = await store.claim_of(self.redis, team_id)
                held = await store.get_order(self.redis, holder) if holder else None
                if (held is None or held["incident_id"] == incident_id
                        or held["state"] not in domain.LIVE_ORDER_STATES):
                    raise
        raise AssertionError("unreachable")

    async def _assign_once(self, incident_id: str, team_id: str, *, reassign: bool, by: str,
                           may_change: Callable[[dict[str, str]], None] | None,
                           ) -> dict[str, str]:
        if reassign:
            holder = await store.claim_of(self.redis, team_id)
            held = await store.get_order(self.redis, holder) if holder else None
            if (held is not None and held["incident_id"] != incident_id
                    and held["state"] in domain.LIVE_ORDER_STATES):
                report = await store.get_incident(self.redis, incident_id)
                if (report is not None and report["status"] == "linked"
                        and report.get("linked_to") == held["incident_id"]):
                    # a report before the incident it is linked to, as its link is judged
                    # and its unlink tells that one: sorted, a step of the report waiting
                    # for that incident (held here) would hold what this one waits for
                    first, second = incident_id, held["incident_id"]
                else:
                    first, second = sorted((incident_id, held["incident_id"]))  # no deadlock
                # the incident a report was linked to (neither of the two), told of its
                # unlink once both are let go: a step holding it may wait for one of them
                told: list[str] = []
                try:
                    return await self._reassign_locked(
                        incident_id, team_id, held, first, second, by=by,
                        may_change=may_change, told=told)
                finally:
                    for parent in told:
                        await self._tell_unlinked(parent, incident_id, by=by)
        async with self._locked(incident_id):
            return await self._assign_or_hand_over(incident_id, team_id, by=by)

    async def _reassign_locked(self, incident_id: str, team_id: str, held: dict[str, str],
                               first: str, second: str, *, by: str,
                               may_change: Callable[[dict[str, str]], None] | None,
                               told: list[str]) -> dict[str, str]:
        """_assign_once's reassignment of the team of order `held` (another incident's),
        under the locks of `first` and `second` (the two incidents, in that order); the
        incident a report assigned was linked to, when neither, added to `told`."""
        async with self._locked(first), self._locked(second):
            # before the team is taken off
            inc, unit = await self._assignable(incident_id, team_id)
            if inc["status"] == "handed_over":  # since: a task, the team stays
                return await self._hand_over_by_hand(inc, unit, by=by)
            current = await store.get_order(self.redis, held["order_id"])
            other = await store.get_incident(self.redis, held["incident_id"])
            # The other incident's steps in its own trace, linked to this one's.
            in_other = functools.partial(
                in_incident_trace, "command room takes a team off for another",
                other.get("trace_ctx") if other else None,
                **{"lianfang.incident_id": held["incident_id"],
                   "lianfang.order_id": held["order_id"]})
            taking = current is not None and current["state"] in domain.LIVE_ORDER_STATES
            if taking and may_change is not None and other is not None:
                may_change(other)
            unlinked = None
            if inc["status"] == "linked":  # its team may come off the very incident
                parent_held = inc["linked_to"] == held["incident_id"]
                unlinked = await self._unlink(incident_id, by=by, note=None,
                                              tell=parent_held, parent_held=parent_held)
                if not parent_held:
                    told.append(unlinked)
            if taking:
                with in_other():
                    await self._take_back(
                        held["incident_id"], held["order_id"], by=by,
                        note=f"sent to incident {incident_id} instead", refill=False)
            # The team claimed here before the other incident's refill (a search
            # that takes a while), so no freed-team offer gives it to a third one
            # meanwhile; the other incident waits for its refill in the queue. Refilled
            # also when a third one claimed the team first (this assignment fails).
            try:
                return _unlinked_from(
                    await self._assign(incident_id, team_id, reassigning=True),
                    unlinked)
            finally:
                with in_other():
                    await self._fill(held["incident_id"])

    async def _assign_or_hand_over(self, incident_id: str, team_id: str, *,
                                   by: str) -> dict[str, str]:
        """Under the incident's lock: _assign, or for a handed-over incident
        _hand_over_by_hand."""
        inc, unit = await self._assignable(incident_id, team_id)
        if inc["status"] == "handed_over":
            return await self._hand_over_by_hand(inc, unit, by=by)
        if inc["status"] == "linked":
            # A team on another incident's order is the usual 409 (send it with reassign)
            # before the report is unlinked for it: the report stays as it was.
            holder = await store.claim_of(self.redis, team_id)
            held = await store.get_order(self.redis, holder) if holder else None
            if held is not None and held["state"] in domain.LIVE_ORDER_STATES:
                raise await self._not_assignable(incident_id, team_id, reassigning=False)
            unlinked = await self._unlink(incident_id, by=by, note=None)
            return _unlinked_from(await self._assign(incident_id, team_id), unlinked)
        return await self._assign(incident_id, team_id)

    async def unlink(self, incident_id: str, *, by: str,
                     note: str | None) -> tuple[dict[str, str], bool]:
        """The command room judges a linked report not a duplicate (two fights 150 m apart, a
        door alarm at the next building): an incident of its own, dispatched as any new one
        (_fill), as a report whose incident had ended is. Asked again, it unlinks nothing
        more, and makes what a failure may have left undone (the report's orders, the other
        incident told). That incident is told once the report's lock is let go: asked again,
        the report may have its team, which a reassignment back to that incident takes with
        both locks, that incident's first when its id sorts first. Returns the incident and
        whether this call unlinked it."""
        with in_incident_trace("command room unlinks a report",
                               await store.trace_context(self.redis, incident_id),
                               **{"lianfang.incident_id": incident_id}):
            async with self._locked(incident_id):
                inc = await store.get_incident(self.redis, incident_id)
                if inc is None:
                    raise not_found("incident")
                now = inc["status"] == "linked"
                if now:
                    _may_unlink(inc)
                    parent = await self._unlink(incident_id, by=by, note=note, tell=False)
                elif inc.get("unlinked_from"):
                    parent = inc["unlinked_from"]
                else:
                    raise conflict(f"the incident is {inc['status']}, not a linked report: "
                                   "nothing to unlink")
                await self._fill(incident_id)
                inc = await store.get_incident(self.redis, incident_id)
                assert inc is not None
            await self._tell_unlinked(parent, incident_id, by=inc.get("unlinked_by") or by)
            return inc, now

    async def _unlink(self, incident_id: str, *, by: str, note: str | None,
                      tell: bool = True, parent_held: bool = False) -> str:
        """Under the report's lock: the linked report made an incident of its own,
        `dispatching` (its orders the caller's to give: _fill, or a manual order) and in the
        queue of waiting incidents meanwhile, so that a failure before its orders leaves it
        to the next freed team, never to nobody, and to its `unlinked:` timer should no team
        be free (on_unlinked_due: unassigned and flagged, the other incident told, when the
        step died and nobody asked again); then, with `tell`, the incident it was
        linked to told, under that one's lock (taken after the report's, as a link is
        judged) unless the caller holds it (else the caller tells it: _tell_unlinked).
        Returns that incident's id."""
        state = await store.incident_state(self.redis, incident_id)
        inc = state.incident
        assert inc is not None and inc["status"] == "linked"
        parent = inc["linked_to"]
        inc["linked_to"] = ""  # its incident.updated: linked to nothing now

        async def unlinked(pipe: Pipeline) -> None:
            store.queue_incident_fields(pipe, incident_id, {
                "linked_to": "", "unlinked_from": parent, "unlinked_by": by})
            store.queue_link_unindexed(pipe, inc)  # no longer among that incident's reports
            store.queue_cancel(pipe, f"link:{incident_id}")  # no judging the link again
            self._queue_waiting(pipe, inc)
            store.queue_schedule(pipe, f"unlinked:{incident_id}",
                                 utcnow() + UNLINK_FINISHED_WITHIN)

        await self._emit(incident_id, TimelineEntry(
            kind="unlinked", **entry_detail("not_a_duplicate", parent=parent, by=by),
            note=note or None), status="dispatching", state=state, also=unlinked)
        if tell:
            await self._tell_unlinked(parent, incident_id, by=by, held=parent_held)
        return parent

    async def _tell_unlinked(self, parent: str, report: str, *, by: str,
                             held: bool = False) -> None:
        """A note on the incident a report was linked to that the report is not of it; once
        (asked again, the note there is not put again). Nothing for an incident dispatch
        never received, or whose record was archived."""
        detail = entry_detail("report_not_a_duplicate", report=report, by=by)

        async def told() -> bool:
            return any(e.get("kind") == "note" and e.get("detail") == detail["detail"]
                       for e in await store.timeline(self.redis, parent))

        if not held and await told():  # told before: that incident's lock not waited for
            return
        async with contextlib.nullcontext() if held else self._locked(parent):
            state = await store.incident_state(self.redis, parent)
            other = state.incident
            if other is None or other.get("archived_at"):
                return
            if await told():
                return
            await self._emit(parent, TimelineEntry(kind="note", **detail),
                             status=other["status"], state=state)

    async def on_unlinked_due(self, incident_id: str) -> None:
        """A report the command room unlinked, UNLINK_FINISHED_WITHIN after the unlink's
        write: one still `dispatching` (its step died after that write, and nobody asked
        again) is dispatched as any (_fill: a team, or unassigned and flagged for the
        command room, where it waited unflagged for a freed team); and the incident it was
        linked to is told, once, whatever failed before (after the report's lock is let go,
        as unlink does). An unlink finished is left as it is."""
        async with self._locked(incident_id):
            state = await store.incident_state(self.redis, incident_id)
            inc = state.incident
            if inc is None or not inc.get("unlinked_from"):
                return
            if _unlink_unfinished(inc):
                log.warning("incident %s unlinked and never given its orders (its step "
                            "stopped after the unlink): dispatched now", incident_id)
                await self._fill(incident_id, state)
        await self._tell_unlinked(inc["unlinked_from"], incident_id,
                                  by=inc.get("unlinked_by") or "the command room")

    async def take_back(self, order_id: str, *, by: str,
                        note: str | None) -> tuple[dict[str, str], bool]:
        """The command room takes an order back (its team is wanted elsewhere, or cannot go):
        order.withdrawn (`reassigned`) ends it on the team's phones and frees the team; the
        incident goes to its next candidate (never the same team again) and the team to the
        incidents waiting for one. Asked again, it withdraws nothing more. Returns the order
        and whether this call withdrew it, judged under the incident's lock: not when it
        was withdrawn before (asked again, or the close or a resolution got the lock first
        while this one waited for it)."""
        order = await store.get_order(self.redis, order_id)
        if order is None:
            raise not_found("order")
        incident_id = order["incident_id"]
        with in_incident_trace("command room takes an order back",
                               await store.trace_context(self.redis, incident_id),
                               **{"lianfang.incident_id": incident_id,
                                  "lianfang.order_id": order_id}):
            async with self._locked(incident_id):
                before = await store.get_order(self.redis, order_id)
                order, district = await self._take_back(incident_id, order_id, by=by,
                                                        note=note)
            await self.retry_waiting(district, freed=order["team_id"])
            await self._offer_backups_of(district, order)
        return order, before is not None and before["state"] in domain.LIVE_ORDER_STATES

    async def _offer_backups_of(self, district: str, order: dict[str, str]) -> None:
        """Once the incident's lock is released: the teams of the backups withdrawn with the
        station order they came for (_station_declined), offered to the incidents waiting
        for one, as a close's teams are (volunteers says nothing of a team it never said
        busy); nothing for an emergency's order, whose backups stay with the incident."""
        if order.get("kind") not in STATION_KINDS:
            return
        for backup in await store.orders_of(self.redis, order["incident_id"]):
            if backup.get("for_order") == order["order_id"] and backup["state"] == "withdrawn":
                await self.retry_waiting(district, freed=backup["team_id"])

    async def _take_back(self, incident_id: str, order_id: str, *, by: str,
                         note: str | None, refill: bool = True,
                         offer_again: bool = False) -> tuple[dict[str, str], str]:
        """Under the incident's lock: the order withdrawn with its timeline entry, then the
        incident filled again (as a missed deadline's withdrawal is) unless the caller
        does that itself (`refill`). Its team is never offered the incident again, unless
        `offer_again` (dispatch's own take-back of a team that went off shift)."""
        state = await store.incident_state(self.redis, incident_id)
        inc = state.incident
        order = next((o for o in state.orders if o["order_id"] == order_id), None)
        if inc is None or order is None:
            raise not_found("order")
        if order["state"] in domain.LIVE_ORDER_STATES:
            await self._taken_back(state, order, detail=entry_detail("taken_back", by=by),
                                   note=note, offer_again=offer_again)
        elif order["state"] != "withdrawn":
            raise conflict(f"the order is {order['state']}: only a live order can be taken back")
        if order.get("kind") in STATION_KINDS:
            # The station still owes it: another of its teams, or the flag and the retry
            # (as a refusal); a station order is never refilled as an emergency's.
            await self._station_declined(state, order)
            return order, inc["district"]
        if refill:
            await self._fill(incident_id, state)
        if order.get("kind") == "reinforcement":  # the team that asked still needs one
            await self._backup_again(state, order)
        return order, inc["district"]

    async def _taken_back(self, state: store.IncidentState, order: dict[str, str], *,
                          detail: Detail, note: str | None = None,
                          marks: dict[str, str] | None = None,
                          offer_again: bool = False,
                          barred_by: tuple[str, ...] = ()) -> None:
        """A live order withdrawn by the command room's decision (order.withdrawn,
        `reassigned`): the order's state (with `marks`, other fields kept on it), its
        deadline, the event, the timeline entry and its team's claim released, in one
        write; with `offer_again`, the team's place among the teams never offered the
        incident again taken off in the same write. `barred_by`: the incident's flags that
        take a volunteer team off it (a weapon), which its phones are told (notify), so that
        volunteers on their way or on scene learn why and leave."""
        inc = state.incident
        assert inc is not None
        order_id = order["order_id"]
        order["state"] = "withdrawn"
        order.update(marks or {})
        if offer_again:
            state.offered.discard(order["team_id"])

        station = order.get("kind") in STATION_KINDS

        async def withdrawn(pipe: Pipeline) -> None:
            store.queue_order_change(pipe, order_id, {"state": "withdrawn",
                                                      "withdrawn_at": utcnow().isoformat(),
                                                      **(marks or {})})
            store.queue_cancel(pipe, f"ack:{order_id}")
            if order.get("kind") == "followup":  # its time to answer (on_visit_unanswered_due)
                store.queue_cancel(pipe, f"visit:{order_id}")
            await queue_publish(pipe, streams.ORDER_WITHDRAWN,
                                self._order_withdrawn(inc, order, "reassigned",
                                                      barred_by=barred_by))
            if not station:  # a station's task is not an emergency to refill
                self._queue_waiting(pipe, inc)
            if offer_again:
                store.queue_offer_again(pipe, incident_id=inc["incident_id"],
                                        team_id=order["team_id"])

        await self._emit(inc["incident_id"], TimelineEntry(
            kind="withdrawn", team_id=order["team_id"], order_id=order_id, **detail,
            note=note or None), state=state,
            also=self._station_declining(inc, order, withdrawn) if station else withdrawn,
            release_claim=(order["team_id"], order_id))

    async def revise(self, incident_id: str, *, priority: str | None, add_flags: tuple[str, ...],
                     note: str | None, by: str) -> tuple[dict[str, str], list[dict[str, str]]]:
        """The command room learns more (the caller rings back: he has a knife): a priority
        and flags. A flag that raises a report to P1 does so here too unless a priority is
        given; a flag that bars volunteers takes their teams off it (never sent into
        violence); then the incident gets the units its priority and flags now want. Asked
        again, the revision is not written twice, and what may not have followed it (a crash
        in between) is made: volunteers still on it taken off, the incident filled. Returns
        the incident and the orders taken back."""
        with in_incident_trace("command room revises an incident",
                               await store.trace_context(self.redis, incident_id),
                               **{"lianfang.incident_id": incident_id}):
            async with self._locked(incident_id):
                state = await store.incident_state(self.redis, incident_id)
                inc = state.incident
                if inc is None:
                    raise not_found("incident")
                if inc["status"] in TERMINAL:
                    raise conflict(f"the incident is {inc['status']}; only an open incident "
                                   "is revised")
                off = await self._revised(state, priority=priority, add_flags=add_flags,
                                          note=note, by=by)
            for order in off:
                await self.retry_waiting(inc["district"], freed=order["team_id"])
        return inc, off

    async def _revised(self, state: store.IncidentState, *, priority: str | None,
                       add_flags: tuple[str, ...], note: str | None, by: str,
                       report: str | None = None,
                       words: str | None = None) -> list[dict[str, str]]:
        """revise's work on an open incident, under its lock: the orders taken back (their
        teams to be offered to the waiting incidents once the lock is released). `report`:
        the linked report revising it (`by` names it); `words`: that report's description,
        when it is its reporting system's follow-up: added to the incident's (a line of its
        own, once per report: `follow_ups_told`), and sent to the police teams' orders (need
        to know: no other team's order carries a description)."""
        inc = state.incident
        assert inc is not None
        incident_id = inc["incident_id"]
        old_flags: list[str] = json.loads(inc.get("flags") or "[]")
        added = [f for f in normalise_flags(add_flags) if f not in old_flags]
        raised = any(f in self.policy.raise_to_p1_flags for f in added)
        new_priority = priority or ("P1" if raised else inc["priority"])
        what = ({"old": inc["priority"], "new": new_priority}
                if new_priority != inc["priority"] else {})
        if added:
            what["flags"] = ", ".join(added)
        flags = [*old_flags, *added]
        changes = {"priority": new_priority, "flags": json.dumps(flags)}
        told: list[str] = json.loads(inc.get("follow_ups_told") or "[]")
        described = bool(words and report and report not in told)
        if described:
            changes["description"] = "\n".join(x for x in (inc.get("description"), words) if x)
            changes["follow_ups_told"] = json.dumps([*told, report])
        inc.update(changes)
        barring = [f for f in flags if f in self.policy.bar_volunteers_flags]
        live = [o for o in state.orders if o["state"] in domain.LIVE_ORDER_STATES]
        off = [o for o in live if barring and (o["agency_kind"] == "volunteer"
                                               or await self._now_volunteers(o))]
        staying = [o for o in live if o not in off]
        # An offer not yet acknowledged, of an incident now more urgent, gets the new
        # priority's deadline from its issue, never a later one than it had, and never one
        # its team cannot meet: at least half the new deadline from now (the phone hears of
        # it now; an offer 40 s old raised to P1 is not timed out on the spot, a routing
        # timeout and a volunteer shift's penalty it could not avoid). An order sent late
        # counts from when it was sent, as its deadline did (_queue_order_issued).
        now = utcnow()
        window = timedelta(seconds=self.policy.deadlines_s[new_priority])
        sooner = {o["order_id"]: deadline for o in staying
                  if o["state"] == "offered" and o.get("ack_by")
                  and (deadline := max(datetime.fromisoformat(o.get("sent_late_at")
                                                              or o["issued_at"]) + window,
                                       now + window / 2))
                  < datetime.fromisoformat(o["ack_by"])}

        async def revised(pipe: Pipeline) -> None:
            store.queue_incident_fields(pipe, incident_id, changes)
            for order in staying:  # told, with the revision
                police = order["agency_kind"] == "police"
                if not what and not police:
                    continue  # only words, which this team may not read: nothing to tell
                ack_by = sooner.get(order["order_id"])
                if ack_by is not None:
                    order["ack_by"] = ack_by.isoformat()
                    store.queue_order_change(pipe, order["order_id"],
                                             {"ack_by": order["ack_by"]})
                    store.queue_schedule(pipe, f"ack:{order['order_id']}", ack_by)
                await queue_publish(pipe, streams.ORDER_AMENDED, OrderAmended(
                    event_id=f"amended-{order['order_id']}-{inc.get('seq') or 0}",
                    district=inc["district"], order_id=order["order_id"],
                    incident_id=incident_id, team_id=order["team_id"],
                    priority=new_priority, flags=tuple(flags),
                    ack_by=datetime.fromisoformat(order["ack_by"])
                    if order.get("ack_by") else None,
                    description=changes["description"] if described and police else None))

        if what or described:
            if what:
                changed = "_".join(part for part, there in (("priority", "new" in what),
                                                            ("flags", "flags" in what)) if there)
                detail = (entry_detail(f"revised_{changed}_by_report", **what, report=report)
                          if report else entry_detail(f"revised_{changed}", **what, by=by))
            else:
                detail = entry_detail("revised_description_by_report", report=report)
            await self._emit(incident_id, TimelineEntry(
                kind="revised", **detail, note=note or None), state=state, also=revised)
        elif note and not any(e.get("kind") == "revised" and e.get("note") == note
                              and str(e.get("detail") or "").endswith(f" by {by}")
                              for e in await store.timeline(self.redis, incident_id)):
            # Nothing new (a linked report or a colleague made the change first): what was
            # learnt is still put on the timeline, once (not again when asked again).
            already = (entry_detail("revised_nothing_flagged", priority=new_priority,
                                    flags=", ".join(flags), by=by) if flags
                       else entry_detail("revised_nothing", priority=new_priority, by=by))
            await self._emit(incident_id, TimelineEntry(kind="revised", **already, note=note),
                             status=inc["status"], state=state)
        for order in off:
            # one moved into volunteers since its offer marked so (its backup replaced below)
            moved = {"team_moved": "1"} if order["agency_kind"] != "volunteer" else None
            await self._taken_back(state, order, marks=moved, detail=entry_detail(
                "volunteers_barred", flags=", ".join(barring)), barred_by=tuple(barring))
        await self._fill(incident_id, state)
        # A volunteer backup the flags took off: the team that asked for it is still there,
        # another backup, as after a take-back (_fill sends none while the incident has the
        # units it wants). Also one taken off by this revision's attempt that failed after
        # (asked again, `off` is empty): each found by its request, never sent twice.
        for order in state.orders:
            if (barring and order.get("kind") == "reinforcement"
                    and order["state"] == "withdrawn"
                    and (order["agency_kind"] == "volunteer"
                         or order.get("team_moved") == "1")):
                await self._backup_again(state, order)
        return off

    async def _now_volunteers(self, order: dict[str, str]) -> bool:
        """Whether an emergency order sent to its team as police or security now holds a
        volunteer team (a roster import moved it into a volunteer agency since)."""
        if order.get("kind") not in CLAIMING_KINDS:
            return False
        unit = await store.get_unit(self.redis, order["team_id"])
        return unit is not None and unit.agency_kind == "volunteer"

    async def _assignable(self, incident_id: str,
                          team_id: str) -> tuple[dict[str, str], domain.Unit]:
        """The open (or handed-over) incident and the known team of an assignment; else
        why not. A hand-over goes to a police station's team only."""
        inc = await store.get_incident(self.redis, incident_id)
        if inc is None:
            raise not_found("incident")
        unit = await store.get_unit(self.redis, team_id)
        if unit is None:
            raise ApiError(422, "invalid_field", "team_id is not a known team", "team_id")
        if inc["status"] == "handed_over":
            if unit.agency_kind != "police" or (unit.agency_role or "station") != "station":
                kind = unit.agency_kind + (f":{unit.agency_role}" if unit.agency_role else "")
                raise conflict(f"the incident is handed_over: a hand-over goes to a police "
                               f"station's team, and team {team_id} is {kind}")
            return inc, unit
        if inc["status"] == "linked":
            _may_unlink(inc)  # sent a team, it is unlinked: an incident of its own
        elif inc["status"] in TERMINAL:
            raise conflict(f"the incident is {inc['status']}; only open, handed-over or "
                           "linked incidents can be assigned")
        flags = json.loads(inc.get("flags") or "[]")
        if unit.agency_kind == "volunteer" and domain.volunteers_barred(flags, self.policy):
            barring = ", ".join(f for f in flags if f in self.policy.bar_volunteers_flags)
            raise conflict(f"the incident is flagged {barring}; volunteer teams are never "
                           "sent to it: assign a police or security team")
        return inc, unit

    async def _assign(self, incident_id: str, team_id: str, *,
                      reassigning: bool = False) -> dict[str, str]:
        """Under the incident's lock: a manual order to the team (the same one if this
        assignment is asked again) of an open incident. `reassigning`: the team was just
        taken off another incident's order for this (a conflict now is another's claim in
        between)."""
        inc, unit = await self._assignable(incident_id, team_id)
        if inc["status"] == "handed_over":  # _assign_or_hand_over's, not a manual order
            raise conflict("the incident was handed over meanwhile; ask again")
        holder = await store.claim_of(self.redis, team_id)
        held = await store.get_order(self.redis, holder) if holder else None
        again = (held is not None and held["incident_id"] == incident_id
                 and held.get("kind") == "manual"
                 and held["state"] in domain.LIVE_ORDER_STATES)
        if again:
            # This assignment asked again (its answer lost, or it failed after the
            # offer): the same order, announced if it was not, and no conflict.
            assert held is not None
            order = held
            if order.get("published") != "1":
                await self._announce(inc, order)
        else:
            offered = await self._offer_and_announce(inc, unit, kind="manual",
                                                     eta_s=self._travel_time(inc, unit),
                                                     require_available=False)
            if offered is None:
                raise await self._not_assignable(incident_id, team_id, reassigning=reassigning)
            order = offered
        order_id = order["order_id"]
        # Asked again after a colleague's assignment (`manual_order` now names theirs): the
        # timeline has this one's entry already.
        recorded = inc.get("manual_order") == order_id or (again and any(
            e.get("kind") == "manual_assign" and e.get("order_id") == order_id
            for e in await store.timeline(self.redis, incident_id)))
        # Still short with the team sent (a P1 fight given one team by hand wants its
        # second; volunteers sent by hand to a P1 want their escort): it stays in the
        # queue, and the missing unit is looked for at once (_fill), not left to the next
        # freed team or the sweep while a team that may go is free. Only then: an
        # incident the team completes costs no search. Asked again, only the search (a
        # failure after the entry may have left it unmade; _fill sends nothing twice).
        state = await store.incident_state(self.redis, incident_id)
        short = domain.short_of_units(self._facts(inc, set()), self.policy,
                                      *_units_and_alongside(state.orders))
        if not recorded:
            async def recorded(pipe: Pipeline) -> None:
                if short:
                    self._queue_waiting(pipe, inc)
                else:
                    store.queue_not_waiting(pipe, district=inc["district"],
                                            incident_id=incident_id)
                store.queue_incident_fields(pipe, incident_id, {"manual_order": order_id})

            await self._emit(incident_id, TimelineEntry(
                kind="manual_assign", team_id=team_id, order_id=order_id,
                **entry_detail("assigned_by_hand")), also=recorded)
        if short:
            await self._fill(incident_id)
        return order

    def _travel_time(self, inc: dict[str, str], unit: domain.Unit) -> float | None:
        """The team's travel time to the incident from its position, as dispatch's own
        choice counts it (domain.travel_time_s; by_hand lists it so): a team sent by hand has
        its arrival counted too (the order's `eta_s`, the console's "arriving in about 4
        min"). None without a position that counts (none, or older than fix_max_age_s:
        where the team was half an hour ago says nothing of when it will be there)."""
        if unit.lat is None or unit.lon is None or unit.fix_at is None:
            return None
        if utcnow() - unit.fix_at > timedelta(seconds=self.policy.fix_max_age_s):
            return None
        distance = domain.distance_m(float(inc["lat"]), float(inc["lon"]), unit.lat, unit.lon)
        return domain.travel_time_s(distance, unit.mode, self.policy)

    async def _hand_over_by_hand(self, inc: dict[str, str], unit: domain.Unit, *,
                                 by: str) -> dict[str, str]:
        """Under the incident's lock: the command room gives a hand-over (flagged: no station
        team on shift, or its teams declined) to a police station's team, as on_handover_due
        would once one was on shift: its hand-over order, recorded, the flag and the retry
        gone. The same order when asked again (or when that team has it already); a
        conflict naming the live order while another team has it."""
        incident_id = inc["incident_id"]
        state = await store.incident_state(self.redis, incident_id)
        live = next((o for o in state.orders if o.get("kind") == "handover"
                     and o["state"] in domain.LIVE_ORDER_STATES), None)
        if live is not None and live["team_id"] != unit.team_id:
            raise conflict(f"the hand-over is with team {live['team_id']} (order "
                           f"{live['order_id']}, {live['state']}); take that order back first "
                           "to give it to another team")
        handed = _handed_over_by(state.orders)
        order = await self._station_order(state, unit.agency_id, by=handed,
                                          note=inc.get("handover_note") or None, team=unit)
        if order is None:  # the order's script refused it: the step's lock was lost
            raise conflict(f"team {unit.team_id} could not be given the hand-over; ask again")
        await self._record_station_order(inc, order, unit.agency_id, by=by)
        return order

    async def _not_assignable(self, incident_id: str, team_id: str, *,
                              reassigning: bool) -> ApiError:
        """The conflict of a manual order whose team another order holds, saying where."""
        holder = await store.claim_of(self.redis, team_id)
        held = await store.get_order(self.redis, holder) if holder else None
        if held is None:  # freed since: the claim was lost to a step that has ended
            return conflict(f"team {team_id} was being given another order; ask again")
        where = f"order {held['order_id']}, {held['state']}"
        if held["incident_id"] == incident_id:
            return conflict(f"team {team_id} is already on this incident ({where}): "
                            "nothing to assign")
        if reassigning:
            return conflict(f"team {team_id} was just given to incident {held['incident_id']} "
                            f"({where}); ask again to move it")
        return conflict(f"team {team_id} holds open order {held['order_id']} ({held['state']}) "
                        f"of incident {held['incident_id']}; send it with \"reassign\": true "
                        "to take it off that order first")

    async def attach_evidence(self, incident_id: str, evidence: tuple[Evidence, ...], *,
                              note: str | None, by: str) -> tuple[Evidence, ...]:
        """Records kept elsewhere (body-camera video docked after the shift, photos) put on
        the incident's timeline, also once it has ended; a record already there (the same
        kind and reference, with an answer or an earlier attachment) is not put again, so
        the command room's retry adds nothing. Returns the records newly attached."""
        async with self._locked(incident_id):
            state = await store.incident_state(self.redis, incident_id)
            inc = state.incident
            if inc is None:
                raise not_found("incident")
            there = {(e.kind, e.ref) for e in await self._records_of(incident_id)}
            new: list[Evidence] = []
            for record in evidence:
                if (record.kind, record.ref) not in there:
                    there.add((record.kind, record.ref))
                    new.append(record)
            if new:
                await self._emit(incident_id, TimelineEntry(
                    kind="evidence", **entry_detail("attached", by=by), note=note or None,
                    evidence=tuple(new)), status=inc["status"], state=state)
            return tuple(new)

    # --- a reporting system asks to cancel its report ------------------------------------

    async def on_cancel_requested(self, event: IncidentCancelRequested) -> None:
        """A reporting system asks to cancel its report: nothing is cancelled and no team is
        told (a retraction may be coerced, an alert retracted may still need a look). The
        incident is flagged `cancel_requested` for the command room, which closes it or
        keeps it open with a remark (`remark`); its timeline carries the request, the
        system's words as its note (the command room's: intake drops notes). On an incident
        that has ended by now (intake's view follows dispatch's by a moment) it is noted
        unflagged. A report dispatch finds linked (sent on elsewhere since intake looked)
        passes it to the incident it is linked to, as intake does."""
        done = f"cancel:{event.event_id}"
        target = event.incident_id
        for _ in range(MAX_SENT_ON + 1):
            async with self._locked_state(target, seen=done) as (held, state):
                if state.seen:
                    return
                inc = state.incident
                if inc is None:
                    # its report not handled yet (two streams, read apart), or lost: asked
                    # again by the reclaimer, then dead-lettered for an administrator
                    raise ReportNotYetHandled(target)
                if inc["status"] == "linked" and inc.get("linked_to"):
                    target = inc["linked_to"]
                    continue
                args = {} if event.report_id == target else {"report": event.report_id}
                if inc["status"] in TERMINAL:
                    code, mark = "cancel_requested_ended", {}
                else:
                    code = "cancel_requested_linked" if args else "cancel_requested"
                    mark = {"cancel_requested": event.requested_at.isoformat()}

                async def flagged(pipe: Pipeline, mark: dict[str, str] = mark,
                                  incident_id: str = target) -> None:
                    if mark:
                        store.queue_incident_fields(pipe, incident_id, mark)

                inc.update(mark)
                await self._emit(target, TimelineEntry(
                    at=event.occurred_at, kind="cancel_request", **entry_detail(code, **args),
                    note=event.reason), status=inc["status"], state=state, also=flagged,
                    end=StepEnd(held, done))
                return
        log.warning("cancel request for %s: its links go on past %d hops; noted nowhere",
                    event.incident_id, MAX_SENT_ON)

    async def remark(self, incident_id: str, *, note: str, by: str) -> bool:
        """The command room's own words on the timeline ("called the caller back: no answer"),
        also once the incident has ended; the same words by the same person already there
        (a retry) are not put again. False: they were there."""
        async with self._locked(incident_id):
            state = await store.incident_state(self.redis, incident_id)
            inc = state.incident
            if inc is None:
                raise not_found("incident")
            # A reporting system's request to cancel standing (flagged `cancel_requested`):
            # the command room's words answer it, the incident kept open (its close is the
            # other answer); the flag goes, and the entry says so to the reporting system.
            answers = bool(inc.get("cancel_requested")) and inc["status"] not in TERMINAL
            detail = entry_detail("remark_keeps_open" if answers else "remark", by=by)
            if any(e.get("kind") == "remark"
                   and e.get("detail") in (detail["detail"],
                                           entry_detail("remark", by=by)["detail"],
                                           entry_detail("remark_keeps_open", by=by)["detail"])
                   and e.get("note") == note
                   for e in await store.timeline(self.redis, incident_id)):
                return False

            async def answered(pipe: Pipeline) -> None:
                if answers:
                    store.queue_incident_fields(pipe, incident_id, {"cancel_requested": ""})

            if answers:
                inc["cancel_requested"] = ""
            await self._emit(incident_id, TimelineEntry(kind="remark", **detail, note=note),
                             status=inc["status"], state=state, also=answered)
            return True

    async def close(self, incident_id: str, *, by: str) -> None:
        """The command room closes the incident: its live orders withdrawn, and their teams,
        once its lock is released, offered to the incidents waiting for one (as a take-back's
        team is). Volunteers' `available` offers them too, but it says nothing when it never
        said them busy (it was away), and dispatch's own view has them free from the close."""
        with in_incident_trace("command room closes an incident",
                               await store.trace_context(self.redis, incident_id),
                               **{"lianfang.incident_id": incident_id}):
            district, freed = await self._close(incident_id, by=by)
            for team_id in freed:
                await self.retry_waiting(district, freed=team_id)

    async def _close(self, incident_id: str, *, by: str) -> tuple[str, list[str]]:
        """Under the incident's lock: the close; its district and the teams it freed."""
        freed: list[str] = []
        async with self._locked(incident_id):
            inc = await store.get_incident(self.redis, incident_id)
            if inc is None:
                raise not_found("incident")
            # A linked report is its incident's to close, but one given up on before its
            # link was judged (flagged: _link_unjudged), which the command room found of
            # that incident after all: its close is the only way off the board that sends
            # no team to a duplicate (an assignment or an unlink would); a replay after
            # finds it closed.
            if inc["status"] == "closed" or (inc["status"] == "linked"
                                             and not await self._link_unjudged(inc)):
                raise conflict(f"the incident is {inc['status']} already")
            closed_by = entry_detail("stood_down_closed", by=by)
            for order in await store.orders_of(self.redis, incident_id):
                if order["state"] in domain.LIVE_ORDER_STATES:
                    await self._withdraw(inc, order, reason="closed", why=closed_by)
                    if order.get("kind") in CLAIMING_KINDS:
                        freed.append(order["team_id"])
            await store.remove_waiting(self.redis, district=inc["district"],
                                       incident_id=incident_id)
            await store.cancel(self.redis, f"followup:{incident_id}")

            # With the status, in its one write: a close that failed after the status was
            # written could not be made again (closed already), and incident.closed, which
            # ends the caller's and the teams' views, would never come.
            # a linked report closed as what it was, a duplicate: the review counts it as
            # one (review.duplicate), never as an incident of its own
            duplicate = {"closed_as_duplicate": "1"} if inc["status"] == "linked" else {}

            async def closing(pipe: Pipeline) -> None:
                store.queue_incident_fields(pipe, incident_id, {
                    "closed_at": utcnow().isoformat(), "closed_by": by, **duplicate})
                await queue_publish(pipe, streams.INCIDENT_CLOSED, IncidentClosed(
                    event_id=f"closed-{incident_id}-cmd", district=inc["district"],
                    incident_id=incident_id, final_status="closed", category=inc["category"]))

            await self._emit(incident_id, TimelineEntry(kind="closed",
                                                        **entry_detail("closed", by=by)),
                             status="closed", also=closing)
        return inc["district"], freed
