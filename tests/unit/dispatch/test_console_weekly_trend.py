"""The console's weekly trend of one type of incident: "e-bike thefts per week (19 → 5 after
targeted patrols)", a KPI the reports quote (DOMAIN.md). Dispatch counts any period's
incidents of one category per local week (GET /v1/kpis?category=&since=: `by_week`), so the
console reads the last weeks in one answer, only while a type is chosen, beside the refresh
(the page's script run in node, as in test_console_shift)."""

from __future__ import annotations

from datetime import date, timedelta
from urllib.parse import parse_qs

from shared.labels import Language
from tests.unit.dispatch.test_console_page import said
from tests.unit.dispatch.test_console_shift import STOPPED_CLOCK, TWO_WAITING, run_console

# thirteen weeks back from Wednesday 9 December: the week of `since` (only its part since
# then), twelve whole weeks, and this week so far
MONDAYS = [(date(2026, 9, 7) + timedelta(weeks=n)).isoformat() for n in range(14)]
COUNTS = [2, 19, 17, 18, 16, 19, 12, 9, 7, 6, 5, 5, 5, 1]
BY_WEEK = ", ".join(f'{{week: "{w}", count: {n}}}' for w, n in zip(MONDAYS, COUNTS, strict=True))
TREND = (
    TWO_WAITING
    + f'var trend = u => ({{category: query(u).get("category"), today: "2026-12-09", '
    f'by_week: [{BY_WEEK}]}}); '
    'var trendPlain = answer; answer = (u, i) => { if (!u.startsWith("/v1/kpis") '
    '|| !query(u).get("category")) return trendPlain(u, i); const t = trend(u); '
    'return t.__status ? t : Object.assign(trendPlain(u, i), t); }; '
)
ASKED = ('requests.filter(r => r.url.startsWith("/v1/kpis") && r.url.includes("category="))'
         '.map(r => r.url.split("?")[1])')
SHOWN = '$("trend").textContent'
CHOICE = '$("trendcat")'
WEEKS = f'{MONDAYS[1:-1]!r}.map(weekDate)'


def line(dates: list[str], language: Language = "zh") -> str:
    """The trend as the console says it: the twelve whole weeks by their Mondays, then this
    week so far."""
    weeks = [said("trend_week", language, week=d, count=n)
             for d, n in zip(dates, COUNTS[1:-1], strict=True)]
    return said("trend_line", language, weeks=" → ".join(
        [*weeks, said("trend_this_week", language, count=COUNTS[-1])]))


def test_one_types_weekly_counts_are_read_in_one_answer_when_a_type_is_chosen() -> None:
    """Nothing is read until a type is chosen; chosen, one read of the last thirteen weeks
    of it, said as twelve whole weeks (the first, partly before the period, left out) and
    this week so far; again in English; kept in this browser; none chosen, nothing more."""
    before, chosen, english, none = run_console(
        TREND + STOPPED_CLOCK,
        f'[{ASKED}, {SHOWN}, {CHOICE}.children.map(o => o.value), {CHOICE}.title]',
        f'{CHOICE}.value = "ebike_theft"; {CHOICE}.onchange(); settle().then(() => '
        f'[{ASKED}, new Date(now - 91 * 86400000).toISOString(), {SHOWN}, {WEEKS}, '
        'localStorage.getItem("lf-trend-category")])',
        f'$("lang").onclick(); settle().then(() => [{SHOWN}, {WEEKS}, '
        f'{CHOICE}.children[0].textContent])',
        f'{CHOICE}.value = ""; {CHOICE}.onchange(); settle().then(() => tick()).then(() => '
        f'[{ASKED}.length, {SHOWN}, localStorage.getItem("lf-trend-category")])',
    )
    asked, choices, hint = before[0], before[2], before[3]
    assert asked == [] and before[1] == ""
    assert choices[0] == "" and "ebike_theft" in choices and hint == said("trend_hint")
    asked, since, shown, dates, kept = chosen
    assert [parse_qs(q) for q in asked] == [
        {"district": ["d1"], "category": ["ebike_theft"], "since": [since]}]
    assert shown == line(dates), shown
    assert kept == "ebike_theft"
    shown, dates, first = english
    assert shown == line(dates, "en") and first == said("trend_none", "en")
    assert none == [1, "", ""]


def test_a_weekly_trend_on_its_way_does_not_hold_back_the_refresh() -> None:
    """Thirteen weeks of incidents for dispatch to read: each tick reads the board and the
    incident open while it is unanswered, and it is not asked for again meanwhile; come
    late, it is said; a week's count moves slowly, so it is read again after five minutes,
    not at every tick."""
    while_held, answered, within, after = run_console(
        'localStorage.setItem("lf-trend-category", "ebike_theft"); ' + TREND + STOPPED_CLOCK
        + 'hold(u => u.includes("category="));',
        'row("inc_fight").onclick(); var n; settle().then(() => { n = requests.length; '
        'return tick(); }).then(() => tick()).then(() => [requests.slice(n).map(r => r.url)'
        f'.filter(u => u.split("?")[0] === "/v1/incidents/inc_fight").length, {ASKED}.length])',
        f'hold(null); release(); settle().then(() => [{ASKED}.length, {SHOWN}, {WEEKS}])',
        f'now += 299999; tick().then(() => {ASKED}.length)',
        f'now += 1; tick().then(() => settle()).then(() => {ASKED}.length)',
    )
    assert while_held == [2, 1]
    asked, shown, dates = answered
    assert asked == 1 and shown == line(dates)
    assert within == 1
    assert after == 2


def test_a_weekly_trend_that_failed_is_said_and_tried_again_after_the_retry_delay() -> None:
    failed, early, read = run_console(
        'localStorage.setItem("lf-trend-category", "ebike_theft"); ' + TREND + STOPPED_CLOCK
        + 'var good = trend; trend = () => reply(503, {error: {code: "unavailable", '
        'message: "the store is not answering; ask again"}});',
        f'tick().then(() => tick()).then(() => [{ASKED}.length, {SHOWN}])',
        f'now += 14999; tick().then(() => {ASKED}.length)',
        f'trend = good; now += 1; tick().then(() => settle()).then(() => [{ASKED}.length, '
        f'{SHOWN}, {WEEKS}])',
    )
    assert failed == [1, said("trend_not_read", why="the store is not answering; ask again",
                              after=15)]
    assert early == 1
    asked, shown, dates = read
    assert asked == 2 and shown == line(dates)


def test_another_type_chosen_is_read_at_once_and_the_one_left_is_not_said() -> None:
    """The dispatcher picks e-bike thefts while the noise complaints' weeks are still on
    their way: the thefts are asked for at once, and the noise's weeks, come late, are not
    said as the thefts'."""
    asked, shown = run_console(
        'localStorage.setItem("lf-trend-category", "noise"); ' + TREND
        + 'var thefts = trend; trend = u => query(u).get("category") === "noise" ? '
        '{today: "2026-12-09", by_week: [{week: "2026-11-30", count: 99}, '
        '{week: "2026-12-07", count: 99}]} : thefts(u); '
        'hold(u => u.includes("category=noise"));',
        f'{CHOICE}.value = "ebike_theft"; {CHOICE}.onchange(); settle().then(() => '
        f'{ASKED}.map(q => new URLSearchParams(q).get("category")))',
        f'release(); settle().then(() => tick()).then(() => [{SHOWN}, {WEEKS}])',
    )
    assert asked == ["noise", "ebike_theft"]
    text, dates = shown
    assert text == line(dates), text
