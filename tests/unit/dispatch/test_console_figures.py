"""The console's incident panel says how the KPIs count the incident (dispatch's `figures` in
GET /v1/incidents/{id}): an inspector tracing a figure of the morning review to its cases,
also months on, once the case is archived and its timeline and orders are gone (the page's
script run in node, as in test_console_shift)."""

from __future__ import annotations

from shared.labels import Language, label
from tests.unit.dispatch.test_console_page import said
from tests.unit.dispatch.test_console_shift import run_console

ARCHIVED_AT = "2026-03-10T02:00:00+00:00"
HANDED_OVER_AT = "2025-12-05T06:20:00+00:00"
RESOLVED_AT = "2025-12-06T09:30:00+00:00"
# A dispute handed over by a guard, filed late by the station, archived RECORDS_DAYS on: its
# view has no timeline or orders, and the figures the archive kept.
ARCHIVED = (
    'boards.d1 = [incident("inc_old", {category: "dispute", priority: "P2", status: "resolved", '
    f'flagged: false, reported_at: "2025-12-05T06:00:00+00:00", archived_at: "{ARCHIVED_AT}"}})]; '
    'details.inc_old = detailOf(boards.d1[0], {figures: {counted: true, resolved_on_site: false, '
    f'handed_over: true, handled_by_force: "security", resolved_at: "{RESOLVED_AT}", '
    f'handed_over_at: "{HANDED_OVER_AT}", closed_at: null, time_to_assign_s: 42.4, '
    'time_to_acknowledge_s: 70.0, time_to_scene_s: 612.0, '
    'filing: {filed_in_time: false, overdue: true, unfiled: false}}});'
)
FIGURES = '$("dfigures").children.map(line => line.textContent)'
TIMES = f'["{ARCHIVED_AT}", "{HANDED_OVER_AT}", "{RESOLVED_AT}"].map(t => time(t))'


def sep(language: Language) -> str:
    return "；" if language == "zh" else "; "


def test_an_archived_case_says_how_the_kpis_counted_it_in_either_language() -> None:
    """Archived, the panel showed a status over an empty timeline: which figure of the review
    the case was counted in (handed over, by which force, its filing late, its times to act)
    could not be told. The panel says it in two lines, and again in English."""
    zh, en = run_console(
        ARCHIVED,
        f'row("inc_old").onclick(); settle().then(() => [{FIGURES}, {TIMES}])',
        f'$("lang").onclick(); settle().then(() => [{FIGURES}, {TIMES}])',
    )
    for language, (lines, (archived, handed, resolved)) in (("zh", zh), ("en", en)):
        force = label("agency_kind", "security", language)
        assert lines == [
            sep(language).join([
                said("figures_archived", language, time=archived),
                said("figures_handed_over", language, force=force, time=handed)
                + said("figures_station_resolved", language, time=resolved),
                said("filing_overdue", language)]),
            said("figures_times", language,
                 assign=said("age_seconds", language, n=42),
                 ack=said("age_seconds", language, n=70),
                 scene=said("age_minutes", language, n="10.2"))], lines


def test_every_incident_says_how_it_counts_resolved_open_or_a_duplicate() -> None:
    """Not only archived ones: resolved on site by the street patrol (the force said as the
    units list says it), still open (in neither share), a duplicate report (not counted at
    all), a hand-over still owing its filing; an older dispatch with no figures, nothing."""
    none = ("resolved_on_site: false, handed_over: false, handled_by_force: null, "
            "resolved_at: null, handed_over_at: null, closed_at: null, filing: null, "
            "time_to_assign_s: null, time_to_acknowledge_s: null, time_to_scene_s: null")
    resolved, open_, duplicate, owed, older = run_console(
        'boards.d1 = [incident("inc_a"), incident("inc_b"), incident("inc_c"), '
        'incident("inc_d"), incident("inc_e")]; '
        'for (const i of boards.d1) details[i.incident_id] = detailOf(i); '
        f'const none = {{{none}}}; '
        'details.inc_a.figures = Object.assign({}, none, {counted: true, resolved_on_site: true, '
        'handled_by_force: "police:patrol", resolved_at: "2026-12-06T01:00:00+00:00", '
        'time_to_assign_s: 5, time_to_acknowledge_s: 19.6, time_to_scene_s: 7300}); '
        'details.inc_b.figures = Object.assign({}, none, {counted: true, time_to_assign_s: 20}); '
        'details.inc_c.figures = Object.assign({}, none, {counted: false}); '
        'details.inc_d.figures = Object.assign({}, none, {counted: true, handed_over: true, '
        'handled_by_force: "unknown", handed_over_at: "2026-12-06T01:00:00+00:00", '
        'filing: {filed_in_time: false, overdue: true, unfiled: true}});',
        *(f'row("{i}").onclick(); settle().then(() => [{FIGURES}, '
          'time("2026-12-06T01:00:00+00:00")])'
          for i in ("inc_a", "inc_b", "inc_c", "inc_d", "inc_e")),
    )
    lines, at = resolved
    patrol = said("unit_kind", kind=label("agency_kind", "police"),
                  role=label("agency_role", "patrol"))
    assert lines == [said("figures_resolved", force=patrol, time=at),
                     said("figures_times", assign=said("age_seconds", n=5),
                          ack=said("age_seconds", n=20), scene=said("age_hours", n="2.0"))]
    assert open_[0] == [said("figures_neither"),
                        said("figures_times", assign=said("age_seconds", n=20), ack="-",
                             scene="-")]
    assert duplicate[0] == [said("figures_not_counted")]  # no times: it counts in none
    lines, at = owed
    assert lines[0] == sep("zh").join([
        said("figures_handed_over", force=said("force_unknown"), time=at),
        said("filing_overdue_unfiled")])
    assert older[0] == []


def test_a_filing_not_yet_due_or_closed_before_it_is_neither_in_time_nor_overdue() -> None:
    """records.filing_outcome judges neither way a filing still owed before its due, nor a
    hand-over the command room closed before it: said as such, not as overdue."""
    owed, closed = run_console(
        'boards.d1 = [incident("inc_a"), incident("inc_b")]; '
        'for (const i of boards.d1) details[i.incident_id] = detailOf(i, {figures: {'
        'counted: true, resolved_on_site: false, handed_over: true, handled_by_force: '
        '"police:station", resolved_at: null, handed_over_at: "2026-12-06T01:00:00+00:00", '
        'closed_at: null, time_to_assign_s: null, time_to_acknowledge_s: null, '
        'time_to_scene_s: null, filing: {filed_in_time: false, overdue: false, unfiled: false}}}); '
        'details.inc_b.figures = Object.assign({}, details.inc_b.figures, '
        '{closed_at: "2026-12-06T02:00:00+00:00"});',
        f'row("inc_a").onclick(); settle().then(() => {FIGURES}[0])',
        f'row("inc_b").onclick(); settle().then(() => [{FIGURES}[0], '
        'time("2026-12-06T01:00:00+00:00"), time("2026-12-06T02:00:00+00:00")])',
    )
    assert owed.endswith(sep("zh") + said("filing_not_due")), owed
    line, handed, closed_at = closed
    station = said("unit_kind", kind=label("agency_kind", "police"),
                   role=label("agency_role", "station"))
    assert line == sep("zh").join([
        said("figures_handed_over", force=station, time=handed)
        + said("figures_closed", time=closed_at),
        said("filing_closed_before_due")]), line
