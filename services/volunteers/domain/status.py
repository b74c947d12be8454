"""A team's state machine: shifts and device choices on one side, dispatch's orders on the other.

States: off_duty, available, busy (the device's choices) and dispatched, en_route, on_scene
(driven by the team's open orders: the team shows its most advanced one). A team is busy with
an order from `order.issued` until the order is resolved, handed over, declined or withdrawn;
then it is available if its shift is still on, else off duty. Only the orders dispatch claims
the team for count (`CLAIMING_KINDS`): a station's hand-over or follow-up is paperwork or a
visit with a day or more to do it, recorded (its responses and points work as any order's)
but leaving the team's status, the order it shows and its check-out alone. Every step is a
pure function over `TeamState`, so a redelivered event gives the same state and changes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.events import AgencyKind, Mode, OrderKind, Response, UnitState, UnitStatus

Stage = Literal["dispatched", "en_route", "on_scene"]
DeviceStatus = Literal["available", "busy", "off_duty"]

STAGE_RANK: dict[str, int] = {"dispatched": 1, "en_route": 2, "on_scene": 3}
FINAL_RESPONSES = frozenset({"resolved", "handover", "declined"})
PROGRESS: dict[str, Stage] = {"en_route": "en_route", "on_scene": "on_scene"}
# The kinds of order that take the team: dispatch claims a team only for these (its
# engine's CLAIMING_KINDS), so only these make it dispatched and hold its shift; a
# hand-over or a follow-up leaves the team free for dispatch's next emergency.
CLAIMING_KINDS: frozenset[str] = frozenset({"dispatch", "reinforcement", "manual"})

# How many of a member's ended stints `TeamState.left` keeps: a member may leave and come
# back more than once while an order's events wait to be read (dispatch catching up), and
# was on the shift for an event read late if any of those stints spanned it; a phone that
# checks in and out in a loop must not grow the state without end.
STINTS_KEPT = 8

# What a device may set from each state (the order states follow the order, not the device).
DEVICE_TRANSITIONS: Mapping[str, tuple[DeviceStatus, ...]] = {
    "off_duty": ("available",),
    "available": ("busy", "off_duty"),
    "busy": ("available", "off_duty"),
    "dispatched": (),
    "en_route": (),
    "on_scene": (),
}


class Refused(Exception):
    """The team's state forbids the step: the message says which state and what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TeamState(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: UnitState = "off_duty"
    on_shift: bool = False
    shift_id: str | None = None
    shift_started_at: AwareDatetime | None = None
    shift_members: dict[str, AwareDatetime] = Field(
        default_factory=dict, description="member id -> when they checked in to this shift"
    )
    shift_devices: dict[str, str] = Field(
        default_factory=dict, description="member id -> the device they checked in with "
        "last (checking in again from another switches to it): only its fixes move the team "
        "(another of theirs, a tablet at home with the page open, would move it there), and "
        "its revocation ends their stint. A member on the shift with none here checked in "
        "before devices were kept: any of their devices, as then")
    orders: dict[str, Stage] = Field(default_factory=dict, description="open orders, oldest first")
    left: dict[str, tuple[tuple[AwareDatetime, AwareDatetime], ...]] = Field(
        default_factory=dict, description="member id -> the (checked in, left) of their "
        "stints that ended lately, oldest first: those of the shift that ended last, and of "
        "those who left this one (each of a member's, who left and came back: the latest "
        "`STINTS_KEPT`). An answer or a withdrawal read late (a restart, a backlog) pays or "
        "penalises those on the shift when it came, also if they left or the shift ended "
        "since (`on_shift_at`)")

    @field_validator("left", mode="before")
    @classmethod
    def _one_stint_each_stored(cls, value: object) -> object:
        """A state stored when `left` kept one stint a member, `(checked in, left)`."""
        if isinstance(value, dict):
            return {m: [s] if isinstance(s, list | tuple) and len(s) == 2
                    and not isinstance(s[0], list | tuple) else s for m, s in value.items()}
        return value

    @property
    def open_order(self) -> str | None:
        """The order the team shows: the most advanced, the oldest among equals."""
        if not self.orders:
            return None
        best = max(STAGE_RANK[s] for s in self.orders.values())
        return next(o for o, s in self.orders.items() if STAGE_RANK[s] == best)

    def visible(self) -> tuple[str, bool, str | None]:
        """What dispatch sees of the state: a change here is published as UnitStatus."""
        return self.status, self.on_shift, self.open_order


def on_shift_at(state: TeamState, at: datetime | None) -> tuple[str, ...]:
    """The members on the team's shift at `at` (when an order was answered or withdrawn),
    as far as the state still knows them: those who checked in by then and are still on it,
    and those whose stint spanned it (they left, or the shift ended, before the event was
    read: `TeamState.left`). A member who checked in after it (its event read late: a
    restart, a backlog) was not there for it. None: all those on the shift now."""
    if at is None:
        return tuple(sorted(state.shift_members))
    on = {m for m, joined in state.shift_members.items() if joined <= at}
    on |= {m for m, stints in state.left.items()
           if any(joined <= at <= gone for joined, gone in stints)}
    return tuple(sorted(on))


Stints = tuple[tuple[datetime, datetime], ...]


def _ended(state: TeamState, stints: Mapping[str, datetime], *, now: datetime,
           shift_ends: bool) -> dict[str, Stints]:
    """`state.left` once `stints` (member -> checked in) end `now`. When the shift ends with
    them, the stints of the shifts before it are dropped: `left` keeps one ended shift and
    the current one's leavers, each member's latest `STINTS_KEPT`."""
    kept: dict[str, Stints] = dict(state.left)
    if shift_ends:
        since = state.shift_started_at
        kept = {m: ours for m, theirs in kept.items()
                if (ours := tuple(s for s in theirs if since is not None and s[1] >= since))}
    for m, joined in stints.items():
        kept[m] = (*kept.get(m, ()), (joined, now))[-STINTS_KEPT:]
    return kept


def _off_duty(left: Mapping[str, Stints]) -> TeamState:
    return TeamState(status="off_duty", left=dict(left))


class EndedShift(BaseModel):
    model_config = ConfigDict(frozen=True)

    shift_id: str
    started_at: datetime
    ended_at: datetime
    members: dict[str, datetime]
    expired: bool = False  # ended by `expire_check_ins`: nobody checked out


@dataclass(frozen=True, slots=True)
class Outcome:
    state: TeamState
    ended: EndedShift | None = None


def _settle(state: TeamState) -> TeamState:
    """The status that follows from the open orders and the shift."""
    if state.orders:
        best = max(state.orders.values(), key=lambda s: STAGE_RANK[s])
        return state.model_copy(update={"status": best})
    if state.status in STAGE_RANK or (not state.on_shift and state.status != "off_duty"):
        return state.model_copy(update={"status": "available" if state.on_shift else "off_duty"})
    return state


def _order_refusal(state: TeamState, what: str) -> Refused:
    return Refused(
        f"the team is {state.status} with open order {state.open_order}: {what} once its "
        "orders are resolved, handed over, declined or withdrawn"
    )


# --- the device: shifts and status --------------------------------------------------------


def start_shift(state: TeamState, *, member_id: str, now: datetime, shift_id: str,
                device_id: str | None = None) -> Outcome:
    """Check in from `device_id`: the team goes on shift (available unless it holds an
    order); the member joins, with that device (`TeamState.shift_devices`). A member on the
    shift already keeps their stint; from another device, that device becomes theirs on it
    (the phone they carry, not the tablet they checked in on at home)."""
    devices = {**state.shift_devices, member_id: device_id} if device_id else {
        m: d for m, d in state.shift_devices.items() if m != member_id}
    if state.on_shift:
        if member_id in state.shift_members:
            if device_id is None or state.shift_devices.get(member_id) == device_id:
                return Outcome(state)
            return Outcome(state.model_copy(update={"shift_devices": devices}))
        members = {**state.shift_members, member_id: now}
        return Outcome(state.model_copy(update={"shift_members": members,
                                                "shift_devices": devices}))
    started = state.model_copy(update={
        "on_shift": True, "shift_id": shift_id, "shift_started_at": now,
        "shift_members": {member_id: now},
        "shift_devices": {member_id: device_id} if device_id else {},
        "status": state.status if state.orders else "available",
    })
    return Outcome(_settle(started))


def on_shift_with(state: TeamState, *, member_id: str, device_id: str) -> bool:
    """Whether `device_id` is the member's device on the team's shift: they are on it, and
    checked in with it last (or before devices were kept: any of theirs)."""
    return member_id in state.shift_members and (
        state.shift_devices.get(member_id, device_id) == device_id)


def end_shift(state: TeamState, *, now: datetime) -> Outcome:
    """The shift ends for everyone on it (status `off_duty`, or its last member's check-out):
    the team goes off duty; refused while it holds an open order."""
    if state.orders:
        raise _order_refusal(state, "its shift can end")
    if not state.on_shift:
        return Outcome(state)
    ended = EndedShift(
        shift_id=state.shift_id or "unknown",
        started_at=state.shift_started_at or now,
        ended_at=now,
        members=dict(state.shift_members),
    )
    off = _off_duty(_ended(state, state.shift_members, now=now, shift_ends=True))
    return Outcome(off, ended=ended)


def check_out(state: TeamState, *, member_id: str, now: datetime) -> Outcome:
    """A member checks out: their own stint ends (`leave_shift`: patrol points to now, off
    the shift for what the team does after). The others carry on, also with an order the
    team holds; the last one out ends the shift (`end_shift`: off duty, refused while an
    order holds the team, which would be left with nobody). A member not on the shift ends
    nobody else's (a retry, or a phone that never checked in: nothing changes); only a shift
    with nobody recorded on it (a state stored before members were) ends at anyone's."""
    others = set(state.shift_members) - {member_id}
    if others:
        return leave_shift(state, member_id=member_id, now=now)
    if state.orders:
        if member_id not in state.shift_members:
            # Nobody's stint to end (a retry after the command room called the team in, a
            # check-in that ran out on the order): the team carries its order as it is.
            return Outcome(state)
        raise _order_refusal(state, "you, the last on its shift, can check out")
    return end_shift(state, now=now)


def device_revoked(state: TeamState, *, member_id: str, device_id: str, now: datetime,
                   last_device: bool) -> Outcome:
    """The admin revoked one of the member's devices (a lost phone): if it is the one they
    are on the shift with, their stint ends as their check-out would end it (patrol points
    to now; the others carry on; the last one out ends the shift). A checked-in member whose
    device on the shift is not known (checked in before devices were kept) loses it with
    their `last_device`. A revocation is not refused: where a check-out would be (the last
    one out while an order holds the team), the shift ends under the order all the same
    (`unmanned`: nobody is left who could answer it, and dispatch, hearing the team off
    shift with its order, takes back an offer and flags a taken order for the command
    room). Another device of theirs, or a member not on the shift, changes nothing."""
    if member_id not in state.shift_members:
        return Outcome(state)
    on = state.shift_devices.get(member_id)
    if on != device_id and not (on is None and last_device):
        return Outcome(state)
    try:
        return check_out(state, member_id=member_id, now=now)
    except Refused:
        left = leave_shift(state, member_id=member_id, now=now)
        return Outcome(unmanned(left.state), ended=left.ended)


def leave_shift(state: TeamState, *, member_id: str, now: datetime) -> Outcome:
    """A member who left the team (the roster moved them to another) leaves its shift: their
    patrol time so far ends now (`ended` holds only them); a shift that has nobody left and
    no open order ends, so dispatch never sends an order to a team with nobody on it."""
    since = state.shift_members.get(member_id)
    if not state.on_shift or since is None:
        return Outcome(state)
    left = EndedShift(shift_id=state.shift_id or "unknown",
                      started_at=state.shift_started_at or since, ended_at=now,
                      members={member_id: since})
    remaining = {m: t for m, t in state.shift_members.items() if m != member_id}
    if remaining or state.orders:
        gone = _ended(state, {member_id: since}, now=now, shift_ends=False)
        devices = {m: d for m, d in state.shift_devices.items() if m != member_id}
        return Outcome(state.model_copy(update={"shift_members": remaining, "left": gone,
                                                "shift_devices": devices}),
                       ended=left)
    return Outcome(_off_duty(_ended(state, {member_id: since}, now=now, shift_ends=True)),
                   ended=left)


@dataclass(frozen=True, slots=True)
class CheckInLimit:
    """How long a check-in lasts that nobody ends (the phone died, the member forgot).

    `max_stint` is the longest shift (MAX_PATROL_HOURS: the night shift's 14 h, all of them
    paid); `grace` keeps an early arrival on that shift, or a late check-out, from being
    ended under them (CHECKIN_GRACE_HOURS). A check-in older than both together ends as if
    the member had checked out at `max_stint`."""

    max_stint: timedelta
    grace: timedelta

    @classmethod
    def of(cls, *, max_hours: float, grace_hours: float) -> CheckInLimit:
        return cls(timedelta(hours=max_hours), timedelta(hours=grace_hours))

    def due_before(self, now: datetime) -> datetime:
        """Check-ins made before this have run out by `now`."""
        return now - self.max_stint - self.grace


@dataclass(frozen=True, slots=True)
class Expired:
    state: TeamState
    ended: tuple[EndedShift, ...] = ()


def expire_check_ins(state: TeamState, *, now: datetime, limit: CheckInLimit) -> Expired:
    """End the check-ins that have run out by `now`, each as if its member had checked out
    at `max_stint` after checking in: their patrol is paid to the cap (`ended_at`). On the
    shift they stay until the check-in ran out (`max_stint` and the grace: `leave_shift`
    at that time, `left` keeps the stint), as every event read before the sweep found them:
    an answer or a missed deadline in the grace pays or costs them the same, read at once
    or after the sweep (a restart, a backlog); none after it does. The last one to go ends
    the shift, as a check-out does; while the team holds an order it stays on it with
    nobody, and goes off duty when the order ends (`_release`). Deterministic: the same
    state gives the same stints, ended at the same times (a second replica, a redelivery,
    a retried write change nothing, and pay nothing twice)."""
    due = limit.due_before(now)
    stale = sorted((joined, m) for m, joined in state.shift_members.items() if joined <= due)
    ended: list[EndedShift] = []
    for joined, member_id in stale:  # in the order they ran out
        outcome = leave_shift(state, member_id=member_id,
                              now=joined + limit.max_stint + limit.grace)
        state = outcome.state
        if outcome.ended is not None:
            ended.append(outcome.ended.model_copy(
                update={"expired": True, "ended_at": joined + limit.max_stint}))
    return Expired(state, tuple(ended))


def unmanned(state: TeamState) -> TeamState:
    """The team has nobody left on its roster (an import moved its last members to other
    teams, or they were removed): its shift ends even while it holds orders, which nobody
    may answer now (notify takes answers only from the order's own team). Dispatch, hearing
    it off shift with its order, takes back an offer at once and flags an order the team
    had taken for the command room; the orders stay until they finish."""
    if not state.on_shift:
        return state
    return _settle(state.model_copy(update={
        "on_shift": False, "shift_id": None, "shift_started_at": None, "shift_members": {},
        "shift_devices": {}}))


def set_status(
    state: TeamState, target: DeviceStatus, *, member_id: str, now: datetime, shift_id: str,
    device_id: str | None = None,
) -> Outcome:
    """The device (`device_id`) sets available/busy/off_duty; the same status again is a
    no-op. Available off shift checks the member in with it (`start_shift`)."""
    if target == state.status:
        return Outcome(state)
    if state.orders:
        raise _order_refusal(state, "its status follows the order; it can be set")
    if state.shift_members and member_id not in state.shift_members:
        # As a check-out and a fix: a member who is not on the running shift (at home with
        # the page open, a check-in that ran out) neither takes the patrol off duty nor
        # marks it busy or available for those who are on it. (A state stored before
        # members were recorded on the shift has none: anyone may set it, as before.)
        raise Refused(
            f"the team is {state.status} on a shift you are not on: its members on the "
            "shift set its status; allowed: check in (POST /v1/me/shift/start) first")
    allowed = DEVICE_TRANSITIONS[state.status]
    if target not in allowed:
        raise Refused(
            f"the team is {state.status}; allowed from {state.status}: "
            f"{', '.join(allowed) if allowed else 'none'}"
        )
    if target == "available" and not state.on_shift:
        return start_shift(state, member_id=member_id, now=now, shift_id=shift_id,
                           device_id=device_id)
    if target == "off_duty":
        return end_shift(state, now=now)
    return Outcome(state.model_copy(update={"status": target}))


# --- dispatch's orders --------------------------------------------------------------------


class OrderRecord(BaseModel):
    """What volunteers remembers of an order: whose it is and whether it is still open."""

    model_config = ConfigDict(frozen=True)

    team_id: str
    incident_id: str
    category: str | None = None
    kind: OrderKind | None = Field(
        default=None, description="dispatch's kind of order; None: not known (recorded before "
        "kinds were kept, or a response overtook the order): it counts as claiming the team")
    open: bool = True
    final: str | None = Field(default=None, description="resolved, handover, declined, "
                              "withdrawn; no_team: its team was not on the roster")
    members: tuple[str, ...] | None = Field(
        default=None, description="who was on the team's shift when it resolved the order "
        "(else those who answered it: a team called in off duty): whom its resolution and "
        "the incident's closing pay")
    answered_by: tuple[str, ...] = Field(
        default=(), description="the members whose devices answered the order, in order: "
        "paid for its resolution when nobody was on the team's shift (but one the state knows "
        "had left it by then)")
    called_in: tuple[str, ...] = Field(
        default=(), description="those of `answered_by` who answered while nobody was on the "
        "team's shift (the command room called the team in off duty): paid for its "
        "resolution with those on the shift then, should a teammate have checked in since")
    ack_by: AwareDatetime | None = Field(
        default=None, description="the order's acknowledge-by as dispatch issued it, or as "
        "its withdrawal names it (brought forward by a raised priority) (None: none, or not "
        "known): a member who checked in after it did not miss the order, even if dispatch "
        "withdrew it later (it was down, or catching up)")
    answered_at: AwareDatetime | None = Field(
        default=None, description="when the team first answered it (any answer of any of its "
        "members, also one read after the order ended): whether it answered by `ack_by`")
    missed_by: tuple[str, ...] = Field(
        default=(), description="those whose penalty for missing its deadline stands: given "
        "back once the team is known to have answered by `ack_by` (`answered_in_time`)")
    timed_out: bool = Field(
        default=False, description="dispatch withdrew it for its deadline (`order.withdrawn`, "
        "reason timeout), also read after the team's own answer had ended it here: dispatch "
        "timed it out before it read that answer; its missed-deadline penalty is decided once")

    @property
    def claims(self) -> bool:
        """Whether the order takes the team (its status, its shown order, its check-out)."""
        return self.kind is None or self.kind in CLAIMING_KINDS


def answered_in_time(record: OrderRecord | None) -> bool:
    """Whether the team answered the order by its deadline: its withdrawal for the deadline
    was dispatch's answers being behind (back after an outage), not the team's miss, which
    ever of the answer and the withdrawal is read first. Not known without the deadline."""
    return (record is not None and record.ack_by is not None
            and record.answered_at is not None and record.answered_at <= record.ack_by)


def answered(record: OrderRecord, at: datetime | None) -> OrderRecord:
    """The record knowing the team answered at `at` (its earliest answer is kept)."""
    if at is None or (record.answered_at is not None and record.answered_at <= at):
        return record
    return record.model_copy(update={"answered_at": at})


@dataclass(frozen=True, slots=True)
class OrderStep:
    state: TeamState
    record: OrderRecord | None
    finished: str | None = None  # the final response this step applied, if any
    timed_out: bool = False  # this step read the order's deadline withdrawal, first


def _foreign(record: OrderRecord | None, team_id: str) -> bool:
    return record is not None and record.team_id != team_id


def on_order_issued(
    state: TeamState, record: OrderRecord | None, *, order_id: str, team_id: str,
    incident_id: str, category: str, kind: OrderKind, ack_by: datetime | None = None,
) -> OrderStep:
    if _foreign(record, team_id):
        return OrderStep(state, record)
    if record is not None:  # seen already (redelivery, or a response overtook it)
        learnt = {k: v for k, v in (("category", category), ("kind", kind), ("ack_by", ack_by))
                  if v is not None and getattr(record, k) is None}
        if not learnt:
            return OrderStep(state, record)
        record = record.model_copy(update=learnt)
        if not record.claims and order_id in state.orders:
            # A hand-over or follow-up held the team while its kind was not known (a
            # response overtook it, or it was recorded before kinds were kept): no longer.
            state = _release(state, order_id)
        return OrderStep(state, record)
    new = OrderRecord(team_id=team_id, incident_id=incident_id, category=category, kind=kind,
                      ack_by=ack_by)
    if not new.claims:
        return OrderStep(state, new)
    orders = {**state.orders, order_id: "dispatched"}
    return OrderStep(_settle(state.model_copy(update={"orders": orders})), new)


def on_order_responded(
    state: TeamState, record: OrderRecord | None, *, order_id: str, team_id: str,
    incident_id: str, response: Response, at: datetime | None = None,
    member_id: str | None = None,
) -> OrderStep:
    """`at`: when the team answered; a resolution's record keeps who was on the shift then.
    `member_id`: whose device answered (the record keeps them: see `_finish`)."""
    if _foreign(record, team_id):
        return OrderStep(state, record)
    if record is not None and not record.open:
        # Read after the order ended (its withdrawal read first): it changes nothing but
        # when the team answered, which may show the deadline was not missed ...
        learnt = answered(record, at)
        if response != "resolved" or record.final != "withdrawn":
            return OrderStep(state, learnt)
        # ... but for a resolution: notify took it while it still showed the order (before
        # it read the withdrawal), so the team went and resolved it, and earns what it
        # earns read before the withdrawal (dispatch's timeout with its answers behind, a
        # resolution a second after the deadline, a take-back with the answer in flight).
        # The record ends as it would have then; the team, freed by the withdrawal, stays.
        learnt = _answerer(learnt, state, at=at, member_id=member_id)
        return OrderStep(state, _resolved(learnt, state, at=at), finished="resolved")
    record = answered(record or OrderRecord(team_id=team_id, incident_id=incident_id), at)
    record = _answerer(record, state, at=at, member_id=member_id)
    if response in FINAL_RESPONSES:
        return _finish(state, record, order_id=order_id, final=response, at=at)
    if not record.claims:
        return OrderStep(state, record)
    orders = dict(state.orders)
    current = orders.get(order_id, "dispatched")
    stage = PROGRESS.get(response, current)
    # Responses move forward only: a late en_route after on_scene changes nothing.
    orders[order_id] = stage if STAGE_RANK[stage] >= STAGE_RANK[current] else current
    return OrderStep(_settle(state.model_copy(update={"orders": orders})), record)


def on_order_withdrawn(
    state: TeamState, record: OrderRecord | None, *, order_id: str, team_id: str,
    incident_id: str, ack_by: datetime | None = None, timeout: bool = False,
) -> OrderStep:
    """`ack_by`: the order's deadline as dispatch withdrew it, which replaces order.issued's
    (a raised priority brings it forward, order.amended, which volunteers does not read):
    the one a timeout was judged by, an answer by it in time, one after it a miss.
    `timeout`: withdrawn for that deadline."""
    if _foreign(record, team_id):
        return OrderStep(state, record)
    if record is not None and not record.open:
        if not (timeout and record.final in FINAL_RESPONSES and not record.timed_out):
            return OrderStep(state, record)
        # The team's own answer ended it here, but dispatch timed the order out before it
        # read that answer (an answer after the deadline it then ignores: the routing timeout
        # is the team's). The timeout is judged as if read first: the order stays as the
        # answer left it (the team was freed then), and the step says it timed out.
        return OrderStep(state, _withdrawn(record, ack_by, timeout=True), timed_out=True)
    record = _withdrawn(record or OrderRecord(team_id=team_id, incident_id=incident_id),
                        ack_by, timeout=timeout)
    step = _finish(state, record, order_id=order_id, final="withdrawn")
    return replace(step, timed_out=timeout)


def _answerer(record: OrderRecord, state: TeamState, *, at: datetime | None,
              member_id: str | None) -> OrderRecord:
    """The record knowing `member_id` answered it (`answered_by`), and, if nobody was on
    the team's shift at `at`, that they were called in (`called_in`)."""
    if member_id and member_id not in record.answered_by:
        record = record.model_copy(update={"answered_by": (*record.answered_by, member_id)})
    if member_id and member_id not in record.called_in and not on_shift_at(state, at):
        record = record.model_copy(update={"called_in": (*record.called_in, member_id)})
    return record


def _withdrawn(record: OrderRecord, ack_by: datetime | None, *, timeout: bool) -> OrderRecord:
    """The record knowing the deadline its withdrawal names (if any), and whether it was
    withdrawn for it."""
    return record.model_copy(update={"ack_by": ack_by or record.ack_by, "timed_out": timeout})


def _release(state: TeamState, order_id: str) -> TeamState:
    """The team no longer held by the order."""
    orders = {o: s for o, s in state.orders.items() if o != order_id}
    settled = _settle(state.model_copy(update={"orders": orders}))
    if settled.on_shift and not settled.shift_members and not settled.orders:
        # Its last member left the shift while the order was open (a roster import moved
        # them, or they were removed): the shift ends with it, as leave_shift ends it when
        # no order holds it, so dispatch sends nothing to a team with nobody on it.
        settled = _off_duty(settled.left)
    return settled


def _finish(state: TeamState, record: OrderRecord, *, order_id: str, final: str,
            at: datetime | None = None) -> OrderStep:
    settled = _release(state, order_id)
    if final == "resolved":
        return OrderStep(settled, _resolved(record, state, at=at), finished=final)
    return OrderStep(settled, record.model_copy(update={"open": False, "final": final}),
                     finished=final)


def _known_off(state: TeamState, member_id: str, at: datetime | None) -> bool:
    """Whether the state knows `member_id` was off the team's shift at `at`, when
    `on_shift_at` finds nobody on it then: it remembers a stint of theirs begun by then
    (`left` keeps each member's latest, and drops the oldest first, so none after it that
    spanned `at` is forgotten). Stints begun only after `at` say nothing of then. `at`
    None: any the state knows of."""
    joined = [since for since, _ in state.left.get(member_id, ())]
    if member_id in state.shift_members:
        joined.append(state.shift_members[member_id])
    return bool(joined) and (at is None or min(joined) <= at)


def _resolved(record: OrderRecord, state: TeamState, *, at: datetime | None) -> OrderRecord:
    """The record of an order its team resolved at `at`, with whom it pays (`members`)."""
    # Those on the shift when the team answered; with nobody on it (the command room
    # called the team in off duty: its order stands, DESIGN), those who answered the
    # order went and did it, and earn what a resolution earns; and so do those who
    # answered it while nobody was on the shift, though a teammate checked in since.
    # Not one the state knows was off the shift then, though they answered it earlier on
    # it: they left before the resolution (moved to another team, checked out, a check-in
    # that ran out), and the team resolved it without them. (One whose time then it no
    # longer knows, an answer read days late, is taken to have been there, as before: also
    # one it knows only from shifts since, which says nothing of then.)
    on = on_shift_at(state, at)
    members = on or tuple(m for m in sorted(record.answered_by)
                          if not _known_off(state, m, at))
    members = tuple(sorted({*members, *record.called_in}))
    return record.model_copy(update={"open": False, "final": "resolved", "members": members})


# --- the event dispatch builds its projection from -----------------------------------------


def unit_status(
    *, team: Mapping[str, str], agency: Mapping[str, str], state: TeamState, skills: list[str],
    removed: bool = False,
) -> UnitStatus:
    kind: AgencyKind = agency["kind"]  # type: ignore[assignment]
    mode: Mode = team["mode"]  # type: ignore[assignment]
    return UnitStatus(
        district=team["district"],
        unit_id=team["id"],
        status=state.status,
        name=team.get("name") or None,
        agency_id=team["agency_id"],
        agency_kind=kind,
        agency_role=(agency.get("role") or None) if kind == "police" else None,  # type: ignore[arg-type]
        mode=mode,
        skills=tuple(skills),
        home_zone_id=team.get("home_zone_id") or None,
        on_shift=state.on_shift,
        order_id=state.open_order,
        removed=removed,
    )
