"""The console's banner when the system itself is stuck (GET /v1/pipeline): orders not
reaching the phones, reports not reaching dispatch, no positions coming in. Its script run
in node as in test_console_shift, the page's clock stopped and moved on only by a step."""

from __future__ import annotations

import pytest

from tests.unit.dispatch.test_console_page import said as told
from tests.unit.dispatch.test_console_shift import STOPPED_CLOCK, TWO_WAITING, run_console

BANNER = '[$("pipeline").hidden, $("pipeline").children.map(line => line.textContent)]'
PIPELINE_ASKED = 'requests.filter(r => r.url.startsWith("/v1/pipeline")).length'
# the next read is due 10 s after the last began
NEXT_READ = "now += 10000; "
ORDERS_BEHIND = ('pipelineState = () => ({ok: false, hops: HOPS.map(h => h === "orders" '
                 '? hopOf(h, {group: "notify", unread: 3, pending: 1, oldest_age_s: 45.2, '
                 'verdict: "behind"}) : hopOf(h)), positions_feed: {newest_age_s: 2, '
                 'teams_on_shift: true, threshold_s: 180, verdict: "ok"}}); ')
ALL_MOVING = "const moving = pipelineState; "


def test_orders_not_reaching_phones_are_said_at_the_top_and_the_banner_goes_once_they_do(
        ) -> None:
    """notify down: the orders sit in the stream and the dispatcher, seeing nothing wrong,
    waits for acknowledgements that cannot come. Said over the page, with what to do, in
    the dispatcher's language; gone at the first read that finds every hop moving."""
    zh, en, after = run_console(
        TWO_WAITING + STOPPED_CLOCK + ALL_MOVING + ORDERS_BEHIND,
        BANNER,
        f'$("lang").onclick(); settle().then(() => {BANNER})',
        f'pipelineState = moving; {NEXT_READ}tick().then(() => {BANNER})',
    )
    assert zh == [False, [told("pipeline_orders", why=told(
        "pipeline_waiting", age=told("age_seconds", n=45)))]], zh
    assert zh[1][0] == "指令未能推送到手机（最早一条已等待45秒）：请用对讲机联系警组"
    assert en == [False, [told("pipeline_orders", "en", why=told(
        "pipeline_waiting", "en", age=told("age_seconds", "en", n=45)))]], en
    assert after == [True, []]


def test_no_banner_while_every_hop_moves() -> None:
    shown, = run_console(TWO_WAITING + STOPPED_CLOCK, BANNER)
    assert shown == [True, []]


@pytest.mark.parametrize("state, expected", [
    # notify never started on this Redis: no group reads the orders for the phones
    ('h === "orders" ? hopOf(h, {group: "notify", unread: null, pending: null, '
     'verdict: "no_group"}) : hopOf(h)',
     [("pipeline_orders", {"why": ("pipeline_not_started", {"service": "notify"})})]),
    # dispatch's own reader of new reports behind (a backlog after an outage)
    ('h === "reports" ? hopOf(h, {oldest_age_s: 200, verdict: "behind"}) : hopOf(h)',
     [("pipeline_reports", {"why": ("pipeline_waiting",
                                    {"age": ("age_minutes", {"n": 3})})})]),
])
def test_each_hop_behind_says_what_is_affected(state: str, expected: list) -> None:
    """`state`: each hop `h` as dispatch answers it; `expected`: the banner's lines, each a
    text's key with its blanks (a blank filled by another text: its key and blanks)."""
    def words(key: str, values: dict) -> str:
        return told(key, **{k: words(*v) if isinstance(v, tuple) else v
                            for k, v in values.items()})

    shown, = run_console(
        TWO_WAITING + STOPPED_CLOCK + f"pipelineState = () => ({{ok: false, hops: HOPS.map(h "
        f"=> {state}), positions_feed: {{newest_age_s: 2, teams_on_shift: true, "
        'verdict: "ok"}});',
        BANNER)
    assert shown == [False, [words(*e) for e in expected]], shown


def test_no_positions_while_teams_are_on_shift_is_said() -> None:
    silent, none = run_console(
        TWO_WAITING + STOPPED_CLOCK + 'pipelineState = () => ({ok: false, hops: HOPS.map(h '
        '=> hopOf(h)), positions_feed: {newest_age_s: 240, teams_on_shift: true, '
        'verdict: "behind"}});',
        BANNER,
        'pipelineState = () => ({ok: false, hops: HOPS.map(h => hopOf(h)), positions_feed: '
        f'{{newest_age_s: null, teams_on_shift: true, verdict: "behind"}}}}); {NEXT_READ}'
        f'tick().then(() => {BANNER})',
    )
    assert silent == [False, [told("pipeline_fixes_silent", age=told("age_minutes", n=4))]]
    assert none == [False, [told("pipeline_no_fixes")]]


def test_a_pipeline_read_on_its_way_holds_back_no_refresh_and_no_refresh_holds_it_back(
        ) -> None:
    """Dispatch under load: its reads slow, up to the 15 s bound. The board, the incident
    open and the alarm are read at every tick while the pipeline's answer is unanswered
    (asked once, not again while on its way); and a refresh still on its way does not keep
    the pipeline from being read when due: a stuck system is just when it must be said."""
    asked, pipeline, beside = run_console(
        TWO_WAITING + STOPPED_CLOCK + 'hold(u => u.startsWith("/v1/pipeline"));',
        'row("inc_fight").onclick(); var n; settle().then(() => { n = requests.length; '
        f'{NEXT_READ}return tick(); }}).then(() => {{ {NEXT_READ}return tick(); }})'
        f'.then(() => {{ {NEXT_READ}return tick(); }}).then(() => requests.slice(n)'
        '.map(r => r.url))',
        PIPELINE_ASKED,
        # the pipeline answered; the board's reads now hang, and the next read is due
        'hold(null); release(); settle().then(() => { hold(u => u.startsWith("/v1/incidents"));'
        f' {NEXT_READ}return tick(); }}).then(() => {{ {NEXT_READ}return tick(); }})'
        f'.then(() => {PIPELINE_ASKED})',
    )
    assert asked.count("/v1/incidents?district=d1&limit=200&order=received&linked=false") == 3, asked
    assert asked.count("/v1/incidents/inc_fight?repeats=collapsed") == 3, asked
    assert pipeline == 1
    assert beside == 3


def test_the_pipeline_is_read_at_the_last_tick_before_its_threshold_has_passed() -> None:
    """A hop is said behind once its oldest entry has waited its threshold (a third of the
    P1 deadline: 10 s of 30 s), leaving the dispatcher the rest to radio the team. Read at
    the first 3 s tick after 10 s had passed, the reads came 12 s apart: an order stuck just
    after a read was said 22 s into its 30 s. Read at the last tick before, 9 s apart."""
    early, due = run_console(
        TWO_WAITING + STOPPED_CLOCK,
        f"now += 6000; tick().then(() => {PIPELINE_ASKED})",
        f"now += 3000; tick().then(() => {PIPELINE_ASKED})",
    )
    assert early == 1
    assert due == 2


def test_a_policy_s_shorter_p1_deadline_has_the_pipeline_read_as_often_as_its_threshold(
        ) -> None:
    """A deployment's policy with the P1 deadline at 12 s: dispatch says the reports,
    orders and answers behind after 4 s (threshold_s). Read every 10 s (12 s on the tick),
    an order stuck was said up to 16 s after it was made: past its deadline, the order
    taken back. The reads follow the shortest threshold of dispatch's last answer: every
    tick, said by 7 s."""
    asked, = run_console(
        TWO_WAITING + STOPPED_CLOCK + 'pipelineState = () => ({ok: true, hops: HOPS.map(h => '
        '["reports", "orders", "answers"].includes(h) ? hopOf(h, {threshold_s: 4}) '
        ': hopOf(h, {threshold_s: 30})), positions_feed: {newest_age_s: 2, '
        'teams_on_shift: true, threshold_s: 180, verdict: "ok"}});',
        f"now += 3000; tick().then(() => {{ const one = {PIPELINE_ASKED}; now += 3000; "
        f"return tick().then(() => [one, {PIPELINE_ASKED}]); }})",
    )
    assert asked == [2, 3]


def test_a_failed_read_is_said_only_after_the_second_and_not_asked_before_it_is_due() -> None:
    """One lost answer is no outage: a banner for it would teach the desk to ignore the
    banner. Two in a row: the dispatcher cannot tell whether orders reach the phones, and
    is told so. The next answer ends it."""
    message = "the store is not answering; ask again"
    first, early, second, answered = run_console(
        TWO_WAITING + STOPPED_CLOCK + ALL_MOVING + "pipelineState = () => reply(503, "
        f"{{error: {{code: 'unavailable', message: {message!r}}}}});",
        BANNER,
        f"tick().then(() => tick()).then(() => {PIPELINE_ASKED})",
        f"{NEXT_READ}tick().then(() => {BANNER})",
        f"pipelineState = moving; {NEXT_READ}tick().then(() => {BANNER})",
    )
    assert first == [True, []]
    assert early == 1  # not again at each 3 s tick
    assert second == [False, [told("pipeline_unknown", why=message)]]
    assert answered == [True, []]


def test_a_refused_token_takes_the_banner_away_with_the_board() -> None:
    shown, gone = run_console(
        TWO_WAITING + STOPPED_CLOCK + ORDERS_BEHIND,
        '$("pipeline").hidden',
        'answer = () => reply(401, {error: {code: "unauthorized", message: "unknown or '
        f'revoked token"}}}}); {NEXT_READ}tick().then(() => tick()).then(() => '
        f'[$("pipeline").hidden, {PIPELINE_ASKED}])',
    )
    assert shown is False
    assert gone == [True, 2]  # the read refused was the last


def test_the_console_opened_on_a_district_not_yet_imported_says_so_and_raises_no_alarm(
        ) -> None:
    """`make run`'s link (`/console#token=…&district=qingxiu`) opened before `make demo`
    imports qingxiu: the header says the district is not in the roster (dispatch's 422), no
    board is painted, and the banner that says the system itself may be stuck stays away
    (the pipeline's read of such a district is no sign of it); once imported, the board."""
    message = ("district: no such district in the roster; the roster holds xixiangtang "
               "(names match exactly). Import the district's roster at volunteers first "
               "(POST /v1/roster/import), then ask again")
    shown = ('[$("err").textContent, document.getElementById("board").children.length, '
             '$("pipeline").hidden]')
    before, after_polls, imported = run_console(
        TWO_WAITING + STOPPED_CLOCK + f"""
        var imported = false; const dispatchAnswers = answer;
        answer = (url, init) => {{
          if (url.startsWith("/v1/me")) return {{kind: "admin", districts: null}};
          if (!imported && /district=d1|^\\/v1\\/duty\\/d1/.test(url)) return reply(422, {{
            error: {{code: "invalid_field", message: {message!r}, field: "district"}}}});
          return dispatchAnswers(url, init);
        }};""",
        shown,
        # the pipeline read twice (a failure said after the second), the refresh each tick
        f"now += 10000; tick().then(() => {{ now += 10000; return tick(); }}).then(() => {shown})",
        f"imported = true; now += 10000; tick().then(() => {shown})",
    )
    assert before == [message, 0, True]
    assert after_polls == [message, 0, True]
    assert imported == ["", 2, True]
