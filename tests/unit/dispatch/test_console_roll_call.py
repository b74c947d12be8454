"""The console's roll call: the teams planned for the shift being worked that have not
checked in (GET /v1/shift-check-ins: volunteers' plans and check-ins, through dispatch), so
that at 08:10 the duty dispatcher calls them (DOMAIN.md). Its script run in node as in
test_console_shift, the page's clock stopped and moved on only by a step."""

from __future__ import annotations

from tests.unit.dispatch.test_console_page import said
from tests.unit.dispatch.test_console_shift import STOPPED_CLOCK, TWO_WAITING, run_console

# 08:10 in d1: the main shift's guard post and volunteers not in, the patrol in (dispatch's
# answer: those not in first); d2: everyone in.
EIGHT_TEN = (
    'function planned(id, name, kind, agency, checkedIn) { return {team_id: id, team_name: '
    'name, agency_id: agency, agency_name: agency, agency_kind: kind, shift: "main", '
    'start: new Date().toISOString(), end: new Date().toISOString(), checked_in: checkedIn, '
    'checked_in_at: null}; } '
    'var rolls = {d1: {district: "d1", at: new Date().toISOString(), planned: 3, '
    'not_checked_in: 2, teams: [planned("t4", "Team 4", "security", "Hengan Security", false), '
    'planned("t9", "Team 9", "volunteer", "Red Armbands", false), '
    'planned("t1", "Team 1", "police", "Minzu Avenue", true)]}, '
    'd2: {district: "d2", at: new Date().toISOString(), planned: 1, not_checked_in: 0, '
    'teams: [planned("t7", "Team 7", "police", "Xinzhu", true)]}}; '
    'rollCall = url => rolls[query(url).get("district")]; '
)
SHOWN = '[$("rollcount").textContent, $("roll").children.map(li => li.textContent)]'
ASKED = 'requests.filter(r => r.url.startsWith("/v1/shift-check-ins")).map(r => r.url)'
# the roll call is read again half a minute after the last read began
NEXT_READ = "now += 30000; "


def team(name: str, kind: str, agency: str, language: str = "zh") -> str:
    from shared.labels import label

    return said("roll_team", language, team=name, kind=label("agency_kind", kind, language),
                agency=agency)


def test_at_ten_past_eight_the_teams_planned_and_not_in_are_listed_to_call() -> None:
    """DOMAIN.md: the main shift starts at 08:00; the command room watches every unit on one
    screen but could not see who was planned and had not come. Beside the units: how many
    of the planned teams are not in, and each of them with its force and agency, in the
    dispatcher's language; not the one that is in."""
    zh, en = run_console(
        TWO_WAITING + STOPPED_CLOCK + EIGHT_TEN,
        SHOWN,
        f'$("lang").onclick(); settle().then(() => {SHOWN})',
    )
    assert zh == [said("roll_count", missing=2, planned=3),
                  [team("Team 4", "security", "Hengan Security"),
                   team("Team 9", "volunteer", "Red Armbands")]], zh
    assert en == [said("roll_count", "en", missing=2, planned=3),
                  [team("Team 4", "security", "Hengan Security", "en"),
                   team("Team 9", "volunteer", "Red Armbands", "en")]], en


def test_everyone_in_and_nobody_planned_are_said_as_such() -> None:
    all_in, none = run_console(
        TWO_WAITING + STOPPED_CLOCK + EIGHT_TEN + 'localStorage.setItem("lf-district", "d2"); ',
        SHOWN,
        'rolls.d2 = {district: "d2", at: new Date().toISOString(), planned: 0, '
        f'not_checked_in: 0, teams: []}}; {NEXT_READ}tick().then(() => {SHOWN})',
    )
    assert all_in == [said("roll_all_in", planned=1), []], all_in
    assert none == [said("roll_none_planned"), []], none


def test_the_roll_call_is_read_beside_the_refresh_and_half_a_minute_apart() -> None:
    """Volunteers slow or away must not hold back the board: the 3 s tick reads the board
    while the roll call's answer is on its way, asks for it once, and again only when due."""
    boards, asked, later = run_console(
        TWO_WAITING + STOPPED_CLOCK + EIGHT_TEN + 'hold(u => u.startsWith("/v1/shift-check-ins"));',
        'var n = requests.length; tick().then(() => tick()).then(() => requests.slice(n)'
        '.filter(r => r.url === "/v1/incidents?district=d1&limit=200&order=received&linked=false").length)',
        ASKED,
        f'hold(null); release(); settle().then(() => tick()).then(() => {{ {NEXT_READ}'
        f'return tick(); }}).then(() => {ASKED})',
    )
    assert boards == 2
    assert asked == ["/v1/shift-check-ins?district=d1"]
    assert later == ["/v1/shift-check-ins?district=d1"] * 2


def test_a_roll_call_not_read_is_said_and_no_stale_list_is_shown() -> None:
    """Who is due is volunteers' to say: not read, the list would say what was true half an
    hour ago. Said in its place, with why; the next answer brings the list back."""
    message = "volunteers, which keeps the shift plans and check-ins, did not say; ask again"
    listed, failed, back = run_console(
        TWO_WAITING + STOPPED_CLOCK + EIGHT_TEN + 'var good = rollCall; ',
        f'{SHOWN}[1].length',
        f'rollCall = () => reply(503, {{error: {{code: "unavailable", message: {message!r}}}}});'
        f' {NEXT_READ}tick().then(() => {SHOWN})',
        f'rollCall = good; {NEXT_READ}tick().then(() => {SHOWN}[1].length)',
    )
    assert listed == 2
    assert failed == [said("roll_not_read", why=message, after=30), []], failed
    assert back == 2


def test_another_districts_late_answer_is_not_listed_and_a_refused_token_clears_it() -> None:
    """d1's answer still on its way when the dispatcher switches to d2: d2's teams are read
    at once and d1's, come late, are not listed under d2. A refused token takes it away with
    the board."""
    switched, refused = run_console(
        TWO_WAITING + STOPPED_CLOCK + EIGHT_TEN + 'hold(u => u.startsWith("/v1/shift-check-ins")'
        ' && query(u).get("district") === "d1");',
        '$("district").value = "d2"; refresh().then(() => { hold(null); release(); '
        f'return settle(); }}).then(() => [{ASKED}, {SHOWN}])',
        'answer = () => reply(401, {error: {code: "unauthorized", message: "unknown or '
        'revoked token"}}); refresh().then(() => settle()).then(() => '
        f'{SHOWN}[1].length + $("rollcount").textContent.length)',
    )
    assert switched == [["/v1/shift-check-ins?district=d1", "/v1/shift-check-ins?district=d2"],
                        [said("roll_all_in", planned=1), []]], switched
    assert refused == 0
