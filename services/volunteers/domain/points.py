"""Volunteer points: who earns what, as ledger entries with deterministic ids.

Rules (DESIGN.md): 10 per resolved order, 5 per patrol hour on shift, 3 per confirmed hazard
report; only members of volunteer teams earn points, and only those on the shift. The
penalties ("rules for rewards and penalties", DOMAIN.md): 2 off for an order nobody on the
shift answered before its deadline, given back (`missed_order_reversed`, never deleted: the
ledger is append-only) when the team's answer given by the deadline is read after it; and
the coordinator's own rewards and penalties, each with its reason (`adjustment`).
- A resolved order: each member checked in to the resolving volunteer team's shift gets 10;
  a team with nobody on its shift (called in off duty by the command room), each member
  who answered the order (domain.status keeps them on the order's record), but one who
  answered on the shift and left it before the resolution.
- A confirmed hazard report (an incident of category hazard_report whose closing names the
  volunteer team that resolved it): each of those members gets 3 more; and the member who
  reported it from the street, 3. Confirmed means by someone other than the reporter's own
  team (`hazard_confirmers`, `confirmed_for_reporter`): a reporter is on the spot, often
  the nearest team to their own report and sent to it, and their own team's resolution
  alone would pay them and their teammates for a report nobody else saw (anyone could
  report made-up hazards and resolve them). That team's order earns its 10 all the same.
- Patrol: at shift end, each member gets 5 points per hour from their own check-in, counted
  in whole quarter-hours (1.25 points each, so amounts stay exact), at most
  `max_patrol_hours` per shift (a forgotten check-out earns no more).
An entry's id says what it rewards (`resolved:<order>:<member>`, `hazard:<incident>:<member>`,
`patrol:<shift>:<joined>:<member>`, `missed:<order>:<member>`,
`missed_reversed:<order>:<member>`, `adjust:<adjustment>`), so
writing it once (SET NX) makes every award exactly-once. A patrol's id names the member's
check-in (`patrol_entry_id`): a member moved away and back within one shift is paid for each
stint. (Entries written as `patrol:<shift>:<member>`, before, keep their ids: nothing reads
an id back, and no stint they paid can end again.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from .status import EndedShift

RESOLVED_ORDER_POINTS = 10
PATROL_POINTS_PER_HOUR = 5
HAZARD_REPORT_POINTS = 3
HAZARD_CATEGORY = "hazard_report"
QUARTER_POINTS = PATROL_POINTS_PER_HOUR / 4
MISSED_ORDER_POINTS = -2
MAX_ADJUSTMENT = 100  # points a coordinator gives or takes at once

Reason = Literal["resolved_order", "hazard_report", "patrol", "missed_order",
                 "missed_order_reversed", "adjustment"]


class LedgerEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    entry_id: str
    member_id: str
    team_id: str
    district: str
    points: float
    reason: Reason
    at: AwareDatetime
    order_id: str | None = None
    incident_id: str | None = None
    shift_id: str | None = None
    minutes: int | None = None
    note: str | None = None  # an adjustment's reason, for the member and the coordinator


def _each_on_shift(
    prefix: str, points: float, reason: Reason, *, incident_id: str, team_id: str,
    district: str, agency_kind: str, members_on_shift: Iterable[str], at: datetime,
    order_id: str | None,
) -> list[LedgerEntry]:
    """One entry per member on a volunteer team's shift (`<prefix>:<member>`); none for the
    members of any other kind of team."""
    if agency_kind != "volunteer":
        return []
    return [
        LedgerEntry(entry_id=f"{prefix}:{member_id}", member_id=member_id, team_id=team_id,
                    district=district, points=points, reason=reason, at=at,
                    order_id=order_id, incident_id=incident_id)
        for member_id in sorted(members_on_shift)
    ]


def award_resolved_order(
    *, order_id: str, incident_id: str, team_id: str, district: str, agency_kind: str,
    members_on_shift: Iterable[str], at: datetime,
) -> list[LedgerEntry]:
    """The order's 10, whatever its category: a hazard report's 3 wait for its confirmation
    (the incident's closing names who reported it, which the order does not)."""
    return _each_on_shift(
        f"resolved:{order_id}", RESOLVED_ORDER_POINTS, "resolved_order", incident_id=incident_id,
        team_id=team_id, district=district, agency_kind=agency_kind,
        members_on_shift=members_on_shift, at=at, order_id=order_id)


def hazard_confirmers(*, resolved_by: Iterable[str], reporter_team: str | None,
                      reporter_on: Iterable[str] = ()) -> tuple[str, ...]:
    """The teams whose resolution confirms a hazard report, to those on their shift: those
    that resolved it (the closing's `resolved_by`) but the reporter's own team, whose word
    on its own member's report confirms nothing. `reporter_team`: the reporter's team when
    they reported (the closing's `reporter_team_id`), else the one the closing's first
    reading found them on; None when no member reported it (a system did) or their team is
    not known (removed from the roster).
    `reporter_on`: the teams whose shift had the reporter on it when they resolved it (the
    order's record keeps them: `reporter_resolved`), their own team too whatever team a
    roster moved them to before the closing was read."""
    own = {reporter_team, *reporter_on}
    return tuple(team_id for team_id in resolved_by if team_id not in own)


def reporter_resolved(members: Iterable[str] | None, reporters: Iterable[str]) -> bool:
    """Whether a reporter of the incident was on the shift that resolved it (`members`, the
    order's record): that resolution is their own word, and confirms nothing."""
    return bool(set(members or ()) & set(reporters))


def confirmed_for_reporter(*, final_status: str, resolved_by: Sequence[str],
                           reporter_team: str | None, reporter_on: Iterable[str] = ()) -> bool:
    """Whether a hazard report is confirmed for the member who reported it: resolved, by a
    team other than their own. The command room's close ("closed") confirms nothing: it
    closes made-up reports and reports nobody went to the same way. A "resolved" closing
    naming no team (dispatch sends none: its resolution names the team) would be nobody's
    team's word, and counts."""
    return final_status == "resolved" and (
        not resolved_by or bool(hazard_confirmers(resolved_by=resolved_by,
                                                  reporter_team=reporter_team,
                                                  reporter_on=reporter_on)))


def award_confirmed_hazard(
    *, incident_id: str, team_id: str, district: str, agency_kind: str,
    members_on_shift: Iterable[str], at: datetime, order_id: str | None = None,
) -> list[LedgerEntry]:
    """Keyed by incident, so the order's resolution and the incident's closing award it once."""
    return _each_on_shift(
        f"hazard:{incident_id}", HAZARD_REPORT_POINTS, "hazard_report", incident_id=incident_id,
        team_id=team_id, district=district, agency_kind=agency_kind,
        members_on_shift=members_on_shift, at=at, order_id=order_id)


def patrol_quarters(start: datetime, end: datetime, *, max_hours: float) -> int:
    minutes = max(0.0, (end - start).total_seconds() / 60)
    return int(min(minutes, max_hours * 60) // 15)


def patrol_entry_id(*, shift_id: str, member_id: str, joined: datetime) -> str:
    """A stint's id: the shift, the member's check-in to it (UTC, to the microsecond, as the
    state keeps it: the same for every redelivery) and the member."""
    return f"patrol:{shift_id}:{joined.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}:{member_id}"


def award_patrol(
    *, ended: EndedShift, team_id: str, district: str, agency_kind: str, max_hours: float,
) -> list[LedgerEntry]:
    if agency_kind != "volunteer":
        return []
    entries = []
    for member_id, joined in sorted(ended.members.items()):
        quarters = patrol_quarters(joined, ended.ended_at, max_hours=max_hours)
        if quarters == 0:
            continue
        entries.append(LedgerEntry(
            entry_id=patrol_entry_id(shift_id=ended.shift_id, member_id=member_id,
                                     joined=joined), member_id=member_id,
            team_id=team_id, district=district, points=quarters * QUARTER_POINTS,
            reason="patrol", at=ended.ended_at, shift_id=ended.shift_id, minutes=quarters * 15,
            # what the member reads in their history: why the stint stopped there
            note=(f"check-in ended automatically after {max_hours:g} h without a check-out"
                  if ended.expired else None),
        ))
    return entries


def penalise_missed_order(
    *, order_id: str, incident_id: str, team_id: str, district: str, agency_kind: str,
    members_on_shift: Iterable[str], at: datetime,
) -> list[LedgerEntry]:
    """An order withdrawn because nobody on the volunteer team's shift answered in time."""
    return _each_on_shift(
        f"missed:{order_id}", MISSED_ORDER_POINTS, "missed_order", incident_id=incident_id,
        team_id=team_id, district=district, agency_kind=agency_kind,
        members_on_shift=members_on_shift, at=at, order_id=order_id)


def reverse_missed_order(
    *, order_id: str, incident_id: str, team_id: str, district: str,
    penalised: Iterable[str], at: datetime,
) -> list[LedgerEntry]:
    """A missed order's penalty given back to those it was taken from (`penalised`: the
    order's record keeps them, whatever their team is now): the team had answered by the
    deadline, and dispatch read the answer only after timing the order out."""
    return [
        LedgerEntry(entry_id=f"missed_reversed:{order_id}:{member_id}", member_id=member_id,
                    team_id=team_id, district=district, points=-MISSED_ORDER_POINTS,
                    reason="missed_order_reversed", at=at, order_id=order_id,
                    incident_id=incident_id)
        for member_id in sorted(penalised)
    ]


def adjustment(*, adjustment_id: str, member_id: str, team_id: str, district: str,
               points: int, note: str, at: datetime) -> LedgerEntry:
    """A coordinator's reward (points > 0) or penalty (< 0), with its reason."""
    if points == 0 or abs(points) > MAX_ADJUSTMENT:
        raise ValueError(f"an adjustment is 1 to {MAX_ADJUSTMENT} points either way")
    return LedgerEntry(entry_id=f"adjust:{adjustment_id}", member_id=member_id, team_id=team_id,
                       district=district, points=points, reason="adjustment", at=at, note=note)
