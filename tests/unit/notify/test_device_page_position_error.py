"""The member's page when the phone's position service fails (the member refused the page
the position, no fix to be had indoors, none in time): the duty panel's line and a report's
failure say so in the member's language, with what to do about it, never with the browser's
own untranslated words ("User denied Geolocation"). The page runs in node (as in
test_device_page_day)."""

from __future__ import annotations

import json

import pytest

from tests.unit.notify.test_device_page_day import POSTED, REPORT_SETUP, day, report, said


def failing_gps(code: int, message: str) -> str:
    """The phone's position service failing with a GeolocationPositionError of `code` whose
    message is the browser's own, for the watch (the duty panel) and a single fix (a report)."""
    error = (f"{{ code: {code}, message: {json.dumps(message)}, PERMISSION_DENIED: 1, "
             "POSITION_UNAVAILABLE: 2, TIMEOUT: 3 }")
    return ("navigator.geolocation = { watchPosition: (ok, fail) => { Promise.resolve().then("
            f"() => fail({error})); return 7; }}, clearWatch() {{}}, "
            f"getCurrentPosition: (ok, fail) => fail({error}) }};")


# a GeolocationPositionError's code, a browser's own words for it, what the member is told
FAILURES = [
    (1, "User denied Geolocation", "position_denied"),
    (2, "Position update is unavailable", "position_not_found"),
    (3, "Timeout expired", "position_too_slow"),
    (0, "Something else", "position_unknown"),   # none of the three the page knows
]


@pytest.mark.parametrize(("code", "browser", "why"), FAILURES)
def test_a_position_that_cannot_be_had_says_why_and_what_to_do_on_the_duty_panel(
        code: int, browser: str, why: str) -> None:
    _, line = day(f"{failing_gps(code, browser)} {REPORT_SETUP}", "text('posline')")
    assert line == said("position_unavailable", error=said(why)), line
    assert browser not in line


@pytest.mark.parametrize(("code", "browser", "why"), FAILURES)
def test_a_report_whose_place_cannot_be_had_says_why_and_what_to_do(
        code: int, browser: str, why: str) -> None:
    *_, posted, told = day(
        f"{failing_gps(code, browser)} {REPORT_SETUP}",
        report("violence", "two men fighting"),
        POSTED,
        "toasts[toasts.length - 1]",
    )
    assert posted == []
    assert told == said("not_reported", why=said("no_position", error=said(why))), told
    assert browser not in told


def test_the_page_says_so_in_english_too() -> None:
    _, _, line = day(f"{failing_gps(1, 'User denied Geolocation')} {REPORT_SETUP}",
                     "$('lang').onclick()", "text('posline')")
    assert "settings" in line and "User denied" not in line, line
