"""The reports linked to an incident, in the console: the board leaves each linked report out
(linked=false), so what a caller, a patrol member or another camera said of the same event
is read on the incident's row (how many, from how many other sources), its panel (each
source, its caller, what it said, "Not a duplicate" for each) and its timeline (a camera's
repeats one line, a caller's call its own). The page's script run in node, as in
test_console_page."""

from __future__ import annotations

from shared.labels import label
from tests.unit.dispatch.test_console_page import run_console, said

AT = "2026-12-08T03:00:00+08:00"
LAST = "2026-12-08T03:59:59+08:00"
# A fight a camera saw and repeats; a 110 caller says he now has a knife.
FIGHT = (
    'const counted = (count, sources, others) => ({count, sources, other_sources: others}); '
    'boards.d1 = [incident("inc_fight", {category: "violence", priority: "P1", '
    'status: "assigned", system_id: "sys_cam", system_name: "天网视频", '
    'reports_linked: counted(3600, 1, 0)}), incident("inc_noise")]; '
    'const account = (id, extra) => Object.assign({incident_id: id, external_ref: "r-" + id, '
    f'reported_at: "{AT}", received_at: "{AT}", category: "violence", priority: "P1", '
    'flags: [], description: null, follow_up: false, archived: false, repeats: 0, '
    'last_incident_id: null, last_reported_at: null}, extra || {}); '
    'details.inc_fight = Object.assign({}, boards.d1[0], {orders: [], timeline: [], '
    f'now: "{AT}", linked_reports: ['
    '{system_id: "sys_cam", system_name: "天网视频", caller: null, own_source: true, '
    f'count: 3599, first_reported_at: "{AT}", last_reported_at: "{LAST}", '
    'flags: ["in_progress"], accounts_left_out: 0, accounts: [account("inc_cam1", '
    '{flags: ["in_progress"], description: "fight, 3 persons", repeats: 3598, '
    f'last_incident_id: "inc_cam3599", last_reported_at: "{LAST}"}})]}}, '
    '{system_id: "sys_110", system_name: "110接警", '
    'caller: {phone: "13800000000", name: "张三"}, own_source: false, count: 1, '
    f'first_reported_at: "{AT}", last_reported_at: "{AT}", flags: ["weapon"], '
    'accounts_left_out: 0, accounts: [account("inc_call", {flags: ["weapon"], '
    'description: "he has a knife now"})]}]}); '
    'details.inc_call = Object.assign(incident("inc_call", {status: "linked", '
    'linked_to: "inc_fight"}), {orders: [], timeline: []}); '
    # every element under `el` (the page's DOM stand-in), depth first
    'const under = el => [el, ...el.children.filter(c => typeof c !== "string")'
    '.flatMap(under)]; '
    'const buttons = () => under($("linkedreports")).filter(e => e.tag === "button"); '
    'var prompt = () => "another fight, at No. 14"; var sent = []; '
    'const api0 = answer; answer = (url, init) => { if (init && init.method === "POST") '
    '{ sent.push([url, init.body]); return {}; } return api0(url); }; '
    'const reporterCell = id => $("board").children.find(tr => tr.children[6].textContent '
    '=== id).children[3];'
)


def test_the_incident_s_row_counts_its_linked_reports_and_marks_another_source_joining() -> None:
    """A camera's 3,600th repeat changes nothing on the row but its count; a caller's call
    joining the open fight marks the row until the dispatcher opens the incident, however
    many repeats are around it."""
    first, repeated, joined, opened = run_console(
        FIGHT,
        'const c = reporterCell("inc_fight"); [c.textContent, c.className]',
        'boards.d1[0].reports_linked = counted(3700, 1, 0); refresh().then(() => '
        '[reporterCell("inc_fight").textContent, reporterCell("inc_fight").className])',
        'boards.d1[0].reports_linked = details.inc_fight.reports_linked = counted(3701, 2, 1); '
        'refresh().then(() => '
        '[reporterCell("inc_fight").textContent, reporterCell("inc_fight").className, '
        'reporterCell("inc_noise").textContent])',
        'openIncident("inc_fight"); settle().then(() => refresh()).then(() => '
        'reporterCell("inc_fight").className)',
    )
    assert first == ["天网视频" + said("linked_row", count=3600), "dim"]
    assert repeated == ["天网视频" + said("linked_row", count=3700), "dim"]
    assert joined[0] == "天网视频" + said("linked_row_others", count=3701, others=1)
    assert joined[1] == "news"
    assert joined[2] == ""  # nothing linked: said as before
    assert opened == "dim"


def test_the_incident_s_panel_lists_each_source_with_its_caller_words_and_unlink() -> None:
    """The caller (the command room may ring them back), what they said and flagged, and a
    camera's repeats as one account with their count; "Not a duplicate" on each account
    unlinks that report with the dispatcher's reason, "Open" shows it."""
    listed, posted, opened = run_console(
        FIGHT,
        'openIncident("inc_fight"); settle().then(() => [$("linkedreports").text, '
        'buttons().map(b => [b.textContent, b.hidden])])',
        'buttons()[3].onclick().then(() => sent)',
        'openIncident("inc_fight"); settle().then(() => { buttons()[2].onclick(); '
        'return settle(); }).then(() => [selected, $("dtitle").textContent])',
    )
    text, shown = listed
    assert said("linked_head", count=3600) in text
    assert "天网视频" + said("linked_own") in text
    assert said("linked_repeats", count=3598, time="\0").split("\0")[0] in text
    assert "“fight, 3 persons”" in text
    assert "110接警" + said("linked_caller", caller="张三 · 13800000000") in text
    assert "“he has a knife now”" in text and label("flag", "weapon") in text
    assert shown == [[said("open_report"), False], [said("unlink"), False],
                     [said("open_report"), False], [said("unlink"), False]]
    assert posted == [["/v1/incidents/inc_call/unlink", '{"note":"another fight, at No. 14"}']]
    assert opened[0] == "inc_call"
    assert said("status_linked", status=label("incident_status", "linked"),
                id="inc_fight") in opened[1]


def test_an_inspector_reads_the_linked_reports_and_unlinks_none() -> None:
    shown, = run_console(
        FIGHT + 'const me0 = answer; answer = (url, init) => url.startsWith("/v1/me") '
        '? {kind: "inspector", districts: ["d1"]} : me0(url, init);',
        'openIncident("inc_fight"); settle().then(() => '
        'buttons().filter(b => !b.hidden).map(b => b.textContent))',
    )
    assert shown == [said("open_report"), said("open_report")]


def test_the_timeline_says_a_run_of_repeats_once_and_who_each_linked_report_is_from() -> None:
    """Dispatch folds a camera's run of repeats into its first line (`repeats`): the
    console says how many more and until when; the caller's line says who reported it."""
    lines, = run_console(
        FIGHT + 'details.inc_fight.timeline = ['
        f'{{at: "{AT}", kind: "note", detail: "another report linked: inc_cam1", '
        'detail_code: "report_linked", detail_args: {report: "inc_cam1"}, '
        'report_source: {system_id: "sys_cam", system_name: "天网视频"}, '
        f'repeats: {{count: 3597, last_report: "inc_cam3598", last_at: "{LAST}"}}}}, '
        f'{{at: "{AT}", kind: "note", detail: "another report linked: inc_call", '
        'detail_code: "report_linked", detail_args: {report: "inc_call"}, '
        'report_source: {system_id: "sys_110", system_name: "110接警"}}];',
        'openIncident("inc_fight"); settle().then(() => '
        '$("timeline").children.map(tr => tr.children[3].textContent))',
    )
    camera, call = lines
    assert camera.startswith("又一起上报作为重复上报并入：inc_cam1" + said("linked_from", who="天网视频"))
    assert "3597" in camera and "inc_cam3598" in camera
    assert call == "又一起上报作为重复上报并入：inc_call" + said("linked_from", who="110接警")
