"""An inspector hunts refusals (DOMAIN.md: units may not refuse because the scene is outside
their zone): the console's problem filter asks dispatch for the incidents a team declined,
and its KPIs say how many declines there were beside the routing timeouts (the page's script
run in node, as in test_console_page)."""

from __future__ import annotations

from shared.labels import label
from tests.unit.dispatch.test_console_page import run_console, said

DECLINES = ('const plain = answer; answer = (url) => { const k = plain(url); '
            'if (url.startsWith("/v1/kpis")) k.declines = 3; return k; };')
KPI_LINES = '$("kpis").children.map(li => li.textContent)'


def test_the_problem_filter_lists_the_incidents_a_team_declined() -> None:
    choices, asked = run_console(
        'boards.d1 = [incident("inc_done")];',
        '$("problem").children.map(o => [o.value, o.textContent])',
        '$("problem").value = "declined"; fetched.length = 0; refresh().then(() => '
        'fetched.filter(u => u.startsWith("/v1/incidents?") && u.includes("problem=")))',
    )
    assert ["declined", said("declines")] in choices
    assert asked and all("problem=declined" in url for url in asked), asked


def test_the_kpis_count_the_declines_beside_the_routing_timeouts() -> None:
    zh, en = run_console(
        'boards.d1 = [incident("inc_done")];' + DECLINES,
        f'refresh().then(() => {KPI_LINES})',
        f'$("lang").onclick(); settle().then(() => {KPI_LINES})',
    )
    timeouts = zh.index(f"{label('kpi', 'routing_timeouts')}：0")
    assert zh[timeouts + 1] == f"{label('kpi', 'declines')}：3"
    assert f"{label('kpi', 'declines', 'en')}: 3" in en
