"""The console's KPI panel says each figure under the word the inspector uses for it: 警情分流超时
(DOMAIN.md's "incident routing timeout") counts incidents, as the board's
?problem=routing_timeout lists them, with the orders timed out beside it (the page's script
run in node, as in test_console_page)."""

from __future__ import annotations

from shared.labels import label
from tests.unit.dispatch.test_console_page import run_console, said

KPI_LINES = '$("kpis").children.map(li => li.textContent)'


def kpis(**figures: int | str) -> str:
    """JS: dispatch's KPIs with `figures` in place of the stand-in's."""
    values = ", ".join(f"{name}: {n}" for name, n in figures.items())
    return ('const plain = answer; answer = (url) => { const k = plain(url); '
            f'if (url.startsWith("/v1/kpis")) Object.assign(k, {{{values}}}); return k; }};')


def test_routing_timeouts_count_incidents_with_the_orders_timed_out_beside_them() -> None:
    """A help request two teams let time out is one incident routing timeout, what the
    inspector's filter lists, and two orders timed out: the panel read 2 under 警情分流超时
    beside "incidents: 1"."""
    zh, en = run_console(
        'boards.d1 = [incident("inc_done")];'
        + kpis(incidents=1, routing_timeouts=2, routing_timeout_incidents=1),
        f'refresh().then(() => {KPI_LINES})',
        f'$("lang").onclick(); settle().then(() => {KPI_LINES})',
    )
    figure = {"incidents": 1, "orders": 2}
    assert f"{label('kpi', 'routing_timeouts')}：{said('routing_timeouts_of', **figure)}" in zh, zh
    assert (f"{label('kpi', 'routing_timeouts', 'en')}: "
            f"{said('routing_timeouts_of', 'en', **figure)}") in en, en
    assert said("routing_timeouts_of", **figure).startswith("1")  # the incidents first


def test_no_routing_timeout_reads_as_a_plain_zero() -> None:
    zh, = run_console(
        'boards.d1 = [incident("inc_done")];'
        + kpis(routing_timeouts=0, routing_timeout_incidents=0),
        f'refresh().then(() => {KPI_LINES})',
    )
    assert f"{label('kpi', 'routing_timeouts')}：0" in zh, zh


def test_shares_read_as_percentages_as_the_reports_quote_them() -> None:
    """DOMAIN.md's reports quote "44.8 % handled by street patrol, 86.1 % of those resolved
    on site": dispatch answers shares as fractions (0.448), which the panel printed as they
    came, "现场处置率：0.861" beside counts of incidents, a figure read as less than one."""
    kpi_answer = (
        'const plain = answer; answer = (url) => { const k = plain(url); '
        'if (url.startsWith("/v1/kpis")) Object.assign(k, {resolved_on_site_share: 0.861, '
        'handled_by_force: {"police:patrol": {handled: 20, share: 0.448, resolved_on_site: 18, '
        'handed_over: 2, resolved_on_site_share: 0.9}}}); return k; };')
    zh, = run_console('boards.d1 = [incident("inc_done")];' + kpi_answer,
                      f'refresh().then(() => {KPI_LINES})')
    assert f"{label('kpi', 'resolved_on_site_share')}：86.1%" in zh, zh
    patrol = said("street_patrol") + "：44.8%" + said("resolved_on_site_of", share="90.0%")
    assert patrol in zh, zh


def test_no_share_yet_reads_as_a_dash() -> None:
    """Nothing resolved or handed over yet: dispatch's share is null, said as "-", not as
    a percentage of nothing."""
    zh, = run_console('boards.d1 = [incident("inc_done")];'
                      + kpis(resolved_on_site_share="null"),
                      f'refresh().then(() => {KPI_LINES})')
    assert f"{label('kpi', 'resolved_on_site_share')}：-" in zh, zh


def test_incidents_nobody_was_sent_to_are_said_beside_the_time_to_assign() -> None:
    """An overloaded night: 54 of 117 incidents waited with no team, and the panel read
    "assign 18 / 40 s" and no routing timeout (both count only incidents a team was sent
    to). It says the never assigned, still waiting or ended so and past their deadline, and
    those sent their first team after it, in the desk's language."""
    figures = ('never_assigned: {incidents: 54, open: 31, ended: 23, past_deadline: 50}, '
               'assigned_after_deadline: 12')
    kpi_answer = ('const plain = answer; answer = (url) => { const k = plain(url); '
                  f'if (url.startsWith("/v1/kpis")) Object.assign(k, {{{figures}}}); '
                  'return k; };')
    zh, en = run_console(
        'boards.d1 = [incident("inc_done")];' + kpi_answer,
        f'refresh().then(() => {KPI_LINES})',
        f'$("lang").onclick(); settle().then(() => {KPI_LINES})',
    )
    counts = {"incidents": 54, "open": 31, "ended": 23, "late": 50}
    for lines, language, colon in ((zh, "zh", "："), (en, "en", ": ")):
        assert (label("kpi", "never_assigned", language) + colon
                + said("never_assigned_of", language, **counts)) in lines, lines
        assert label("kpi", "assigned_after_deadline", language) + colon + "12" in lines, lines
        # beside the time to assign, not somewhere down the panel
        at = next(n for n, line in enumerate(lines)
                  if line.startswith(label("kpi", "time_to_assign_s", language)))
        assert lines[at + 1].startswith(label("kpi", "never_assigned", language)), lines


def test_none_left_without_a_team_reads_as_a_plain_zero() -> None:
    zh, = run_console('boards.d1 = [incident("inc_done")];',
                      f'refresh().then(() => {KPI_LINES})')
    assert f"{label('kpi', 'never_assigned')}：0" in zh, zh
    assert f"{label('kpi', 'assigned_after_deadline')}：0" in zh, zh


def test_filings_overdue_are_those_that_fell_due_in_the_day_reviewed() -> None:
    """受立案超期 in the morning review of yesterday: the hand-overs whose filing fell due
    yesterday and was not filed by then (what dispatch answers as filings_due), not those of
    yesterday's incidents, which at 08:30 were not due yet (a day after the hand-over) and
    read 0 every morning."""
    zh, en = run_console(
        'boards.d1 = [incident("inc_done")];'
        + kpis(filings_overdue=0, filings_overdue_unfiled=0,
               filings_due="{due: 5, filed_in_time: 2, overdue: 3, unfiled: 1}"),
        f'refresh().then(() => {KPI_LINES})',
        f'$("lang").onclick(); settle().then(() => {KPI_LINES})',
    )
    assert f"{label('kpi', 'filings_overdue')}：3{said('still_unfiled', count=1)}" in zh, zh
    assert (f"{label('kpi', 'filings_overdue', 'en')}: 3"
            f"{said('still_unfiled', 'en', count=1)}") in en, en
