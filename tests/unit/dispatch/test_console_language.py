"""The command room's console in the dispatchers' language: Chinese unless the browser puts
English first or the dispatcher chose English with the page's switch, which the browser
remembers (the page's script runs in node, as in test_console_shift)."""

from __future__ import annotations

import json
import re
from typing import get_args

import pytest

from services.dispatch.console import CONSOLE_PAGE
from services.dispatch.console_text import CONSOLE_TEXT
from services.dispatch.review import NO_ZONE, UNKNOWN_ZONE
from services.dispatch.timeline_text import entry_detail, say
from shared.events import IncidentStatus
from shared.labels import GLOSSARY, Language, label
from tests.unit.dispatch.test_console_page import said
from tests.unit.dispatch.test_console_shift import TWO_WAITING, run_console
from tests.unit.test_pages import script

HAN = re.compile(r"[\u4e00-\u9fff]")
PAGE = 'document.documentElement = {lang: ""}; '
# what a step reads of the page: its language, a button, the switch, a hint, the first row
# (priority, category, status), a column, a choice of the status filter, the tab's title
SEEN = ('[document.documentElement.lang, $("save").textContent, $("lang").textContent, '
        '$("token").placeholder, [1, 2, 4].map(k => rows()[0][k]), '
        '$("boardcols").children.map(th => th.textContent)[0], '
        '$("status").children.map(o => o.textContent)[1], document.title]')


def seen(language: Language) -> list[object]:
    """What SEEN reads of TWO_WAITING's board in `language`."""
    text = CONSOLE_TEXT[language]
    sep = "" if language == "zh" else " "
    return [{"zh": "zh-CN", "en": "en"}[language], text["watch"], text["switch"],
            text["token_hint"],
            ["P1" + sep + label("priority", "P1", language), label("category", "violence", language),
             label("incident_status", "unassigned", language)],
            text["col_reported"], label("incident_status", "unassigned", language),
            text["title_flagged"].format(count=2)]


def test_the_console_speaks_chinese_by_default_and_english_once_the_dispatcher_chooses_it() -> None:
    # A district command room's desk: every word was English ("Watch", "violence",
    # "unassigned", "Close incident") for dispatchers who work in Chinese.
    zh, en, stored, again = run_console(
        PAGE + TWO_WAITING,
        SEEN,
        f'$("lang").onclick(); settle().then(() => {SEEN})',
        'localStorage.getItem("lf-lang")',
        f'$("lang").onclick(); settle().then(() => {SEEN})',
    )
    assert zh == seen("zh")
    assert HAN.search(str(zh)) and not HAN.search(str(en[:2] + en[3:]))
    assert en == seen("en")
    assert stored == "en"  # remembered in this browser
    assert again == seen("zh")


@pytest.mark.parametrize(("languages", "kept", "expected"), [
    (["en-US", "zh-CN"], None, "en"),   # the browser puts English first
    (["en"], None, "en"),
    (["zh-CN", "en-US"], None, "zh-CN"),
    (["fr-FR", "en-GB"], None, "zh-CN"),  # English not first: Chinese
    (["en-US"], "zh", "zh-CN"),          # the dispatcher's own choice wins
    (["zh-CN"], "en", "en"),
    (None, None, "zh-CN"),               # a browser that says nothing
])
def test_the_consoles_language_follows_the_browser_unless_the_dispatcher_chose(
        languages: list[str] | None, kept: str | None, expected: str) -> None:
    setup = PAGE + TWO_WAITING
    if languages is not None:
        setup = f"var navigator = {{languages: {languages!r}}}; " + setup
    if kept:
        setup = f'localStorage.setItem("lf-lang", "{kept}"); ' + setup
    (shown,) = run_console(setup, SEEN)
    assert shown == seen("zh" if expected == "zh-CN" else "en")


def test_what_the_console_wrote_itself_is_said_again_in_the_language_chosen() -> None:
    # a token revoked mid-shift: the board stops and says so; the dispatcher switches to
    # English (the board no longer refreshes): the message is said again, the title too
    zh, en = run_console(
        PAGE + TWO_WAITING,
        'answer = () => reply(401, {error: {message: "unknown or revoked token"}}); '
        'tick().then(() => [$("err").textContent, document.title])',
        '$("lang").onclick(); settle().then(() => [$("err").textContent, document.title])',
    )
    why = "unknown or revoked token"
    assert zh == [said("token_refused", why=why), said("title_signed_out")]
    assert en == [said("token_refused", "en", why=why), said("title_signed_out", "en")]


def test_the_timeline_says_what_happened_in_words_and_dispatchs_detail_as_written() -> None:
    (timeline,) = run_console(
        PAGE + 'boards.d1 = [incident("inc_x", {status: "on_scene", flagged: false})]; '
        'const at = new Date().toISOString(); '
        'details.inc_x = detailOf(boards.d1[0], {timeline: ['
        '{at, kind: "manual_assign", team_id: "t1", status: "assigned"}, '
        '{at, kind: "response", team_id: "t1", detail: "en_route", status: "en_route"}, '
        '{at, kind: "note", detail: "Team t1 went off shift"}, '
        '{at, kind: "gone_fishing", detail: "x"}, '
        '{at, kind: "evidence", evidence: [{kind: "video", ref: "cam-1/clip.mp4"}]}]});',
        'row("inc_x").onclick(); settle().then(() => $("timeline").children.map('
        'tr => [tr.children[1].textContent, tr.children[3].textContent]))',
    )
    assert timeline == [
        [label("timeline_kind", "manual_assign") + " → " + label("incident_status", "assigned"),
         ""],
        [label("timeline_kind", "response") + " → " + label("incident_status", "en_route"),
         label("response", "en_route")],
        [label("timeline_kind", "note"), "Team t1 went off shift"],  # dispatch's own text
        ["gone fishing", "x"],  # a kind the glossary does not have: its name
        [label("timeline_kind", "evidence"),
         said("evidence", records=label("evidence_kind", "video") + " cam-1/clip.mp4")],
    ]


def test_a_category_the_glossary_does_not_have_shows_as_its_id() -> None:
    (row,) = run_console(PAGE + 'boards.d1 = [incident("inc_gas", {category: "gas_leak"})];',
                         "rows()[0][2]")
    assert row == "gas_leak"


def test_the_page_before_its_script_runs_is_chinese() -> None:
    markup = re.sub(r"<script>.*?</script>", "", CONSOLE_PAGE, flags=re.DOTALL)
    assert '<html lang="zh-CN">' in markup and "{{" not in markup
    assert ">监看</button>" in markup and "Watch" not in markup
    assert f">{label('flag', 'weapon')}</span>" in markup


def test_both_languages_say_everything_with_the_same_blanks() -> None:
    zh, en = CONSOLE_TEXT["zh"], CONSOLE_TEXT["en"]
    assert set(zh) == set(en), sorted(set(zh) ^ set(en))
    for key in zh:
        assert set(re.findall(r"{(\w+)}", zh[key])) == set(re.findall(r"{(\w+)}", en[key])), key
        bare = re.sub(r"{\w+}", "", zh[key])  # Chinese words, but for the switch to English
        assert HAN.search(bare) or key == "switch" or not re.search(r"[A-Za-z]{3}", bare), key


def test_every_text_and_word_the_script_names_is_in_the_table() -> None:
    # a key missing from the table would throw where the dispatcher needs the message
    code = script(CONSOLE_PAGE)
    named = set(re.findall(r'(?:say|Said)\("(\w+)"', code))
    for first, second in re.findall(r'say\(\w+ \? "(\w+)" : "(\w+)"', code):
        named |= {first, second}
    (fixed,) = run_console(PAGE + TWO_WAITING, "[...Object.values(FIXED), ...Object.values(HINTS), "
                           "...Object.values(TITLES), ...Object.values(COLUMNS).flat()]")
    named |= {key for key in fixed if ":" not in key}
    assert len(named) > 100 and named <= set(CONSOLE_TEXT["zh"]), sorted(
        named - set(CONSOLE_TEXT["zh"]))
    words = set(re.findall(r'word\("(\w+)", "(\w+)"\)', code))
    words |= {tuple(key.split(":")) for key in fixed if ":" in key}
    assert words, "the script names the glossary's words"
    for group, word in words:
        assert word in GLOSSARY[group], (group, word)


def test_every_status_the_board_filters_by_has_its_word() -> None:
    (choices,) = run_console(PAGE + TWO_WAITING, '$("status").children.map(o => o.value)')
    assert choices[0] == "" and set(choices[1:]) <= set(get_args(IncidentStatus))


def test_the_busiest_zones_are_named_and_incidents_outside_every_zone_said_so() -> None:
    """The KPIs' busiest zones showed zone ids and review's "(none)" as they came
    ("qingxiu-z-zhonghua (2), (none) (3)"): the dispatcher reads the zones' names, and
    words for the incidents outside every zone, in the console's language."""
    kpis = ('const plain = answer; answer = (url) => {'
            ' if (url.startsWith("/v1/zones")) return {zones: [{zone_id: "d1-z1", name: "南湖社区",'
            ' station_agency_id: "d1-ps", polygon: [[108.3, 22.8], [108.31, 22.8],'
            ' [108.31, 22.81], [108.3, 22.8]]}]};'
            ' const k = plain(url); if (url.startsWith("/v1/kpis")) k.by_zone ='
            ' {"(none)": 3, "d1-z1": 2}; return k; };')
    assert f'z === "{NO_ZONE}"' in CONSOLE_PAGE  # review's word for it, as the script has it
    read = '$("kpis").children.map(li => li.textContent).find(t => t.includes("(3)"))'
    zh, en = run_console(
        PAGE + TWO_WAITING + kpis,
        f'refresh().then(() => {read})',
        f'$("lang").onclick(); settle().then(() => {read})',
    )
    assert zh == (f"{label('kpi', 'by_zone')}：{CONSOLE_TEXT['zh']['no_zone']} (3), 南湖社区 (2)")
    assert en == (f"{label('kpi', 'by_zone', 'en')}: {CONSOLE_TEXT['en']['no_zone']} (3), "
                  "南湖社区 (2)")


def test_incidents_whose_zone_was_never_known_are_said_so_not_shown_as_a_code() -> None:
    """Reported while dispatch could not load the zones (volunteers away) and over before
    they came back, an incident is counted under review's "(unknown)", apart from those
    outside every zone: the busiest zones showed it as it came, "(unknown) (4)"."""
    kpis = ('const plain = answer; answer = (url) => { const k = plain(url);'
            ' if (url.startsWith("/v1/kpis")) k.by_zone ='
            f' {{"{UNKNOWN_ZONE}": 4, "{NO_ZONE}": 3}}; return k; }};')
    read = '$("kpis").children.map(li => li.textContent).find(t => t.includes("(4)"))'
    zh, en = run_console(
        PAGE + TWO_WAITING + kpis,
        f'refresh().then(() => {read})',
        f'$("lang").onclick(); settle().then(() => {read})',
    )
    assert zh == (f"{label('kpi', 'by_zone')}：{CONSOLE_TEXT['zh']['zone_unknown']} (4), "
                  f"{CONSOLE_TEXT['zh']['no_zone']} (3)")
    assert en == (f"{label('kpi', 'by_zone', 'en')}: {CONSOLE_TEXT['en']['zone_unknown']} (4), "
                  f"{CONSOLE_TEXT['en']['no_zone']} (3)")
    assert f'z === "{UNKNOWN_ZONE}"' in CONSOLE_PAGE  # review's word for it, as the script has it


def test_a_timeline_entrys_detail_is_said_by_its_code_and_an_old_one_as_written() -> None:
    """Dispatch's own sentences ("no acknowledgement by … (routing timeout)", "closed by …")
    were English at a Chinese desk: an entry's code and arguments are said in the console's
    language, an instant in its local time; an entry written before codes came, or with a
    code or arguments this page does not know, reads as dispatch wrote it."""
    ack_by = "2026-12-06T03:04:05+00:00"
    coded = [
        ("routing_timeout", {"ack_by": ack_by}),
        ("closed", {"by": "dispatcher:wang"}),
        ("volunteers_barred", {"flags": "weapon, in_progress"}),
        ("handover_refused", {"refusal": "taken_back", "minutes": "15"}),
        ("stood_down_resolved", {"team": "Team 7"}),
        ("stood_down_backed_order_ended", {"team": "station-car", "state": "withdrawn"}),
    ]
    timeline = ", ".join(
        f'{{at, kind: "note", detail: {json.dumps(entry_detail(code, **args)["detail"])}, '
        f'detail_code: "{code}", detail_args: {json.dumps(args)}}}' for code, args in coded)
    timeline += (', {at, kind: "handover", detail: "handed over to station ps-1"}'
                 ', {at, kind: "note", detail: "as written", detail_code: "gone_fishing", '
                 'detail_args: {}}'
                 ', {at, kind: "closed", detail: "closed by x", detail_code: "closed", '
                 'detail_args: {}}')
    read = ('[$("timeline").children.map(tr => tr.children[3].textContent), '
            f'time("{ack_by}")]')
    zh, en = run_console(
        PAGE + 'boards.d1 = [incident("inc_x", {status: "on_scene", flagged: false})]; '
        'const at = new Date().toISOString(); '
        f'details.inc_x = detailOf(boards.d1[0], {{timeline: [{timeline}]}});',
        f'row("inc_x").onclick(); settle().then(() => {read})',
        f'$("lang").onclick(); settle().then(() => {read})',
    )
    old = ["handed over to station ps-1", "as written", "closed by x"]
    for language, (cells, local) in (("zh", zh), ("en", en)):
        assert cells == [say(code, {**args, "ack_by": local} if "ack_by" in args else args,
                             language) for code, args in coded] + old
    assert zh[0][0] == f"{zh[1]}前未接单（警情分流超时）" and ack_by not in zh[0][0]
    flags = f"{label('flag', 'weapon')}、{label('flag', 'in_progress')}"
    assert zh[0][2] == f"警情已标记{flags}，不派志愿者：已撤下"
    assert zh[0][5] == f"收队：所增援的station-car的指令已结束（{label('order_state', 'withdrawn')}）"
    assert en[0][1:] == [entry_detail(code, **args)["detail"] for code, args in coded[1:]] + old


def test_a_dispatcher_an_entry_names_is_said_by_the_name_dispatch_gives() -> None:
    """"taken back by dispatcher:dsp_5fac…" told a desk nothing: dispatch gives each entry
    naming a dispatcher their name beside the id (`detail_names`), which the timeline says,
    in either language, and in an entry the page has no words for; one without a name (a
    revoked dispatcher) keeps the id."""
    by = "dispatcher:dsp_5fac"
    timeline = ", ".join([
        f'{{at, kind: "note", detail: "taken back by {by}", detail_code: "taken_back", '
        f'detail_args: {{by: "{by}"}}, detail_names: {{by: "王芳"}}}}',
        f'{{at, kind: "note", detail: "remark by {by}", detail_code: "remark", '
        f'detail_args: {{by: "{by}"}}}}',
        f'{{at, kind: "note", detail: "weighed by {by}", detail_code: "weighed_later", '
        f'detail_args: {{by: "{by}"}}, detail_names: {{by: "王芳"}}}}',
    ])
    read = '$("timeline").children.map(tr => tr.children[3].textContent)'
    zh, en = run_console(
        PAGE + 'boards.d1 = [incident("inc_x", {status: "on_scene", flagged: false})]; '
        'const at = new Date().toISOString(); '
        f'details.inc_x = detailOf(boards.d1[0], {{timeline: [{timeline}]}});',
        f'row("inc_x").onclick(); settle().then(() => {read})',
        f'$("lang").onclick(); settle().then(() => {read})',
    )
    assert zh == [say("taken_back", {"by": "王芳"}, "zh"), say("remark", {"by": by}, "zh"),
                  "weighed by 王芳"]
    assert en == ["taken back by 王芳", f"remark by {by}", "weighed by 王芳"]
