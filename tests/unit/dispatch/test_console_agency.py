"""An agency desk's token in the command room's console (the page run in node, as in
test_console_page): the page is the command room's, whose reads that token is refused; it
links to the desk's own page (/agency), which finds the token kept for it, and polls
nothing more."""

from __future__ import annotations

from services.dispatch.console import CONSOLE_PAGE
from tests.unit.dispatch.test_console_page import run_console, said

AGENCY = ('const plain = answer; answer = (url) => url.startsWith("/v1/me") ? '
          '{kind: "agency", districts: ["d1"], agency_id: "d1-sec"} : plain(url);'
          'boards.d1 = [incident("inc_1")];')


def test_an_agency_desk_is_told_where_it_reads_its_own_and_nothing_is_polled() -> None:
    first, again = run_console(
        AGENCY,
        '[$("err").textContent, fetched.filter(u => !u.startsWith("/v1/shift-check-ins") '
        '&& !u.startsWith("/v1/pipeline")), $("board").children.length, '
        '$("pipeline").hidden, $("agencylink").hidden, localStorage.getItem("lf-agency-token")]',
        'fetched.length = 0; refresh().then(() => fetched)',
    )
    err, asked, rows, banner_hidden, link_hidden, kept = first
    assert err == said("agency_desk") and "/agency" in err
    assert link_hidden is False and kept == "tok"  # its page, with the token it was given
    assert asked == ["/v1/me"]  # not the duty, the board, the KPIs: the command room's
    assert rows == 0 and banner_hidden is True
    assert again == []  # stopped until Watch with another token


def test_the_command_room_s_console_is_as_before_for_a_dispatcher() -> None:
    err, rows = run_console('boards.d1 = [incident("inc_1")];',
                            '[$("err").textContent, $("board").children.length]')[0]
    assert err != said("agency_desk") and rows == 1
    assert '<a id="agencylink" href="/agency" hidden>' in CONSOLE_PAGE  # shown to a desk only


def test_an_agency_desk_is_never_read_the_comparisons_kept_in_the_browser() -> None:
    """The year-on-year comparison and a weekly trend are kept asked for in the browser:
    given an agency desk's token, the console asks dispatch nothing of them (the command
    room's figures), only who the token is."""
    asked, = run_console(
        'localStorage.setItem("lf-kpi-yoy", "1"); '
        'localStorage.setItem("lf-trend-category", "ebike_theft"); ' + AGENCY,
        'fetched.filter(u => !u.startsWith("/v1/shift-check-ins") && !u.startsWith("/v1/pipeline"))',
    )
    assert asked == ["/v1/me"]
