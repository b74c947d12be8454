"""The console's KPI panel compares the period shown with the same period a year earlier, by
type (GET /v1/kpis?compare=previous_year): "incidents by type year on year", what the reports
quote (DOMAIN.md). Read only while the dispatcher asks, beside the refresh as the heat map is
(the page's script run in node, as in test_console_shift)."""

from __future__ import annotations

from urllib.parse import parse_qs

from shared.labels import Language, label
from tests.unit.dispatch.test_console_page import said
from tests.unit.dispatch.test_console_shift import STOPPED_CLOCK, TWO_WAITING, run_console

# dispatch's answer with compare=previous_year: the period's own figures and a year before
YOY = (
    TWO_WAITING
    + 'var yoy = u => ({incidents: 30, by_category: {noise: 13, dispute: 12, ebike_theft: 5}, '
    'previous_year: {since: "x", until: "y", incidents: 31, by_category: {ebike_theft: 19, '
    'dispute: 8, fraud_warning: 4}}}); '
    'var yoyPlain = answer; answer = (u, i) => u.startsWith("/v1/kpis") '
    '&& query(u).get("compare") ? (typeof yoy(u) === "object" && yoy(u).__status ? yoy(u) '
    ': Object.assign(yoyPlain(u, i), yoy(u))) : yoyPlain(u, i); '
)
ASKED = ('requests.filter(r => r.url.startsWith("/v1/kpis") && r.url.includes("compare="))'
         '.map(r => r.url.split("?")[1])')
SHOWN = '[$("yoyhead").textContent, $("yoy").children.map(li => li.textContent)]'
BOX = '$("kyoy")'


def lines(language: Language = "zh") -> list[str]:
    """YOY's comparison as the panel says it: the incidents, then each type, the most of the
    period first (then of the year before)."""
    rows = [(label("kpi", "incidents", language), 30, 31, "-3.2%"),
            (label("category", "noise", language), 13, 0, said("yoy_new", language)),
            (label("category", "dispute", language), 12, 8, "+50.0%"),
            (label("category", "ebike_theft", language), 5, 19, "-73.7%"),
            (label("category", "fraud_warning", language), 0, 4, "-100.0%")]
    return [said("yoy_line", language, name=name, count=n, before=m, change=change)
            for name, n, m, change in rows]


def test_the_same_day_a_year_earlier_is_read_by_type_only_when_asked() -> None:
    """The morning review quotes incidents by type year on year: the panel had the day's
    counts only. A box beside the day asks for the comparison: read at once for the day
    picked (its date, as the KPIs are read), said type by type with the change, again in
    English; kept in this browser; unticked, nothing more is read and the lines go."""
    before, ticked, english, unticked = run_console(
        YOY,
        f'[{ASKED}, {SHOWN}, $("yoylabel").title]',
        f'$("kday").value = "2026-12-05"; {BOX}.checked = true; {BOX}.onchange(); '
        f'settle().then(() => [{ASKED}, {SHOWN}, localStorage.getItem("lf-kpi-yoy"), '
        'dateText("2025-12-05")])',
        f'$("lang").onclick(); settle().then(() => [{SHOWN}, dateText("2025-12-05"), '
        '$("yoyname").textContent])',
        f'{BOX}.checked = false; {BOX}.onchange(); settle().then(() => tick()).then(() => '
        f'[{ASKED}.length, {SHOWN}, localStorage.getItem("lf-kpi-yoy")])',
    )
    assert before == [[], ["", []], said("yoy_hint")]
    asked, shown, kept, day = ticked
    assert [parse_qs(q) for q in asked] == [
        {"district": ["d1"], "compare": ["previous_year"], "date": ["2026-12-05"]}]
    assert shown == [said("yoy_head", period=day), lines()], shown
    assert kept == "1"
    shown, day, name = english
    assert shown == [said("yoy_head", "en", period=day), lines("en")], shown
    assert name == said("yoy", "en")
    assert unticked == [1, ["", []], ""]


def test_the_last_24_hours_are_compared_with_the_same_24_hours_a_year_earlier() -> None:
    """With no day picked the KPIs are of the last 24 h: so is the comparison (no date), and
    the choice kept in the browser asks for it as the console opens."""
    asked, shown = run_console(
        'localStorage.setItem("lf-kpi-yoy", "1"); ' + YOY,
        ASKED,
        SHOWN,
    )
    assert [parse_qs(q) for q in asked] == [{"district": ["d1"], "compare": ["previous_year"]}]
    assert shown == [said("yoy_head", period=said("yoy_24h")), lines()]


def test_a_comparison_on_its_way_does_not_hold_back_the_refresh() -> None:
    """The year before is a second period of incidents to read: a refresh that waited for it
    would read the board and the incident open less often just when dispatch is busy. Each
    tick reads them while it is unanswered, and it is not asked for again meanwhile; come
    late, it is painted; it is read again after a minute, not at every tick."""
    while_held, answered, within, after = run_console(
        'localStorage.setItem("lf-kpi-yoy", "1"); ' + YOY + STOPPED_CLOCK
        + 'hold(u => u.includes("compare="));',
        'row("inc_fight").onclick(); var n; settle().then(() => { n = requests.length; '
        'return tick(); }).then(() => tick()).then(() => [requests.slice(n).map(r => r.url)'
        f'.filter(u => u.split("?")[0] === "/v1/incidents/inc_fight").length, {ASKED}.length])',
        f'hold(null); release(); settle().then(() => [{ASKED}.length, {SHOWN}[1].length])',
        f'now += 59999; tick().then(() => {ASKED}.length)',
        f'now += 1; tick().then(() => settle()).then(() => {ASKED}.length)',
    )
    assert while_held == [2, 1]  # the incident open read at each tick; the comparison once
    assert answered == [1, 5]
    assert within == 1
    assert after == 2


def test_a_comparison_that_failed_is_said_and_tried_again_after_the_retry_delay() -> None:
    failed, early, read = run_console(
        'localStorage.setItem("lf-kpi-yoy", "1"); ' + YOY + STOPPED_CLOCK
        + 'var good = yoy; yoy = () => reply(503, {error: {code: "unavailable", '
        'message: "the store is not answering; ask again"}});',
        f'tick().then(() => tick()).then(() => [{ASKED}.length, {SHOWN}])',
        f'now += 14999; tick().then(() => {ASKED}.length)',
        f'yoy = good; now += 1; tick().then(() => settle()).then(() => [{ASKED}.length, {SHOWN}])',
    )
    assert failed == [1, [said("yoy_not_read", why="the store is not answering; ask again",
                               after=15), []]]
    assert early == 1
    assert read == [2, [said("yoy_head", period=said("yoy_24h")), lines()]]


def test_another_day_picked_is_compared_at_once_and_the_day_left_is_not_painted() -> None:
    """The dispatcher picks yesterday while the last 24 h's comparison is still on its way:
    yesterday's is asked for at once, and the answer for the 24 h, come late, is not said
    under yesterday."""
    asked, shown = run_console(
        'localStorage.setItem("lf-kpi-yoy", "1"); ' + YOY
        + 'kpiAnswer = {today: "2026-12-06"}; '
        'yoy = u => ({incidents: query(u).get("date") ? 30 : 99, by_category: {noise: 13, '
        'dispute: 12, ebike_theft: 5}, previous_year: {incidents: 31, by_category: '
        '{ebike_theft: 19, dispute: 8, fraud_warning: 4}}}); '
        'hold(u => u.includes("compare=") && !u.includes("date="));',
        f'$("kyesterday").onclick(); settle().then(() => {ASKED})',
        f'hold(null); release(); settle().then(() => tick()).then(() => [{SHOWN}, '
        'dateText("2025-12-05")])',
    )
    assert [parse_qs(q).get("date") for q in asked] == [None, ["2026-12-05"]]
    (head, listed), day = shown
    assert (head, listed) == (said("yoy_head", period=day), lines())
