"""The teams the command room is offered to send by hand (GET /v1/incidents/{id}/teams):
dispatch's own ranking, nearest suitable first (DOMAIN.md: 就近派警), and what its rules say
against a team it may still send (a volunteer team to a fight: DOMAIN.md, never alone)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from services.dispatch import by_hand
from services.dispatch.by_hand import teams_to_send
from services.dispatch.console import CONSOLE_PAGE
from services.dispatch.console_text import CONSOLE_TEXT
from services.dispatch.domain import Unit
from tests.unit.dispatch.support import DISTRICT, LAT, LON, NOW, POLICY, ranked_ids, team
from tests.unit.dispatch.support import incident as facts


def incident(category: str, *, status: str = "unassigned", flags: Sequence[str] = (),
             station: str = "") -> dict[str, str]:
    """An incident record as dispatch stores it, at support's scene."""
    return {"incident_id": "inc-1", "district": DISTRICT, "category": category,
            "priority": POLICY.classify(category, tuple(flags)), "status": status,
            "flags": json.dumps(list(flags)), "lat": str(LAT), "lon": str(LON),
            "station_agency_id": station}


def order(team_id: str, kind: str, *, state: str = "acknowledged",
          order_kind: str = "dispatch") -> dict[str, str]:
    return {"order_id": f"ord-{team_id}", "team_id": team_id, "agency_kind": kind,
            "state": state, "kind": order_kind}


def offered(inc: dict[str, str], units: Sequence[Unit | tuple[Unit, str | None]],
            orders: Sequence[dict[str, str]] = ()) -> list[dict[str, Any]]:
    pairs = [u if isinstance(u, tuple) else (u, None) for u in units]
    return teams_to_send(inc, list(orders), pairs, POLICY, NOW)


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["team_id"] for r in rows]


def test_a_fight_lists_the_nearest_police_and_security_before_a_nearer_volunteer_team() -> None:
    """The list was the district's teams by id, free first: a dispatcher sending a second
    unit to a fight by hand found the nearest suitable team by reading the map, and the
    volunteer patrol 100 m away (first by id, or nearest) was one click from being sent alone
    into it. Now: dispatch's order (travel time, plus 3 minutes per place below first in the
    category's list), the volunteer team last, marked."""
    allowed = [team("b-police-far", "police", role="patrol", metres=4000),
               team("c-guard", "security", metres=800, mode="foot"),
               team("d-police-near", "police", role="patrol", metres=600)]
    rows = offered(incident("violence"), [team("a-vol", "volunteer", metres=100, mode="foot"), *allowed])
    # the car 4 km off before the guard on foot 800 m off, as dispatch itself ranks them
    assert ids(rows) == ["d-police-near", "b-police-far", "c-guard", "a-vol"]
    assert ids(rows)[:3] == ranked_ids(allowed, facts("violence"))
    assert [r["warnings"] for r in rows] == [
        [], [], [], ["kind_not_listed", "volunteers_alone_on_p1"]]
    near = rows[0]
    assert round(near["distance_m"]) == 600
    assert near["eta_s"] == round(600 * 1.3 / (30 / 3.6))  # a car: 30 km/h on the road factor
    assert near["fix_age_s"] == 60 and near["position_counts"] is True


def test_a_p1_no_police_or_security_team_is_on_warns_before_volunteers_go_alone() -> None:
    """A lost child (P1 with `in_progress`) lists volunteers, but never as the only
    responders to a P1: with no police or security team on it, a volunteer team is marked;
    once one is, it is not."""
    lost = incident("lost_person", flags=["in_progress"])
    volunteers = team("vol", "volunteer", metres=200, mode="foot")
    alone, = offered(lost, [volunteers])
    assert alone["warnings"] == ["volunteers_alone_on_p1"]
    joined, = offered(lost, [volunteers], [order("police-1", "police")])
    assert joined["warnings"] == []
    # a station's hand-over task is nobody on the scene
    task, = offered(lost, [volunteers], [order("st-1", "police", order_kind="handover")])
    assert task["warnings"] == ["volunteers_alone_on_p1"]


def test_a_p1_whose_only_escort_went_off_shift_on_its_order_warns_before_volunteers_go() -> None:
    """The guards on a P1 were taken off the roster mid-shift (their company's contract
    ended): their order stays live for the command room to take back, but nobody of them
    is coming. A volunteer team sent by hand would be alone, as dispatch now tells the
    volunteers already there."""
    lost = incident("lost_person", flags=["in_progress"])
    volunteers = team("vol", "volunteer", metres=200, mode="foot")
    gone = {**order("guard-1", "security", state="en_route"), "off_shift_at": NOW.isoformat()}
    alone, = offered(lost, [volunteers], [gone])
    assert alone["warnings"] == ["volunteers_alone_on_p1"]


def test_a_medical_call_marks_teams_without_first_aid() -> None:
    rows = offered(incident("medical"), [
        team("near-no-aid", "security", metres=100),
        team("far-aid", "volunteer", metres=2000, skills=("first_aid",)),
    ])
    # the first-aider first, though a volunteer team alone on a P1 (so said: dispatch itself
    # sends police or security with it)
    assert ids(rows) == ["far-aid", "near-no-aid"]
    assert rows[0]["warnings"] == ["volunteers_alone_on_p1"]
    assert rows[1]["warnings"] == ["lacks_skills"] and rows[1]["missing_skills"] == ["first_aid"]


def test_free_teams_before_teams_on_another_order_and_placed_before_unplaced() -> None:
    rows = offered(incident("noise"), [
        (team("busy-near", "security", metres=50), "ord-x"),
        team("free-far", "security", metres=3000),
        team("stale", "security", metres=10, fix_age_s=3600),
        team("unplaced", "security", metres=None, fix_age_s=None),
    ])
    assert ids(rows) == ["free-far", "busy-near", "stale", "unplaced"]
    assert rows[1]["open_order_id"] == "ord-x"
    stale, unplaced = rows[2], rows[3]
    assert stale["position_counts"] is False and stale["fix_age_s"] == 3600
    assert unplaced["distance_m"] is None and unplaced["eta_s"] is None
    assert unplaced["fix_age_s"] is None


def test_teams_dispatch_would_refuse_or_that_are_off_shift_are_not_offered() -> None:
    """A knife: no volunteer team (dispatch answers 409); nobody off shift, nor the team on
    it already."""
    rows = offered(incident("violence", status="assigned", flags=["weapon"]), [
        team("vols", "volunteer", metres=100),
        team("home", "police", role="patrol", status="off_duty", on_shift=False),
        team("on-it", "police", role="patrol", metres=300),
        team("free", "police", role="patrol", metres=900),
    ], [order("on-it", "police")])
    assert ids(rows) == ["free"]


def test_a_hand_over_offers_police_station_teams_the_owning_station_first() -> None:
    """A hand-over goes to a police station's team (dispatch refuses any other): the station
    owning the place first, another station's marked. A fraud warning's visit, the same."""
    owner = dataclasses.replace(team("owner", "police", role="station", metres=1500),
                                agency_id="ps-east")
    other = dataclasses.replace(team("other-station", "police", role="station", metres=200),
                                agency_id="ps-west")
    units = [team("patrol", "police", role="patrol", metres=100),
             team("guard", "security", metres=100), other, owner]
    rows = offered(incident("dispute", status="handed_over", station="ps-east"), units)
    assert ids(rows) == ["owner", "other-station"]
    assert [r["warnings"] for r in rows] == [[], ["other_station"]]
    rows = offered(incident("fraud_warning", station="ps-east"), [other, owner])
    assert ids(rows) == ["owner", "other-station"]
    assert [r["warnings"] for r in rows] == [[], ["other_station"]]


def test_an_ended_incident_offers_no_team() -> None:
    assert offered(incident("noise", status="resolved"), [team("t", "security")]) == []


def test_every_warning_is_said_in_the_consoles_words() -> None:
    """A code the console does not know would reach the dispatcher as the code itself."""
    for code in (by_hand.KIND_NOT_LISTED, by_hand.LACKS_SKILLS, by_hand.OTHER_STATION,
                 by_hand.VOLUNTEERS_ALONE_ON_P1):
        assert f'{code}: "warn_{code}"' in CONSOLE_PAGE, code
        assert all(f"warn_{code}" in CONSOLE_TEXT[lang] for lang in ("zh", "en")), code


def test_a_team_that_turned_the_incident_down_is_listed_saying_so() -> None:
    """Dispatch never offers an incident again to a team that declined it or let its
    deadline pass: once every team that may go has, only the command room can send one,
    and it is told which of them turned it down and when (null for the others)."""
    declined = {**order("a-guard", "security", state="declined"),
                "declined_at": "2026-12-07T22:03:22+00:00"}
    missed = {**order("b-patrol", "police", state="timed_out"),
              "timed_out_at": "2026-12-07T22:04:10+00:00"}
    again = {**order("b-patrol", "police", state="declined"), "order_id": "ord-b-2",
             "declined_at": "2026-12-07T22:05:00+00:00"}
    rows = {r["team_id"]: r for r in offered(
        incident("noise"), [team("a-guard", "security", metres=300, mode="foot"),
                            team("b-patrol", "police", role="patrol", metres=900),
                            team("c-guard", "security", metres=1200, mode="foot")],
        [declined, missed, again])}
    assert rows["a-guard"]["turned_down"] == {
        "answer": "declined", "at": "2026-12-07T22:03:22+00:00", "order_id": "ord-a-guard",
        "answered_in_time": None}
    # the latest refusal of a team that turned it down twice
    assert rows["b-patrol"]["turned_down"] == {
        "answer": "declined", "at": "2026-12-07T22:05:00+00:00", "order_id": "ord-b-2",
        "answered_in_time": None}
    assert rows["c-guard"]["turned_down"] is None
    # a timeout alone says so
    (row,) = offered(incident("noise"), [team("b-patrol", "police", role="patrol", metres=900)],
                     [missed])
    assert row["turned_down"] == {
        "answer": "timed_out", "at": "2026-12-07T22:04:10+00:00", "order_id": "ord-b-patrol",
        "answered_in_time": None}


def test_an_answer_given_in_time_and_read_after_the_timeout_is_no_timeout_of_the_team() -> None:
    """Dispatch's answers behind: the deadline's firing timed the order out though the team
    had answered by it (`answered_in_time`, the engine's _answer_read_after_timeout). Dispatch
    still never offers it the incident again, but the list said the team "let it time out":
    a guard that declined in time reads as declined, at its answer's time; one that took it
    in time as answered in time, read after its deadline."""
    ack_by = "2026-12-07T22:05:00+00:00"
    read_late = {"state": "timed_out", "ack_by": ack_by,
                 "timed_out_at": "2026-12-07T22:05:01+00:00"}
    declined = {**order("a-guard", "security"), **read_late, "answered_in_time": "declined",
                "answered_in_time_at": "2026-12-07T22:03:22+00:00"}
    took = {**order("b-patrol", "police"), **read_late, "answered_in_time": "acknowledged",
            "answered_in_time_at": "2026-12-07T22:04:40+00:00"}
    # written before the answer's time was kept: by its deadline
    called = {**order("c-guard", "security"), **read_late, "answered_in_time": "reinforce"}
    rows = {r["team_id"]: r for r in offered(
        incident("noise"), [team("a-guard", "security", metres=300, mode="foot"),
                            team("b-patrol", "police", role="patrol", metres=900),
                            team("c-guard", "security", metres=1200, mode="foot")],
        [declined, took, called])}
    assert rows["a-guard"]["turned_down"] == {
        "answer": "declined", "at": "2026-12-07T22:03:22+00:00", "order_id": "ord-a-guard",
        "answered_in_time": "declined"}
    assert rows["b-patrol"]["turned_down"] == {
        "answer": "timed_out", "at": "2026-12-07T22:04:40+00:00", "order_id": "ord-b-patrol",
        "answered_in_time": "acknowledged"}
    assert rows["c-guard"]["turned_down"] == {
        "answer": "timed_out", "at": ack_by, "order_id": "ord-c-guard",
        "answered_in_time": "reinforce"}
