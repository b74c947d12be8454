"""When the teams on an incident will be there: the incident panel says, for each team on its
way, "arriving in about 4 min" or "overdue by 3 min" (dispatch's `expected_at` for the order,
counted on dispatch's clock, `now`, not the desk PC's), in the console's language (the
page's script run in node, as in test_console_shift)."""

from __future__ import annotations

from services.dispatch.console_text import CONSOLE_TEXT
from shared.labels import Language, label
from tests.unit.dispatch.test_console_shift import run_console

# One incident with a team of each kind of progress, as dispatch answers it at 12:00:00 on
# its clock; the desk PC's clock is 7 minutes fast (counted on it, t1 would be 3 minutes
# late and t2 ten).
ORDERS = (
    'var now = Date.parse("2026-12-05T12:07:00Z"); Date.now = () => now; '
    'function order(team, extra) { return Object.assign({order_id: "ord_" + team, team_id: '
    'team, team_name: "Team " + team, agency_kind: "police", kind: "dispatch", '
    'issued_at: "2026-12-05T11:58:00Z", eta_s: null, expected_at: null}, extra); } '
    'boards.d1 = [incident("inc_fight", {category: "violence", priority: "P1", '
    'status: "en_route", flagged: false})]; '
    'details.inc_fight = detailOf(boards.d1[0], {now: "2026-12-05T12:00:00+00:00", orders: ['
    # on its way since 11:59, five minutes' drive: there at 12:04
    'order("t1", {state: "en_route", en_route_at: "2026-12-05T11:59:00Z", eta_s: 300, '
    'expected_at: "2026-12-05T12:04:00+00:00"}), '
    # a backup that was to be there at 11:57
    'order("t2", {kind: "reinforcement", state: "acknowledged", eta_s: 60, '
    'expected_at: "2026-12-05T11:57:00+00:00"}), '
    # there: nothing to count
    'order("t3", {state: "on_scene", eta_s: 120}), '
    # sent by hand to a team with no position that counts: no travel time
    'order("t4", {kind: "manual", state: "offered"}), '
    # a station's hand-over: not a trip to the scene
    'order("t5", {kind: "handover", state: "offered"}), '
    # finished: not on the panel
    'order("t6", {state: "resolved", eta_s: 100})]});'
)
PANEL = ('$("orders").children.filter(c => typeof c === "string").map(s => s.trim())'
         '.filter(Boolean)')


def panel(language: Language) -> list[str]:
    text = CONSOLE_TEXT[language]

    def state(code: str) -> str:
        return label("order_state", code, language)

    def way(code: str, arrival: str) -> str:
        return text["order_arrival"].format(state=state(code), arrival=arrival)

    return [text["teams_on_it"].strip(),
            f"Team t1 ({way('en_route', text['arriving'].format(minutes=4))})",
            f"Team t2 ({way('acknowledged', text['overdue'].format(minutes=3))})",
            f"Team t3 ({state('on_scene')})",
            f"Team t4 ({way('offered', text['arrival_unknown'])})",
            f"Team t5 ({state('offered')})"]


def test_the_panel_says_when_each_team_on_its_way_will_be_there_on_dispatchs_clock() -> None:
    """DOMAIN.md: neighbouring stations reinforce within 3-5 minutes; the panel showed the
    team and its state only, so a dispatcher could not see a backup four minutes late. Each
    team on its way says when it should be there, counted on dispatch's clock (a desk PC
    minutes off would count a team early as late); one past it, by how much; one dispatch
    has no travel time for, that none is known. Nothing for a team there, a hand-over to a
    station, or an order finished. The same in English once chosen."""
    zh, en = run_console(
        ORDERS,
        f'row("inc_fight").onclick(); settle().then(() => {PANEL})',
        f'$("lang").onclick(); settle().then(() => {PANEL})',
    )
    assert zh == panel("zh"), zh
    assert en == panel("en"), en


def test_a_team_due_within_the_minute_is_said_to_arrive_in_about_a_minute() -> None:
    """Twenty seconds away is "about 1 min", not "about 0 min"; ten seconds past is late."""
    said, = run_console(
        ORDERS.replace("2026-12-05T12:04:00+00:00", "2026-12-05T12:00:20+00:00")
        .replace("2026-12-05T11:57:00+00:00", "2026-12-05T11:59:50+00:00"),
        f'row("inc_fight").onclick(); settle().then(() => {PANEL})',
    )
    text = CONSOLE_TEXT["zh"]
    assert text["arriving"].format(minutes=1) in said[1], said
    assert text["overdue"].format(minutes=1) in said[2], said
