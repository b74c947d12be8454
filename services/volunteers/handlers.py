"""Volunteers' subscribers: dispatch's orders drive team status (-> unit.status) and points.

order.issued -> dispatched (a hand-over or follow-up is recorded and leaves the status alone);
order.responded -> en_route / on_scene / finished (resolved orders earn volunteer points);
order.withdrawn -> finished (a missed deadline costs volunteer points); incident.closed ->
confirmed hazard reports. Each change is deduplicated by the order's own record (an order is
issued once and finishes once), so a redelivered event finds nothing to do.

A confirmed hazard report pays those who were on the team's shift when it resolved the order
(the order's record keeps them), and the member who reported it from the street. Only the
incident's closing confirms it, naming who reported it and who resolved it: a team's
resolution of its reporter's own report confirms nothing (domain.points `hazard_confirmers`),
nor does one made by a shift the reporter was on (`reporter_resolved`: an import may have
moved them before the closing was read). The reporter's own team is the one they were on
when they reported, as the closing names it (`reporter_team_id`), else (a closing without
it) the one its first reading found them on.
However the streams interleave: the closing marks the teams it confirms, then pays their
resolutions read so far; a resolution read after it finds the mark and pays itself.

A missed deadline costs nothing when the team had answered by it (dispatch, its answers
behind, timed the order out before reading the answer): whichever of the answer, the
withdrawal and the order (its deadline) is read last finds it out, and a penalty already
taken is given back, with the change that found it, once (`missed_penalty_given_back`; an
answer read after its team left the roster, from the record alone: `answered_without_team`). An
answer after the deadline does not spare it, also one that ended the order here before its
deadline's withdrawal was read (dispatch timed the order out before it read the answer).
A resolution pays alike read before or after the order's withdrawal (notify took it before it
read the withdrawal: the team went and resolved it).
"""

from __future__ import annotations

import logging
from datetime import datetime

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from shared import streams
from shared.bus import consume
from shared.events import IncidentClosed, OrderIssued, OrderResponded, OrderWithdrawn, utcnow

from .config import Settings
from .domain import points, status
from .domain.status import OrderRecord
from .store import points as points_store
from .store import roster as roster_store
from .store import teams
from .store.teams import Decision, TeamView

log = logging.getLogger(__name__)


def register(broker: RedisBroker, *, redis: Redis, settings: Settings) -> None:
    ledger_ttl_s = points_store.ledger_ttl(settings.retention_days)
    # Every change first ends the check-ins that ran out: a resolution or a missed deadline
    # read before the sweep came (or late, after a restart) pays or costs them nothing.
    check_in_limit = settings.check_in_limit()

    def missed_penalty_given_back(view: TeamView, order_id: str, record: OrderRecord | None,
                                  at: datetime) -> tuple[OrderRecord | None,
                                                         tuple[points.LedgerEntry, ...]]:
        """The order's record and the entries that give its missed-deadline penalty back, if
        one stands and the record now shows the team answered by the deadline. The record
        then keeps no penalty standing, so no redelivery gives it back twice."""
        if (record is None or record.team_id != view.team["id"] or not record.missed_by
                or not status.answered_in_time(record)):
            return record, ()
        log.info("order %s was answered by its deadline: its missed-deadline penalty is "
                 "given back to %s", order_id, ", ".join(record.missed_by))
        return record.model_copy(update={"missed_by": ()}), tuple(points.reverse_missed_order(
            order_id=order_id, incident_id=record.incident_id, team_id=record.team_id,
            district=view.team["district"], penalised=record.missed_by, at=at))

    async def no_team(event: OrderIssued | OrderResponded | OrderWithdrawn) -> None:
        # Its team is not on the roster: the order is done here, also should the team be
        # imported again before the event is read again.
        await teams.order_of_no_team(redis, order_id=event.order_id, team_id=event.team_id,
                                     incident_id=event.incident_id)

    async def on_order_issued(event: OrderIssued) -> None:
        def decide(view: TeamView) -> Decision:
            step = status.on_order_issued(
                view.state, view.record, order_id=event.order_id, team_id=event.team_id,
                incident_id=event.incident_id, category=event.category, kind=event.kind,
                ack_by=event.ack_by,
            )
            # The deadline learnt last (the answer and the withdrawal were read first).
            record, ledger = missed_penalty_given_back(view, event.order_id, step.record, now)
            return Decision(step.state, record, ledger)

        now = utcnow()
        applied = await teams.transition(redis, team_id=event.team_id,
                                         order_id=event.order_id, decide=decide, now=now,
                                         ledger_ttl_s=ledger_ttl_s, check_ins=check_in_limit)
        if applied is None:
            log.warning("order %s names team %s, which is not on the roster",
                        event.order_id, event.team_id)
            await no_team(event)

    async def on_order_responded(event: OrderResponded) -> None:
        def decide(view: TeamView) -> Decision:
            step = status.on_order_responded(
                view.state, view.record, order_id=event.order_id, team_id=event.team_id,
                incident_id=event.incident_id, response=event.response, at=event.occurred_at,
                member_id=event.member_id,
            )
            ledger: list[points.LedgerEntry] = []
            if step.finished == "resolved" and step.record is not None:
                # Those on the shift when the team answered (the record keeps them), not
                # also those who checked in before the answer was read.
                ledger = points.award_resolved_order(
                    order_id=event.order_id, incident_id=event.incident_id,
                    team_id=event.team_id, district=view.team["district"],
                    agency_kind=view.agency.get("kind", ""),
                    members_on_shift=step.record.members or (), at=event.occurred_at,
                )
            # An answer by the deadline read after the withdrawal it timed out.
            record, given_back = missed_penalty_given_back(view, event.order_id, step.record,
                                                           now)
            return Decision(step.state, record, (*ledger, *given_back))

        now = utcnow()
        applied = await teams.transition(redis, team_id=event.team_id,
                                         order_id=event.order_id, decide=decide, now=now,
                                         ledger_ttl_s=ledger_ttl_s, check_ins=check_in_limit)
        if applied is None:
            log.warning("response to order %s names team %s, which is not on the roster",
                        event.order_id, event.team_id)
            await no_team(event)
            await answered_without_team(event, now)
            return
        record = applied.decision.record
        # A hazard report's 3 only if the incident's closing, read first, confirmed this
        # team's resolution (it found none of this team's to pay). Also on a redelivery: the
        # resolution made, its hazard points perhaps not. A category not known yet (the
        # answer overtook the order) may be a hazard report's.
        # Not when its reporter was on the shift that resolved it (a roster moved them to
        # another team before the closing was read): their own word.
        if (record is not None and record.final == "resolved" and record.members is not None
                and record.team_id == event.team_id
                and record.category in (None, points.HAZARD_CATEGORY)
                and await teams.hazard_confirmed(redis, incident_id=event.incident_id,
                                                 team_id=event.team_id)
                and not points.reporter_resolved(record.members, await teams.hazard_reporters(
                    redis, incident_id=event.incident_id))):
            await pay_hazard(applied.before, event.order_id, record, event.occurred_at)

    async def answered_without_team(event: OrderResponded, now: datetime) -> None:
        """An answer read after its team left the roster (its members moved to other teams
        and the team removed once the order had ended), which shows the order's deadline was
        not missed: the penalty is given back to those it cost, as the record keeps them,
        whatever their team is now, each in their own district's ledger and board."""
        record = await teams.order_record(redis, event.order_id)
        if record is None or not record.missed_by:
            return
        penalised = sorted(record.missed_by)
        found = await roster_store.records(redis, "members", penalised)
        district = {m: r.get("district") or event.district
                    for m, r in zip(penalised, found, strict=True)}

        def decide(record: OrderRecord) -> tuple[OrderRecord, tuple[points.LedgerEntry, ...]]:
            learnt = status.answered(record, event.occurred_at)
            if (record.open or record.team_id != event.team_id or not record.missed_by
                    or not status.answered_in_time(learnt)):
                return record, ()
            log.info("order %s of a team no longer on the roster was answered by its "
                     "deadline: its missed-deadline penalty is given back to %s",
                     event.order_id, ", ".join(record.missed_by))
            return learnt.model_copy(update={"missed_by": ()}), tuple(
                entry for member_id in record.missed_by
                for entry in points.reverse_missed_order(
                    order_id=event.order_id, incident_id=record.incident_id,
                    team_id=record.team_id, district=district.get(member_id, event.district),
                    penalised=(member_id,), at=now))

        await teams.settle_order(redis, order_id=event.order_id, decide=decide,
                                 ledger_ttl_s=ledger_ttl_s)

    async def on_order_withdrawn(event: OrderWithdrawn) -> None:
        def decide(view: TeamView) -> Decision:
            step = status.on_order_withdrawn(
                view.state, view.record, order_id=event.order_id, team_id=event.team_id,
                incident_id=event.incident_id, ack_by=event.ack_by,
                timeout=event.reason == "timeout",
            )
            record = step.record
            ledger: list[points.LedgerEntry] = []
            # A phone of the shift had the order and nobody answered before the deadline (an
            # order that never reached a phone costs nothing: the network's fault, not
            # theirs). Also when the team's answer after the deadline ended the order here
            # first (a refusal, a resolution, a hand-over): dispatch timed it out before it
            # read that answer, which it ignores, and counts the team's routing timeout. Not
            # an order it answered by the deadline (dispatch, its answers behind, timed it
            # out all the same). Written with the transition, and the record then says it
            # timed out, so exactly once; the record keeps whom it cost, to give it back
            # should an answer by the deadline be read after it.
            if (event.delivered and step.timed_out and record is not None
                    and not status.answered_in_time(record)):
                # Those on the shift at the deadline: the withdrawal may come long after it
                # (dispatch down, or catching up), and who checked in meanwhile missed nothing.
                missed_at = event.occurred_at
                if record.ack_by is not None:
                    missed_at = min(missed_at, record.ack_by)
                ledger = points.penalise_missed_order(
                    order_id=event.order_id, incident_id=event.incident_id,
                    team_id=event.team_id, district=view.team["district"],
                    agency_kind=view.agency.get("kind", ""),
                    members_on_shift=status.on_shift_at(view.state, missed_at),
                    at=event.occurred_at)
                record = record.model_copy(
                    update={"missed_by": tuple(e.member_id for e in ledger)})
            return Decision(step.state, record, tuple(ledger))

        if await teams.transition(redis, team_id=event.team_id,
                                  order_id=event.order_id, decide=decide, now=utcnow(),
                                  ledger_ttl_s=ledger_ttl_s, check_ins=check_in_limit) is None:
            await no_team(event)

    async def pay_hazard(view: TeamView, order_id: str, record: OrderRecord,
                         at: datetime) -> None:
        """A confirmed hazard report's points to those on the team's shift when it resolved
        the order, a team the closing confirmed (not the reporter's own) (entry ids per
        incident and member: once, whichever path pays first)."""
        await points_store.award(redis, points.award_confirmed_hazard(
            incident_id=record.incident_id, team_id=record.team_id,
            district=view.team["district"], agency_kind=view.agency.get("kind", ""),
            members_on_shift=record.members or (), at=at, order_id=order_id),
            ledger_ttl_s=ledger_ttl_s)

    async def pay_hazard_without_team(event: IncidentClosed, order_id: str,
                                      record: OrderRecord) -> None:
        """`pay_hazard` once the resolving team has left the roster (its members moved to
        other teams and it was removed before the closing was read): each of those on its
        shift then, by their own record now (district, agency kind), as the closing read
        before the removal would have paid them."""
        members = sorted(record.members or ())
        found = await roster_store.records(redis, "members", members)
        agency_ids = sorted({m["agency_id"] for m in found if m})
        kinds = dict(zip(agency_ids, [a.get("kind", "") for a in await roster_store.records(
            redis, "agencies", agency_ids)], strict=True))
        await points_store.award(redis, [
            entry for member_id, member in zip(members, found, strict=True) if member
            for entry in points.award_confirmed_hazard(
                incident_id=record.incident_id, team_id=record.team_id,
                district=member["district"], agency_kind=kinds.get(member["agency_id"], ""),
                members_on_shift=(member_id,), at=event.occurred_at, order_id=order_id)],
            ledger_ttl_s=ledger_ttl_s)

    async def award_reporter(event: IncidentClosed, member_id: str,
                             found: tuple[dict[str, str], str]) -> None:
        """A hazard a volunteer reported from the street, confirmed: the hazard points to the
        reporter (`found`: their record and agency's kind), on shift or not (the same entry
        id as the resolving team's: once)."""
        member, kind = found
        await points_store.award(redis, points.award_confirmed_hazard(
            incident_id=event.incident_id, team_id=member["team_id"],
            district=member["district"], agency_kind=kind,
            members_on_shift=(member_id,), at=event.occurred_at), ledger_ttl_s=ledger_ttl_s)

    async def on_incident_closed(event: IncidentClosed) -> None:
        # The incident's own category confirms a hazard report even if this service never
        # saw the order's category; the entry ids match those of the order path. Paid to
        # those on the resolving team's shift when it resolved, not to those on it now.
        if event.category != points.HAZARD_CATEGORY:
            return
        reporter, found, reporter_team = event.reported_by_member, None, None
        first_found: str | None = None
        reporter_on: set[str] = set()
        if reporter:
            found = await roster_store.member_and_kind(redis, reporter)
            # Their team when they reported (the closing's: intake had it from their device
            # token), not the one a roster moved them to since; else the one the first
            # reading of the closing found them on (a closing without it: reported before
            # 2026-12-07). Its reporter kept either way: a resolution read later checks them.
            first_found = await teams.reporter_team(
                redis, incident_id=event.incident_id, member_id=reporter,
                team_now=found[0]["team_id"] if found is not None else None)
            reporter_team = event.reporter_team_id or first_found
            # Their own team also when a roster moved them before this was read (dispatch
            # catching up): they were on the shift that resolved it.
            reporter_on = {record.team_id for _, record in await teams.resolved_orders(
                redis, event.incident_id) if points.reporter_resolved(record.members,
                                                                      (reporter,))}
        confirmers = points.hazard_confirmers(resolved_by=event.resolved_by,
                                              reporter_team=reporter_team,
                                              reporter_on=reporter_on)
        if confirmers:
            # First: a resolution not yet read (its own stream) then pays itself.
            await teams.confirm_hazard(redis, incident_id=event.incident_id,
                                       team_ids=confirmers)
            for order_id, record in await teams.resolved_orders(redis, event.incident_id):
                if (record.team_id not in confirmers or record.members is None
                        or (reporter and points.reporter_resolved(record.members,
                                                                  (reporter,)))):
                    continue
                view = await teams.load_view(redis, record.team_id)
                if view is not None:
                    await pay_hazard(view, order_id, record, event.occurred_at)
                else:
                    await pay_hazard_without_team(event, order_id, record)
        # The reporter last: once they are paid, so is the shift of the team that confirmed it
        # (unless its resolution is still to be read). Not one the first reading found off
        # the roster (removed), imported again since: a closing read again decides as it did.
        if (reporter and found is not None and first_found is not None
                and points.confirmed_for_reporter(
                    final_status=event.final_status, resolved_by=event.resolved_by,
                    reporter_team=reporter_team, reporter_on=reporter_on)):
            await award_reporter(event, reporter, found)

    consume(broker, streams.ORDER_ISSUED, OrderIssued, on_order_issued,
            settings=settings, group="volunteers", bookkeeping=True)
    consume(broker, streams.ORDER_RESPONDED, OrderResponded, on_order_responded,
            settings=settings, group="volunteers", bookkeeping=True)
    consume(broker, streams.ORDER_WITHDRAWN, OrderWithdrawn, on_order_withdrawn,
            settings=settings, group="volunteers", bookkeeping=True)
    consume(broker, streams.INCIDENT_CLOSED, IncidentClosed, on_incident_closed,
            settings=settings, group="volunteers", bookkeeping=True)
