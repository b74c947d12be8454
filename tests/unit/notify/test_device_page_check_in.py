"""The member's page when a check-in or a check-out does not go through (no network, no
answer on a weak signal, volunteers refusing it): the member on the street must know they
are still not on shift (no order reaches them) or still on it, until the next press or read
of the shift says otherwise (the page's script runs in node, as in test_device_page_day)."""

from __future__ import annotations

import json

import pytest

from services.notify.page import DEVICE_PAGE
from shared.labels import label
from tests.unit.notify.test_device_page_day import SERVICES, VOLUNTEER_ME, day, said

OFF_SHIFT = {**VOLUNTEER_ME, "state": {**VOLUNTEER_ME["state"], "on_shift": False,
                                       "status": "off_duty", "shift_member_ids": []}}
ON_SHIFT_STATE = VOLUNTEER_ME["state"]


def boot(record: dict[str, object]) -> str:
    """The page connected, volunteers answering GET /v1/me with `record`; `shiftAnswer(url, init)`
    answers the check-in and check-out (JS, replaced by a test)."""
    return ('token = "dev-token"; stopped = false; open_(); ws.readyState = 1; ws.onopen(); '
            f"{SERVICES} var record = {json.dumps(record)}; var base = net; "
            "var shiftAnswer = async () => [200, record.state]; net = async (url, init) => "
            "url === 'https://vol.test/v1/me' ? [200, record] : url.includes('/v1/me/shift/') "
            "? shiftAnswer(url, init) : base(url, init); loadMe();")


SHIFT_ASKED = "fetched.filter((f) => f.url.includes('/v1/me/shift/')).length"
# what the duty panel shows: the state's line, the failure's line, whether each button works
PANEL = "[text('dutystate'), text('dutyerr'), byId.checkin.disabled, byId.checkout.disabled]"
OFF, AVAILABLE = said("off_shift").upper(), label("team_status", "available").upper()
NO_NETWORK = "shiftAnswer = async () => { throw new TypeError('Failed to fetch'); };"


def test_a_check_in_without_network_says_the_member_is_still_not_on_shift_until_one_goes(
) -> None:
    # Pressed in a dead spot: the page showed the browser's own "Failed to fetch" for five
    # seconds; the member walked off believing they were on shift, and no order reached them.
    *_, failed, told, later, english, _, checked_in = day(
        "1",
        f"{NO_NETWORK} byId.checkin.onclick()",
        PANEL,
        "toasts",
        f"later(60000); {PANEL}",  # the toast is long gone
        "$('lang').onclick(); text('dutyerr')",
        "$('lang').onclick(); shiftAnswer = async () => [200, record.state = "
        f"{json.dumps(ON_SHIFT_STATE)}]; byId.checkin.onclick()",
        PANEL,
        boot=boot(OFF_SHIFT),
    )
    line = (said("check_in_failed", why=said("no_connection")) + " "
            + said("shift_again", button=said("check_in")))
    assert failed == [OFF, line, False, True], failed
    assert line in told and not any("Failed to fetch" in t for t in told), told
    assert later == failed  # said beside the panel until the next press goes
    assert "NOT on shift" in english
    assert checked_in == [AVAILABLE, "", True, False]


def test_a_check_in_waits_a_bounded_time_with_its_buttons_held_and_says_so() -> None:
    # On a weak signal the request hung for minutes, the button ready to be pressed again,
    # the member not told whether they were on shift.
    hangs = "shiftAnswer = () => new Promise(() => {});"
    *_, running, asked, still, _, after = day(
        "1",
        f"{hangs} byId.checkin.onclick(); null",
        # pressed again, and a read of the shift meanwhile (a socket's hello): still held
        f"byId.checkin.onclick(); byId.checkout.onclick(); loadDuty(); {PANEL}",
        SHIFT_ASKED,
        f"later(19000); {PANEL}",
        "later(1000)",  # given up
        PANEL,
        boot=boot(OFF_SHIFT),
    )
    assert running[2:] == [True, True] and running[1] == ""
    assert asked == 1
    assert still[2:] == [True, True]
    assert after == [OFF,
                     said("check_in_failed", why=said("no_answer", seconds=20)) + " "
                     + said("shift_again", button=said("check_in")), False, True], after


def test_a_refused_check_out_says_the_member_is_still_on_shift_until_the_shift_is_read() -> None:
    # The last one out while the team holds an order: volunteers refuses (409) and says why.
    refusal = ("the team is dispatched with open order ord_1: you, the last on its shift, can "
               "check out once its orders are resolved, handed over, declined or withdrawn")
    refuses = (f"shiftAnswer = async () => [409, {{ error: {{ code: 'conflict', "
               f"message: {json.dumps(refusal)} }} }}];")
    *_, refused, _, read = day(
        "1",
        f"{refuses} byId.checkout.onclick()",
        PANEL,
        "loadDuty(); null",
        PANEL,
        boot=boot(VOLUNTEER_ME),
    )
    why = said("last_out_open_order")  # in the page's words (test_device_page_refusals)
    assert refused == [AVAILABLE, said("check_out_failed", why=why), True, False], refused
    assert read == [AVAILABLE, "", True, False]  # the shift read anew: the line goes


# A refusal of NOT_NOW's statuses, by volunteers (its own 429, with its reason) or by a
# gateway with volunteers away (no reason), and what it is said as
BUSY = [("[429, { error: { code: 'rate_limited', message: 'too many requests' } }]",
         "too many requests")] + [
    (f"[{status}, null]", said("server_busy_reason", status=status)) for status in (502, 503, 504)]


@pytest.mark.parametrize(("answer", "why"), BUSY)
@pytest.mark.parametrize(("which", "button", "failed", "record"),
                         [("checkin", "check_in", "check_in_failed", OFF_SHIFT),
                          ("checkout", "check_out", "check_out_failed", VOLUNTEER_ME)])
def test_a_press_refused_as_busy_says_to_press_again(
        answer: str, why: str, which: str, button: str, failed: str,
        record: dict[str, object]) -> None:
    # "Not checked in: the server is busy (503)": whether to press again was not said (only
    # without a network or an answer), and a member walked off still not on shift.
    *_, line = day(
        "1",
        f"shiftAnswer = async () => {answer}; byId.{which}.onclick()",
        "text('dutyerr')",
        boot=boot(record),
    )
    assert line == (said(failed, why=why) + " "
                    + said("shift_again_busy", button=said(button))), line


def test_the_duty_panel_has_its_line_for_a_press_that_did_not_go() -> None:
    assert '<div class="notsent" id="dutyerr" role="status"></div>' in DEVICE_PAGE
