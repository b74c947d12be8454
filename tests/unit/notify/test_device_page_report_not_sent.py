"""A report from the street that could not go (no network): it is not queued to go by itself
later (intake would take it as happening now, hours late, and a team would be sent to what
may be long over), so the member must know it was not sent, and find their words kept to
press Report again. The page runs in node (test_device_page_day)."""

from __future__ import annotations

import json

from tests.unit.notify.test_device_page_day import POSTED, REPORT_SETUP, WHERE, day, report, said

NO_NETWORK = "reports = async () => { throw new TypeError('Failed to fetch'); };"
TAKEN = "reports = async () => [202, { incident_id: 'inc_9', status: 'reported' }];"


def test_a_report_that_could_not_go_says_so_on_the_form_until_it_is_sent() -> None:
    # A fight seen from a bus stop with no signal: the page said "Not reported" for five
    # seconds, while the member was looking at the street. The form then looked as it does
    # with a report just made (the words still in it): nothing said it had not gone.
    _, _, form, _, posted, after = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{NO_NETWORK} {report('violence', 'two men fighting', weapon=True)}",
        "later(10000); [text('rstate'), $('rdesc').value, $('rweapon').checked, "
        "$('rcat').value, byId.toast.style.display]",
        f"{TAKEN} sendReport()",  # pressed again, as it stands
        f"{POSTED}.map((b) => [b.category, b.description, b.flags])",
        "[text('rstate'), $('rdesc').value]",
    )
    line, words, weapon, category, toast = form
    assert line and said("not_reported", why=said("no_connection_report")) in line
    assert said("report_kept") in line
    assert [words, weapon, category, toast] == ["two men fighting", True, "violence", "none"]
    assert posted[-1] == ["violence", "two men fighting", ["weapon"]]
    assert not after[0] and after[1] == ""  # sent: the line and the words go


HANGS = "reports = () => new Promise(() => {});"  # a weak signal: no answer, no error


def test_a_report_with_no_answer_is_given_up_and_pressed_again_is_the_same_report() -> None:
    # A fight reported from a stairwell with one bar of signal: the request hung for
    # minutes, the Report button stayed disabled and the form said nothing, while the member
    # could have called it in by radio.
    _, _, _, form, _, posted = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{HANGS} {report('violence', 'two men fighting', weapon=True)}; null",
        "later(20000)",
        "[text('rstate'), $('rdesc').value, $('rweapon').checked, $('rsend').disabled]",
        f"{TAKEN} sendReport()",  # pressed again, as it stands
        POSTED,
    )
    line, words, weapon, disabled = form
    assert line and said("not_reported", why=said("no_answer_report", seconds=20)) in line
    assert said("report_unsure") in line  # it may have reached intake: not "nothing was sent"
    assert [words, weapon, disabled] == ["two men fighting", True, False]
    first, again = posted
    assert first["external_ref"] == again["external_ref"]  # intake's retry: the same incident
    assert first == again


def test_forgetting_the_token_clears_an_unsent_report_from_the_form() -> None:
    # A post's shared phone handed on: the next holder found the last member's words, their
    # weapon flag and "Not reported" on the form, one press from reporting them as their own.
    *_, form = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{NO_NETWORK} {report('violence', 'two men fighting', weapon=True)}",
        "forgetToken()",
        "[text('rstate'), $('rdesc').value, $('rweapon').checked]",
    )
    assert form == ["", "", False]


def test_a_report_answered_after_the_token_was_forgotten_is_not_the_next_holders() -> None:
    # The phone handed on while a report was on its way: its answer put "Reported" before
    # the next holder and the last member's incident in the list of their reports.
    *_, after = day(
        f"{WHERE} {REPORT_SETUP}",
        "var answer; reports = () => new Promise((ok) => { answer = ok; }); "
        f"{report('violence', 'two men fighting', weapon=True)}; null",
        "forgetToken()",
        "answer([202, { incident_id: 'inc_9', status: 'reported' }])",
        "[text('rstate'), toasts.includes(" + json.dumps(said("reported")) + "), "
        "localStorage.getItem('lf_reports')]",
    )
    assert after == ["", False, None]


def test_a_report_given_up_after_the_token_was_forgotten_says_nothing_to_the_next_holder() -> None:
    *_, after = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{HANGS} {report('violence', 'two men fighting', weapon=True)}; null",
        "forgetToken()",
        "later(20000)",
        "[text('rstate'), $('rdesc').value, $('rsend').disabled]",
    )
    assert after == ["", "", False]


def test_another_token_pasted_on_the_page_clears_an_unsent_report_from_the_form() -> None:
    # The shared phone handed on without "Forget token": the next holder pasted their own
    # and connected. The last member's words stayed on the form with "Not reported", and
    # pressed, went as the last member's report (its external_ref) with the new token.
    _, _, form, _, posted = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{NO_NETWORK} {report('violence', 'two men fighting', weapon=True)}",
        "byId.token.value = 'other-token'; connect(); ws.readyState = 1; ws.onopen(); "
        "[text('rstate'), $('rdesc').value, $('rweapon').checked]",
        f"{TAKEN} sendReport()",
        POSTED,
    )
    assert form == ["", "", False]
    first, then = posted
    assert then["external_ref"] != first["external_ref"]
    assert "description" not in then and "flags" not in then


def test_a_report_waiting_for_its_place_when_the_token_is_forgotten_is_not_sent() -> None:
    # Report pressed indoors: the phone took its time to fix its place. Meanwhile the member
    # forgot the token and the next holder connected with theirs: the fix came, and the last
    # member's words went to intake as the next holder's report.
    fix_later = ("var fix; navigator.geolocation = { getCurrentPosition: (ok) => { fix = ok; }, "
                 "watchPosition: () => 1, clearWatch() {} };")
    *_, posted = day(
        f"{fix_later} {REPORT_SETUP}",
        f"{report('violence', 'two men fighting', weapon=True)}; null",
        "forgetToken(); byId.token.value = 'other-token'; connect(); "
        "ws.readyState = 1; ws.onopen()",
        "fix({ coords: { latitude: 22.85, longitude: 108.35, accuracy: 8 }, "
        "timestamp: Date.now() })",
        f"[{POSTED}, text('rstate'), $('rsend').disabled]",
    )
    assert posted == [[], "", False]


def test_a_browser_without_abort_controller_still_sends_reports_without_a_bound() -> None:
    # An older phone's browser has no AbortController: the bound on a report's request threw
    # before it went, and every report failed there with "Not reported".
    *_, after = day(
        f"{WHERE} {REPORT_SETUP}",
        f"delete globalThis.AbortController; {TAKEN} {report('violence', 'two men fighting')}",
        f"[{POSTED}.map((b) => b.description), text('rstate'), $('rdesc').value, "
        "toasts.includes(" + json.dumps(said("reported")) + ")]",
    )
    assert after == [["two men fighting"], "", "", True]


def test_a_report_a_gateway_refused_with_its_own_page_says_the_server_is_busy() -> None:
    # intake away behind its proxy: a 502 HTML page, no reason of intake's. The form said
    # "HTTP 502".
    gateway = ("reports = async () => [502, null]; var through = fetch; "
               "fetch = async (url, init) => { const r = await through(url, init); "
               "if (r.status === 502) r.json = async () => { throw new SyntaxError('<html>'); }; "
               "return r; };")
    _, _, form = day(
        f"{WHERE} {REPORT_SETUP}",
        f"{gateway} {report('violence', 'two men fighting')}",
        "text('rstate')",
    )
    assert said("not_reported", why=said("server_busy_reason", status=502)) in form, form
    assert "HTTP" not in form
