"""What a station's answers do once a case is the station's (DESIGN.md: a hand-over stays
`handed_over` until the station's team resolves it, i.e. files it; disputes get follow-up
visits, DOMAIN.md: revisited until the agreement holds): a visit's verdict is the visit's,
never the case's resolution again, and a backup a station team asked for ends with its own
answer or with the station's order, leaving no order live and no team busy on an ended
case. In-process against a real Redis."""

from __future__ import annotations

import time

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import domain, store
from services.dispatch.main import create_app
from shared import streams
from shared.events import IncidentClosed, OrderIssued, OrderResponded
from shared.policy import load_policy
from tests.helpers import poll_until, read_stream

from .conftest import console_of, settings_for
from .test_engine import DISTRICT, orders_for, report, team, wait_for_units

ADMIN = {"Authorization": "Bearer test-admin-token"}
# the first answer's team, the owning station's car, two more teams that may back them up
TEAMS = {"guard": ("security", 22.8171), "station-car": ("police", 22.8300),
         "sec-2": ("security", 22.8185), "sec-3": ("security", 22.8400)}


async def answer(publisher: RedisBroker, order: OrderIssued, response: str,
                 note: str | None = None) -> None:
    await publisher.publish(OrderResponded(
        district=DISTRICT, order_id=order.order_id, incident_id=order.incident_id,
        team_id=order.team_id, member_id="m1", response=response, note=note),  # type: ignore[arg-type]
        stream=streams.ORDER_RESPONDED.name)


def incident_fields(url: str, incident_id: str) -> dict[str, str]:
    with sync_redis.Redis.from_url(url, decode_responses=True) as client:
        return client.hgetall(store.incident_key(incident_id))


def order_fields(url: str, order_id: str) -> dict[str, str]:
    with sync_redis.Redis.from_url(url, decode_responses=True) as client:
        return client.hgetall(store.order_key(order_id))


def claim_of(url: str, team_id: str) -> str | None:
    with sync_redis.Redis.from_url(url, decode_responses=True) as client:
        return client.get(f"dispatch:claim:{team_id}")


def make_due(url: str, timer: str) -> None:
    with sync_redis.Redis.from_url(url, decode_responses=True) as client:
        client.zadd(store.TIMERS, {timer: time.time()})


def closed_events(url: str, incident_id: str) -> list[IncidentClosed]:
    return [e for e in read_stream(url, streams.INCIDENT_CLOSED.name, IncidentClosed)
            if e.incident_id == incident_id]


def of_kind(url: str, incident_id: str, kind: str) -> list[OrderIssued]:
    return [o for o in orders_for(url, incident_id) if o.kind == kind]


async def order_in(url: str, order: OrderIssued, state: str) -> None:
    await poll_until(lambda: order_fields(url, order.order_id).get("state") == state,
                     f"order {order.team_id}/{order.kind} {state}")


async def handed_over_dispute(url: str, publisher: RedisBroker) -> tuple[str, OrderIssued]:
    """A dispute the guard handed over to the owning station (ag-police): the incident and
    the station car's hand-over order."""
    for team_id, (kind, lat) in TEAMS.items():
        await team(publisher, team_id, kind=kind, lat=lat, lon=108.3665,
                   role="station" if team_id == "station-car" else None)
    await wait_for_units(url, len(TEAMS))
    incident_id = await report(publisher, "dispute", priority="P3")
    (first,) = await poll_until(lambda: orders_for(url, incident_id), "the guard's order")
    assert first.team_id == "guard"
    with sync_redis.Redis.from_url(url, decode_responses=True) as client:
        client.hset(store.incident_key(incident_id), "station_agency_id", "ag-police")
    await answer(publisher, first, "acknowledged")
    await answer(publisher, first, "handover", "mediated: they agreed on the wall")
    (handover,) = await poll_until(lambda: of_kind(url, incident_id, "handover"),
                                   "the station's hand-over order")
    assert handover.team_id == "station-car"
    return incident_id, handover


async def filed(url: str, publisher: RedisBroker, incident_id: str,
                handover: OrderIssued) -> dict[str, str]:
    """The station files the case (resolves its hand-over order): the incident as then."""
    await answer(publisher, handover, "resolved")
    await poll_until(lambda: incident_fields(url, incident_id).get("status") == "resolved",
                     "the case filed")
    await poll_until(lambda: closed_events(url, incident_id), "incident.closed")
    return incident_fields(url, incident_id)


async def visit(url: str, incident_id: str, number: int = 1) -> OrderIssued:
    """The follow-up timer made due now: the visit's order."""
    make_due(url, f"followup:{incident_id}")
    visits = await poll_until(lambda: of_kind(url, incident_id, "followup")[number - 1:],
                              f"follow-up visit {number}")
    return visits[0]


async def test_a_visit_finding_the_agreement_holding_leaves_the_filed_case_as_it_was(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """"Agreement holds" on a visit of a filed case: the visit's verdict is counted, but the
    case's resolution (when, by whom) is not written again, nor incident.closed sent again
    (volunteers pay points and intake ends the caller's view on it)."""
    url = clean_redis
    incident_id, handover = await handed_over_dispute(url, publisher)
    before = await filed(url, publisher, incident_id, handover)
    followup = await visit(url, incident_id)
    await answer(publisher, followup, "resolved")
    await order_in(url, followup, "resolved")
    await poll_until(lambda: incident_fields(url, incident_id).get("followup_held") == "1",
                     "the visit's verdict")
    after = incident_fields(url, incident_id)
    assert after["status"] == "resolved" and after["flagged"] == "0"
    assert (after["resolved_at"], after["resolved_by_force"]) == (before["resolved_at"],
                                                                  before["resolved_by_force"])
    assert len(closed_events(url, incident_id)) == 1
    r = await console.get("/v1/kpis", headers=ADMIN, params={"district": DISTRICT})
    assert r.json()["followups"] == {"incidents": 1, "visits": 1, "agreements_holding": 1}


async def test_a_visit_before_the_filing_neither_files_the_case_nor_drops_the_hand_over(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """The visit falls due while the station still owes the filing: "agreement holds"
    answers the visit, and the case stays handed over with its hand-over order live (the
    filing still owed, overdue for the inspector) until the station files it."""
    url = clean_redis
    incident_id, handover = await handed_over_dispute(url, publisher)
    followup = await visit(url, incident_id)
    await answer(publisher, followup, "resolved")
    await order_in(url, followup, "resolved")
    await poll_until(lambda: incident_fields(url, incident_id).get("followup_held") == "1",
                     "the visit's verdict")
    inc = incident_fields(url, incident_id)
    assert inc["status"] == "handed_over" and not inc.get("resolved_at")
    assert order_fields(url, handover.order_id)["state"] in domain.LIVE_ORDER_STATES
    assert closed_events(url, incident_id) == []

    after = await filed(url, publisher, incident_id, handover)
    assert after["resolved_by_force"] == "police:station"
    assert len(closed_events(url, incident_id)) == 1


async def test_a_filed_case_whose_last_visit_finds_the_agreement_broken_is_flagged_until_closed(
        clean_redis: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the last visit the command room decides (the case is flagged): also for a case
    the station filed long ago, the usual one, which an `resolved` incident's flag left
    silent. Its close is the decision: the flag goes."""
    real = load_policy()
    monkeypatch.setattr("services.dispatch.main.load_policy",
                        lambda *_: real.model_copy(update={"followup_max_visits": 1}))
    url = clean_redis
    app = create_app(settings_for(url))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://dispatch") as console:
            incident_id, handover = await handed_over_dispute(url, publisher)
            await filed(url, publisher, incident_id, handover)
            followup = await visit(url, incident_id)
            await answer(publisher, followup, "handover", "quarrelling over the wall again")
            await poll_until(lambda: incident_fields(url, incident_id).get("flagged") == "1",
                             "the case flagged for the command room")
            r = await console.get("/v1/incidents", headers=ADMIN,
                                  params={"district": DISTRICT, "flagged": "true"})
            assert [i["incident_id"] for i in r.json()["incidents"]] == [incident_id]
            assert incident_fields(url, incident_id)["status"] == "resolved"
            assert len(closed_events(url, incident_id)) == 1

            r = await console.post(f"/v1/incidents/{incident_id}/close", headers=ADMIN)
            assert r.status_code == 200, r.text
            assert incident_fields(url, incident_id)["flagged"] == "0"
            r = await console.get("/v1/incidents", headers=ADMIN,
                                  params={"district": DISTRICT, "flagged": "true"})
            assert r.json()["incidents"] == []


async def backup_for(url: str, publisher: RedisBroker, asking: OrderIssued,
                     count: int = 1) -> OrderIssued:
    """The station team asks for backup on its order: the backup's order (the `count`th)."""
    await answer(publisher, asking, "reinforce", "the neighbour came out with a spade")
    backups = await poll_until(lambda: of_kind(url, asking.incident_id,
                                               "reinforcement")[count - 1:], "the backup")
    return backups[0]


async def a_backup_wanted_elsewhere(url: str, publisher: RedisBroker
                                    ) -> tuple[OrderIssued, OrderIssued, str]:
    """A handed-over dispute whose station car asked for backup: the second guard, the only
    first-aider on shift, goes; meanwhile someone collapses (medical, P1), and the call
    waits for a first-aider. The hand-over order, the backup's order and the collapse."""
    _, handover = await handed_over_dispute(url, publisher)
    kind, lat = TEAMS["sec-2"]
    await team(publisher, "sec-2", kind=kind, lat=lat, lon=108.3665, skills=("first_aid",))
    with sync_redis.Redis.from_url(url, decode_responses=True) as client:
        await poll_until(lambda: "first_aid" in (client.hget("dispatch:unit:sec-2", "skills")
                                                 or ""), "the first-aider in dispatch's view")
        backup = await backup_for(url, publisher, handover)
        assert backup.team_id == "sec-2"
        collapse = await report(publisher, "medical", priority="P1")
        await poll_until(lambda: client.zscore(f"dispatch:waiting:{DISTRICT}", collapse),
                         "the collapse waiting: its only first-aider is on the backup")
    return handover, backup, collapse


async def test_the_backup_of_a_station_order_taken_back_goes_at_once_to_an_incident_waiting(
        clean_redis: str, publisher: RedisBroker) -> None:
    """The backup withdrawn with the station's order it came for is free at once, as the
    team of a close is: volunteers says nothing of a team it never said busy, and the
    collapse must not wait for the sweep (off here) or the team's next position fix."""
    url = clean_redis
    async with console_of(url, waiting_sweep_s=0) as console:
        handover, backup, collapse = await a_backup_wanted_elsewhere(url, publisher)
        r = await console.post(f"/v1/orders/{handover.order_id}/withdraw", headers=ADMIN,
                               json={"note": "called to another case"})
        assert r.status_code == 200, r.text
        await order_in(url, backup, "withdrawn")
        (order,) = await poll_until(lambda: orders_for(url, collapse),
                                    "the collapse given the first-aider freed")
        assert order.team_id == backup.team_id


async def test_a_backup_of_the_station_ends_its_own_order_and_the_filing_stays_owed(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """A station team doing the hand-over's paperwork at the scene asks for backup (the
    dispute turns violent): a team goes. Its "resolved" ends its own order and frees it;
    the case is still the station's to file, not resolved under the live hand-over order."""
    url = clean_redis
    incident_id, handover = await handed_over_dispute(url, publisher)
    await answer(publisher, handover, "acknowledged")
    backup = await backup_for(url, publisher, handover)
    assert backup.team_id == "sec-2"
    await answer(publisher, backup, "on_scene")
    await answer(publisher, backup, "resolved")
    await order_in(url, backup, "resolved")
    await poll_until(lambda: claim_of(url, "sec-2") is None, "the backup team free")
    inc = incident_fields(url, incident_id)
    assert inc["status"] == "handed_over" and not inc.get("resolved_at")
    assert order_fields(url, handover.order_id)["state"] == "acknowledged"
    assert closed_events(url, incident_id) == []

    after = await filed(url, publisher, incident_id, handover)
    assert after["resolved_by_force"] == "police:station"
    assert len(closed_events(url, incident_id)) == 1


async def test_a_backup_still_there_when_the_station_files_is_withdrawn_and_freed(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, handover = await handed_over_dispute(url, publisher)
    backup = await backup_for(url, publisher, handover)
    await answer(publisher, backup, "acknowledged")
    await order_in(url, backup, "acknowledged")
    await filed(url, publisher, incident_id, handover)
    await order_in(url, backup, "withdrawn")
    assert claim_of(url, backup.team_id) is None


async def test_a_backup_of_the_station_that_declines_is_replaced_while_the_station_is_there(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    url = clean_redis
    incident_id, handover = await handed_over_dispute(url, publisher)
    backup = await backup_for(url, publisher, handover)
    await answer(publisher, backup, "declined", "on another call")
    backups = await poll_until(lambda: of_kind(url, incident_id, "reinforcement")[1:],
                               "another backup")
    assert [o.team_id for o in backups] == ["sec-3"]


async def test_a_backup_of_a_visit_to_a_filed_case_resolves_nothing_but_its_own_order(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """A revisit turns violent: the station team's backup resolves its order, then the
    visit ends; the filed case's resolution is written once, incident.closed sent once, and
    no order is left live, nor any team busy."""
    url = clean_redis
    incident_id, handover = await handed_over_dispute(url, publisher)
    before = await filed(url, publisher, incident_id, handover)
    followup = await visit(url, incident_id)
    backup = await backup_for(url, publisher, followup)
    await answer(publisher, backup, "resolved")
    await order_in(url, backup, "resolved")
    second = await backup_for(url, publisher, followup, count=2)  # asked again: another goes
    await answer(publisher, second, "acknowledged")
    await order_in(url, second, "acknowledged")
    await answer(publisher, followup, "resolved")
    await order_in(url, followup, "resolved")
    await order_in(url, second, "withdrawn")  # went with the visit it backed up
    after = incident_fields(url, incident_id)
    assert (after["status"], after["resolved_at"]) == ("resolved", before["resolved_at"])
    assert len(closed_events(url, incident_id)) == 1
    live = [o for o in orders_for(url, incident_id)
            if order_fields(url, o.order_id)["state"] in domain.LIVE_ORDER_STATES]
    assert live == []
    assert claim_of(url, backup.team_id) is None and claim_of(url, second.team_id) is None


async def test_a_station_order_taken_back_after_asking_for_backup_takes_the_backup_with_it(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    """The station car asked for backup on its hand-over order before acknowledging it: the
    call took the order (no decline after it), and when the command room takes the order
    back the hand-over goes to another of the station's teams or waits, and the backup that
    came for the car is withdrawn and freed, not left on the case."""
    url = clean_redis
    incident_id, handover = await handed_over_dispute(url, publisher)
    backup = await backup_for(url, publisher, handover)
    await order_in(url, handover, "acknowledged")
    r = await console.post(f"/v1/orders/{handover.order_id}/withdraw", headers=ADMIN,
                           json={"note": "called to another case"})
    assert r.status_code == 200, r.text
    await order_in(url, handover, "withdrawn")
    await order_in(url, backup, "withdrawn")
    assert claim_of(url, backup.team_id) is None
    assert incident_fields(url, incident_id)["status"] == "handed_over"
