"""The command room's API: the board, one incident with its timeline, assign, unlink, close, KPIs."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError
from redis.asyncio import Redis

from shared import audit, dead_letters, streams
from shared.districts import known_districts, require_known_districts, unknown_district
from shared.events import (
    MAX_EVIDENCE,
    AgencyKind,
    DistrictName,
    Evidence,
    IncidentStatus,
    Priority,
    UnitState,
    new_id,
)
from shared.http import (
    ApiError,
    InputFirstRoute,
    Principal,
    TryAgain,
    conflict,
    forbidden,
    not_found,
    require,
    when_not_answered,
)
from shared.metrics import COUNTED_LAG
from shared.timezones import CalendarDate
from shared.tokens import DESK_TOKEN_PREFIX, new_token

from . import agency, by_hand, domain, paging, pipeline, records, review, roll_call, store
from .config import Settings
from .engine import Dispatcher
from .linked import (
    LINK_CODES,
    LINKED_FIELDS,
    is_linked_here,
    linked_reports,
    report_source,
    timeline_with_sources,
)
from .zones import ZonesUnavailable

log = logging.getLogger(__name__)
CommandRoom = Annotated[Principal, Depends(require("admin", "dispatcher"))]
# The inspector (DOMAIN.md: checks every case online) reads what the command room reads and
# changes nothing.
Reader = Annotated[Principal, Depends(require("admin", "dispatcher", "inspector"))]
# An agency's own desk (a security company, a police station: role "agency") reads, of the
# routes that take this caller, its own teams and their orders only: each such route gives
# it a view of its own (`who.kind == "agency"`), never the command room's. Every other route
# refuses it (403), as it refuses any kind it does not name.
ReaderOrAgency = Annotated[Principal, Depends(require("admin", "dispatcher", "inspector",
                                                      "agency"))]
# people bound to their districts: a command room's, or an agency's of its own
DESK_KINDS = ("dispatcher", "inspector", "agency")
DISPATCHER_TOKEN_PREFIX = DESK_TOKEN_PREFIX  # the command room's
Admin = Annotated[Principal, Depends(require("admin"))]
MAX_PAGE = 500
# The board reads its index this many incidents at a time while it filters, and looks at
# no more than BOARD_SCAN for one page (~0.1 s of dispatch's CPU and ~35 ms of Redis's, in
# slices of ~2 ms): a hunt through months of reports answers what it found with `next` and
# `scanned_to`, and is asked on from there.
BOARD_BATCH = 500
BOARD_SCAN = 10_000
Problem = Literal["routing_timeout", "filing_overdue", "declined", "unassigned_late"]
MAX_PERIOD = timedelta(days=366)  # of the KPIs and the heat map: a year at most
# The dates a review may ask for: their midnights, at any offset (-12:00 to +14:00), stay
# within review.EARLIEST and LATEST.
FIRST_DAY, LAST_DAY = date(1970, 1, 2), date(9998, 12, 30)
BOARD_PERIOD = timedelta(days=30)  # what the board lists unless `since` is asked
# The dead-lettered reports not handled are read newest first this many at a time, those
# the caller may see kept while reading, and no more than NOT_HANDLED_SCAN looked at for
# one page: another district's flood of lost reports answers what was found with `next`
# and `scanned_to`, and is asked on from there.
NOT_HANDLED_BATCH = 500
NOT_HANDLED_SCAN = 5_000
# The roster's districts, read from volunteers for the admin's requests naming a district
# (the console reads several every 3 s), are held ROSTER_FRESH_S; a district not among them
# is asked for again at once (its roster may have been imported a moment ago). Volunteers
# not answering within ROSTER_TIMEOUT_S: the request goes on unchecked, and volunteers is
# not asked again for ROSTER_FRESH_S (a frozen one would hold back every read of the board).
ROSTER_FRESH_S = 30.0
ROSTER_TIMEOUT_S = 2.0
# A period is [since, until): two that meet (yesterday, today) count an incident once.
SINCE = "the period's start, included (ISO 8601 with its offset)"
UNTIL = ("the period's end, left out: an incident reported at exactly `until` is the next "
         "period's (ISO 8601 with its offset; now unless asked)")
BOARD_DESCRIPTION = (
    "Incidents newest first by the time reported, or with `order=received` by the time "
    "dispatch received them (the same instant: the greater id first), up to "
    "`limit`. Each row's `received_at` is when dispatch received the report, and "
    f"`late_by_s` how many seconds after `reported_at` that was when more than "
    f"{domain.LATE_REPORT.total_seconds() / 60:g} minutes (null otherwise): a report that "
    "reached dispatch that late (a reporting system's queue stuck) is of a scene that old; "
    "its timeline says so too. Filters are applied while reading the incidents' index (a district's own, "
    "or each of the caller's districts), however far back the period goes, until `limit` "
    f"rows are found, the period is read through or {BOARD_SCAN} incidents have been looked at. "
    "`next`: a cursor to the rest (null once the period is read through); pass it as "
    "`after` with the same filters for the next page. `more`: whether `next` is given. "
    "`scanned_to`: when the look-up budget ended the page before `limit` rows were "
    "found, the report time it reached (incidents reported before it were not looked at: "
    "ask on with `after`); null otherwise. "
    "Each row's `reports_linked`: the reports linked to it now (duplicates joined to it: "
    "`count`), from how many sources (`sources`: a reporting system, a patrol member, and "
    "within a system each caller it names) and how many of those are not its own "
    "reporter's (`other_sources`: a caller among a camera's repeats); null when none (and "
    "for reports linked before 2026-12-08, which its view lists). "
    "An agency desk's board: the incidents of its districts its own teams were given an "
    "order of, each as GET /v1/incidents/{id} answers that desk (its own orders, no caller "
    "nor description), by `district`, `since`, `until`, `after`, `limit` and `order`; the "
    "command room's filters (`status`, `flagged`, `problem`, `supervisor`, `ref`) are a 403 "
    "naming the filter.")
NOT_HANDLED_DESCRIPTION = (
    "The dead-lettered incident.reported of the caller's districts (or `district`; every "
    "district for the admin) whose incident dispatch does not know, newest first by when "
    "they were dead-lettered, up to `limit`. The districts are kept while reading the dead "
    "letters, however many of other districts came since, until `limit` reports are "
    f"found, the dead letters are read through or {NOT_HANDLED_SCAN} have been looked at. "
    "`next`: a cursor to the older ones (null once read through); pass it as `after` with "
    "the same `district` for the next page. `more`: whether `next` is given. "
    "`scanned_to`: when the look-up budget ended the page before `limit` reports were "
    "found, the time the letters looked at reach back to (those dead-lettered before it "
    "were not looked at: ask on with `after`); null otherwise. A report that does not read "
    "names no district: it is listed to every desk, only as lost and when (nothing of what "
    "or where); none shows the caller. An administrator replays them once fixed (GET "
    "/v1/admin/dead-letters). A report dead-lettered after its incident was made is on the "
    "board, flagged.")
TEAM_RECORD_DESCRIPTION = (
    "The orders each team was given for the incidents reported in [since, until) (the last "
    "30 days unless asked; a year at most), or on the calendar day `date` of the district's "
    "clock, and what became of them: `declined`, `timed_out` (the team let the acknowledge "
    "deadline pass; an answer it gave by the deadline that dispatch read after it counts as "
    "`withdrawn`, as the KPIs do not count it a routing timeout, or `declined` when it was "
    "a refusal, as they count it), `resolved`, `handed_over`, "
    "`withdrawn` (taken back by the command room, stood down when another team resolved "
    "it, or sent elsewhere), still `open`; `orders` all of them, and the `incidents` they "
    "were for, in the order reported. The teams that most often declined or missed first "
    "(then the most orders): the volunteer coordinator's view of a team that keeps "
    "refusing (DOMAIN: units may not refuse for a scene outside their zone), with "
    "`agency_kind=volunteer`. Incidents ended RECORDS_DAYS ago keep their figures, not "
    "their orders: `incidents_without_orders` says how many of the period's are so. A "
    "dispatcher or inspector names one of their districts, as for the KPIs.")


KPIS_DESCRIPTION = (
    "The incidents reported in [since, until) (the last 24 h unless asked; a year at most), "
    "or on the calendar day `date` of the district's clock (`timezone`; `today` says its "
    "date now), each counted in its report's period however late it ended; `category`: "
    "one category's only, in every figure. "
    "`incidents`, `by_category` and `by_status` (each incident's status now) count each "
    "incident once: a duplicate report linked to another (or closed by the command room "
    "while linked, as a duplicate) is in `linked_reports` only. "
    "Times to act, p50 and p90 in seconds over the `count` incidents that have one, from "
    "the report (or dispatch's receipt of it, if earlier): `time_to_assign_s` to the "
    "first order of a team (dispatch's, a backup, one sent by hand; a station's hand-over "
    "or visit never), `time_to_acknowledge_s` to the first answer of a team on such an "
    "order other than a refusal, `time_to_scene_s` (the response time) to the first such "
    "team on scene, or answering resolved or hand-over, overall and `by_priority` (the "
    "incident's priority now). "
    "The times to assign count only the incidents that got a team: `never_assigned` counts "
    "those no team was ever sent to (`incidents`; of them `open`, still waiting, and "
    "`ended`, over without any team: closed by the command room; `past_deadline`: of all "
    "of them, those that waited longer than their priority's acknowledge deadline, the "
    "policy's deadlines_s, P1 30 s to P4 300 s: still, or until closed), and "
    "`assigned_after_deadline` the incidents whose first team was sent later than that "
    "deadline. Both wait from dispatch's receipt of the report (`received_at`, on the clock "
    "the orders are timed by), not from the report: a report that reached dispatch late "
    "(the board's `late_by_s`) waited where no dispatcher could see it, and says so on its "
    "own; the deadline is the incident's priority's now. A routing timeout needs a team "
    "that let its deadline pass: an incident that waited with no team at all is in neither "
    "`routing_timeouts` nor `routing_timeout_incidents`, but in these. The board's "
    "?problem=unassigned_late lists the incidents of `assigned_after_deadline` and of "
    "`never_assigned`'s `past_deadline`. "
    "`resolved_on_site`: incidents a team resolved with no "
    "hand-over (one given before the command room's close counts); `handed_over`: those "
    "handed over to the station, filed since or not (one given before the command room's "
    "close counts, owing no filing); `resolved_on_site_share`: resolved on "
    "site of those two together (incidents still open, or closed by the command room "
    "without either, are in neither). "
    "`filings_overdue`: hand-overs whose filing (受立案) went past its order's filing_due: "
    "filed late, not filed yet, or closed by the command room after the due; a late filing "
    "stays counted. One order per hand-over counts: the one the station resolved, else its "
    "live one (declined, timed-out or taken-back orders only while no station team has it, "
    "the newest of them); with no station order ever made (nobody of the station on "
    "shift), the hand-over itself, due a day after it. "
    "`filings_overdue_unfiled`: of them, those still owed (the board's "
    "?problem=filing_overdue). Both count the period's incidents: a hand-over goes overdue "
    "a day after it (handover_filing_h), in the next day's review, where they do not count "
    "it. `filings_due` counts by the filing's due instead, the morning review's 受立案超期 "
    "of the day: the hand-overs whose filing fell due in the period (the hand-over's own "
    "due, a day after it), however long before reported: `due`, how many; "
    "`filed_in_time`, filed by it; `overdue`, not filed by it (filed late since, still "
    "owed, or closed by the command room after it), judged as `filings_overdue` judges "
    "them; `unfiled`, of those, still owed now. A case the command room closed before its "
    "due is in `due` alone. `routing_timeouts`: orders withdrawn because their team did "
    "not acknowledge by the deadline (an incident two teams let time out counts 2; an "
    "answer given by the deadline and read after it is none); `routing_timeout_incidents`: "
    "the incidents with one or more (警情分流超时: what the board's "
    "?problem=routing_timeout lists for the period). `declines`: offers a team declined "
    "(the board's ?problem=declined lists their incidents). "
    "`handled_by_force`: incidents resolved on site or handed "
    "over, by the force of the team that did (`police:patrol`'s share is the share "
    "handled by street patrol); `resolved_by_force`: on-site resolutions only, as before. "
    "`followups`: the period's `incidents` revisited (a station team's follow-up visit "
    "gave its verdict), the `visits` made, and `agreements_holding`: those whose last visit "
    "found the mediated agreement holding, or those warned of a fraud safe. "
    "`by_hour`: 24 counts by the district's local hour of the report; `by_week`: per "
    "local week (Monday to Sunday, `week` its Monday), every week the period touches, the "
    "first and last counting only their part within the period; `by_zone`: by the "
    "owning station's zone (`(none)`: outside every zone of the district; `(unknown)`: "
    "reported while the zones could not be loaded, and over before they came back or "
    "still not placed when dispatch stopped looking, 10 min after it). "
    "`compare=previous_year` adds `previous_year`: the same period a year earlier, its "
    "`incidents` and `by_category`. "
    "An agency desk's answer is of its own teams' orders only, for its contract reviews: of "
    "the incidents of `district` (one of its own, required) reported in the period, those "
    "its teams were given an order of: `incidents` and `by_category` (of those), `orders`, "
    "`by_state` (each order's state now), `declines`, `routing_timeouts` (deadlines "
    "missed: an answer given by the deadline and read after it is none, a refusal so "
    "given a decline, as above), `withdrawn` (taken back, stood down), `resolved`, "
    "`handed_over`, and its "
    "teams' times from each order's offer to the team (not from the report): "
    "`offer_to_acknowledge_s` (its first answer other than a refusal) and "
    "`offer_to_scene_s` (on scene, or resolved or handed over; also `by_priority`), p50, "
    "p90 and count over the orders of the incident's response (a station's hand-over or "
    "visit order is counted, not timed), and `by_team`: each team's `orders`, `declines`, "
    "`routing_timeouts` and times; with `since`, `until`, `timezone`, `today`, "
    "`category`, `agency_id` and `orders_kept_days` (RECORDS_DAYS: an incident's orders are "
    "deleted that long after it ended, so a period reaching further back counts fewer). "
    "`compare` is a 403 for it.")

REVIEW_DISTRICT = ("one district: required of a dispatcher, inspector or agency desk (one of "
                   "theirs); without it, the admin's answer is of every district")
HEATMAP_DESCRIPTION = (
    "The incidents reported in [since, until) (the four weeks before `until` unless asked; "
    "a year at most), a duplicate report linked to another (or closed while linked) left "
    "out, by the H3 cell of the "
    "scene at `resolution`: `hottest`, the `limit` busiest cells (ties: the cell id), each "
    "with its id (`cell`), centre (`lat`, `lon`), `count`, `by_hour` (by the local hour of "
    "the report on the district's clock, `timezone`), `peak_hour` (the busiest of them; "
    "ties: the earliest) and `by_category`. `incidents` and `cells` count all the "
    "incidents and cells kept, not only those listed; `district`, `category` and `hours` "
    "(the local hours kept, all if empty) are as asked.")

SHIFT_CHECK_INS_DESCRIPTION = (
    "Volunteers' shift plans and check-ins, as volunteers answers them now (dispatch keeps "
    "no copy): each team of the district planned on a shift being worked at `at` (started, "
    "not yet ended: at 08:10 the main shift begun at 08:00), once per such shift, with its "
    "agency, the shift's times and whether anyone of it has checked in (a check-in that ran "
    "out is not). `teams`: those not checked in first, then by the shift's start and name; "
    "`planned`: how many; `not_checked_in`: how many of them are not in. A dispatcher's or "
    "inspector's own districts only (403 for another); the admin's of a district the roster "
    "does not hold: 422 naming `district`. An agency desk's: its own agency's teams only. "
    "503 while volunteers does not answer.")
PIPELINE_DESCRIPTION = (
    "For each hop of an incident's path (`hops`: `reports` incident.reported to dispatch, "
    "`orders` order.issued to notify, i.e. to the phones, `answers` order.responded to "
    "dispatch, `statuses` unit.status and `positions` unit.position to dispatch), the "
    "consumer group's entries not read yet (`unread`: counted up to "
    f"{COUNTED_LAG}, beyond it Redis's own figure; -1 when Redis cannot tell), read and not "
    "acknowledged (`pending`), and `oldest_age_s`: how long the oldest entry the group has "
    "not finished has waited (the oldest pending, else the first not read; null: none), "
    "by its entry id's time. `verdict`: `ok`, `behind` (waited longer than `threshold_s`) "
    "or `no_group` (the group does not exist: that service never started on this Redis). "
    "`positions_feed`: the age of the newest team position (`newest_age_s`, null: none "
    "kept), whether teams are on shift (`teams_on_shift`), and `behind` when none came for "
    "`threshold_s` while they are. `ok`: every verdict is ok. A few commands in two round "
    "trips, no stream read through: the console asks at most 10 s apart, sooner when a threshold is shorter "
    "(thresholds: "
    "services/dispatch/pipeline.py).")


INCIDENT_DESCRIPTION = (
    "The incident as on the board, with what was reported (`description`, `caller`), its "
    "`orders` and its `timeline` (in the order things happened). Each order has its state "
    "and the times of its steps, `eta_s` (the team's travel time from where it was when the "
    "order was offered; null without a position then, and for a team sent by hand or a "
    "hand-over) and `expected_at`: when its team is expected on scene, `eta_s` after it set "
    "off (its `en_route_at`, else its `acknowledged_at`, else its `issued_at`), while it is "
    "on its way (offered, acknowledged, en_route); null once it is on scene or the order is "
    "over, and without `eta_s`. Past `expected_at` with no `on_scene_at`, the team is late. "
    "`now`: dispatch's clock when it answered, to count against (a desk's clock may be "
    "minutes off). `figures`: how the KPIs count the incident, kept once it is archived "
    "(when its timeline and orders are gone): `counted` (false: a duplicate report, in "
    "linked_reports only), `resolved_on_site`, `handed_over`, `handled_by_force` (the "
    "force of the team that resolved it on site or handed it over; null while neither), "
    "`resolved_at`, `handed_over_at`, `closed_at`, `time_to_assign_s`, "
    "`time_to_acknowledge_s` and `time_to_scene_s` (from the report, as the KPIs' times "
    "to act; null: none yet) and `filing`: its hand-over's filing, `filed_in_time`, "
    "`overdue` (受立案超期: filed late, still owed past its due, or closed after it) and "
    "`unfiled` (still owed past it), null when none is owed. "
    "`linked_reports`: the reports linked to it now, by source (its system "
    "and, within it, the caller it names), in the order each first reported: `system_id`, "
    "`system_name`, `caller` (the newest it named), `own_source` (the incident's own "
    "reporter: its repeats), `count`, `first_reported_at`, `last_reported_at`, `flags` "
    "(every flag they carried) and `accounts`: what they said, a report with the reports "
    "after it of that source that said the same (category, priority, flags, description) "
    "folded into it (`repeats`, `last_incident_id`, `last_reported_at`); the first and "
    "the newest of a source saying something new every time, `accounts_left_out` the "
    "rest. `reports_linked` counts them as on the board. A timeline entry naming a report "
    "(`detail_args` `report`: linked, revised by it, unlinked) has `report_source`: that "
    "report's `system_id` and `system_name`; with `repeats=collapsed`, a run of one "
    "source's \"another report linked\" entries is its first with `repeats` (`count` more, "
    "`last_report`, `last_at`). "
    "`flagged_for`: why a flagged incident is flagged, as codes (unassigned, "
    "missed_deadlines, volunteers_alone, short_of_units, unknown_category, backup_wanted, "
    "backup_volunteers_only, team_off_shift, visit_stuck, report_given_up, agreement_failed, "
    "see_timeline: a step "
    "that needs the command room said why there); empty when it is not. A timeline entry "
    "whose `detail_args` name a dispatcher (`by`: `dispatcher:dsp_…`, who took an order "
    "back, closed, revised, remarked, unlinked) has `detail_names`: each such argument's "
    "dispatcher's display name as dispatch knows it now ({\"by\": \"Wang Lei\"}; a revoked "
    "one's as kept at the revocation, for KPI_DAYS). Names are this "
    "answer's only: the entries stored, and intake's view of them, keep the id. "
    "An agency desk's: an incident of its districts that its own teams were given an order "
    "of (403 for another), with `incident_id`, `district`, `category`, `priority`, `flags`, "
    "`location`, `zone_id`, `reported_at`, `now`, and `orders`: its own teams' orders only, "
    "each as above (kept RECORDS_DAYS after the incident ended); nothing else: no caller, "
    "description, status, timeline or other agency's team.")


TEAMS_DESCRIPTION = (
    "The district's teams on shift that may be sent to the incident by hand (POST .../assign), "
    "the best first: those dispatch's rules allow (their kind, skills and station) before "
    "the others, placed by a position that counts (newer than the policy's fix_max_age_s) "
    "before those without, free before those on another incident's order (sent with "
    "`reassign`), then dispatch's own score: travel time plus rank_step_s per place below "
    "first in the category's list. Left out: teams off shift, those on the incident, and "
    "those dispatch would refuse (volunteers where a flag bars them; for a hand-over, any "
    "but a police station's team); an ended incident has none. Each with `distance_m` and "
    "`eta_s` (null without a position), `fix_age_s`, `position_counts`, `open_order_id`, "
    "and `warnings`: kind_not_listed (the category does not list its kind: volunteers to a "
    "fight), lacks_skills (`missing_skills`), other_station (not the station owning the "
    "place now, as dispatch sends to it: a roster import may have given the zone to another "
    "since the report), volunteers_alone_on_p1 (no police or security team is on this P1: volunteers "
    "are never its only responders, and a team sent by hand raises no flag); and "
    "`turned_down`, null unless the team declined this incident or let its deadline pass "
    "(`answer`: declined or timed_out, `at`, `order_id`, `answered_in_time`; its latest; "
    "an answer given by the deadline and read after dispatch timed the order out is in "
    "`answered_in_time`, a refusal so given a decline): dispatch never offers "
    "the incident to that team again, so only the command room can send it. `total`: how "
    "many there are; `count`: how many are listed (up to `limit`).")


# A time of day, a space, then hours and minutes at the end: an offset whose `+` a query
# string reads as a space (a `-` offset, or `Z`, comes through as it is).
_PLUS_READ_AS_SPACE = re.compile(r"^(.*[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")


def _instant(value: object) -> datetime:
    """ISO 8601 with its offset, from 1970 to the end of 9998 (review.EARLIEST, LATEST).
    Not pydantic's own parse: it takes a number as seconds since 1970 (`until=0.5`)."""
    if isinstance(value, str):
        # `+08:00` written into an address by hand: its `+` reads as a space there
        value = _PLUS_READ_AS_SPACE.sub(r"\1+\2", value)
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            value = None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise PydanticCustomError(
            "iso_instant", "must be an ISO 8601 time with its offset, e.g. "
            "2026-12-05T00:00:00Z or 2026-12-05T08:00:00+08:00")
    if not review.EARLIEST <= value <= review.LATEST:  # compared as instants: no overflow
        raise PydanticCustomError("instant_range",
                                  "must be from 1970 to the end of 9998 (UTC)")
    return value


# A time asked for in a query (since, until): a period the review can count in.
Instant = Annotated[datetime, BeforeValidator(_instant)]


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team_id: str = Field(min_length=1, max_length=64)
    reassign: bool = Field(default=False, description="a team on another incident's order is "
                           "taken off it first (that incident goes to its next candidate); "
                           "without it, such a team is a 409")


class ReviseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    priority: Priority | None = Field(default=None, description="the command room's priority")
    add_flags: tuple[Annotated[str, Field(min_length=1, max_length=32)], ...] = Field(
        default=(), max_length=16, description="weapon, injury, in_progress raise it to P1 "
        "(unless a priority is given); weapon takes volunteer teams off it")
    note: str | None = Field(default=None, max_length=500, description="what was learnt")


async def _revision(body: ReviseIn) -> ReviseIn:
    """The body, if it changes something. Checked here, not in the route: a dependency runs
    before a token of the wrong kind (an inspector's) is refused, so a revision of nothing is
    a 422 first, as a wrong field is (DESIGN's order). Not a validator of ReviseIn: a model's
    own check is told as the whole body's, and this one names `priority`."""
    if body.priority is None and not body.add_flags:
        raise ApiError(422, "invalid_field", "give a priority or flags to add", "priority")
    return body


Revision = Annotated[ReviseIn, Depends(_revision)]


class RemarkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: str = Field(min_length=1, max_length=500, description="the command room's words")


class TakeBackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: str | None = Field(default=None, max_length=500,
                             description="why, for the timeline (\"needed at a P1 nearby\")")


class UnlinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: str | None = Field(default=None, max_length=500,
                             description="why it is another event, for the timeline (\"the "
                             "second caller is at No. 14: another fight\")")


class EvidenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    evidence: tuple[Evidence, ...] = Field(min_length=1, max_length=MAX_EVIDENCE)
    note: str | None = Field(default=None, max_length=500,
                             description="what the records show, for whoever reads the case")


class DutyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dispatcher_id: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="who takes the duty: the caller if a dispatcher; an admin must name one")


class DispatcherIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=100)
    districts: list[DistrictName] = Field(min_length=1, max_length=64)
    role: Literal["dispatcher", "inspector", "agency"] = Field(
        default="dispatcher", description="inspector: reads the board, incidents, units, KPIs "
        "and the heat map of the districts, and changes nothing; agency: an agency's own desk "
        "(a security company's duty manager, a police station's), which reads of the "
        "districts only its own teams, the orders they were given and their figures, and "
        "changes nothing")
    agency_id: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="the agency of an agency desk, as the roster names it (of one of "
        "`districts`): required with role agency, refused with any other")


async def _desk_request(body: DispatcherIn) -> DispatcherIn:
    """The body, if its role and agency_id go together; else 422 naming `agency_id` (a
    dependency, as _revision: before the caller's kind, and naming its field)."""
    if body.role == "agency" and body.agency_id is None:
        raise ApiError(422, "invalid_field", "agency_id is required for an agency desk",
                       "agency_id")
    if body.role != "agency" and body.agency_id is not None:
        raise ApiError(422, "invalid_field", "agency_id is for an agency desk only (role "
                       "agency)", "agency_id")
    return body


DeskRequest = Annotated[DispatcherIn, Depends(_desk_request)]


# A desk as its 403s name it.
DESK_WORDS = {"dispatcher": "dispatcher", "inspector": "inspector", "agency": "agency desk"}


def check_district(who: Principal, district: str, field: str | None = None) -> None:
    """A desk works on the districts of its command room (or agency) only. `field`: the
    request's field that gave `district` (the 403 names it), none for an object's own."""
    if who.kind in DESK_KINDS and district not in who.districts:
        raise forbidden(f"this {DESK_WORDS.get(who.kind, who.kind)} does not cover district "
                        f"'{district[:64]}'", field)


@dataclass
class RosterRead:
    """The roster's districts as this process last read them, when, and when reading them
    last failed (monotonic clock)."""
    districts: frozenset[str] = frozenset()
    read_at: float = -math.inf
    failed_at: float = -math.inf


async def resolve_dispatcher(redis: Redis, token: str) -> Principal | None:
    found = await store.dispatcher_for_token(redis, token)
    if found is None:
        return None
    return Principal(kind=found["role"], subject=found["dispatcher_id"],
                     districts=tuple(found["districts"]), agency_id=found["agency_id"])


def _incident_view(inc: dict[str, str]) -> dict[str, Any]:
    return {
        "incident_id": inc["incident_id"],
        "district": inc["district"],
        "system_id": inc.get("system_id") or None,
        # who reported, by the name intake registered it under (none: a member's report,
        # or one received before 2026-12-08)
        "system_name": inc.get("system_name") or None,
        "external_ref": inc.get("external_ref") or None,
        "category": inc["category"],
        "priority": inc["priority"],
        "status": inc["status"],
        "flagged": inc.get("flagged") == "1",
        "flags": json.loads(inc.get("flags") or "[]"),
        "location": {"lat": float(inc["lat"]), "lon": float(inc["lon"]),
                     "address": inc.get("address") or None},
        "zone_id": inc.get("zone_id") or None,
        "reported_at": inc.get("reported_at"),
        # when dispatch received it (the board's order=received), and by how much that was
        # after the report when more than domain.LATE_REPORT: the scene is that old
        "received_at": inc.get("received_at") or None,
        "late_by_s": _late_by_s(inc),
        "routing_timeouts": int(inc.get("timeouts") or 0),
        "declines": int(inc.get("declines") or 0),
        "linked_to": inc.get("linked_to") or None,
        "trace_id": inc.get("trace_id") or None,
        # RECORDS_DAYS after it ended: its figures only, no timeline, orders or caller
        "archived_at": inc.get("archived_at") or None,
        # the duty leader when it came in: its first supervisor until it is done
        "supervisor": ({"dispatcher_id": inc["supervisor_id"],
                        "name": inc.get("supervisor_name") or None}
                       if inc.get("supervisor_id") else None),
        "backup_call": _backup_call_view(inc),
    }


def _backup_call_view(inc: dict[str, str]) -> dict[str, Any] | None:
    """The incident's latest call for backup (a team on scene in trouble): when, which team,
    and the team sent as its backup, None while none is (nobody free, or the one sent
    declined or missed its deadline with nobody else free: the incident is flagged)."""
    if not inc.get("backup_call_at"):
        return None
    sent = inc.get("backup_call_sent")
    return {"at": inc["backup_call_at"], "team_id": inc.get("backup_call_team") or None,
            "team_name": inc.get("backup_call_team_name") or None,
            "backup": ({"team_id": sent, "team_name": inc.get("backup_call_sent_name") or None}
                       if sent else None)}


# What an agency's desk reads of an incident its teams were given an order of: what the
# order carried to its team's phones of the scene (category, priority, flags, place), when it
# was reported, and its own orders. Never the caller nor the description (an order to a
# police team carries them: its phones know, the desk need not), nor the incident's status,
# counts and flags for the board, supervisor, reporting system or timeline, which tell of
# the command room and of other agencies' teams; only these fields are read.
AGENCY_INCIDENT_FIELDS = ("district", "incident_id", "category", "priority", "flags", "lat",
                          "lon", "address", "zone_id", "reported_at")


def _agency_incident_view(head: dict[str, str],
                          orders: list[dict[str, str]]) -> dict[str, Any]:
    """An incident as an agency's desk sees it: `head`, its AGENCY_INCIDENT_FIELDS, and
    `orders`, those its own teams were given."""
    return {
        "incident_id": head["incident_id"], "district": head["district"],
        "category": head["category"], "priority": head["priority"],
        "flags": json.loads(head.get("flags") or "[]"),
        "location": {"lat": float(head["lat"]), "lon": float(head["lon"]),
                     "address": head.get("address") or None},
        "zone_id": head.get("zone_id") or None, "reported_at": head.get("reported_at"),
        "orders": [_order_view(o) for o in orders],
    }


def _days(days: float) -> int | float:
    """A number of days as set (RECORDS_DAYS: 90, not 90.0; a fraction kept as it is)."""
    return int(days) if days == int(days) else days


def _order_view(order: dict[str, str]) -> dict[str, Any]:
    keys = ("order_id", "team_id", "team_name", "agency_kind", "kind", "state", "issued_at",
            "ack_by", "delivered_at", "acknowledged_at", "en_route_at", "on_scene_at",
            "resolved_at", "handover_at", "declined_at", "timed_out_at", "withdrawn_at",
            "filing_due")
    # a number, as intake gives it (the hash holds text)
    eta = float(order["eta_s"]) if order.get("eta_s") else None
    return {**{k: (order.get(k) or None) for k in keys}, "eta_s": eta,
            "expected_at": _expected_at(order, eta)}


# An order's team on its way to the scene: when it is expected there is counted.
ON_THE_WAY = ("offered", "acknowledged", "en_route")


def _expected_at(order: dict[str, str], eta_s: float | None) -> str | None:
    """When the order's team is expected on scene: its travel time (from where the team was
    when it was offered) after it set off, i.e. since its en route, else since it took the
    order, else since the offer (never before the offer: a phone's clock behind). None once
    it is there or the order is over, and for an order without a travel time."""
    if eta_s is None or order.get("state") not in ON_THE_WAY:
        return None
    try:
        issued = datetime.fromisoformat(order["issued_at"])
        step = order.get("en_route_at") or order.get("acknowledged_at")
        set_off = max(issued, datetime.fromisoformat(step)) if step else issued
    except (KeyError, ValueError):  # a record stored broken: no time to count to
        return None
    return (set_off + timedelta(seconds=eta_s)).isoformat()


def _report_view(letter_id: bytes, fields: dict[bytes, bytes],
                 event: dict[str, Any] | None) -> dict[str, Any]:
    """A dead-lettered report as the command room sees it: what it is and where, never the
    caller's details (the letter itself is the admins')."""
    event = event or {}
    if not isinstance(event.get("district"), str):
        # listed to every desk (no district to keep it to): that a report was lost and when,
        # nothing of what or where
        event = {"incident_id": event.get("incident_id")}
    location = event.get("location") if isinstance(event.get("location"), dict) else {}
    return {"incident_id": event.get("incident_id"), "district": event.get("district"),
            "category": event.get("category"), "priority": event.get("priority"),
            "reported_at": event.get("reported_at"), "address": location.get("address"),
            "dead_letter_id": letter_id.decode(),
            "dead_at": (fields.get(b"dead_at") or b"").decode(errors="replace") or None}


def build_router(*, settings: Settings, redis: Redis, engine: Dispatcher, tz: tzinfo,
                 letters: Redis, http: httpx.AsyncClient) -> APIRouter:
    """`letters`: a bytes client (a dead letter's payload is a binary envelope)."""
    router = APIRouter(prefix="/v1", route_class=InputFirstRoute)
    roster = RosterRead()

    async def check_known_district(who: Principal, district: str) -> None:
        """check_district (a desk's 403), and for the admin, that volunteers' roster holds
        the district: else a 422 naming `district` (a typo read as an empty board is "no
        incidents"). A desk's districts are the roster's: its token was made so."""
        check_district(who, district, "district")
        if who.kind == "admin":
            await roster_holds(district)

    async def roster_holds(district: str) -> None:
        """422 naming `district` when volunteers' roster does not hold it (ROSTER_FRESH_S).
        Volunteers not answering: not checked, the request answered as before (the board
        never fails for it; the duty's other checks refuse such a district anyway)."""
        now = time.monotonic()
        if district in roster.districts and now - roster.read_at < ROSTER_FRESH_S:
            return
        if now - roster.failed_at < ROSTER_FRESH_S:
            return
        try:
            known = await known_districts(http, volunteers_url=settings.volunteers_url,
                                          key=settings.service_key(),
                                          timeout_s=ROSTER_TIMEOUT_S)
        except TryAgain:
            roster.failed_at = time.monotonic()
            return
        roster.districts, roster.read_at = frozenset(known), time.monotonic()
        roster.failed_at = -math.inf
        if district not in known:
            raise unknown_district("district", known)

    @router.get("/incidents", summary="The board: incidents, newest first",
                description=BOARD_DESCRIPTION)
    async def board(
        who: ReaderOrAgency,
        # DESIGN's statuses: a misspelt one is a 422, not an empty board ("nothing waits")
        status: IncidentStatus | None = None,
        district: str | None = Query(
            default=None, max_length=64, description="one district; without it, all of a "
            "dispatcher's or inspector's districts (every district for the admin)"),
        flagged: bool | None = None,
        linked: bool | None = Query(
            default=None, description="false: without the duplicate reports linked to another "
            "incident (status `linked`: no team of their own; each is on that incident's "
            "timeline), as the console asks, so that an alarm a camera repeats every second "
            "does not fill the page and push open incidents off it; true: only those (as "
            "status=linked); absent: both (added 2026-12; before, always both)"),
        problem: Problem | None = Query(
            default=None, description="what an inspector hunts: routing_timeout (an order "
            "withdrawn for a missed acknowledgement), filing_overdue (a hand-over the "
            "station still owes past its filing_due: its live hand-over order, or, no "
            "station team having it (nobody on shift, every one declined), its newest "
            "one, or the hand-over itself a day after it when none was made, the row's "
            "`filings_overdue` then naming the incident; one filed, even late, or closed "
            "by the command room is done), declined (a "
            "team refused an offer: any order, a station's hand-over or visit too; each "
            "row's `declines` counts them, and the incident's timeline names each team "
            "and what it said) or unassigned_late (no team within the acknowledge deadline of "
            "the incident's priority after dispatch received it: its first team sent later, "
            "or none sent and it still waits past it, or was closed past it without one: "
            "the KPIs' assigned_after_deadline and never_assigned's past_deadline). "
            "Without since, however long ago reported (a scan that "
            "stops at its budget says so: `scanned_to`, `next`); with since and until, "
            "those reported in the day or shift asked for"),
        supervisor: str | None = Query(
            default=None, max_length=64, description="a dispatcher's id, or `me`: the "
            "incidents they supervise (they led the duty when each came in)"),
        ref: str | None = Query(
            default=None, min_length=1, max_length=128,
            description="the reporting system's reference (a 110 call's number): its "
            "incidents whenever reported; needs district"),
        since: Instant | None = Query(
            default=None, description="reported at or after it; the 30 days before `until` "
            "unless asked, a problem is hunted or the flagged (or unassigned) are asked for: "
            "those however long ago reported"),
        until: Instant | None = Query(
            default=None, description="reported before it (left out: an incident reported "
            "at exactly `until` is not listed). To page, pass `after` instead: incidents "
            "reported at the same instant would fall between two pages"),
        after: str | None = Query(
            default=None, min_length=1, max_length=paging.MAX_CURSOR,
            description="the previous answer's `next`, as it is: the page that follows it "
            "(ask with the same filters); opaque"),
        limit: int = Query(default=100, ge=1, le=MAX_PAGE,
                           description="at most this many incidents on the page"),
        order: paging.Order = Query(
            default="reported", description="`reported`: newest first by the time reported "
            "(the report's own `reported_at`); `received`: newest first by when dispatch "
            "received the report (the row's `received_at`), so a report that reached "
            "dispatch late (a reporting system's queue stuck, its network cut: `late_by_s`) "
            "is listed first when it comes, however many newer reports came before it (the "
            "console's order). `since`, `until` and `scanned_to` are then times received; "
            "the KPIs and the heat map count by the time reported either way"),
    ) -> dict[str, Any]:
        received = order == "received"
        try:
            position = paging.decode_cursor(after, order) if after is not None else None
        except ValueError:
            raise ApiError(422, "invalid_field", "after is not a cursor of the board in this "
                           "order: pass the previous answer's `next` as it is, with the same "
                           "order", "after") from None
        now = datetime.now(UTC)
        if since and until and since > until:  # else an empty board: "nothing reported"
            raise ApiError(422, "invalid_field", "since must not be after until", "since")
        # The flagged (every unassigned incident among them) stay on the board until
        # someone acts, however long ago reported: read from their own index, a few, on
        # every poll of the console.
        alarm = flagged is True or status == "unassigned"
        # A problem is hunted however old: an unfiled hand-over is the worst case. Else the
        # month before `until`, as the KPIs count back from theirs: a month before now
        # would end before an `until` long past began, and list nothing.
        since_ts = (since.timestamp() if since else float("-inf") if problem or alarm
                    else ((until or now) - BOARD_PERIOD).timestamp())
        until_ts = (until or now + timedelta(days=1)).timestamp()
        if ref is not None and not district:
            raise ApiError(422, "invalid_field", "district is required with ref", "district")
        if district:
            await check_known_district(who, district)
        if who.kind == "agency":
            for name, value in (("status", status), ("flagged", flagged), ("problem", problem),
                                ("supervisor", supervisor), ("ref", ref)):
                if value is not None:  # of the command room's board, not of its orders
                    raise forbidden(f"an agency desk lists its own teams' orders: {name} is "
                                    "the command room's filter", name)
            return await agency_board(who, district, since=since, until=until,
                                      position=position, limit=limit, order=order, now=now)

        def shown(inc: dict[str, str]) -> bool:
            """The filters every row passes (a row's district is its index's, but a
            dispatcher's own districts are checked once more on the record)."""
            if who.kind in DESK_KINDS and inc.get("district") not in who.districts:
                return False
            if district and inc.get("district") != district:
                return False
            if status and inc.get("status") != status:
                return False
            if flagged is not None and (inc.get("flagged") == "1") != flagged:
                return False
            if linked is not None and (inc.get("status") == "linked") != linked:
                return False
            if problem == "routing_timeout" and not int(inc.get("timeouts") or 0):
                return False
            if problem == "declined" and not int(inc.get("declines") or 0):
                return False
            if problem == "unassigned_late" and not review.no_team_by_deadline(
                    inc, engine.policy.deadlines_s, now):
                return False
            return not supervisor or inc.get("supervisor_id") == (
                who.subject if supervisor == "me" else supervisor)

        rows: list[dict[str, Any]] = []
        sources: dict[str, str] = {}  # each row's own source (linked.report_source)
        flagged_received = received and alarm
        if ref is not None or problem == "filing_overdue" or flagged_received:
            # a few records, read whole: a reference's, the index of hand-overs (not the
            # newest reports: an unfiled one is listed however many came since), or the
            # flagged's in the order received (their index is by the time reported: read
            # whole, not hunted for through the index by receipt on every poll)
            if ref is not None:
                ids = await store.incidents_by_ref(redis, district or "", ref)
            elif flagged_received:
                await records.index_flagged_before(redis)  # once: those of an earlier version
                ids = await store.flagged_ids(
                    redis, [store.flagged_key(district)] if district
                    else [store.flagged_key(d) for d in who.districts]
                    if who.kind in DESK_KINDS else [store.FLAGGED])
            else:
                await records.index_handovers_before(redis)  # once: those of an earlier version
                ids = await store.handovers(redis)
            listed = [(_position(inc, order), inc)
                      for inc in await store.incidents_bulk(redis, ids)]
            listed.sort(key=lambda pair: pair[0], reverse=True)  # the newest first, as the board
            last = None
            for at, inc in listed:
                if position is not None and not at.comes_after(position):
                    continue
                if not shown(inc):
                    continue
                if ((problem == "filing_overdue" or flagged_received) and (since or until)
                        and not since_ts <= _order_ts(inc, order) < until_ts):
                    continue
                row = _incident_view(inc)
                if problem == "filing_overdue":
                    row["filings_overdue"] = await unfiled_filings(redis, inc, now)
                    if not row["filings_overdue"]:
                        continue
                rows.append(row)
                sources[inc["incident_id"]] = report_source(inc)
                if len(rows) >= limit:
                    last = at
                    break
            await count_linked(rows, sources)
            return _page(rows, next_at=last, scanned_to=None, order=order)

        # The index of the district asked for, else of each of the caller's districts
        # (merged), else of all: a dispatcher's board reads nothing of other districts.
        # The flagged have an index of their own in the order reported; in the order
        # received they are a filter of the index by receipt, as the other filters are.
        if received:
            await records.index_received_before(redis)  # once: those of an earlier version
            index, every = store.received_key, store.RECEIVED
        elif alarm:
            await records.index_flagged_before(redis)  # once: those of an earlier version
            index, every = store.flagged_key, store.FLAGGED
        else:
            index, every = store.district_key, store.ALL_INCIDENTS
        keys = ([index(district)] if district
                else [index(d) for d in who.districts] if who.kind in DESK_KINDS
                else [every])
        filtered = bool(status or flagged is not None or linked is not None or problem
                        or supervisor)
        scan = paging.IndexScan(redis, keys, since_ts=since_ts, until_ts=until_ts,
                                after=position, batch=BOARD_BATCH if filtered else limit)
        examined = 0
        while batch := await scan.next_batch():
            # filtering: the few fields filtered on first, whole records only of the rows
            heads = (await store.incidents_heads(
                redis, [at.incident_id for at in batch],
                store.BOARD_FIELDS + store.WAIT_FIELDS if problem == "unassigned_late"
                else store.BOARD_FIELDS) if filtered else None)
            picked: list[paging.Position] = []
            for n, at in enumerate(batch):
                head = heads[n] if heads is not None else None
                if heads is not None and (head is None or not shown(head)):
                    continue
                picked.append(at)
                if len(rows) + len(picked) >= limit:
                    break
            page_full = len(rows) + len(picked) >= limit
            full = {inc["incident_id"]: inc for inc in
                    await store.incidents_bulk(redis, [at.incident_id for at in picked])
                    if inc.get("incident_id")}
            shown_now = [full[at.incident_id] for at in picked
                         if at.incident_id in full and shown(full[at.incident_id])]
            rows += [_incident_view(inc) for inc in shown_now]
            sources.update((inc["incident_id"], report_source(inc)) for inc in shown_now)
            if page_full:  # (a row changed or gone meanwhile leaves this page one short)
                await count_linked(rows, sources)
                return _page(rows, next_at=picked[-1], scanned_to=None, order=order)
            examined += len(batch)
            if examined >= BOARD_SCAN:  # the budget: the client asks on from here
                await count_linked(rows, sources)
                return _page(rows, next_at=batch[-1], scanned_to=batch[-1].score, order=order)
        await count_linked(rows, sources)
        return _page(rows, next_at=None, scanned_to=None, order=order)

    async def count_linked(rows: list[dict[str, Any]], sources: dict[str, str]) -> None:
        """Each row's `reports_linked`: the reports linked to it now, how many sources
        reported them, and how many of those are not its own reporter (a caller among a
        camera's repeats); null when none is (or each was linked before 2026-12-08)."""
        counts = await store.linked_counts(
            redis, [(row["incident_id"], sources.get(row["incident_id"], ""))
                    for row in rows])
        for row, (count, from_sources, others) in zip(rows, counts, strict=True):
            row["reports_linked"] = ({"count": count, "sources": from_sources,
                                      "other_sources": others} if count else None)

    async def agency_board(who: Principal, district: str | None, *, since: datetime | None,
                           until: datetime | None, position: paging.Position | None,
                           limit: int, order: paging.Order, now: datetime) -> dict[str, Any]:
        """The board of an agency's desk: the incidents of its districts (or `district`)
        whose orders include one of its own teams', each as _agency_incident_view, newest
        first, paged and budgeted as the board's own (BOARD_SCAN incidents looked at for a
        page, `scanned_to` where it stopped), in the month before `until` unless asked."""
        since_ts = (since or (until or now) - BOARD_PERIOD).timestamp()
        until_ts = (until or now + timedelta(days=1)).timestamp()
        if order == "received":
            await records.index_received_before(redis)  # once: those of an earlier version
            index = store.received_key
        else:
            index = store.district_key
        keys = [index(district)] if district else [index(d) for d in who.districts]
        scan = paging.IndexScan(redis, keys, since_ts=since_ts, until_ts=until_ts,
                                after=position, batch=BOARD_BATCH)
        rows: list[dict[str, Any]] = []
        examined = 0
        while batch := await scan.next_batch():
            orders = await store.agency_orders(redis, [at.incident_id for at in batch],
                                               who.agency_id or "")
            ours = [(at, mine) for at, mine in zip(batch, orders, strict=True) if mine]
            page_full = len(rows) + len(ours) >= limit
            picked = ours[:limit - len(rows)]
            heads = await store.incidents_heads(
                redis, [at.incident_id for at, _ in picked], AGENCY_INCIDENT_FIELDS)
            rows += [_agency_incident_view(head, mine)
                     for (_, mine), head in zip(picked, heads, strict=True)
                     if head is not None and head["district"] in who.districts]
            if page_full:  # (a record gone meanwhile leaves this page one short)
                return _page(rows, next_at=picked[-1][0], scanned_to=None, order=order)
            examined += len(batch)
            if examined >= BOARD_SCAN:  # the budget: the client asks on from here
                return _page(rows, next_at=batch[-1], scanned_to=batch[-1].score, order=order)
        return _page(rows, next_at=None, scanned_to=None, order=order)

    @router.get("/reports-not-handled", summary="Reports dispatch gave up on before it made "
                "their incident: in the dead letters, on no board",
                description=NOT_HANDLED_DESCRIPTION)
    async def reports_not_handled(
        who: Reader,
        district: str | None = Query(
            default=None, max_length=64, description="one district; without it, all of a "
            "dispatcher's or inspector's districts (every district for the admin)"),
        after: str | None = Query(
            default=None, min_length=1, max_length=paging.MAX_CURSOR,
            description="the previous answer's `next`, as it is: the older reports that "
            "follow it (ask with the same district); opaque"),
        limit: int = Query(default=100, ge=1, le=MAX_PAGE,
                           description="at most this many reports on the page"),
    ) -> dict[str, Any]:
        try:
            before = paging.decode_letter_cursor(after) if after is not None else None
        except ValueError:
            raise ApiError(422, "invalid_field", "after is not a cursor of this list: pass "
                           "the previous answer's `next` as it is", "after") from None
        if district:
            await check_known_district(who, district)
        ours = ([district] if district else who.districts if who.kind in DESK_KINDS
                else None)

        def may_see(row: dict[str, Any]) -> bool:
            # one naming no district (it does not read) is every desk's
            return not isinstance(row["district"], str) or ours is None or row["district"] in ours

        rows: list[dict[str, Any]] = []
        examined = 0
        end = dead_letters.page_end(before)
        while end is not None:
            found = await letters.xrevrange(streams.INCIDENT_REPORTED.dead_letters, max=end,
                                            count=NOT_HANDLED_BATCH)
            read_through = len(found) < NOT_HANDLED_BATCH
            views = [_report_view(letter_id, fields, dead_letters.event_of(fields))
                     for letter_id, fields in found]
            seen = [row for row in views if may_see(row)]
            heads = await store.incidents_heads(redis, [
                row["incident_id"] if isinstance(row["incident_id"], str) else ""
                for row in seen])
            # those dispatch made an incident of are on the board, flagged: not listed
            lost = [row for row, head in zip(seen, heads, strict=True) if head is None]
            if len(rows) + len(lost) >= limit:
                left = lost[limit - len(rows):]
                rows += lost[:limit - len(rows)]
                more = bool(left) or not read_through
                return _lost_page(rows, next_id=rows[-1]["dead_letter_id"] if more else None,
                                  scanned_to=None)
            rows += lost
            examined += len(found)
            if read_through:
                break
            end = f"({found[-1][0].decode()}"
            if examined >= NOT_HANDLED_SCAN:  # the budget: the client asks on from here
                return _lost_page(rows, next_id=found[-1][0].decode(),
                                  scanned_to=found[-1][0].decode())
        return _lost_page(rows, next_id=None, scanned_to=None)

    @router.get("/incidents/{incident_id}", summary="One incident with its whole timeline",
                description=INCIDENT_DESCRIPTION)
    async def incident(
        incident_id: str, who: ReaderOrAgency,
        repeats: Literal["each", "collapsed"] = Query(
            default="each", description="`collapsed`: in `timeline`, a run of \"another "
            "report linked\" entries of one source (a camera repeating its alert every "
            "second), each right after the one before, is its first entry with `repeats` "
            "(how many more, the last one's report and time), as the console asks; a report "
            "of another source stays an entry of its own. `each` (the default): every entry, "
            "as stored"),
    ) -> dict[str, Any]:
        if who.kind == "agency":
            return await agency_incident(who, incident_id)
        inc = await store.get_incident(redis, incident_id)
        if inc is None:
            raise not_found("incident")
        check_district(who, inc["district"])
        orders = await store.orders_of(redis, incident_id)
        now = datetime.now(UTC)
        timeline = in_order(await store.timeline(redis, incident_id))
        # the reports linked to it: counted with their link, and (linked before that was
        # kept) named by its timeline
        named = [str(e["detail_args"]["report"]) for e in timeline
                 if e.get("detail_code") in LINK_CODES
                 and (e.get("detail_args") or {}).get("report")]
        ids = list(dict.fromkeys([*await store.linked_ids(redis, incident_id), *named]))
        heads = dict(zip(ids, await store.incidents_heads(redis, ids, LINKED_FIELDS),
                         strict=True))
        joined = sorted(((i, h) for i, h in heads.items() if is_linked_here(h, incident_id)),
                        key=lambda pair: (pair[1].get("received_at") or "", pair[0]))
        view = _incident_view(inc)
        await count_linked([view], {incident_id: report_source(inc)})
        return {
            **view,
            # what happened and whom to ring back: the command room's (police) to know, as
            # a police team's order carries them; not on the board's rows; gone once archived
            "description": inc.get("description") or None,
            "caller": json.loads(inc["caller"]) if inc.get("caller") else None,
            # why it is flagged (the board's red row), as dispatch judges it from its orders
            "flagged_for": (engine.flag_reasons(inc, orders, inc["status"])
                            if inc.get("flagged") == "1" else []),
            "orders": [_order_view(o) for o in orders],
            "teams": [{"team_id": o["team_id"], "team_name": o.get("team_name") or None,
                       "agency_kind": o["agency_kind"], "status": o["state"]} for o in orders],
            # the reports linked to it, by who reported them
            "linked_reports": linked_reports(inc, joined),
            "timeline": await with_dispatcher_names(redis, timeline_with_sources(
                timeline, incident_id, heads, collapse=repeats == "collapsed")),
            # how the KPIs count it: an archived case has no timeline or orders to tell
            "figures": _figures(inc, orders, now),
            "now": now.isoformat(),
        }

    async def agency_incident(who: Principal, incident_id: str) -> dict[str, Any]:
        """An incident its teams were given an order of, as the agency's desk sees it (403
        for any other: an incident of its districts none of its teams was sent to)."""
        [head] = await store.incidents_heads(redis, [incident_id], AGENCY_INCIDENT_FIELDS)
        if head is None:
            raise not_found("incident")
        check_district(who, head["district"])
        [mine] = await store.agency_orders(redis, [incident_id], who.agency_id or "")
        if not mine:
            # read after its orders: archived meanwhile, its orders were gone when read
            [now_kept] = await store.incidents_heads(redis, [incident_id],
                                                     ("district", "archived_at"))
            if now_kept is None:
                raise not_found("incident")
            if now_kept.get("archived_at"):
                # its orders deleted, whose teams it had is not known: not said to be none
                # of this agency's, which may be untrue; the command room reads its figures
                raise forbidden(
                    f"this incident's record was archived on {now_kept['archived_at']}, "
                    f"RECORDS_DAYS ({_days(settings.records_days)}) after it ended: its "
                    "orders are no longer kept, so which agencies' teams it had is not "
                    "known, and an agency desk reads no incident it cannot show to be its "
                    "own")
            raise forbidden("none of this agency's teams was given an order of this incident")
        return {**_agency_incident_view(head, mine), "now": datetime.now(UTC).isoformat()}

    @router.get("/incidents/{incident_id}/teams",
                summary="The teams the command room may send to an incident by hand, nearest "
                "suitable first, each with its distance and what dispatch's rules say against it",
                description=TEAMS_DESCRIPTION)
    async def teams_for(
        incident_id: str, who: Reader,
        limit: int = Query(default=100, ge=1, le=MAX_PAGE,
                           description="at most this many teams, the best first"),
    ) -> dict[str, Any]:
        inc = await store.get_incident(redis, incident_id)
        if inc is None:
            raise not_found("incident")
        check_district(who, inc["district"])
        rows = by_hand.teams_to_send(inc, await store.orders_of(redis, incident_id),
                                     await store.units_in(redis, inc["district"]),
                                     engine.policy, datetime.now(UTC),
                                     station=await engine.owning_station(inc))
        return {"incident_id": incident_id, "teams": rows[:limit],
                "count": min(len(rows), limit), "total": len(rows)}

    @router.post("/incidents/{incident_id}/assign", summary="Assign a team by hand")
    async def assign(incident_id: str, body: AssignIn, who: CommandRoom) -> dict[str, Any]:
        # DESIGN's order: the team the body names (422), the incident (404), then whether
        # the caller covers both (403)
        team = await _known_team(body.team_id)
        await _check_incident(who, incident_id)
        check_district(who, team.district)
        order = await engine.assign(
            incident_id, body.team_id, reassign=body.reassign, by=f"{who.kind}:{who.subject}",
            may_change=lambda other: check_district(who, other["district"]))
        await audit.record(redis, "dispatch", who, "incident.assign", incident_id,
                           f"team {body.team_id}, order {order['order_id']}"
                           + (", reassigned" if body.reassign else "")
                           + (f", unlinked from {order['unlinked_from']}"
                              if order.get("unlinked_from") else ""))
        return {"order_id": order["order_id"], "team_id": body.team_id, "state": "offered"}

    @router.post("/incidents/{incident_id}/unlink",
                 summary="A linked report that is not a duplicate (another fight nearby) made "
                 "an incident of its own, dispatched as any new one; assigning it a team does "
                 "the same with that team")
    async def unlink(incident_id: str, who: CommandRoom,
                     body: UnlinkIn | None = None) -> dict[str, Any]:
        body = body or UnlinkIn()  # no body: no note
        await _check_incident(who, incident_id)
        inc, now = await engine.unlink(incident_id, by=f"{who.kind}:{who.subject}",
                                       note=body.note)
        await audit.record(redis, "dispatch", who, "incident.unlink", incident_id,
                           f"from {inc['unlinked_from']}" + ("" if now else ", already unlinked"))
        return {"incident_id": incident_id, "status": inc["status"],
                "unlinked_from": inc["unlinked_from"]}

    @router.patch("/incidents/{incident_id}",
                  summary="Revise an incident the command room learnt more of: its priority, "
                  "flags (a weapon takes volunteers off it); it gets the units these now want")
    async def revise(incident_id: str, body: Revision, who: CommandRoom) -> dict[str, Any]:
        await _check_incident(who, incident_id)
        inc, taken = await engine.revise(incident_id, priority=body.priority,
                                         add_flags=body.add_flags, note=body.note,
                                         by=f"{who.kind}:{who.subject}")
        await audit.record(redis, "dispatch", who, "incident.revise", incident_id,
                           f"priority {inc['priority']}, flags {inc.get('flags') or '[]'}")
        return {"incident_id": incident_id, "priority": inc["priority"],
                "flags": json.loads(inc.get("flags") or "[]"),
                "withdrawn": [o["order_id"] for o in taken]}

    @router.post("/orders/{order_id}/withdraw",
                 summary="Take an order back from its team (needed elsewhere, cannot go): "
                 "the team is free, the incident goes to its next candidate")
    async def take_back(order_id: str, who: CommandRoom,
                        body: TakeBackIn | None = None) -> dict[str, Any]:
        body = body or TakeBackIn()  # no body: no note
        order = await store.get_order(redis, order_id)
        if order is None:
            raise not_found("order")
        await _check_incident(who, order["incident_id"])
        # asked again (its answer lost, a second press), or the close got to it first: it
        # withdraws nothing, and the audit log says so rather than a take-back
        order, withdrew = await engine.take_back(order_id, by=f"{who.kind}:{who.subject}",
                                                 note=body.note)
        await audit.record(redis, "dispatch", who, "order.withdraw", order["incident_id"],
                           f"team {order['team_id']}, order {order_id}"
                           + ("" if withdrew else ", already withdrawn"))
        return {"order_id": order_id, "incident_id": order["incident_id"],
                "team_id": order["team_id"], "state": "withdrawn"}

    @router.post("/incidents/{incident_id}/evidence",
                 summary="Attach records kept elsewhere (body-camera video, photos), also once "
                 "the incident has ended")
    async def attach_evidence(incident_id: str, body: EvidenceIn,
                              who: CommandRoom) -> dict[str, Any]:
        await _check_incident(who, incident_id)
        by = f"{who.kind}:{who.subject}"
        new = await engine.attach_evidence(incident_id, body.evidence, note=body.note, by=by)
        # the references stay on the timeline: the audit names how many, not which
        await audit.record(redis, "dispatch", who, "incident.evidence", incident_id,
                           f"{len(new)} record(s) attached")
        return {"incident_id": incident_id,
                "attached": [e.model_dump(mode="json") for e in new],
                "already_there": len(body.evidence) - len(new)}

    @router.post("/incidents/{incident_id}/remarks", status_code=201,
                 summary="Put the command room's own words on the timeline (also once ended)")
    async def remark(incident_id: str, body: RemarkIn, who: CommandRoom) -> dict[str, Any]:
        await _check_incident(who, incident_id)
        added = await engine.remark(incident_id, note=body.note, by=f"{who.kind}:{who.subject}")
        await audit.record(redis, "dispatch", who, "incident.remark", incident_id)
        return {"incident_id": incident_id, "added": added}

    @router.post("/incidents/{incident_id}/close", summary="Close an incident")
    async def close(incident_id: str, who: CommandRoom) -> dict[str, Any]:
        await _check_incident(who, incident_id)
        await engine.close(incident_id, by=f"{who.kind}:{who.subject}")
        await audit.record(redis, "dispatch", who, "incident.close", incident_id)
        return {"incident_id": incident_id, "status": "closed"}

    async def _check_incident(who: Principal, incident_id: str) -> None:
        inc = await store.get_incident(redis, incident_id)
        if inc is None:
            raise not_found("incident")
        check_district(who, inc["district"])

    async def _known_team(team_id: str) -> domain.Unit:
        """The team a body names, or 422 naming team_id. A team sent by hand must be of
        the caller's districts too (check_district, after the incident's 404): a dispatcher
        orders only the teams of their own command room (reinforcement from a neighbouring
        district is sent by someone who covers both)."""
        unit = await store.get_unit(redis, team_id)
        if unit is None:
            raise ApiError(422, "invalid_field", "team_id is not a known team", "team_id")
        return unit

    @router.get("/me", summary="Who this token is: kind (admin, dispatcher, inspector, agency), "
                "name, districts and an agency desk's agency; the console shows what the "
                "caller may do")
    async def me(who: ReaderOrAgency) -> dict[str, Any]:
        if who.kind == "admin":
            return {"kind": "admin", "dispatcher_id": None, "name": "admin", "districts": None,
                    "agency_id": None}
        found = await store.get_dispatcher(redis, who.subject)
        return {"kind": who.kind, "dispatcher_id": who.subject,
                "name": found["name"] if found else None, "districts": list(who.districts),
                "agency_id": who.agency_id}

    @router.get("/duty/{district}", summary="Who leads the district's duty, since when")
    async def duty(who: Reader, district: str = Path(max_length=64)) -> dict[str, Any]:
        await check_known_district(who, district)
        return {"district": district, "duty": await store.duty_of(redis, district)}

    @router.put("/duty/{district}",
                summary="Take the district's duty: its new incidents are this dispatcher's to "
                "supervise until done (whoever receives first owns it)")
    async def take_duty(who: CommandRoom, district: str = Path(max_length=64),
                        body: DutyIn | None = None) -> dict[str, Any]:
        body = body or DutyIn()  # no body: the caller takes it (a dispatcher)
        await check_known_district(who, district)
        if who.kind == "dispatcher":
            if body.dispatcher_id not in (None, who.subject):
                raise forbidden("a dispatcher takes the duty for themselves")
            dispatcher_id = who.subject
        elif body.dispatcher_id is None:
            raise ApiError(422, "invalid_field", "name the dispatcher who takes the duty",
                           "dispatcher_id")
        else:
            dispatcher_id = body.dispatcher_id
        found = await store.get_dispatcher(redis, dispatcher_id)
        if found is None:
            raise not_found("dispatcher")
        if found["role"] != "dispatcher":
            raise conflict(f"{dispatcher_id} is an {found['role']}: only a dispatcher leads a duty")
        if district not in found["districts"]:
            raise conflict(f"dispatcher {dispatcher_id} does not cover district '{district}'")
        duty, previous = await store.take_duty(redis, district=district,
                                               dispatcher_id=dispatcher_id, name=found["name"])
        before = previous["dispatcher_id"] if previous else "nobody"
        if before != dispatcher_id:  # leading it already: no change of duty
            await audit.record(redis, "dispatch", who, "duty.take", district,
                               f"{dispatcher_id} after {before}")
        return {"district": district, "duty": duty, "previous": previous}

    @router.post("/dispatchers", status_code=201, summary="Issue a dispatcher token (admin)",
                 description="For districts whose roster volunteers holds only (422 naming "
                 "the district that is not; 503 while volunteers does not answer). An agency "
                 "desk (role agency) for an agency of volunteers' roster, of one of the "
                 "districts (else 422 naming `agency_id`).")
    @when_not_answered("asking again issues another token; one the first request may have "
                       "issued was never shown: revoke it (GET /v1/dispatchers lists it)")
    async def create_dispatcher(body: DeskRequest, who: Admin) -> dict[str, Any]:
        # A desk on a district no roster holds watches a board no report of its own reaches.
        await require_known_districts(http, body.districts, volunteers_url=settings.volunteers_url,
                                      key=settings.service_key())
        if body.agency_id is not None:  # likewise an agency desk for no agency of them
            await agency.roster_agency(http, body.agency_id, body.districts,
                                       volunteers_url=settings.volunteers_url,
                                       key=settings.service_key())
        dispatcher_id = new_id("dsp")
        # Not the devices' prefix: the other services pass those to volunteers to check.
        token = new_token(DISPATCHER_TOKEN_PREFIX)
        await store.create_dispatcher(redis, dispatcher_id=dispatcher_id, name=body.name,
                                      districts=body.districts, token=token, role=body.role,
                                      agency_id=body.agency_id)
        await audit.record(redis, "dispatch", who, "dispatcher.create", dispatcher_id,
                           f"{body.role}, districts {','.join(sorted(set(body.districts)))}"
                           + (f", agency {body.agency_id}" if body.agency_id else ""))
        return {"dispatcher_id": dispatcher_id, "token": token}

    @router.get("/dispatchers", summary="Dispatchers (admin)")
    async def dispatchers(_: Admin) -> dict[str, Any]:
        rows = await store.list_dispatchers(redis)
        return {"dispatchers": rows, "count": len(rows)}

    @router.delete("/dispatchers/{dispatcher_id}", status_code=204,
                   summary="Revoke a dispatcher token (admin)")
    async def revoke_dispatcher(dispatcher_id: str, who: Admin) -> None:
        # the name stays while an incident it acted on may be read (KPI_DAYS)
        revoked = await store.revoke_dispatcher(redis, dispatcher_id,
                                                name_kept_s=settings.kpi_days * 86400)
        if revoked is None:
            raise not_found("dispatcher")
        await audit.record(redis, "dispatch", who, "dispatcher.revoke", dispatcher_id,
                           f"districts {','.join(revoked.districts)}")
        # also here: a restore of Redis takes the audit trail back with the revocation
        log.info("dispatcher %s revoked", dispatcher_id)
        for district in revoked.duty_ended:  # every change of duty is audited
            await audit.record(redis, "dispatch", who, "duty.end", district,
                               f"{dispatcher_id}: dispatcher revoked")

    @router.get("/zones", summary="A district's zones and their owning stations, as dispatch "
                "holds them (the console's map)")
    async def zones(who: Reader,
                    district: str = Query(min_length=1, max_length=64)) -> dict[str, Any]:
        await check_known_district(who, district)
        try:
            found = await engine.zones.zones_of(district)
        except ZonesUnavailable:
            # (the 503's handler adds "; ask again")
            raise TryAgain("the district's zones are not loaded: volunteers is not "
                           "answering") from None
        return {"zones": [{"zone_id": z.zone_id, "name": z.name,
                           "station_agency_id": z.owner_agency_id,
                           "polygon": [list(xy) for xy in z.polygon]} for z in found]}

    @router.get("/units", summary="All units of a district as dispatch sees them: one screen",
                description="Each team with `missed_in_a_row`: the orders in a row it let "
                "time out, until it answers one (0: none), and `missed_since`, when the first "
                "of them did (null: none). An agency desk's: its own agency's teams only, each with "
                "`open_order_of_former_agency`: true for a team a roster import moved here "
                "from another agency while it held an order given under that agency (the "
                "order stays that agency's; its `open_order_id` is null here).")
    async def units(
        who: ReaderOrAgency,
        district: str = Query(min_length=1, max_length=64),
        status: UnitState | None = None,  # a misspelt one: a 422, not "no team"
    ) -> dict[str, Any]:
        await check_known_district(who, district)
        found = [(unit, order_id) for unit, order_id in await store.units_in(redis, district)
                 if not status or unit.status == status]
        given_to: dict[str, str | None] = {}  # an agency desk's: each open order's agency
        if who.kind == "agency":
            found = [(unit, order_id) for unit, order_id in found
                     if unit.agency_id == who.agency_id]  # not another agency's team
            held = [order_id for _, order_id in found if order_id]
            given_to = dict(zip(held, await store.orders_agencies(redis, held), strict=True))
        rows = []
        for unit, order_id in found:
            # An order is its agency's as recorded on it (its board, its figures): a team a
            # roster import moved here goes on with one given under its former agency,
            # which this desk may not open. Said so, its id left out: no link to a 403.
            shown = (order_id if who.kind != "agency" or not order_id
                     or given_to.get(order_id) == who.agency_id else None)
            row: dict[str, Any] = {
                "team_id": unit.team_id, "name": unit.name, "agency_id": unit.agency_id,
                "agency_kind": unit.agency_kind, "agency_role": unit.agency_role,
                "mode": unit.mode, "status": unit.status, "on_shift": unit.on_shift,
                "skills": list(unit.skills), "home_zone_id": unit.home_zone_id,
                "position": {"lat": unit.lat, "lon": unit.lon,
                             "at": unit.fix_at.isoformat() if unit.fix_at else None}
                if unit.lat is not None else None,
                "open_order_id": shown,
                # orders in a row it let time out until it answers one, since the first:
                # it is offered every incident all the same (call it, or take it off)
                "missed_in_a_row": unit.missed_in_a_row,
                "missed_since": unit.missed_since.isoformat() if unit.missed_since else None,
            }
            if who.kind == "agency":
                row["open_order_of_former_agency"] = (
                    bool(order_id) and given_to.get(order_id) not in (None, who.agency_id))
            rows.append(row)
        return {"units": rows, "count": len(rows)}

    @router.get("/shift-check-ins", summary="The teams planned for the shift being worked now "
                "in a district, those not checked in first: whom the duty dispatcher calls",
                description=SHIFT_CHECK_INS_DESCRIPTION)
    async def shift_check_ins(
        who: ReaderOrAgency, district: str = Query(min_length=1, max_length=64),
    ) -> dict[str, Any]:
        await check_known_district(who, district)
        return await roll_call.shift_check_ins(
            http, district, volunteers_url=settings.volunteers_url,
            key=settings.service_key(),
            agency_id=who.agency_id if who.kind == "agency" else None)

    @router.get("/pipeline", summary="Whether reports, orders and teams' answers, statuses "
                "and positions are moving between the services: the console's warning",
                description=PIPELINE_DESCRIPTION)
    async def pipeline_state(
        who: Reader,
        district: str | None = Query(
            default=None, max_length=64, description="whose teams on shift make a silence of "
            "positions a fault: one district; without it, a dispatcher's or inspector's "
            "districts (the admin's: not looked for, `teams_on_shift` null)"),
    ) -> dict[str, Any]:
        if district:
            await check_known_district(who, district)
        districts = ([district] if district else list(who.districts)
                     if who.kind in DESK_KINDS else None)
        return await pipeline.read_pipeline(redis, districts=districts, now=time.time(),
                                            policy=engine.policy)

    async def period_incidents(who: Principal, district: str | None, since: datetime | None,
                               until: datetime | None, *, default: timedelta,
                               now: datetime, asked: bool = True
                               ) -> tuple[datetime, datetime, list[dict[str, str]]]:
        """The incidents reported in [since, until) (default: the last `default`), of one
        district (required of a dispatcher, and one of theirs) or, for the admin, of all.
        The fields first, then the district (DESIGN: a 422 before a 403). `asked`: the
        period is the caller's, held to MAX_PERIOD; a year before one (compare) may be a
        day longer, a 29 February more."""
        since, until, ids = await period_ids(who, district, since, until, default=default,
                                             now=now, asked=asked)
        return since, until, await store.incidents_bulk(redis, ids)

    async def period_ids(who: Principal, district: str | None, since: datetime | None,
                         until: datetime | None, *, default: timedelta, now: datetime,
                         asked: bool = True) -> tuple[datetime, datetime, list[str]]:
        """period_incidents' period and the ids of its incidents, not read."""
        until = until or now
        since = since or until - default
        if since > until:
            raise ApiError(422, "invalid_field", "since must not be after until", "since")
        if asked and until - since > MAX_PERIOD:
            raise ApiError(422, "invalid_field",
                           f"the period may span at most {MAX_PERIOD.days} days", "since")
        if district:
            await check_known_district(who, district)
        elif who.kind in DESK_KINDS:
            article = "an" if who.kind[0] in "aeiou" else "a"  # an inspector, a dispatcher
            raise ApiError(422, "invalid_field",
                           f"district is required for {article} {who.kind}", "district")
        ids = await store.list_incidents(redis, district=district, since_ts=since.timestamp(),
                                         until_ts=until.timestamp(), limit=1_000_000,
                                         newest_first=False)
        return since, until, ids

    @router.get("/kpis", summary="KPIs over a period, with incidents by hour and by zone",
                description=KPIS_DESCRIPTION)
    async def kpis(
        who: ReaderOrAgency,
        since: Instant | None = Query(default=None, description=SINCE),
        until: Instant | None = Query(default=None, description=UNTIL),
        day: CalendarDate | None = Query(
            default=None, alias="date", ge=FIRST_DAY, le=LAST_DAY,
            description="instead of since and until: this calendar day on the district's "
            "clock (TIMEZONE), 00:00 to 24:00 there, whatever the caller's clock: the "
            "morning review of yesterday (the answer's `today` is the district's date now)"),
        district: str | None = Query(default=None, max_length=64,
                                     description=REVIEW_DISTRICT),
        category: str | None = Query(
            default=None, max_length=64,
            description="one category's incidents only, e.g. ebike_theft with by_week"),
        compare: Literal["previous_year"] | None = Query(
            default=None, description="previous_year: also the same period a year earlier, "
            "by category (incidents by type, year on year)"),
    ) -> dict[str, Any]:
        check_category(category)
        if day is not None:
            if since is not None or until is not None:
                raise ApiError(422, "invalid_field", "date is a whole day on the district's "
                               "clock: ask with it alone, or with since and until", "date")
            since, until = review.local_day(day, tz)
        now = datetime.now(UTC)
        if who.kind == "agency":
            return await agency_kpis(who, district, since, until, category=category,
                                     compare=compare, now=now)
        since, until, incidents = await period_incidents(who, district, since, until,
                                                         default=timedelta(days=1), now=now)
        incidents = of_category(incidents, category)
        deadlines = engine.policy.deadlines_s
        out = {**await compute_kpis(redis, incidents, since=since, until=until, now=now),
               "routing_timeout_incidents": review.routing_timeout_incidents(incidents),
               # beside the times to assign, which count only the incidents that got a team
               "never_assigned": review.never_assigned(incidents, deadlines, now),
               "assigned_after_deadline": review.assigned_after_deadline(incidents, deadlines,
                                                                         now),
               "timezone": str(tz), "today": now.astimezone(tz).date().isoformat(),
               "category": category,
               "by_hour": review.by_hour(incidents, tz),
               "by_week": review.by_week(incidents, tz, since=since, until=until),
               "by_zone": review.by_zone(incidents),
               "resolved_by_force": review.resolved_by_force(incidents),
               "handled_by_force": review.handled_by_force(incidents),
               "filings_due": await filings_due(who, district, since, until,
                                                category=category, now=now)}
        if compare == "previous_year":
            before_since, before_until = review.a_year_earlier(since), review.a_year_earlier(until)
            _, _, before = await period_incidents(who, district, before_since, before_until,
                                                  default=timedelta(days=1), now=now,
                                                  asked=False)
            counts = review.by_category(of_category(before, category))
            out["previous_year"] = {"since": before_since.isoformat(),
                                    "until": before_until.isoformat(),
                                    "incidents": sum(counts.values()), "by_category": counts}
        return out

    async def filings_due(who: Principal, district: str | None, since: datetime,
                          until: datetime, *, category: str | None,
                          now: datetime) -> dict[str, int]:
        """The hand-overs of `district` (the admin's without it: of every district) whose
        filing fell due in [since, until), however long before it reported: how many
        (`due`), filed by then, not filed by then (受立案超期 of the period: filed late,
        still owed, closed by the command room after it) and of those still owed."""
        await records.index_filings_due_before(redis)  # once: those of an earlier version
        ids = await store.filings_due_between(redis, since_ts=since.timestamp(),
                                              until_ts=until.timestamp())
        out = {"due": 0, "filed_in_time": 0, "overdue": 0, "unfiled": 0}
        for inc in of_category(await store.incidents_bulk(redis, ids), category):
            if (district and inc.get("district") != district
                    or who.kind in DESK_KINDS and inc.get("district") not in who.districts
                    or not review.counted(inc)):
                continue
            judged = records.filing_outcome(inc, await _handover_orders(redis, inc), now)
            if judged is None:
                continue
            out["due"] += 1
            out["filed_in_time"] += judged.in_time
            out["overdue"] += judged.overdue
            out["unfiled"] += judged.unfiled
        return out

    async def agency_kpis(who: Principal, district: str | None, since: datetime | None,
                          until: datetime | None, *, category: str | None,
                          compare: str | None, now: datetime) -> dict[str, Any]:
        """An agency desk's figures: of its own teams' orders of the incidents of `district`
        (one of its own, required) reported in the period (review.agency_figures)."""
        since, until, ids = await period_ids(who, district, since, until,
                                             default=timedelta(days=1), now=now)
        if compare is not None:
            raise forbidden("an agency desk's figures are of its teams' orders, kept "
                            f"{_days(settings.records_days)} days after their incident ended: none "
                            "of a year before", "compare")
        found: list[tuple[dict[str, str], list[dict[str, str]]]] = []
        for start in range(0, len(ids), BOARD_BATCH):
            batch = ids[start:start + BOARD_BATCH]
            orders = await store.agency_orders(redis, batch, who.agency_id or "")
            ours = [(incident_id, mine) for incident_id, mine
                    in zip(batch, orders, strict=True) if mine]
            heads = await store.incidents_heads(redis, [incident_id for incident_id, _ in ours],
                                                ("district", "category", "priority"))
            found += [(head, mine) for (_, mine), head in zip(ours, heads, strict=True)
                      if head is not None and head["district"] in who.districts
                      and (category is None or head.get("category") == category)]
        return {"since": since.isoformat(), "until": until.isoformat(), "timezone": str(tz),
                "today": now.astimezone(tz).date().isoformat(), "category": category,
                "agency_id": who.agency_id, "orders_kept_days": _days(settings.records_days),
                **review.agency_figures(found)}

    @router.get("/kpis/teams", summary="Each team's orders over a period and what became of "
                "them: the teams that keep declining or missing their orders first",
                description=TEAM_RECORD_DESCRIPTION)
    async def team_record(
        who: Reader,
        since: Instant | None = Query(default=None, description=SINCE),
        until: Instant | None = Query(default=None, description=UNTIL),
        day: CalendarDate | None = Query(
            default=None, alias="date", ge=FIRST_DAY, le=LAST_DAY,
            description="instead of since and until: this calendar day on the district's "
            "clock (TIMEZONE)"),
        district: str | None = Query(default=None, max_length=64,
                                     description=REVIEW_DISTRICT),
        agency_kind: AgencyKind | None = Query(
            default=None, description="one kind's teams only: police, security, volunteer"),
    ) -> dict[str, Any]:
        if day is not None:
            if since is not None or until is not None:
                raise ApiError(422, "invalid_field", "date is a whole day on the district's "
                               "clock: ask with it alone, or with since and until", "date")
            since, until = review.local_day(day, tz)
        now = datetime.now(UTC)
        since, until, incidents = await period_incidents(who, district, since, until,
                                                         default=timedelta(days=30), now=now)
        orders = await store.orders_of_each(redis, [inc["incident_id"] for inc in incidents])
        return {"since": since.isoformat(), "until": until.isoformat(), "district": district,
                "agency_kind": agency_kind,
                # RECORDS_DAYS after they ended, incidents keep their figures, not their orders
                "incidents_without_orders": sum(
                    1 for inc in incidents if inc.get("archived_at")),
                "teams": review.team_record(incidents, orders, agency_kind=agency_kind)}

    def check_category(category: str | None) -> None:
        if category is not None and category not in engine.policy.categories:
            raise ApiError(422, "invalid_field", f"category '{category}' is not in the policy",
                           "category")

    def of_category(incidents: list[dict[str, str]],
                    category: str | None) -> list[dict[str, str]]:
        return incidents if category is None else [
            inc for inc in incidents if inc.get("category") == category]

    @router.get("/heatmap", summary="Where and at what hours incidents were reported: H3 cells, "
                "the hottest first", description=HEATMAP_DESCRIPTION)
    async def heatmap(
        who: Reader,
        since: Instant | None = Query(default=None, description=SINCE),
        until: Instant | None = Query(default=None, description=UNTIL),
        district: str | None = Query(default=None, max_length=64,
                                     description=REVIEW_DISTRICT),
        category: str | None = Query(default=None, max_length=64),
        hours: str | None = Query(
            default=None, max_length=8, description="whole hours to keep on the district's "
            "clock (the answer's `timezone`), e.g. 19-1: 19:00 to 02:00, across midnight "
            "(19-2 keeps 02:00 to 02:59 too); the answer's `hours` lists them"),
        resolution: int = Query(default=review.DEFAULT_RESOLUTION, ge=review.MIN_RESOLUTION,
                                le=review.MAX_RESOLUTION, description="H3 resolution"),
        limit: int = Query(default=50, ge=1, le=MAX_PAGE),
    ) -> dict[str, Any]:
        check_category(category)
        try:
            keep = review.parse_hours(hours) if hours else None
        except ValueError as exc:
            raise ApiError(422, "invalid_field", f"hours {exc}", "hours") from None
        now = datetime.now(UTC)
        since, until, incidents = await period_incidents(who, district, since, until,
                                                         default=timedelta(days=28), now=now)
        return {"since": since.isoformat(), "until": until.isoformat(), "timezone": str(tz),
                "district": district, "category": category, "hours": sorted(keep or ()),
                **review.heat_map(incidents, tz, resolution=resolution, hours=keep,
                                  category=category, limit=limit)}

    return router


def in_order(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timeline in the order things happened (as intake shows it): an answer dispatch
    handled late (given before the command room's close, or reclaimed after a later answer
    went through) is stored after the entries handled before it, at the time it was given.
    Entries of the same instant keep the order they were written in."""
    return sorted(timeline, key=lambda entry: datetime.fromisoformat(entry["at"]))


def _dispatcher_named(value: str) -> str | None:
    """The dispatcher's (or inspector's) id a timeline entry's argument names as the
    command room's routes write who acted (`dispatcher:dsp_…`); None for anything else (the
    admin, a team, dispatch itself)."""
    kind, sep, subject = value.partition(":")
    return subject if sep and kind in DESK_KINDS and subject else None


async def with_dispatcher_names(redis: Redis,
                                timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries, each naming a dispatcher in its `detail_args` ("taken back by
    dispatcher:dsp_5fac…") with `detail_names`: that argument's dispatcher's display name as
    dispatch knows it now, by argument ({"by": "Wang Lei"}), all read in one round trip. A
    desk cannot turn an id into a name (the list of dispatchers is the admin's). Only in
    this answer: the stored entries, which reach the reporting systems through intake's
    view, keep the id alone. A revoked dispatcher's name is the one kept at revocation."""
    named = {id_ for entry in timeline for value in (entry.get("detail_args") or {}).values()
             if isinstance(value, str) and (id_ := _dispatcher_named(value))}
    names = await store.dispatcher_names(redis, named)
    if not names:
        return timeline
    out = []
    for entry in timeline:
        found = {arg: names[id_] for arg, value in (entry.get("detail_args") or {}).items()
                 if isinstance(value, str) and (id_ := _dispatcher_named(value)) in names}
        out.append({**entry, "detail_names": found} if found else entry)
    return out


def _position(inc: dict[str, str], order: paging.Order) -> paging.Position:
    """A record's place on the board in `order` from its own time (a broken one: last)."""
    at = _order_ts(inc, order)
    return paging.Position(float("-inf") if math.isnan(at) else at, inc["incident_id"])


def _page(rows: list[dict[str, Any]], *, next_at: paging.Position | None,
          scanned_to: float | None, order: paging.Order) -> dict[str, Any]:
    """The board's answer: the rows, and where the next page starts when there may be one."""
    return {"incidents": rows, "count": len(rows),
            "next": paging.encode_cursor(next_at, order) if next_at is not None else None,
            "more": next_at is not None,
            "scanned_to": (datetime.fromtimestamp(scanned_to, UTC).isoformat()
                           if scanned_to is not None and math.isfinite(scanned_to) else None)}


def _lost_page(rows: list[dict[str, Any]], *, next_id: str | None,
               scanned_to: str | None) -> dict[str, Any]:
    """The reports not handled: the rows, and where the next page starts when there may be
    one (the dead letters older than `next_id`); `scanned_to`: the dead letter the look-up
    budget stopped at, as its time."""
    return {"reports": rows, "count": len(rows),
            "next": paging.encode_letter_cursor(next_id) if next_id is not None else None,
            "more": next_id is not None,
            "scanned_to": (datetime.fromtimestamp(streams.entry_id_order(scanned_to)[0] / 1000,
                                                  UTC).isoformat()
                           if scanned_to is not None else None)}


def _reported_ts(inc: dict[str, str]) -> float:
    try:
        return datetime.fromisoformat(inc["reported_at"]).timestamp()
    except (KeyError, ValueError, OverflowError):  # a record stored broken: in no period
        return float("nan")


def _order_ts(inc: dict[str, str], order: paging.Order) -> float:
    """The record's time in the board's `order`: received (as store.RECEIVED scores it; a
    record of before dispatch kept it, its report's), or reported."""
    if order == "received" and inc.get("received_at"):
        try:
            return datetime.fromisoformat(inc["received_at"]).timestamp()
        except (ValueError, OverflowError):
            pass
    return _reported_ts(inc)


def _late_by_s(inc: dict[str, str]) -> int | None:
    """How many seconds after its report dispatch received it, when more than
    domain.LATE_REPORT (the scene is that old); None when in time, or not known."""
    try:
        return domain.late_by_s(datetime.fromisoformat(inc["reported_at"]),
                                datetime.fromisoformat(inc["received_at"]))
    except (KeyError, ValueError, OverflowError):
        return None


def _figures(inc: dict[str, str], orders: list[dict[str, str]],
             now: datetime) -> dict[str, Any]:
    """review.incident_figures, with how its hand-over's filing stands."""
    filing = records.filing_outcome(inc, orders, now)
    return review.incident_figures(inc, None if filing is None else {
        "filed_in_time": filing.in_time, "overdue": filing.overdue,
        "unfiled": filing.unfiled})


async def _handover_orders(redis: Redis, inc: dict[str, str]) -> list[dict[str, str]]:
    """A hand-over's orders, which judge its filing; none to read otherwise."""
    if not inc.get("handed_over_at") or inc.get("archived_at"):
        return []
    return await store.orders_of(redis, inc["incident_id"])


async def unfiled_filings(redis: Redis, inc: dict[str, str], now: datetime) -> list[str]:
    """The hand-over order its station still owes past the due (records.unfiled_filings)."""
    return records.unfiled_filings(inc, await _handover_orders(redis, inc), now)


async def compute_kpis(redis: Redis, incidents: list[dict[str, str]], *, since: datetime,
                       until: datetime, now: datetime) -> dict[str, Any]:
    by_category: dict[str, int] = {}
    by_status: dict[str, int] = {}
    to_assign: list[float] = []
    to_ack: list[float] = []
    to_scene: dict[str, list[float]] = {}  # by priority: a P1's response time is its own
    timeouts = declines = resolved = handed_over = overdue = unfiled = 0
    followed = visits = holding = 0
    linked = 0
    for inc in incidents:
        if review.duplicate(inc):  # a duplicate report: the incident is counted once
            linked += 1
            continue
        by_category[inc["category"]] = by_category.get(inc["category"], 0) + 1
        by_status[inc["status"]] = by_status.get(inc["status"], 0) + 1
        try:
            reported: datetime | None = domain.acted_from(inc)
        except ValueError:  # a record stored broken: counted, its times to act unknown
            reported = None
        if reported and inc.get("first_assigned_at"):
            to_assign.append((datetime.fromisoformat(inc["first_assigned_at"]) - reported)
                             .total_seconds())
        if reported and inc.get("first_ack_at"):
            to_ack.append((datetime.fromisoformat(inc["first_ack_at"]) - reported)
                          .total_seconds())
        if reported and inc.get("first_on_scene_at"):
            to_scene.setdefault(inc["priority"], []).append(
                (datetime.fromisoformat(inc["first_on_scene_at"]) - reported).total_seconds())
        timeouts += int(inc.get("timeouts") or 0)
        declines += int(inc.get("declines") or 0)
        if inc.get("resolved_at") and not inc.get("handed_over_at"):
            resolved += 1
        if inc.get("handed_over_at"):
            handed_over += 1
            orders = await _handover_orders(redis, inc)
            overdue += len(records.overdue_filings(inc, orders, now))
            unfiled += len(records.unfiled_filings(inc, orders, now))
        # revisited: a visit made (answered), not one only ordered (its verdict unknown:
        # counted, it read as an agreement not holding); holding: the last visit found the
        # agreement holding (the incident is resolved since its filing either way)
        if made := int(inc.get("followup_visits_made") or 0):
            followed += 1
            visits += made
            holding += inc.get("followup_held") == "1"

    def seconds(values: list[float]) -> dict[str, float | None]:
        return {"p50": domain.percentile(values, 0.5), "p90": domain.percentile(values, 0.9),
                "count": len(values)}

    finished = resolved + handed_over
    return {
        "since": since.isoformat(), "until": until.isoformat(),
        "incidents": sum(by_category.values()),
        "by_category": by_category, "by_status": by_status,
        # duplicate reports linked to an open incident: in no other figure
        "linked_reports": linked,
        "time_to_assign_s": seconds(to_assign), "time_to_acknowledge_s": seconds(to_ack),
        # the response time: from the report to the first team on scene, overall and by
        # priority (DOMAIN.md: a "one-minute response circle" near street stations)
        "time_to_scene_s": {**seconds([s for v in to_scene.values() for s in v]),
                            "by_priority": {p: seconds(v) for p, v in sorted(to_scene.items())}},
        "routing_timeouts": timeouts,
        # offers a team refused (DOMAIN.md: not for a scene outside its zone): the board's
        # ?problem=declined lists their incidents
        "declines": declines,
        "resolved_on_site": resolved, "handed_over": handed_over,
        "resolved_on_site_share": round(resolved / finished, 3) if finished else None,
        # 受立案超期: hand-overs of the period whose filing went past its due (filed late,
        # unfiled past it, closed after it), counted also once filed; of them, those the
        # station still owes (what ?problem=filing_overdue lists)
        "filings_overdue": overdue, "filings_overdue_unfiled": unfiled,
        # mediated disputes revisited until the agreement holds (DOMAIN.md: 99.6 % in one
        # station): incidents revisited, visits made, and those whose last visit found the
        # agreement holding
        "followups": {"incidents": followed, "visits": visits, "agreements_holding": holding},
    }

