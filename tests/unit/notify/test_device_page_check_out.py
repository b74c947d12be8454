"""The member's page after the check-out button: a check-out ends the member's own stint and
the team's shift only with its last member, so the page says which happened (the page's
script runs in node, as in test_device_page_day)."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.notify.test_device_page_day import SERVICES, day, said

BOOT = ('token = "dev-token"; stopped = false; open_(); ws.readyState = 1; ws.onopen(); '
        f"{SERVICES}; loadMe();")


def check_out(answer: dict[str, Any], status: int = 200) -> str:
    """What the page tells the member once volunteers answered the check-out so."""
    *_, told = day(
        "1",
        "var base = net; net = async (url, init) => url === 'https://vol.test/v1/me/shift/end'"
        f" ? [{status}, {json.dumps(answer)}] : base(url, init); shift('end')",
        "toasts[toasts.length - 1]",
        boot=BOOT,
    )
    return str(told)


def state(**changes: Any) -> dict[str, Any]:
    return {"team_id": "t1", "status": "available", "on_shift": True, "open_orders": [],
            "shift_member_ids": ["mem_2", "mem_3"], "checked_out": True, **changes}


def test_a_member_going_home_is_told_the_teammates_carry_on_and_what_the_patrol_earned() -> None:
    told = check_out(state(points_awarded=10))
    assert told == (said("checked_out", team=said("shift_goes_on", others=2)) + " · "
                    + said("points_awarded", points=10))


def test_the_last_one_out_is_told_the_team_is_off_duty() -> None:
    told = check_out(state(status="off_duty", on_shift=False, shift_member_ids=[]))
    assert told == said("checked_out", team=said("team_off_duty"))


def test_a_member_who_was_not_checked_in_is_told_so_and_that_the_shift_goes_on() -> None:
    told = check_out(state(checked_out=False, shift_member_ids=["mem_2"]))
    assert told == said("not_checked_in_out", team=said("shift_goes_on", others=1))


def test_the_last_one_out_while_the_team_holds_an_order_reads_why_not() -> None:
    refusal = {"error": {"code": "conflict", "message": "the team is dispatched with open "
                         "order ord_1: you, the last on its shift, can check out once its "
                         "orders are resolved, handed over, declined or withdrawn"}}
    # in the page's words, not volunteers' English sentence (test_device_page_refusals)
    assert check_out(refusal, status=409) == said("check_out_failed",
                                                  why=said("last_out_open_order"))
