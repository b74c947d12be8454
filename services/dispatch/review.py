"""The command room's look back: yesterday's incidents by place, type and hour, and the heat
map that plans tonight's patrols (DOMAIN.md, "Planning"); and an agency's own look back at
its teams' orders, for its contract reviews (agency_figures).

Plain functions over the incident records dispatch keeps: no Redis or HTTP here. Hours are
the district's local hours (settings `TIMEZONE`), of the time the incident was reported;
places are the station's zone and an H3 cell of the scene. Duplicate reports linked to
another incident are left out: the place had one incident, not two; so is, from the hours,
weeks and cells, a record whose time has no local time (stored before intake refused such
times): one bad record leaves the rest of the review standing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import h3

from . import domain
from .domain import STATION_KINDS, percentile, sent_as

log = logging.getLogger(__name__)

HOURS = 24
# The instants a review's period may start or end at: a year back (compare), a week on
# (by_week) and the district's offset (at most 14 hours either way) of any of them stay
# within the years 1 to 9999 Python's datetime holds.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)  # 9998 to its end
NO_ZONE = "(none)"  # an incident outside every zone the district knows
# An incident whose zone was never known: reported while the district's zones could not be
# loaded (volunteers away), and over before they came back (dispatch looks no further then),
# or still away after the engine's ZONE_WAIT, when it stopped looking (`zone_unknown`).
UNKNOWN_ZONE = "(unknown)"
# H3 resolutions a heat map may ask for: 6 (~36 km² a cell, a whole district in a few) to
# 10 (~0.015 km², a street corner). 8 (~0.74 km², a few blocks) is a patrol's beat.
MIN_RESOLUTION, MAX_RESOLUTION, DEFAULT_RESOLUTION = 6, 10, 8


def duplicate(inc: Mapping[str, str]) -> bool:
    """Whether the record is a duplicate report of another incident: linked to it, or
    closed by the command room while linked (one whose link dispatch never judged, found
    of that incident after all: `closed_as_duplicate`)."""
    return inc.get("status") == "linked" or inc.get("closed_as_duplicate") == "1"


def counted(inc: Mapping[str, str]) -> bool:
    """Whether the incident counts in a review: a duplicate report of another does not."""
    return not duplicate(inc) and bool(inc.get("reported_at"))


def local_time(inc: Mapping[str, str], tz: tzinfo) -> datetime | None:
    """When the incident was reported, in the district's time; None when its record's time
    cannot be read or has no local time (beyond the year 9999 there)."""
    try:
        return datetime.fromisoformat(inc["reported_at"]).astimezone(tz)
    except (ValueError, OverflowError):
        log.warning("incident %s: reported_at %r has no local time in %s; left out",
                    inc.get("incident_id"), inc.get("reported_at"), tz)
        return None


def local_hour(inc: Mapping[str, str], tz: tzinfo) -> int | None:
    moment = local_time(inc, tz)
    return None if moment is None else moment.hour


def parse_hours(spec: str) -> frozenset[int]:
    """`"19-2"` (19:00 to 02:59, across midnight), `"8-17"`, `"22"`: the local hours a heat
    map keeps. ValueError when it is not such a range."""
    first, sep, last = spec.strip().partition("-")
    try:
        start = int(first)
        end = int(last) if sep else start
    except ValueError:
        start = end = -1
    if not (0 <= start < HOURS and 0 <= end < HOURS):
        raise ValueError("must be an hour from 0 to 23 or a range of them, e.g. 19-2")
    span = (end - start) % HOURS + 1
    return frozenset((start + i) % HOURS for i in range(span))


def local_day(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The district's calendar day as a period [since, until): its midnight to the next on
    the district's clock (23 or 25 hours on a day the clocks change), as the morning review
    means "yesterday". A desk's own clock may be on another zone (a PC set to UTC: its day
    begins at 08:00 in Nanning)."""
    return (datetime.combine(day, time(), tzinfo=tz),
            datetime.combine(day + timedelta(days=1), time(), tzinfo=tz))


def week_of(moment: datetime, tz: tzinfo) -> date:
    """The local Monday of the week holding `moment`."""
    return monday_of(moment.astimezone(tz).date())


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def by_week(incidents: Iterable[Mapping[str, str]], tz: tzinfo, *, since: datetime,
            until: datetime) -> list[dict[str, object]]:
    """Incidents per local week (Monday to Sunday) of the period [since, until), every week
    of it listed, the oldest first: the weekly trend the reports quote (e-bike thefts 19 a
    week, 5 after targeted patrols). A period ending at a Monday's midnight ends with the
    week before; an empty one (since = until) lists its one week."""
    moments = (local_time(inc, tz) for inc in incidents if counted(inc))
    counts = Counter(monday_of(moment.date()) for moment in moments if moment is not None)
    last_instant = max(since, until - timedelta(microseconds=1))  # until is left out
    weeks, week, last = [], week_of(since, tz), week_of(last_instant, tz)
    while week <= last:
        weeks.append({"week": week.isoformat(), "count": counts.get(week, 0)})
        week += timedelta(days=7)
    return weeks


def a_year_earlier(moment: datetime) -> datetime:
    """The same date and time a year before (29 February: the 28th)."""
    try:
        return moment.replace(year=moment.year - 1)
    except ValueError:
        return moment.replace(year=moment.year - 1, day=28)


def by_category(incidents: Iterable[Mapping[str, str]]) -> dict[str, int]:
    """Incidents per category, the most frequent first."""
    counts = Counter(inc.get("category") or "unknown" for inc in incidents if counted(inc))
    return dict(counts.most_common())


def by_hour(incidents: Iterable[Mapping[str, str]], tz: tzinfo) -> list[int]:
    """Incidents per local hour of the day, 0 to 23."""
    counts = [0] * HOURS
    for inc in incidents:
        if counted(inc) and (hour := local_hour(inc, tz)) is not None:
            counts[hour] += 1
    return counts


def routing_timeout_incidents(incidents: Iterable[Mapping[str, str]]) -> int:
    """Incidents with an order withdrawn for a missed acknowledgement: DOMAIN.md's "incident
    routing timeout" (警情分流超时), what the board's ?problem=routing_timeout lists. The
    KPIs' `routing_timeouts` counts the orders (an incident two teams let time out, two)."""
    return sum(1 for inc in incidents if counted(inc) and int(inc.get("timeouts") or 0) > 0)


# An incident's end, for one that never had a team: the command room's close (an incident
# with no order is closed, not resolved or handed over, but a record may say otherwise).
_ENDED = ("resolved", "handed_over", "closed")
_END_TIMES = ("closed_at", "resolved_at", "handed_over_at")


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def waited_for_a_team_s(inc: Mapping[str, str], now: datetime) -> float | None:
    """How long the incident waited for its first team (`first_assigned_at`: dispatch's
    order, a backup, one sent by hand; a station's hand-over or visit never), from dispatch's
    receipt of it (`received_at`, the same clock as the order's; a record of before dispatch
    kept it: its report's time): to its first order; never sent one, to its end (the
    command room's close) or, still open, to `now`. Not from the report: a report that
    reached dispatch late (a reporting system's queue stuck, `late_by_s`) waited that long
    where no dispatcher could see it, which the board and its timeline say apart. None where
    the record's times cannot be read, or an ended one has no end time."""
    start = _time(inc.get("received_at")) or _time(inc.get("reported_at"))
    if start is None:
        return None
    end = _time(inc.get("first_assigned_at"))
    if end is None and not inc.get("first_assigned_at"):
        if inc.get("status") in _ENDED:
            end = next((t for f in _END_TIMES if (t := _time(inc.get(f))) is not None), None)
        else:
            end = now
    return None if end is None else (end - start).total_seconds()


def no_team_by_deadline(inc: Mapping[str, str], deadlines_s: Mapping[str, float],
                        now: datetime) -> bool:
    """Whether the incident waited for its first team longer than its priority's acknowledge
    deadline (DESIGN: P1 30 s, P2 60 s, P3 120 s, P4 300 s; the policy's `deadlines_s`), the
    priority it has now: sent one late, or never sent one and still waiting past it, or
    ended past it without one. What the board's ?problem=unassigned_late lists."""
    deadline = deadlines_s.get(inc.get("priority") or "")
    if not counted(inc) or deadline is None:
        return False
    waited = waited_for_a_team_s(inc, now)
    return waited is not None and waited > deadline


def never_assigned(incidents: Iterable[Mapping[str, str]], deadlines_s: Mapping[str, float],
                   now: datetime) -> dict[str, int]:
    """The incidents no team was ever sent to (no `first_assigned_at`): the time to assign
    counts only those that got one, and an overloaded night's dozens left waiting read as
    nothing. `open`: still waiting (on the board, unassigned or dispatching); `ended`: over
    without any team (the command room closed them); `past_deadline`: of all of them, those
    that waited longer than their priority's acknowledge deadline (still, or until their
    end)."""
    out = {"incidents": 0, "open": 0, "ended": 0, "past_deadline": 0}
    for inc in incidents:
        if not counted(inc) or inc.get("first_assigned_at"):
            continue
        out["incidents"] += 1
        out["ended" if inc.get("status") in _ENDED else "open"] += 1
        out["past_deadline"] += no_team_by_deadline(inc, deadlines_s, now)
    return out


def assigned_after_deadline(incidents: Iterable[Mapping[str, str]],
                            deadlines_s: Mapping[str, float], now: datetime) -> int:
    """The incidents whose first team was sent later than their priority's acknowledge
    deadline after dispatch received them: DOMAIN.md's 警情分流超时 as the incident sees it
    (no team in time), which `routing_timeouts` (orders a team let time out) does not count
    when there was no team to offer it to."""
    return sum(1 for inc in incidents if counted(inc) and inc.get("first_assigned_at")
               and no_team_by_deadline(inc, deadlines_s, now))


def zone_of(inc: Mapping[str, str]) -> str:
    """The incident's zone as the review names it: its own, NO_ZONE where the district's
    zones were looked at and none holds the place, UNKNOWN_ZONE where they could not be
    (its zone still pending, or given up on: `zone_unknown`): not knowing the zone is no
    place outside every zone."""
    if inc.get("zone_id"):
        return inc["zone_id"]
    unknown = inc.get("zone_pending") == "1" or inc.get("zone_unknown") == "1"
    return UNKNOWN_ZONE if unknown else NO_ZONE


def by_zone(incidents: Iterable[Mapping[str, str]]) -> dict[str, int]:
    """Incidents per zone (a station's territory), the busiest first."""
    counts = Counter(zone_of(inc) for inc in incidents if counted(inc))
    return dict(counts.most_common())


# Who handled it, named as the dispatch rules name a team.
force_of = sent_as


def resolved_by_force(incidents: Iterable[Mapping[str, str]]) -> dict[str, int]:
    """Incidents resolved on site, by the force of the team that resolved them."""
    counts = Counter(inc.get("resolved_by_force") or "unknown" for inc in incidents
                     if counted(inc) and inc.get("resolved_at") and not inc.get("handed_over_at"))
    return dict(counts.most_common())


def handled_by(inc: Mapping[str, str]) -> str | None:
    """The force that handled the incident on site: the team's that handed it over to the
    station, else the one that resolved it there; None while neither happened. A record
    written before dispatch kept who handled it: a resolution's team (it was kept), a
    hand-over's `unknown`."""
    if inc.get("handed_over_at"):
        return inc.get("handled_by_force") or "unknown"
    if inc.get("resolved_at"):
        return inc.get("handled_by_force") or inc.get("resolved_by_force") or "unknown"
    return None


def handled_by_force(incidents: Iterable[Mapping[str, str]]) -> dict[str, dict[str, object]]:
    """Incidents handled on site (resolved there or handed over to the station), by the
    force of the team that resolved or handed over: each force's count, its share of all
    handled, and how many it resolved on site (with their share of its own) and handed
    over. The most handled first. DOMAIN.md's "share handled by street patrol" is
    `police:patrol`'s share; its on-site resolution rate, its `resolved_on_site_share`.
    Each incident's force as handled_by names it."""
    resolved: Counter[str] = Counter()
    handed: Counter[str] = Counter()
    for inc in incidents:
        if not counted(inc) or (force := handled_by(inc)) is None:
            continue
        (handed if inc.get("handed_over_at") else resolved)[force] += 1
    total = resolved.total() + handed.total()
    out: dict[str, dict[str, object]] = {}
    for force, count in sorted((resolved + handed).items(), key=lambda kv: (-kv[1], kv[0])):
        out[force] = {"handled": count, "share": round(count / total, 3),
                      "resolved_on_site": resolved[force], "handed_over": handed[force],
                      "resolved_on_site_share": round(resolved[force] / count, 3)}
    return out


# An incident's times to act as the KPIs count them: (the answer's name, the record's field).
_TIMES_TO_ACT = (("time_to_assign_s", "first_assigned_at"),
                 ("time_to_acknowledge_s", "first_ack_at"),
                 ("time_to_scene_s", "first_on_scene_at"))


def incident_figures(inc: Mapping[str, str],
                     filing: Mapping[str, bool] | None) -> dict[str, object]:
    """How the KPIs count one incident, for an inspector checking the case (also once
    archived: these are the fields the archive keeps): whether it counts at all (a
    duplicate report does not), resolved on site or handed over and by which force, when it
    was resolved, handed over or closed, its times to act from the report (domain.acted_from)
    and `filing`, how its hand-over's filing stands (records.filing_outcome; None: none
    owed)."""
    try:
        start: datetime | None = domain.acted_from(dict(inc))
    except (KeyError, ValueError):  # a record stored broken: its times unknown
        start = None
    times: dict[str, float | None] = {}
    for name, fieldname in _TIMES_TO_ACT:
        at = _time(inc.get(fieldname))
        times[name] = (None if start is None or at is None
                       else round((at - start).total_seconds(), 3))
    return {
        "counted": counted(inc),
        "resolved_on_site": bool(inc.get("resolved_at")) and not inc.get("handed_over_at"),
        "handed_over": bool(inc.get("handed_over_at")),
        "handled_by_force": handled_by(inc),
        **{name: inc.get(name) or None for name in ("resolved_at", "handed_over_at",
                                                    "closed_at")},
        **times,
        "filing": dict(filing) if filing is not None else None,
    }


@dataclass
class Cell:
    cell: str
    count: int = 0
    by_hour: list[int] = field(default_factory=lambda: [0] * HOURS)
    by_category: Counter[str] = field(default_factory=Counter)

    def view(self) -> dict[str, object]:
        lat, lon = h3.cell_to_latlng(self.cell)
        peak = max(range(HOURS), key=lambda h: (self.by_hour[h], -h))
        return {"cell": self.cell, "lat": round(lat, 6), "lon": round(lon, 6),
                "count": self.count, "peak_hour": peak, "by_hour": self.by_hour,
                "by_category": dict(self.by_category.most_common())}


def heat_map(incidents: Iterable[Mapping[str, str]], tz: tzinfo, *, resolution: int,
             hours: frozenset[int] | None = None, category: str | None = None,
             limit: int) -> dict[str, object]:
    """The H3 cells where incidents were reported, the hottest first (ties: the cell id),
    each with its count by local hour and by category; only the `hours` and `category`
    asked for. `limit` cells at most; `incidents` and `cells` count them all."""
    cells: dict[str, Cell] = {}
    total = 0
    for inc in incidents:
        if not counted(inc) or (category and inc.get("category") != category):
            continue
        hour = local_hour(inc, tz)
        if hour is None or (hours is not None and hour not in hours):
            continue
        try:
            lat, lon = float(inc["lat"]), float(inc["lon"])
        except (KeyError, ValueError):
            continue
        key = h3.latlng_to_cell(lat, lon, resolution)
        cell = cells.get(key) or cells.setdefault(key, Cell(key))
        cell.count += 1
        cell.by_hour[hour] += 1
        cell.by_category[inc.get("category") or "unknown"] += 1
        total += 1
    hottest = sorted(cells.values(), key=lambda c: (-c.count, c.cell))[:limit]
    return {"resolution": resolution, "incidents": total, "cells": len(cells),
            "hottest": [c.view() for c in hottest]}


# --- an agency's own teams (a security company's contract review) ---------------------------

# A team's answers that say it took the order (any but a refusal: the design lets answers
# skip steps), and those that say it reached the scene (resolved or handed over: it was there).
_TOOK = ("acknowledged_at", "en_route_at", "on_scene_at", "resolved_at", "handover_at")
_THERE = ("on_scene_at", "resolved_at", "handover_at")


def _seconds_after(order: Mapping[str, str], steps: tuple[str, ...]) -> float | None:
    """Seconds from the order's offer to its team's first of `steps`; None without one (or a
    record whose times do not read). Never below 0: an answer read back before its offer."""
    issued = _time(order.get("issued_at"))
    times = [t for step in steps if (t := _time(order.get(step))) is not None]
    if issued is None or not times:
        return None
    return max(0.0, (min(times) - issued).total_seconds())


def _spread(values: list[float]) -> dict[str, float | int | None]:
    return {"p50": percentile(values, 0.5), "p90": percentile(values, 0.9),
            "count": len(values)}


@dataclass
class _TeamFigures:
    name: str | None
    orders: int = 0
    declines: int = 0
    routing_timeouts: int = 0
    took: list[float] = field(default_factory=list)  # from the offer to taking it, seconds
    there: list[float] = field(default_factory=list)  # from the offer to the scene

    def view(self) -> dict[str, object]:
        return {"team_name": self.name, "orders": self.orders, "declines": self.declines,
                "routing_timeouts": self.routing_timeouts,
                "offer_to_acknowledge_s": _spread(self.took),
                "offer_to_scene_s": _spread(self.there)}


def agency_figures(incidents: Iterable[tuple[Mapping[str, str], list[Mapping[str, str]]]]
                   ) -> dict[str, object]:
    """An agency's figures from `incidents`, each an incident's record (category, priority)
    with the orders its own teams were given: how many incidents and orders, the orders by
    state now, the teams' declines, missed deadlines (routing timeouts), withdrawals,
    resolutions and hand-overs, and their times from each order's offer to the team taking
    it and to the team on scene (orders of the incident's own response: a station's
    hand-over or visit order has no deadline and is timed by its filing), overall, by the
    incident's priority and by team. What the team could answer for, not the wait before
    its offer: the command room's KPIs count from the report."""
    by_category: Counter[str] = Counter()
    by_state: Counter[str] = Counter()
    teams: dict[str, _TeamFigures] = {}
    to_scene: dict[str, list[float]] = {}
    for inc, orders in incidents:
        by_category[inc.get("category") or "unknown"] += 1
        for order in orders:
            state = order.get("state") or "unknown"
            by_state[state] += 1
            team = teams.setdefault(order.get("team_id") or "unknown",
                                    _TeamFigures(order.get("team_name") or None))
            team.orders += 1
            # An answer given by the deadline that dispatch read after it (its answers
            # behind) timed the order out all the same: no deadline the team missed, as the
            # KPIs count it, and a refusal so given is a decline (engine: answered_in_time).
            in_time = order.get("answered_in_time") if state == "timed_out" else None
            team.declines += state == "declined" or in_time == "declined"
            team.routing_timeouts += state == "timed_out" and not in_time
            if order.get("kind") in STATION_KINDS:
                continue
            if (took := _seconds_after(order, _TOOK)) is not None:
                team.took.append(took)
            if (there := _seconds_after(order, _THERE)) is not None:
                team.there.append(there)
                to_scene.setdefault(inc.get("priority") or "unknown", []).append(there)
    return {
        "incidents": sum(by_category.values()), "by_category": dict(by_category.most_common()),
        "orders": sum(by_state.values()), "by_state": dict(sorted(by_state.items())),
        "declines": sum(team.declines for team in teams.values()),
        "routing_timeouts": sum(team.routing_timeouts for team in teams.values()),
        "withdrawn": by_state["withdrawn"], "resolved": by_state["resolved"],
        "handed_over": by_state["handover"],
        "offer_to_acknowledge_s": _spread([t for team in teams.values() for t in team.took]),
        "offer_to_scene_s": {**_spread([t for v in to_scene.values() for t in v]),
                             "by_priority": {p: _spread(v) for p, v in sorted(to_scene.items())}},
        "by_team": {team_id: team.view() for team_id, team in sorted(teams.items())},
    }

# What became of an order, as a team's record counts it (domain.FINAL_ORDER_STATES; any
# other state is an order still open).
RECORD_OUTCOMES = {"declined": "declined", "timed_out": "timed_out", "resolved": "resolved",
                   "handover": "handed_over", "withdrawn": "withdrawn"}


@dataclass
class TeamRecord:
    team_id: str
    team_name: str | None
    agency_id: str | None
    agency_kind: str | None
    outcomes: Counter[str] = field(default_factory=Counter)
    incidents: list[str] = field(default_factory=list)

    def view(self) -> dict[str, object]:
        return {"team_id": self.team_id, "team_name": self.team_name,
                "agency_id": self.agency_id, "agency_kind": self.agency_kind,
                "orders": self.outcomes.total(),
                **{name: self.outcomes[name] for name in (*RECORD_OUTCOMES.values(), "open")},
                "incidents": self.incidents}


def team_record(incidents: Iterable[Mapping[str, str]],
                orders: Iterable[Iterable[Mapping[str, str]]], *,
                agency_kind: str | None = None) -> list[dict[str, object]]:
    """Each team's orders of the incidents (`orders`: each incident's, in the same order)
    and what became of them: declined, let their deadline pass (`timed_out`: an answer
    given by the deadline that dispatch read after it is no timeout of the team's, as the
    KPIs count it, but `withdrawn`, or `declined` when it was a refusal), resolved, handed
    over, withdrawn (taken back by the
    command room, or stood down when another team resolved it), still `open`; and the
    incidents, in the order given. The teams most often refusing or missing first (then the
    most orders, then the id); `agency_kind`: one kind's only. A duplicate report linked
    to another has no orders of its own."""
    teams: dict[str, TeamRecord] = {}
    for inc, of_incident in zip(incidents, orders, strict=True):
        if not counted(inc):
            continue
        for order in of_incident:
            if agency_kind and order.get("agency_kind") != agency_kind:
                continue
            team_id = order.get("team_id") or ""
            line = teams.setdefault(team_id, TeamRecord(
                team_id, order.get("team_name") or None, order.get("agency_id") or None,
                order.get("agency_kind") or None))
            state = order.get("state") or ""
            outcome = RECORD_OUTCOMES.get(state, "open")
            if state == "timed_out" and order.get("answered_in_time"):
                # answered by the deadline, read after it: a refusal is still one
                outcome = ("declined" if order["answered_in_time"] == "declined"
                           else "withdrawn")
            line.outcomes[outcome] += 1
            if inc["incident_id"] not in line.incidents:
                line.incidents.append(inc["incident_id"])

    def worst(line: TeamRecord) -> tuple[int, int, str]:
        missed = line.outcomes["declined"] + line.outcomes["timed_out"]
        return -missed, -line.outcomes.total(), line.team_id

    return [line.view() for line in sorted(teams.values(), key=worst)]
