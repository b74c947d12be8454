"""The console's hot spots (the four weeks' heat map) for tonight's patrol routes: kept to
the patrol hours, 19:00 to 02:00 on the district's clock, when the dispatcher chooses, the
choice remembered in this browser, the heading saying the hours the list is of (the page's
script run in node, as in test_console_shift)."""

from __future__ import annotations

from services.dispatch.review import parse_hours
from shared.labels import Language
from tests.unit.dispatch.test_console_page import said
from tests.unit.dispatch.test_console_shift import HEAT_MAP, TWO_WAITING, run_console

# The heat map as dispatch answers it, its cells by the hours asked (review.parse_hours's
# "19-2" keeps 02:00 to 02:59 too), on Nanning's clock; the desk PC on UTC.
HEAT = (
    TWO_WAITING + HEAT_MAP
    + 'Intl = {DateTimeFormat: () => ({resolvedOptions: () => ({timeZone: "UTC"})})}; '
    'var patrol = [0, 1, 19, 20, 21, 22, 23]; '
    'heat = u => { const h = query(u).get("hours"); return {timezone: "Asia/Shanghai", '
    'hours: h === "19-1" ? patrol : [], hottest: [{lat: h ? 22.9 : 22.1, lon: 108.3, '
    'count: 2, peak_hour: h ? 21 : 9, by_category: {noise: 2}}]}; }; '
)
ASKED = ('requests.filter(r => r.url.startsWith("/v1/heatmap"))'
         '.map(r => query(r.url).get("hours"))')
SHOWN = ('[$("spotshours").textContent, $("spots").children.map(li => li.textContent.split('
         '/[:：]/)[0])]')
CHOICE = '$("spotchoice")'


def patrol_heading(language: Language = "zh") -> str:
    return said("spots_hours", language,
                hours=said("hour_span", language, start="19:00", end="02:00"),
                zone=said("hours_in", language, zone="Asia/Shanghai"))


def test_the_patrol_hours_the_choice_asks_for_are_19_00_to_02_00() -> None:
    """The heat map keeps whole local hours (review.parse_hours): "19-2" would keep 02:00 to
    02:59 too, after the patrol. What the page asks for is the hours it says it is."""
    (asked, named), = run_console(HEAT, "[PATROL_HOURS, PATROL_HOUR_LIST]")
    assert sorted(parse_hours(asked)) == sorted(named) == [0, 1, 19, 20, 21, 22, 23]


def test_the_hot_spots_may_be_kept_to_tonights_patrol_hours_said_in_the_heading() -> None:
    """DOMAIN.md: heat maps plan tonight's patrol routes (night markets, bars, 19:00 to
    02:00); the console's hot spots were of the whole day, with no way to keep them to the
    night. Beside them, all day or the patrol hours: chosen, the heat map is asked for
    those hours at once and the heading says them as dispatch answered, on the district's
    clock (named where the desk's is another); the choice is kept in this browser. The
    heading is said again in English once chosen."""
    first, chosen, english, back = run_console(
        HEAT,
        f'[{CHOICE}.children.map(o => [o.value, o.textContent]), {CHOICE}.value, {ASKED}, '
        f'{SHOWN}]',
        f'{CHOICE}.value = "19-1"; {CHOICE}.onchange(); settle().then(() => '
        f'[{ASKED}, localStorage.getItem("lf-spot-hours"), {SHOWN}])',
        f'$("lang").onclick(); settle().then(() => [{SHOWN}[0], '
        f'{CHOICE}.children.map(o => o.textContent)])',
        f'{CHOICE}.value = ""; {CHOICE}.onchange(); settle().then(() => '
        f'[{ASKED}, localStorage.getItem("lf-spot-hours"), {SHOWN}])',
    )
    span = said("hour_span", start="19:00", end="02:00")
    assert first == [[["", said("all_day")], ["19-1", said("spots_patrol", hours=span)]], "",
                     [None], [said("spots_hours", hours=said("all_day"), zone=""),
                              ["22.1000, 108.3000"]]], first
    assert chosen == [[None, "19-1"], "19-1", [patrol_heading(), ["22.9000, 108.3000"]]], chosen
    en_span = said("hour_span", "en", start="19:00", end="02:00")
    assert english == [patrol_heading("en"),
                       [said("all_day", "en"), said("spots_patrol", "en", hours=en_span)]]
    assert back[0][-1] is None and back[1] == ""
    assert back[2] == [said("spots_hours", "en", hours=said("all_day", "en"), zone=""),
                       ["22.1000, 108.3000"]]


def test_the_patrol_hours_chosen_are_kept_when_the_console_is_opened_again() -> None:
    """The choice is the browser's, as its language is: the page opened again (the next
    shift, a reload) asks for the patrol hours at once."""
    first, = run_console(
        'localStorage.setItem("lf-spot-hours", "19-1"); ' + HEAT,
        f'[{CHOICE}.value, {ASKED}, {SHOWN}]',
    )
    assert first == ["19-1", ["19-1"], [patrol_heading(), ["22.9000, 108.3000"]]]


def test_the_hot_spots_of_the_hours_left_come_late_and_are_not_listed() -> None:
    """The whole day's heat map still on its way when the dispatcher picks the patrol hours
    (a heavy query, dispatch busy): the night's is asked for at once, and the day's, come
    late, is not listed under a heading of the night."""
    asked, shown = run_console(
        HEAT + 'hold(u => u.startsWith("/v1/heatmap") && !query(u).get("hours"));',
        f'{CHOICE}.value = "19-1"; {CHOICE}.onchange(); settle().then(() => {ASKED})',
        f'release(); settle().then(() => tick()).then(() => {SHOWN})',
    )
    assert asked == [None, "19-1"]
    assert shown == [patrol_heading(), ["22.9000, 108.3000"]]
