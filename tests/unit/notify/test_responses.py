"""The response state machine: forward only, declined only before acknowledged, finished is final."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notify.domain.responses import (
    ResponseRefused,
    allowed_responses,
    decide_response,
    is_ahead,
    is_live,
)

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def decide(state: str, response: str, last_reinforce_at: datetime | None = None):
    return decide_response(state=state, response=response,  # type: ignore[arg-type]
                           last_reinforce_at=last_reinforce_at, now=NOW, reinforce_repeat_s=30)


@pytest.mark.parametrize(("state", "response", "expected"), [
    ("issued", "acknowledged", "acknowledged"),
    ("issued", "on_scene", "on_scene"),            # steps may be skipped
    ("issued", "resolved", "resolved"),
    ("acknowledged", "en_route", "en_route"),
    ("acknowledged", "handover", "handover"),
    ("en_route", "on_scene", "on_scene"),
    ("on_scene", "resolved", "resolved"),
    ("on_scene", "handover", "handover"),
    ("issued", "declined", "declined"),
])
def test_responses_move_the_order_forward(state: str, response: str, expected: str) -> None:
    decision = decide(state, response)
    assert decision.state == expected and decision.emit


@pytest.mark.parametrize(("state", "response"), [
    ("en_route", "acknowledged"),
    ("on_scene", "en_route"),
    ("on_scene", "acknowledged"),
])
def test_a_response_may_not_move_the_order_back(state: str, response: str) -> None:
    with pytest.raises(ResponseRefused) as refused:
        decide(state, response)
    assert f"the order is {state}" in refused.value.message
    assert "forward only" in refused.value.message
    assert "resolved" in refused.value.allowed and "reinforce" in refused.value.allowed
    assert response not in refused.value.allowed


@pytest.mark.parametrize("state", ["acknowledged", "en_route", "on_scene"])
def test_declined_is_allowed_only_before_acknowledged(state: str) -> None:
    with pytest.raises(ResponseRefused) as refused:
        decide(state, "declined")
    assert "declined is allowed only before acknowledged" in refused.value.message
    assert "declined" not in refused.value.allowed


@pytest.mark.parametrize("state", ["resolved", "handover", "declined"])
@pytest.mark.parametrize("response", ["acknowledged", "on_scene", "reinforce", "declined"])
def test_a_finished_order_takes_no_other_response(state: str, response: str) -> None:
    if response == state:
        return  # an identical retry, below
    with pytest.raises(ResponseRefused) as refused:
        decide(state, response)
    assert f"finished ({state})" in refused.value.message
    assert refused.value.allowed == ()


@pytest.mark.parametrize("response", ["acknowledged", "declined", "reinforce", "resolved"])
def test_a_withdrawn_order_takes_no_response(response: str) -> None:
    with pytest.raises(ResponseRefused) as refused:
        decide("withdrawn", response)
    assert "withdrawn" in refused.value.message and refused.value.state == "withdrawn"


@pytest.mark.parametrize("state", ["acknowledged", "en_route", "on_scene", "resolved", "handover",
                                   "declined"])
def test_repeating_the_response_that_set_the_state_is_idempotent(state: str) -> None:
    decision = decide(state, state)
    assert decision.state == state and not decision.emit


@pytest.mark.parametrize("state", ["acknowledged", "en_route", "on_scene"])
def test_reinforce_is_allowed_while_live_and_keeps_the_state(state: str) -> None:
    decision = decide(state, "reinforce")
    assert decision.state == state and decision.emit


def test_reinforce_on_an_order_not_yet_acknowledged_acknowledges_it() -> None:
    # The team asking for help has taken the order: dispatch stops its deadline, and the
    # team may no longer decline it.
    decision = decide("issued", "reinforce")
    assert decision.state == "acknowledged" and decision.emit
    assert "declined" not in allowed_responses(decision.state)
    with pytest.raises(ResponseRefused):
        decide(decision.state, "declined")
    assert not decide(decision.state, "acknowledged").emit  # a teammate's: a repeat
    assert not decide(decision.state, "reinforce", NOW - timedelta(seconds=5)).emit


def test_a_second_reinforce_within_the_window_is_a_retry_and_later_a_new_call() -> None:
    assert not decide("on_scene", "reinforce", NOW - timedelta(seconds=5)).emit
    assert decide("on_scene", "reinforce", NOW - timedelta(seconds=31)).emit


def test_allowed_responses_per_state() -> None:
    assert allowed_responses("issued") == ("acknowledged", "en_route", "on_scene", "resolved",
                                           "handover", "declined", "reinforce")
    assert allowed_responses("on_scene") == ("resolved", "handover", "reinforce")
    assert allowed_responses("resolved") == ()
    assert allowed_responses("withdrawn") == ()
    assert is_live("en_route") and not is_live("handover") and not is_live("withdrawn")


@pytest.mark.parametrize(("state", "told", "ahead"), [
    ("acknowledged", "issued", True),
    ("on_scene", "acknowledged", True),
    ("declined", "issued", True),
    ("resolved", "on_scene", True),
    ("acknowledged", "acknowledged", False),
    ("acknowledged", "en_route", False),  # read before a newer state was told: not told back
    ("issued", "acknowledged", False),
    ("acknowledged", "declined", False),  # nothing moves on from an ended order
    ("handover", "resolved", False),
])
def test_a_page_is_told_only_a_state_ahead_of_what_it_was_told(
        state: str, told: str, ahead: bool) -> None:
    assert is_ahead(state, of=told) is ahead


KINDS = ("dispatch", "reinforcement", "manual", "handover", "followup")
STATES = ("issued", "acknowledged", "en_route", "on_scene", "resolved", "handover", "declined",
          "withdrawn")
RESPONSES = ("acknowledged", "declined", "en_route", "on_scene", "resolved", "handover",
             "reinforce")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state", STATES)
def test_what_an_order_lists_as_allowed_is_exactly_what_it_takes(kind: str, state: str) -> None:
    allowed = allowed_responses(state, kind=kind)
    for response in RESPONSES:
        try:
            decision = decide_response(state=state, response=response,  # type: ignore[arg-type]
                                       last_reinforce_at=None, now=NOW, reinforce_repeat_s=30,
                                       kind=kind)
        except ResponseRefused as refused:
            assert response not in allowed, (kind, state, response)
            assert refused.allowed == allowed  # the 409 names the same list
        else:
            assert (response in allowed) == decision.emit, (kind, state, response)


def test_the_stations_own_hand_over_cannot_be_handed_over() -> None:
    assert "handover" not in allowed_responses("on_scene", kind="handover")
    assert "resolved" in allowed_responses("on_scene", kind="handover")
    with pytest.raises(ResponseRefused) as refused:
        decide_response(state="issued", response="handover", last_reinforce_at=None, now=NOW,
                        reinforce_repeat_s=30, kind="handover")
    assert "resolved once the case is filed" in refused.value.message
    # on a follow-up, handover means "the agreement does not hold": taken
    assert decide_response(state="issued", response="handover", last_reinforce_at=None,
                           now=NOW, reinforce_repeat_s=30, kind="followup").emit
