"""A post's shared phone handed on: one member gives it to the next, who forgets the last
one's token or pastes their own over it. Nothing of the member before (their reports, name,
team, points, answers) is the next holder's to see or to send with. The page runs in node
(test_device_page_day)."""

from __future__ import annotations

import json

from tests.unit.notify.test_device_page_day import REPORT_SETUP, WHERE, day, report

PASTED = "byId.token.value = 'other-token'; connect(); ws.readyState = 1; ws.onopen()"
# the page as it opens with the token kept in this browser
SELF_CONNECTED = f"ws.readyState = 1; ws.onopen(); {WHERE}"
KEPT = {"lf_token": "dev-token",
        "lf_reports": json.dumps([{"id": "inc_9", "category": "violence",
                                   "at": "2024-05-01T20:00:00Z"}])}


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
