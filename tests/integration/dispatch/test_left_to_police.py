"""A P1 with a police team's order live is the police's: a security or volunteer team that
answers "resolved" (the guard first on scene at a knife fight) ends its own order, and the
incident stays with the police, whose own answer ends it (DOMAIN: security goes first,
police follow on serious incidents). On a P2-P4, or with no police order live, the first
resolution ends the incident as before. In-process against a real Redis."""

from __future__ import annotations

import httpx
import pytest
import redis as sync_redis
from faststream.redis import RedisBroker

from services.dispatch import store
from shared import streams
from shared.events import IncidentClosed, OrderIssued, OrderResponded, OrderWithdrawn
from tests.helpers import poll_until, read_stream

from .conftest import fail_once
from .test_engine import DISTRICT, orders_for, team, wait_for_units
from .test_followup_answers import answer, claim_of, order_fields, order_in
from .test_steps_again import pending
from .test_stood_down import ADMIN, entries, fight, incident_fields

LEFT = "resolved_left_to_police"


def left_entries(url: str, incident_id: str) -> list[dict[str, object]]:
    return [e for e in entries(url, incident_id) if e.get("detail_code") == LEFT]


def answers_of(url: str, incident_id: str, order: OrderIssued, said: str) -> list[object]:
    return [e for e in entries(url, incident_id) if e["kind"] == "response"
            and e.get("order_id") == order.order_id and e.get("detail") == said]


def closings(url: str, incident_id: str) -> list[IncidentClosed]:
    return [c for c in read_stream(url, streams.INCIDENT_CLOSED.name, IncidentClosed)
            if c.incident_id == incident_id]


def withdrawals(url: str, order: OrderIssued) -> list[OrderWithdrawn]:
    return [w for w in read_stream(url, streams.ORDER_WITHDRAWN.name, OrderWithdrawn)
            if w.order_id == order.order_id]


def answers_read(url: str) -> bool:
    """Every answer published so far read by dispatch and acknowledged."""
    with sync_redis.Redis.from_url(url) as client:
        last = client.xrevrange(streams.ORDER_RESPONDED.name, count=1)
        (group,) = [g for g in client.xinfo_groups(streams.ORDER_RESPONDED.name)
                    if g["name"] == b"dispatch"]
        return bool(last) and group["last-delivered-id"] == last[0][0] and not group["pending"]


def guards_answer(guard: OrderIssued) -> OrderResponded:
    return OrderResponded(district=DISTRICT, order_id=guard.order_id,
                          incident_id=guard.incident_id, team_id=guard.team_id,
                          member_id="m1", response="resolved", note="they went home")


async def test_a_guards_resolution_of_a_p1_fight_leaves_it_with_the_police(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker) -> None:
    # The guard on scene at a P1 fight answers "resolved" while the police car is on its
    # way: the guard's order ends (its team free), the car is not stood down, and the
    # incident is still open, en route, until the police's own answer ends it.
    url = clean_redis
    incident_id, police, guard = await fight(url, publisher)
    await answer(publisher, guard, "resolved", "they went home")
    await order_in(url, guard, "resolved")
    await poll_until(lambda: left_entries(url, incident_id), "the timeline's entry")
    assert order_fields(url, police.order_id)["state"] == "en_route"
    assert withdrawals(url, police) == []
    assert claim_of(url, "sec") is None and claim_of(url, "pol") == police.order_id
    inc = incident_fields(url, incident_id)
    assert inc["status"] == "en_route"
    # the guard's part is done: not "short of a unit", nobody sent in the guard's place
    assert inc["flagged"] == "0"
    assert not inc.get("resolved_at") and closings(url, incident_id) == []
    assert sorted(o.team_id for o in orders_for(url, incident_id)) == ["pol", "sec"]
    body = (await console.get(f"/v1/incidents/{incident_id}", headers=ADMIN)).json()
    assert body["status"] == "en_route"
    timeline = body["timeline"]
    (left,) = [e for e in timeline if e.get("detail_code") == LEFT]
    assert (left["kind"], left["team_id"], left["order_id"], left["detail_args"]) == (
        "note", "sec", guard.order_id, {"team": "sec", "police": "pol"})
    assert left["detail"] == ("sec answered resolved: the incident is a P1 and stays with "
                              "the police (pol), whose answer ends it")
    answered = next(i for i, e in enumerate(timeline) if e["kind"] == "response"
                    and e["order_id"] == guard.order_id and e["detail"] == "resolved")
    assert timeline.index(left) > answered
    assert not [e for e in timeline if e["kind"] == "withdrawn"]

    # the police's resolution ends it, as any resolution did
    await answer(publisher, police, "on_scene")
    await answer(publisher, police, "resolved")
    await poll_until(lambda: incident_fields(url, incident_id).get("status") == "resolved",
                     "the police's resolution")
    inc = incident_fields(url, incident_id)
    assert (inc["resolved_by_force"], inc["handled_by_force"]) == ("police", "police")
    assert [c.resolved_by for c in closings(url, incident_id)] == [("pol",)]
    assert order_fields(url, guard.order_id)["state"] == "resolved"  # not stood down after
    assert len(left_entries(url, incident_id)) == 1


async def test_a_guards_resolution_handled_again_writes_its_entries_once(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The answer's last write fails (Redis away): handled again, and then delivered a
    # second time (notify's outbox sends it again), it writes one answer and one note.
    url = dispatch
    incident_id, police, guard = await fight(url, publisher)
    failures = fail_once(monkeypatch, store, "end_step",
                         lambda *_a, **kw: str(kw.get("done", "")).startswith("responded:"))
    event = guards_answer(guard)
    await publisher.publish(event, stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: failures and answers_read(url) and left_entries(url, incident_id),
                     "the guard's answer handled again after the failure")
    await publisher.publish(event, stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: answers_read(url), "the same answer read a second time")
    assert len(left_entries(url, incident_id)) == 1
    assert len(answers_of(url, incident_id, guard, "resolved")) == 1
    assert order_fields(url, police.order_id)["state"] == "en_route"
    assert incident_fields(url, incident_id)["status"] == "en_route"
    assert pending(url, streams.ORDER_RESPONDED.name) == 0


async def test_the_backup_the_guard_called_goes_with_it_but_a_police_backup_stays(
        dispatch: str, publisher: RedisBroker) -> None:
    # The guard called for backup twice: a second guard and a second police car came. The
    # guard's resolution stands its own backup down; the police car it called stays: the
    # police are the authority on the fight, whoever called them.
    url = dispatch
    incident_id, police, guard = await fight(url, publisher)
    await team(publisher, "sec2", kind="security", lat=22.8180, lon=108.3665)
    await wait_for_units(url, 3)
    await answer(publisher, guard, "reinforce", "two of them, a knife")
    (sec2,) = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                        if o.team_id == "sec2"], "the guard's first backup")
    await team(publisher, "pol2", kind="police", lat=22.8190, lon=108.3665)
    await wait_for_units(url, 4)
    await answer(publisher, guard, "reinforce", "more of them")
    (pol2,) = await poll_until(lambda: [o for o in orders_for(url, incident_id)
                                        if o.team_id == "pol2"], "the guard's second backup")
    await answer(publisher, pol2, "acknowledged")
    await order_in(url, pol2, "acknowledged")
    await answer(publisher, guard, "resolved")
    await order_in(url, guard, "resolved")
    await order_in(url, sec2, "withdrawn")
    assert [(e["detail_code"], e["detail_args"]) for e in entries(url, incident_id)
            if e["kind"] == "withdrawn"] == [
        ("stood_down_backed_order_ended", {"team": "sec", "state": "resolved"})]
    assert order_fields(url, pol2.order_id)["state"] == "acknowledged"
    assert order_fields(url, police.order_id)["state"] == "en_route"
    (left,) = left_entries(url, incident_id)
    assert left["detail_args"] == {"team": "sec", "police": "pol, pol2"}
    assert incident_fields(url, incident_id)["status"] == "en_route"


async def test_a_guards_resolution_of_a_p2_joint_response_ends_it_as_before(
        dispatch: str, publisher: RedisBroker) -> None:
    # A fight the 110 system gave P2: the police car is stood down by the guard's "resolved"
    # as it always was.
    url = dispatch
    incident_id, police, guard = await fight(url, publisher, "P2")
    await answer(publisher, guard, "resolved")
    await poll_until(lambda: incident_fields(url, incident_id).get("status") == "resolved",
                     "the guard's resolution")
    await order_in(url, police, "withdrawn")
    assert [c.resolved_by for c in closings(url, incident_id)] == [("sec",)]
    assert left_entries(url, incident_id) == []
    assert [(e["detail_code"], e["detail_args"]) for e in entries(url, incident_id)
            if e["kind"] == "withdrawn"] == [("stood_down_resolved", {"team": "sec"})]


async def test_a_guards_resolution_handled_again_after_the_police_ended_it_only_adds_its_note(
        dispatch: str, publisher: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard's answer is written, its step's last write (the note) fails, and the police
    # car's own resolution is handled before the guard's answer again: the answer handled
    # again finds no police order live, and must neither resolve the incident a second time
    # (the guard's incident.closed) nor leave its note out.
    url = dispatch
    incident_id, police, guard = await fight(url, publisher)
    real = store.end_step
    event = guards_answer(guard)
    failing = [True]
    failures: list[str] = []

    async def fails_while_failing(*args: object, **kwargs: object) -> object:
        if failing[0] and kwargs.get("done") == f"responded:{event.event_id}":
            failures.append("failed")
            raise ConnectionError("Redis went away")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "end_step", fails_while_failing)
    await publisher.publish(event, stream=streams.ORDER_RESPONDED.name)
    await poll_until(lambda: failures, "the guard's note failing")
    await answer(publisher, police, "resolved")
    await poll_until(lambda: incident_fields(url, incident_id).get("status") == "resolved",
                     "the police's resolution")
    failing[0] = False
    await poll_until(lambda: left_entries(url, incident_id), "the guard's note, handled again")
    await poll_until(lambda: answers_read(url), "every answer read")
    assert [c.resolved_by for c in closings(url, incident_id)] == [("pol",)]
    assert incident_fields(url, incident_id)["resolved_by_force"] == "police"
    assert len(answers_of(url, incident_id, guard, "resolved")) == 1
    (left,) = left_entries(url, incident_id)
    assert left["detail_args"] == {"team": "sec", "police": "pol"}
