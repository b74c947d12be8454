"""Decides which teams the command room is offered to send to an incident by hand, in
dispatch's own order (nearest suitable first), and what dispatch's rules say against each."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.policy import Policy

from . import domain

# What the rules say against a team the command room may still send (it may know better:
# the only team near a fight), so that it is sent knowingly, never by a slip of the list.
KIND_NOT_LISTED = "kind_not_listed"  # the category does not list its kind (volunteers to a fight)
LACKS_SKILLS = "lacks_skills"  # without the category's skills (first_aid for a medical call)
OTHER_STATION = "other_station"  # a police station's team, not the station owning the place
# A volunteer team to a P1 no police or security team is on: DOMAIN.md, never sent alone
# into violence; dispatch raises no flag for what the command room sent by hand.
VOLUNTEERS_ALONE_ON_P1 = "volunteers_alone_on_p1"
ENDED = ("resolved", "closed")  # nothing to send; a hand-over or a linked report still takes one
# An order's refusal by its team, and where its time is kept: dispatch never offers the
# incident to that team again, so the command room, sending one by hand, is told who did.
TURNED_DOWN = {"declined": "declined_at", "timed_out": "timed_out_at"}


def turned_down(orders: Sequence[dict[str, str]]) -> dict[str, dict[str, str | None]]:
    """Each team that declined one of `orders` or let its deadline pass: its latest such
    order's answer (`declined`, `timed_out`), when (an order timed out before its time was
    kept: its deadline), the order's id and `answered_in_time` (null unless the team
    answered by the deadline and dispatch read it only after timing the order out: the
    engine's _answer_read_after_timeout). A refusal so given is the team's decline; any
    other answer so given stays `timed_out` (the order was taken from the team all the
    same) with its answer beside it. Either is when the team answered (before that time was
    kept: by its deadline)."""
    refused: dict[str, dict[str, str | None]] = {}
    for order in orders:
        state = order.get("state", "")
        if state not in TURNED_DOWN:
            continue
        in_time = order.get("answered_in_time") or None if state == "timed_out" else None
        answer = "declined" if in_time == "declined" else state
        at = ((order.get("answered_in_time_at") if in_time else order.get(TURNED_DOWN[state]))
              or order.get("ack_by") or "")
        known = refused.get(order["team_id"])
        if known is None or at >= (known["at"] or ""):
            refused[order["team_id"]] = {"answer": answer, "at": at,
                                         "order_id": order["order_id"],
                                         "answered_in_time": in_time}
    return refused


def teams_to_send(inc: dict[str, str], orders: Sequence[dict[str, str]],
                  units: Sequence[tuple[domain.Unit, str | None]], policy: Policy,
                  now: datetime, *, station: str | None = None) -> list[dict[str, Any]]:
    """The district's teams (`units`: each with its open order, if any) that the command room
    may send to `inc` (`orders`: the incident's), best first: those the rules allow (their
    kind, skills and station) before the others, placed by a position that counts before
    those without, free before those on another incident's order, then dispatch's score
    (travel time plus `rank_step_s` per place below first in the category's list; home
    zone, then id, break ties). Left out: teams off shift, those on the incident already,
    and those dispatch refuses (volunteers to a weapon; for a hand-over, any but a police
    station's team). `station`: the police station owning the place now, as the engine
    judges it (an import since the report may have given the zone to another); the one
    stored at the report when not given. Each row's `turned_down` says when the team
    declined the incident or let its deadline pass, null if it never did:
    dispatch never offers it to that team again, only the command room may."""
    status = inc.get("status", "")
    if status in ENDED:
        return []
    handed_over = status == "handed_over"
    category, priority = inc["category"], inc["priority"]
    rule = policy.rule(category)
    flags = tuple(json.loads(inc.get("flags") or "[]"))
    barred = domain.volunteers_barred(flags, policy)
    station = (inc.get("station_agency_id") if station is None else station) or None
    lat, lon = float(inc["lat"]), float(inc["lon"])
    live = [o for o in orders if o.get("state") in domain.LIVE_ORDER_STATES]
    on_it = {o["team_id"] for o in live}
    refused = turned_down(orders)
    # the kinds on the scene, as dispatch counts them (a team moved into a volunteer
    # agency since its order counts as volunteers, and nobody of a police or security team
    # that went off shift on its order is coming): a station's filing or visit puts nobody
    # there
    on_scene = domain.counted_for_escort(
        [o for o in live if o.get("kind") not in domain.STATION_KINDS])
    keyed: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for unit, open_order in units:
        if unit.team_id in on_it or not unit.on_shift or unit.status == "off_duty":
            continue
        police_station = (unit.agency_kind == "police"
                          and (unit.agency_role or "station") == "station")
        if handed_over and not police_station:
            continue
        if unit.agency_kind == "volunteer" and barred:
            continue
        warnings: list[str] = []
        missing: list[str] = []
        if handed_over:
            kind_rank = 0
        else:
            rank = rule.kind_rank(unit.agency_kind, unit.agency_role)
            if rank is None:
                warnings.append(KIND_NOT_LISTED)
            kind_rank = len(rule.answer) if rank is None else rank
            missing = domain.missing_skills(rule, unit.skills)
            if missing:
                warnings.append(LACKS_SKILLS)
        if (handed_over or rule.zone_station) and police_station and station \
                and unit.agency_id != station:
            warnings.append(OTHER_STATION)
        if unit.agency_kind == "volunteer" and domain.volunteers_alone_on_p1(
                priority, [*on_scene, unit.agency_kind]):
            warnings.append(VOLUNTEERS_ALONE_ON_P1)
        distance = eta = None
        if unit.lat is not None and unit.lon is not None:
            distance = domain.distance_m(lat, lon, unit.lat, unit.lon)
            eta = domain.travel_time_s(distance, unit.mode, policy)
        age = (now - unit.fix_at).total_seconds() if unit.fix_at is not None else None
        counts = eta is not None and age is not None and age <= policy.fix_max_age_s
        free = unit.status == "available" and open_order is None
        score = eta + kind_rank * policy.rank_step_s if eta is not None else math.inf
        home = unit.home_zone_id is not None and unit.home_zone_id == inc.get("zone_id")
        # a volunteer team alone on a P1 is suitable: what must go with it is the warning
        unsuited = any(w != VOLUNTEERS_ALONE_ON_P1 for w in warnings)
        keyed.append(((unsuited, not counts, not free, round(score, 3), not home,
                       unit.team_id), {
            "team_id": unit.team_id, "name": unit.name, "agency_kind": unit.agency_kind,
            "agency_role": unit.agency_role, "mode": unit.mode, "status": unit.status,
            "open_order_id": open_order,
            "distance_m": round(distance) if distance is not None else None,
            "eta_s": round(eta) if eta is not None else None,
            "fix_age_s": round(age) if age is not None else None,
            "position_counts": counts, "warnings": warnings, "missing_skills": missing,
            "turned_down": refused.get(unit.team_id)}))
    keyed.sort(key=lambda pair: pair[0])
    return [row for _, row in keyed]
