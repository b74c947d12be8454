"""Dispatch's decisions: candidates, ranking, how many units and which, incident status,
how a hand-over's filing stands.

Plain functions over plain values: no Redis, FastStream or HTTP here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.events import Priority
from shared.policy import CategoryRule, Policy

# The most urgent first: waiting incidents (store.waiting_score) and a read's new ones.
PRIORITY_RANK = {"P1": 0, "P2": 1, "P3": 2, "P4": 3}
LIVE_ORDER_STATES = ("offered", "acknowledged", "en_route", "on_scene")
DEFAULT_SPEED_KMH = 5.0  # a team whose mode the policy does not know moves on foot
# Who may go with volunteers to a P1 (never the only responders to one), whatever the
# category's kinds and skills.
ESCORT_KINDS = ("police", "security")
# Orders of a station's tasks (filing a case handed over, a follow-up visit): no claim, no
# deadline, and nobody sent to the scene.
STATION_KINDS = ("handover", "followup")
FINAL_ORDER_STATES = ("resolved", "handover", "declined", "withdrawn", "timed_out")
# How far an order has got; an incident has the status of its most advanced live order.
_ORDER_PROGRESS = {"offered": 1, "acknowledged": 2, "en_route": 3, "on_scene": 4}
_INCIDENT_STATUS_OF_ORDER = {
    "offered": "assigned",
    "acknowledged": "acknowledged",
    "en_route": "en_route",
    "on_scene": "on_scene",
}
# Device responses that move an order forward, with the order state they lead to.
RESPONSE_STATE = {
    "acknowledged": "acknowledged",
    "en_route": "en_route",
    "on_scene": "on_scene",
    "resolved": "resolved",
    "handover": "handover",
    "declined": "declined",
}


@dataclass(frozen=True, slots=True)
class Unit:
    """A team as dispatch's projection knows it."""

    team_id: str
    agency_id: str
    agency_kind: str
    agency_role: str | None
    mode: str
    district: str
    status: str = "off_duty"
    on_shift: bool = False
    skills: tuple[str, ...] = ()
    home_zone_id: str | None = None
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    fix_at: datetime | None = None
    # Orders in a row the team let time out, and when the first of them did, until it
    # answers one (any answer): for the command room, which calls it or takes it off
    missed_in_a_row: int = 0
    missed_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Ranked:
    unit: Unit
    distance_m: float
    eta_s: float
    kind_rank: int
    score: float
    home_zone: bool = False


class Ranking(list[Ranked]):
    """rank_candidates' answer: the teams that may answer the incident, best first; and
    apart, in `escorts` (best first), the police and security teams that may go with
    volunteers to a P1 as their escort, whether or not the category lists their kind or
    they have its skills. choose_units takes a P1's escort from `escorts`."""

    escorts: list[Ranked]

    def __init__(self, ranked: Iterable[Ranked] = (), *,
                 escorts: Iterable[Ranked] = ()) -> None:
        super().__init__(ranked)
        self.escorts = list(escorts)


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    incident_id: str
    district: str
    category: str
    priority: Priority
    flags: tuple[str, ...]
    lat: float
    lon: float
    zone_id: str | None = None
    station_agency_id: str | None = None  # the police station owning the incident's zone
    excluded: frozenset[str] = field(default_factory=frozenset)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


def travel_time_s(distance: float, mode: str, policy: Policy) -> float:
    """Straight-line distance x road factor at the mode's speed."""
    speed_ms = policy.speeds_kmh.get(mode, DEFAULT_SPEED_KMH) / 3.6
    return distance * policy.road_factor / speed_ms


def volunteers_barred(flags: Iterable[str], policy: Policy) -> bool:
    return any(f in policy.bar_volunteers_flags for f in flags)


def _free_and_placed(unit: Unit, incident: IncidentFacts, policy: Policy, now: datetime, *,
                     need_available: bool = True) -> bool:
    """Available and on shift, not excluded from the incident, with a fresh fix: what any
    team sent needs, whatever the category."""
    if need_available and (unit.status != "available" or not unit.on_shift):
        return False
    if unit.district != incident.district:  # only the command room's assign reaches out
        return False
    if unit.team_id in incident.excluded:
        return False
    if unit.lat is None or unit.lon is None or unit.fix_at is None:
        return False
    return now - unit.fix_at <= timedelta(seconds=policy.fix_max_age_s)


def is_eligible(unit: Unit, rule: CategoryRule, incident: IncidentFacts, policy: Policy,
                now: datetime, *, need_available: bool = True) -> bool:
    """Whether the team may answer the incident: free and placed, of a kind the category
    lists, with its skills."""
    if not _free_and_placed(unit, incident, policy, now, need_available=need_available):
        return False
    if rule.kind_rank(unit.agency_kind, unit.agency_role) is None:
        return False
    if (rule.zone_station and unit.agency_kind == "police"
            and (unit.agency_role or "station") == "station"
            and incident.station_agency_id and unit.agency_id != incident.station_agency_id):
        return False  # e.g. fraud warnings: the station of the incident's zone, no other
    if unit.agency_kind == "volunteer" and volunteers_barred(incident.flags, policy):
        return False
    return set(rule.skills) <= set(unit.skills)


def may_answer(unit: Unit, incident: IncidentFacts, policy: Policy, now: datetime) -> bool:
    """Whether the team could be sent to the incident at all (free, allowed, fresh fix)."""
    return is_eligible(unit, policy.rule(incident.category), incident, policy, now)


def may_escort(unit: Unit, incident: IncidentFacts, policy: Policy, now: datetime, *,
               escorts: bool | None = None) -> bool:
    """Whether the team could go with volunteers to the incident as their escort: police or
    security, free and placed, whatever the category's kinds, skills or station. Escorts
    are wanted on a P1 (`escorts` None), or when the caller says so (a volunteer team's
    call for backup: see backups_for)."""
    wanted = incident.priority == "P1" if escorts is None else escorts
    return (wanted and unit.agency_kind in ESCORT_KINDS
            and _free_and_placed(unit, incident, policy, now))


def escort_rank(rule: CategoryRule, agency_kind: str, agency_role: str | None) -> int:
    """An escort's place in the category's list, or below all of it when the list has not
    its kind (a police escort of a hazard report ranks after volunteers and security)."""
    rank = rule.kind_rank(agency_kind, agency_role)
    return len(rule.answer) if rank is None else rank


def _ranked(unit: Unit, incident: IncidentFacts, policy: Policy, kind_rank: int) -> Ranked:
    assert unit.lat is not None and unit.lon is not None
    d = distance_m(incident.lat, incident.lon, unit.lat, unit.lon)
    eta = travel_time_s(d, unit.mode, policy)
    return Ranked(unit=unit, distance_m=d, eta_s=eta, kind_rank=kind_rank,
                  score=eta + kind_rank * policy.rank_step_s,
                  home_zone=incident.zone_id is not None
                  and unit.home_zone_id == incident.zone_id)


def _rank_order(r: Ranked) -> tuple[float, bool, str]:
    return round(r.score, 3), not r.home_zone, r.unit.team_id


def rank_candidates(units: Iterable[Unit], incident: IncidentFacts, policy: Policy,
                    now: datetime, *, escorts: bool | None = None) -> Ranking:
    """Eligible units, best first: ETA plus 3 minutes per place below first; home zone
    breaks ties. For a P1 (or with `escorts`: a volunteer team's call for backup), also
    the teams that may escort volunteers to it (`escorts`), ranked the same way (see
    escort_rank)."""
    rule = policy.rule(incident.category)
    ranked: list[Ranked] = []
    escorting: list[Ranked] = []
    for unit in units:
        if is_eligible(unit, rule, incident, policy, now):
            ranked.append(_ranked(unit, incident, policy,
                                  rule.kind_rank(unit.agency_kind, unit.agency_role) or 0))
        if may_escort(unit, incident, policy, now, escorts=escorts):
            escorting.append(_ranked(unit, incident, policy,
                                     escort_rank(rule, unit.agency_kind, unit.agency_role)))
    return Ranking(sorted(ranked, key=_rank_order), escorts=sorted(escorting, key=_rank_order))


def asks_as_volunteers(order: Mapping[str, str]) -> bool:
    """Whether the team of `order` counts as volunteers (counted_as): its call for backup
    is then answered by police or security first (backups_for)."""
    return _sent(counted_as(order))[0] == "volunteer"


def backups_for(ranking: Ranking, *, volunteers_asking: bool) -> list[Ranked]:
    """Who may go as backup for a team that asked for it, best first (rank_candidates was
    asked for escorts: the police and security teams free, whatever the category lists).
    A team of police or security: the category's own ranking (`ranking`), as any extra
    unit, then the police and security teams it does not list (`ranking.escorts`): a
    station officer's fraud warning visit that turns violent lists only the station's
    teams and volunteers, and with none of those free the call found nobody while a patrol
    car was at hand. A volunteer team
    (`volunteers_asking`): the police and security
    teams first, the best of them by dispatch's score (`ranking.escorts`: travel time plus
    their kind's place in the category's list, or below all of it), even when a volunteer
    team is nearer; only with none of them free, the category's own (another volunteer
    team: help now rather than none, the call still flagged if nobody at all is free).
    Volunteers are never sent alone into violence, and a volunteer team calls for backup
    when the scene has gone beyond what volunteers may handle (a hostile person, a crowd,
    a fight): more volunteers add hands, not the authority or training it needs."""
    if not volunteers_asking:
        own = {r.unit.team_id for r in ranking}
        return [*ranking, *(r for r in ranking.escorts if r.unit.team_id not in own)]
    first = {r.unit.team_id for r in ranking.escorts}
    return [*ranking.escorts, *(r for r in ranking if r.unit.team_id not in first)]


def backed_up_by_volunteers_only(asking: Mapping[str, str],
                                 orders: Iterable[Mapping[str, str]]) -> bool:
    """Whether a volunteer team's call for backup (the order `asking`, counted as
    volunteers) is answered by volunteers only: of the incident's `orders`, some live one is
    its backup (`for_order`) and none of those counts as police or security (counted_as).
    No police or security team was free (backups_for): the call stays open, flagged, and
    one is looked for until it goes; more volunteers add hands, not what the call is for."""
    if not asks_as_volunteers(asking):
        return False
    backing = [_sent(counted_as(o))[0] for o in orders
               if o.get("for_order") == asking["order_id"]
               and o.get("state") in LIVE_ORDER_STATES]
    return bool(backing) and not any(kind in ESCORT_KINDS for kind in backing)


@dataclass(frozen=True, slots=True)
class CandidateQuery:
    """What the store's candidate search needs to keep, of a district's teams, those that
    rank_candidates and choose_units could pick: is_eligible's rules and the same score, as
    data, so Redis can prune hundreds of teams to a few without deciding anything itself.
    `keep` is how many of the best it keeps overall, per answering kind that choose_units
    looks at on its own (`grouped`: the joint response's kinds, see `joint_entries`), and of
    the teams that may escort volunteers (`escort`: a P1, or a volunteer team's call for
    backup; any police or security team, whatever the category's kinds, skills or station:
    see may_escort and escort_rank).
    The fewer groups, the sooner the search can stop reading farther teams."""

    district: str
    lat: float
    lon: float
    radius_km: float
    entries: tuple[tuple[str, str], ...]  # (kind, role) per entry of the category; "" = any role
    grouped: tuple[bool, ...]  # per entry: whether its best teams are kept apart
    escort: bool
    skills: tuple[str, ...]
    zone_id: str  # the incident's zone: its teams come first among equal scores ("" = none)
    station: str  # when set, police stations other than this one are not eligible
    bar_volunteers: bool
    excluded: frozenset[str]
    min_fix_ts: float
    speeds_ms: tuple[tuple[str, float], ...]
    default_speed_ms: float
    road_factor: float
    rank_step_s: float
    keep: int

    def for_script(self) -> dict[str, object]:
        return {
            "district": self.district,
            "entries": [{"kind": k, "role": r, "group": g}
                        for (k, r), g in zip(self.entries, self.grouped, strict=True)],
            "escort": self.escort,
            "skills": list(self.skills), "zone_id": self.zone_id, "station": self.station,
            "bar_volunteers": self.bar_volunteers,
            "excluded": {team: True for team in self.excluded},  # indexed by team id
            "min_fix_ts": self.min_fix_ts, "speeds": dict(self.speeds_ms),
            "default_speed": self.default_speed_ms,
            "max_speed": max([self.default_speed_ms, *(v for _, v in self.speeds_ms)]),
            "road_factor": self.road_factor,
            "rank_step": self.rank_step_s, "keep": self.keep,
        }


def candidate_query(incident: IncidentFacts, policy: Policy, now: datetime, *,
                    keep: int | None = None, radius_km: float | None = None,
                    escorts: bool | None = None) -> CandidateQuery:
    """The search for `incident`. By default each group keeps as many teams as the incident
    wants: choose_units never takes more than that from one group (a joint response takes
    one per entry and then the best of any kind; an escort is one team), so the pruning is
    exact; a claim lost to another incident means a new search, not a spare. `escorts`:
    whether the teams that may escort volunteers are kept too (None: on a P1), as
    rank_candidates' of the same name."""
    rule = policy.rule(incident.category)
    entries = tuple((entry, "") if entry == "any" else (entry.partition(":")[0],
                                                        entry.partition(":")[2])
                    for entry in rule.answer)
    joint = joint_entries(rule.answer, units_wanted(incident, policy))
    return CandidateQuery(
        district=incident.district, lat=incident.lat, lon=incident.lon,
        radius_km=policy.search_radius_km if radius_km is None else radius_km,
        entries=entries, grouped=tuple(entry in joint for entry in rule.answer),
        escort=incident.priority == "P1" if escorts is None else escorts,
        skills=tuple(rule.skills),
        zone_id=incident.zone_id or "",
        station=(incident.station_agency_id or "") if rule.zone_station else "",
        bar_volunteers=volunteers_barred(incident.flags, policy),
        excluded=incident.excluded, min_fix_ts=now.timestamp() - policy.fix_max_age_s,
        speeds_ms=tuple((mode, kmh / 3.6) for mode, kmh in sorted(policy.speeds_kmh.items())),
        default_speed_ms=DEFAULT_SPEED_KMH / 3.6, road_factor=policy.road_factor,
        rank_step_s=policy.rank_step_s,
        keep=units_wanted(incident, policy) if keep is None else keep,
    )


def entry_matches(entry: str, agency_kind: str, agency_role: str | None) -> bool:
    """Whether a team of this kind and role answers to one entry of a category's list."""
    kind, _, role = entry.partition(":")
    if entry == "any" or (kind == agency_kind and not role):
        return True
    return kind == agency_kind and role == (agency_role or "station")


def joint_entries(answer: Sequence[str], wanted: int) -> list[str]:
    """The entries of a category's list whose best unit a joint response of `wanted` units
    sends first (none for one unit: that is simply the best)."""
    if wanted < 2:
        return []
    joint: list[str] = []
    for entry in answer:
        if entry != "any" and entry not in joint:
            joint.append(entry)
    return joint[:wanted]


def sent_as(agency_kind: str, agency_role: str | None) -> str:
    """How a team is named in a category's list and in `already`: `kind` or `kind:role`
    (`police:patrol`, `police:station`, `security`, `volunteer`)."""
    return f"{agency_kind}:{agency_role}" if agency_role else agency_kind


def skills_signature(skills: Iterable[str]) -> str:
    """A team's skills as one short text, the same whatever their order: what an order
    keeps of its team's skills as sent (`skills`) and the team's record of them now
    (`skills_sig`), which the projection's scripts compare without reading either list."""
    return ",".join(sorted(set(skills)))


def missing_skills(rule: CategoryRule, skills: Iterable[str]) -> list[str]:
    """The skills the category requires that a team with `skills` lacks, in the category's
    order (is_eligible's skill check, said)."""
    have = set(skills)
    return [skill for skill in rule.skills if skill not in have]


def counted_as(order: Mapping[str, str]) -> str:
    """What an order's team counts as among the incident's units (`kind` or `kind:role`):
    as sent, unless a roster import has moved it into a volunteer agency since
    (`moved_to_volunteers`, marked by the engine's on_moved_team_order_due): an escort so
    moved no longer keeps volunteers company."""
    if order.get("moved_to_volunteers") == "1":
        return "volunteer"
    return sent_as(order.get("agency_kind", ""), order.get("agency_role") or None)


def counted_for_escort(orders: Sequence[Mapping[str, str]]) -> list[str]:
    """The live orders `orders` (claiming a team on the scene), each as it counts
    (counted_as), for whether volunteers on a P1 have police or security with them: not a
    police or security team that went off shift on its order (`off_shift_at`: its last
    member removed from the roster, a security company's contract ended mid-shift, its
    phone revoked). That order stays live for the command room to decide, but nobody of
    the team is coming."""
    return [counted for o in orders
            if _sent(counted := counted_as(o))[0] == "volunteer" or not o.get("off_shift_at")]


def _sent(value: str) -> tuple[str, str | None]:
    kind, _, role = value.partition(":")
    return kind, role or None


def choose_units(ranked: Sequence[Ranked], incident: IncidentFacts, policy: Policy,
                 *, wanted: int, already: Sequence[str] = (),
                 alongside: Sequence[str] = ()) -> list[Ranked]:
    """Which of the ranked units to send, given the live orders' teams in `already`
    (each `kind` or `kind:role`), the incident's units, and in `alongside` the teams that
    go with them without being one of its units (a backup, a P1's escort that does not
    answer the category itself): they count as police or security with volunteers only.

    One unit: the best. Several: a joint response, the best unit of each of the first
    entries of the category's list (e.g. `police:patrol` and `security` for a dispute)
    that no live order covers yet, then the next best of any allowed kind. Volunteers are
    never the only responders to a P1: the best police or security unit goes with them,
    taken from `ranked.escorts` (rank_candidates': whether or not the category lists its
    kind or it has the category's skills), or, in a plain list, from the ranked teams.
    """
    rule = policy.rule(incident.category)
    chosen: list[Ranked] = []
    missing = wanted - len(already)
    if missing > 0:
        if wanted >= 2:
            uncovered = [_sent(a) for a in already]
            for entry in joint_entries(rule.answer, wanted):
                cover = next((s for s in uncovered if entry_matches(entry, *s)), None)
                if cover is not None:
                    uncovered.remove(cover)
                    continue
                best = next((r for r in ranked if r not in chosen and entry_matches(
                    entry, r.unit.agency_kind, r.unit.agency_role)), None)
                if best is not None:
                    chosen.append(best)
        for r in ranked:
            if len(chosen) >= missing:
                break
            if r not in chosen:
                chosen.append(r)
        chosen = chosen[:missing]
    kinds_sent = ([_sent(a)[0] for a in (*already, *alongside)]
                  + [r.unit.agency_kind for r in chosen])
    if incident.priority == "P1" and kinds_sent and all(k == "volunteer" for k in kinds_sent):
        escorts = (ranked.escorts if isinstance(ranked, Ranking)
                   else [r for r in ranked if r.unit.agency_kind in ESCORT_KINDS])
        escort = next((r for r in escorts if r not in chosen), None)
        if escort is not None:
            chosen.append(escort)
    return chosen


def units_wanted(incident: IncidentFacts, policy: Policy) -> int:
    return policy.units_for(incident.category, incident.priority)


def short_of_units(incident: IncidentFacts, policy: Policy, already: Sequence[str],
                   alongside: Sequence[str] = ()) -> bool:
    """Whether an incident with live orders to `already` (its units, each `kind` or
    `kind:role`) and `alongside` (teams with them, not its units: see choose_units) still
    lacks a unit it should have: fewer than it wants, or a P1 with volunteers only (no
    police or security unit was free). It waits for the next freed team that may go."""
    if not already and not alongside:
        return False  # not short: unassigned, waiting as such
    if len(already) < units_wanted(incident, policy):
        return True
    return volunteers_alone_on_p1(incident.priority, [*already, *alongside])


def volunteers_alone_on_p1(priority: str, already: Sequence[str]) -> bool:
    """A P1 whose live orders all went to volunteers (`already`: each `kind` or `kind:role`):
    DESIGN's "volunteers are never the only responders to a P1" is broken for now (no police
    or security team was free to escort), which the command room must see."""
    return priority == "P1" and bool(already) and all(
        _sent(a)[0] == "volunteer" for a in already)


def escort_news(priority: str, team: str, live: Sequence[str]) -> str | None:
    """What the phone of a team counted as `team` (`kind` or `kind:role`: counted_as) is
    told of the police or security going with it, given the incident's live orders that
    claim a team (`live`, the same way, its own among them): on a P1, to volunteers,
    `awaited` while no police or security team has a live order there
    (volunteers_alone_on_p1: wait for one at a safe distance), `sent` once one has (it may
    still decline: `awaited` again then); None when no escort concerns it (not a P1, or
    not volunteers)."""
    if priority != "P1" or _sent(team)[0] != "volunteer":
        return None
    return "awaited" if volunteers_alone_on_p1(priority, live) else "sent"


# Where a volunteer team is, as its escort's order says it (events.EscortedTeam): an order
# offered or acknowledged is not known to be moving.
_ESCORTED_STATE = {"offered": "sent", "acknowledged": "sent", "en_route": "en_route",
                   "on_scene": "on_scene"}


def escorting_news(priority: str, team: str,
                   live: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]] | None:
    """What the phone of a team counted as `team` (counted_as) is told of the volunteers it
    escorts, given the incident's live orders that claim a team (`live`: each as counted,
    its team's name and its state): on a P1, to police or security, the volunteer teams
    there (name and `sent`, `en_route` or `on_scene`), by name; None when it escorts
    nobody (not a P1, not police or security, or no volunteers there)."""
    if priority != "P1" or _sent(team)[0] not in ESCORT_KINDS:
        return None
    escorted = sorted((name, _ESCORTED_STATE[state]) for counted, name, state in live
                      if _sent(counted)[0] == "volunteer" and state in _ESCORTED_STATE)
    return escorted or None


def incident_status(order_states: Sequence[str], *, current: str) -> str:
    """The status an incident takes from its orders' states."""
    live = [s for s in order_states if s in _ORDER_PROGRESS]
    if live:
        best = max(live, key=_ORDER_PROGRESS.__getitem__)
        return _INCIDENT_STATUS_OF_ORDER[best]
    if current in ("resolved", "handed_over", "closed", "linked"):
        return current
    if "resolved" in order_states:
        return "resolved"
    if "handover" in order_states:
        return "handed_over"
    return "unassigned" if current != "reported" else "dispatching"


def ack_deadline(issued_at: datetime, priority: Priority, policy: Policy) -> datetime:
    return issued_at + timedelta(seconds=policy.deadlines_s[priority])


def response_allowed(state: str, response: str) -> tuple[bool, str]:
    """Whether a response may move an order in `state`; the reason when not."""
    if state not in LIVE_ORDER_STATES:
        return False, f"the order is {state}; no response is accepted"
    if response == "reinforce":
        return True, ""
    if response == "declined":
        if state == "offered":
            return True, ""
        return False, "the order is already acknowledged; it can no longer be declined"
    target = RESPONSE_STATE[response]
    if target in ("resolved", "handover"):
        return True, ""
    if _ORDER_PROGRESS[target] <= _ORDER_PROGRESS[state]:
        return False, f"the order is already {state}; responses move forward only"
    return True, ""


def acted_from(incident: dict[str, str]) -> datetime:
    """When the times to act (assign, acknowledge, on scene) of an incident count from: the
    earlier of its `reported_at` and dispatch's receipt (`received_at`): a reporting system
    whose clock runs ahead (intake takes up to 5 min) gives no moment still to come."""
    reported = datetime.fromisoformat(incident["reported_at"])
    if incident.get("received_at"):
        reported = min(reported, datetime.fromisoformat(incident["received_at"]))
    return reported


# A report that reaches dispatch more than this after it was reported (a 110 system's queue
# stuck, a video system catching up after a network cut, dispatch's own backlog) says so on
# its timeline and its board row: the scene is that old. A report passes intake and its
# stream in well under a second, and a caller's reported_at may run minutes ahead or behind
# (intake takes one up to 5 min ahead); 10 min is late beyond any clock's doubt, and old
# enough that the scene may have changed (DOMAIN.md: neighbours reinforce within 3-5 min).
LATE_REPORT = timedelta(minutes=10)


def late_by(reported_at: datetime, received_at: datetime) -> timedelta | None:
    """How long after its report dispatch received it, when more than LATE_REPORT; None
    when it came in time. How it is dispatched does not change: the command room decides."""
    late = received_at - reported_at
    return late if late > LATE_REPORT else None


def late_by_s(reported_at: datetime, received_at: datetime) -> int | None:
    """`late_by` in whole seconds, as dispatch's views and incident.updated say it."""
    late = late_by(reported_at, received_at)
    return round(late.total_seconds()) if late else None


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    if lo == hi:
        return ordered[int(k)]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- a hand-over's filing (受立案) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filing:
    """How the station's filing of a handed-over incident stands: the one hand-over order
    that counts (filing_of; None when no station order was ever made), its due time, and
    when it was filed (the order resolved) or whether it is still owed or was ended by the
    command room's close."""

    order_id: str | None
    due: datetime
    filed_at: datetime | None = None
    owed: bool = False
    closed_at: datetime | None = None

    def overdue(self, now: datetime) -> bool:
        """Still owed and past its due: what the inspector's work list shows."""
        return self.owed and self.due < now

    def went_overdue(self, now: datetime) -> bool:
        """Not filed by its due (受立案超期): filed after it, still owed past it, or ended
        by a close that came after it. A filing made late stays counted, as a routing
        timeout does."""
        if self.filed_at is not None:
            return self.filed_at > self.due
        if self.owed:
            return self.due < now
        return self.closed_at is not None and self.closed_at > self.due


def filing_of(orders: Iterable[dict[str, str]], *, closed_at: datetime | None = None,
              handed_over: bool = False, due: datetime | None = None) -> Filing | None:
    """The incident's filing, judged on one of its hand-over orders: the one its station
    resolved (filed), else the live one. Else no station team has it now (every order
    declined, handed over again or taken off; or none made: nobody of the station was on
    shift) and the filing is still owed while the incident is `handed_over`, or was ended
    by the command room's close (`closed_at`): judged on the newest hand-over order (a
    colleague given it gets what is left of its due), or with none, on the hand-over itself
    (order_id None), due at `due` (the hand-over's: the day its station's first order would
    have had). An order declined, timed out or taken back while another carries the filing
    stays out. None when nothing is owed (resolved by another way) or no due is known."""
    handovers = [o for o in orders if o.get("kind") == "handover" and o.get("filing_due")]
    filed = next((o for o in handovers if o.get("state") == "resolved"), None)
    if filed is not None:
        at = filed.get("resolved_at")
        return Filing(order_id=filed["order_id"], due=datetime.fromisoformat(filed["filing_due"]),
                      filed_at=datetime.fromisoformat(at) if at else None)
    live = next((o for o in reversed(handovers) if o.get("state") in LIVE_ORDER_STATES), None)
    if live is not None:
        return Filing(order_id=live["order_id"], due=datetime.fromisoformat(live["filing_due"]),
                      owed=True)
    if not handed_over and closed_at is None:
        return None
    last = handovers[-1] if handovers else None
    if last is not None:
        order_id: str | None = last["order_id"]
        due = datetime.fromisoformat(last["filing_due"])
    elif due is not None:
        order_id = None
    else:
        return None
    return Filing(order_id=order_id, due=due, owed=handed_over and closed_at is None,
                  closed_at=closed_at)
