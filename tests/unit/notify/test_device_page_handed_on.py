"""A post's shared phone handed on: one member gives it to the next, who forgets the last
one's token or pastes their own over it. Nothing of the member before (their reports, name,
team, points, answers) is the next holder's to see or to send with. The page runs in node
(test_device_page_day)."""

from __future__ import annotations

import json

import pytest

from tests.unit.notify.test_device_page_day import (
    ME,
    POSTED,
    REPORT_SETUP,
    SERVICES,
    VOLUNTEER_ME,
    WHERE,
    day,
    hello,
    report,
    said,
)

PASTED = "byId.token.value = 'other-token'; connect(); ws.readyState = 1; ws.onopen()"
# the page as it opens with the token kept in this browser
SELF_CONNECTED = f"ws.readyState = 1; ws.onopen(); {WHERE}"
KEPT = {"lf_token": "dev-token",
        "lf_reports": json.dumps([{"id": "inc_9", "category": "violence",
                                   "at": "2024-05-01T20:00:00Z"}])}

# what the page shows of the member holding the phone
RECORD = ("[text('who'), text('teamline'), text('dutystate'), text('pointsline'), "
          "$('phone').value, byId.duty.hidden]")


def next_holder(answer: str) -> str:
    """Volunteers answering the next holder's token with `answer` (JS), the member before's
    as the district's services do (test_device_page_day.SERVICES)."""
    return ("var before = net; net = async (url, init) => "
            "(init.headers.Authorization === 'Bearer other-token' && url === 'https://vol.test/v1/me'"
            f" ? {answer} : before(url, init));")


def test_another_token_pasted_on_the_page_clears_the_last_members_list_of_reports() -> None:
    # Handed on without "Forget token": the next holder pasted theirs and found the last
    # member's reports listed under the form as their own.
    *_, shown, _, after = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{report('violence', 'two men fighting')}; null",
        "text('myreports')",
        PASTED,
        "[localStorage.getItem('lf_reports'), text('myreports')]",
    )
    assert shown  # the member's own report is listed
    assert after == [None, ""]


def test_a_link_with_another_token_opens_the_page_without_the_last_members_reports() -> None:
    # the next holder opened the link they were sent, with their token, on the shared phone
    def opened_by_link(token: str) -> list[object]:
        *_, listed = day("null",  # the page's own first read of its services, offline, ends
                         REPORT_SETUP, "[localStorage.getItem('lf_reports'), text('myreports')]",
                         boot=SELF_CONNECTED, storage=KEPT, hash=f"#token={token}")
        return list(listed)

    others, own = opened_by_link("other-token"), opened_by_link("dev-token")
    assert others == [None, ""]
    assert own[0] == KEPT["lf_reports"] and own[1]  # the same member's link: still theirs


@pytest.mark.parametrize("gone", [
    # the shared phone handed on with "Forget token": the next holder found the last
    # member's name, team, shift state, points and phone number still on the page
    "forgetToken()",
    # the device revoked (a lost or stolen phone): notify closes the socket with 4401, and
    # whoever holds the phone is shown nothing more of its member, not only no orders
    "ws.onclose({code: 4401})",
])
def test_a_token_forgotten_or_refused_clears_the_members_name_team_shift_and_points(
        gone: str) -> None:
    *_, shown, after = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{hello()}; $('phone').value = '13800000000'; null",
        RECORD,
        f"{gone}; {RECORD}",
    )
    assert "Li" in shown[0] and "Li" in shown[1] and shown[2] and shown[3]
    assert after == ["", said("team"), "", "", "", True]


def test_the_members_record_read_as_the_token_is_forgotten_is_not_shown() -> None:
    # volunteers answered slowly: the answer came after the member forgot the token
    *_, after = day(
        f"{WHERE} {REPORT_SETUP}",
        "var answer, before = net; net = (url, init) => (url === 'https://vol.test/v1/me' "
        "? new Promise((ok) => { answer = ok; }) : before(url, init)); loadDuty(); null",
        "forgetToken()",
        f"answer([200, {json.dumps(VOLUNTEER_ME)}]); null",
        RECORD,
    )
    assert after == ["", said("team"), "", "", "", True]


def test_another_token_pasted_shows_nothing_of_the_last_member_until_the_next_is_read() -> None:
    # Handed on without "Forget token": volunteers slow to answer the next holder, the page
    # went on showing the last member's name, team and points as the next holder's.
    *_, after = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{hello()}; {next_holder('new Promise(() => {})')} {PASTED}",
        RECORD,
    )
    assert "Li" not in after[0] and "Li" not in after[1]
    assert after[2:4] == ["", ""]


def test_the_next_holders_report_goes_with_their_own_teams_district() -> None:
    # volunteers could not answer the next holder as they connected (a restart): their first
    # report went with the last member's record, to the last member's district
    wang = {**VOLUNTEER_ME, "member": {"id": "mem_2", "name": "Wang"},
            "team": {"id": "t2", "name": "Blue 7", "district": "d2"}}
    down_once = (f"(next_holder.asked = (next_holder.asked || 0) + 1) === 1 "
                 f"? [503, {{ error: {{ message: 'restarting' }} }}] : [200, {json.dumps(wang)}]")
    *_, posted = day(
        f"{WHERE} {REPORT_SETUP}",
        f"var next_holder = {{}}; {next_holder(down_once)} {PASTED}",
        f"{report('violence', 'two men fighting')}; null",
        f"{POSTED}.map((b) => b.district)",
    )
    assert posted == ["d2"]


def test_the_last_members_device_read_late_is_not_the_next_holders() -> None:
    # The page read the device's services slowly (a weak signal) when the next holder pasted
    # their token: their own read was skipped as one was under way, and the last member's,
    # come late, was taken for theirs (a report went with the last device's external_ref).
    theirs = {**ME, "device_id": "dev_2"}
    slow_for_the_last = (
        "var answer, before = net; net = (url, init) => (url === '/v1/devices/me' ? "
        "(init.headers.Authorization === 'Bearer other-token' "
        f"? Promise.resolve([200, {json.dumps(theirs)}]) : new Promise((ok) => {{ answer = ok; }}))"
        " : before(url, init));")
    *_, posted = day(
        f"{WHERE} {SERVICES} {slow_for_the_last} loadMe(); null",
        PASTED,
        f"answer([200, {json.dumps(ME)}]); null",
        f"{report('violence', 'two men fighting')}; null",
        f"{POSTED}.map((b) => b.external_ref.split('-')[1])",
    )
    assert posted == ["dev_2"]

