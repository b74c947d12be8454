"""The member's page and the phone's position over a shift: shared only on behalf of a
token still good (the page's script runs in node, as in test_device_page_day)."""

from __future__ import annotations

import json

from shared.labels import label
from tests.unit.notify.test_device_page_day import (
    CONNECTED,
    SERVICES,
    VOLUNTEER_ME,
    day,
    hello,
    said,
)

# The phone's position service: what the page asked of it, and a fix it can be given.
GPS = ("var gps = { watching: 0, fix: null }; navigator.geolocation = { "
       "watchPosition: (ok) => { gps.watching++; gps.fix = ok; return 7; }, "
       "clearWatch: () => { gps.watching--; }, getCurrentPosition: (ok) => { gps.fix = ok; } };")
BOOT = f"{CONNECTED} {SERVICES} {GPS} loadMe();"
SENT = "fetched.filter((f) => f.url.endsWith('/v1/me/position')).length"
# the phone gets a fix (one asked for before) and volunteers answers it (a fix on its way is
# given up after 4 s: the minute goes by in the next step); a minute goes by; then whether
# the page still watches, and how many fixes it sent meanwhile
FIX = (f"var before = {SENT}; gps.fix({{ coords: {{ latitude: 22.8, longitude: 108.3, "
       "accuracy: 5 }, timestamp: Date.now() }); null")
AFTER = f"later(60000); [gps.watching, {SENT} - before]"


def test_a_revoked_phone_stops_watching_its_position_and_sends_no_more_fixes() -> None:
    # A lost phone: the admin revokes its token and notify closes the socket with 4401. The
    # page took the orders off but kept the GPS on and sent a fix every few seconds with the
    # refused token, for as long as the page stayed open: a battery drained, and the phone's
    # whereabouts still asked of the phone on behalf of nobody.
    *_, sharing, _, after = day(
        hello(), "gps.watching",
        f"drop(4401); {FIX}", AFTER,
        boot=BOOT,
    )
    assert sharing == 1
    assert after == [0, 0]


def test_a_fix_refused_as_from_an_unknown_token_stops_the_sharing() -> None:
    # Revoked at volunteers before notify's socket heard of it: volunteers answers 401.
    revoked = ("var base = net; net = async (url, init) => url.endsWith('/v1/me/position') "
               "? [401, { error: { message: 'unknown or revoked token' } }] : base(url, init);")
    *_, after = day(
        hello(),
        f"{revoked} {FIX}", AFTER,
        boot=BOOT,
    )
    assert after == [0, 1]


def test_forgetting_the_token_stops_the_sharing() -> None:
    # A post's shared phone, handed on: the next holder's phone went on being followed.
    *_, after = day(
        hello(),
        f"forgetToken(); {FIX}", AFTER,
        boot=BOOT,
    )
    assert after == [0, 0]


def test_a_report_after_check_out_is_placed_where_the_member_is_on_a_phone_set_slow() -> None:
    # The phone's clock was set by hand ten minutes slow; Android stamps a fix with the
    # satellites' time, ten minutes ahead of it. The page took the last shared fix as "just
    # taken" for eleven minutes: a fight reported after the check-out, 2 km further on, was
    # placed where the member had checked out, and the nearest team sent there.
    checked_out = ("var base = net; net = async (url, init) => url.endsWith('/v1/me/shift/end') "
                   "? [200, { on_shift: false, status: 'off_duty', shift_member_ids: [], "
                   "open_orders: [], checked_out: true }] : base(url, init);")
    moved = ("navigator.geolocation.getCurrentPosition = (ok) => ok({ coords: { latitude: 22.87, "
             "longitude: 108.35, accuracy: 8 }, timestamp: Date.now() + 600000 });")
    *_, place = day(
        hello(),
        "gps.fix({ coords: { latitude: 22.85, longitude: 108.35, accuracy: 8 }, "
        "timestamp: Date.now() + 600000 })",
        f"{checked_out} shift('end')",
        f"later(300000); {moved} here()",
        boot=BOOT,
    )
    assert place["lat"] == 22.87


# Volunteers on a weak signal: each position PUT hangs until answered by `answers[i]`.
HANGING = ("var answers = []; var base = net; net = (url, init) => "
           "url.endsWith('/v1/me/position') ? new Promise((ok) => answers.push(ok)) "
           ": base(url, init);")
PUTS = "fetched.filter((f) => f.url.endsWith('/v1/me/position')).map((f) => f.body.lat)"


def taken(lat: float, accuracy: int) -> str:
    """A fix the phone just took (the 30 s one, which goes whatever the last went)."""
    return (f"onFix({{ coords: {{ latitude: {lat}, longitude: 108.3, accuracy: {accuracy} }}, "
            "timestamp: Date.now() }, true)")


def test_one_position_goes_at_a_time_and_the_newest_fix_waits_for_it() -> None:
    # On one bar of signal each PUT hung for minutes, and a fix every few seconds started
    # another: they took all the browser's connections to volunteers, and the member's
    # check-out or report queued behind them. One goes at a time; fixes taken meanwhile
    # wait, the newest in place of the others, and go once it is answered.
    *_, first, _, second, line, _, after = day(
        hello(),
        f"{HANGING} {taken(22.81, 5)}; {taken(22.82, 6)}; {taken(22.83, 7)}; null",
        PUTS,
        "answers[0]([200, {}]); null",
        PUTS,
        "text('posline')",
        "answers[1]([200, {}]); null",
        f"[{PUTS}, text('posline')]",
        boot=BOOT,
    )
    assert first == [22.81]
    assert second == [22.81, 22.83]  # the newest waiting fix, not the one it replaced
    # the line says the fix that went, not the one on its way
    assert line.startswith("已共享位置") and line.endswith("（±5 米）"), line
    assert after[0] == [22.81, 22.83] and after[1].endswith("（±7 米）"), after


def test_a_position_that_gets_no_answer_is_given_up_before_the_next_fix() -> None:
    # A fix later than the next one is worth nothing: waiting on it held a connection.
    *_, line, puts = day(
        hello(),
        f"{HANGING} {taken(22.81, 5)}; later(4000); null",
        "text('posline')",
        f"{taken(22.82, 5)}; {PUTS}",
        boot=BOOT,
    )
    assert line == said("position_not_sent", error=said("no_answer", seconds=4))
    assert puts == [22.81, 22.82]


def test_a_fix_waiting_when_the_sharing_stops_does_not_go() -> None:
    # The check-out went through elsewhere: volunteers refuses the fix on its way (409)
    # and the sharing stops; the fix that waited for it is not sent after it.
    *_, puts = day(
        hello(),
        f"{HANGING} {taken(22.81, 5)}; {taken(22.82, 5)}; "
        "answers[0]([409, { error: { message: 'not on the shift' } }]); null",
        PUTS,
        boot=BOOT,
    )
    assert puts == [22.81]


# The member checked in, not from this device: volunteers' GET /v1/me says so.
ELSEWHERE = {**VOLUNTEER_ME, "checked_in": True, "checked_in_here": False}
ANSWERS_ME = ("var record = {record}; var base2 = net; net = async (url, init) => "
              "url === 'https://vol.test/v1/me' ? [200, record] : base2(url, init);")
PANEL = "[text('dutystate'), text('posline'), byId.checkin.disabled, byId.checkout.disabled]"


def test_a_device_the_member_did_not_check_in_with_shares_nothing_and_says_so() -> None:
    # A tablet at home with the page open, the member on shift with their phone: deciding by
    # member, the page shared the tablet's position too, and the team moved 6 km on
    # dispatch's map. It says the member is checked in on another device; Check in makes it
    # the one (the answer says it is here now), and then it shares.
    me = ANSWERS_ME.format(record=json.dumps(ELSEWHERE))
    switched = ("var base3 = net; net = async (url, init) => url.endsWith('/v1/me/shift/start') "
                f"? [200, {{ ...{json.dumps(VOLUNTEER_ME['state'])}, checked_in_here: true }}] "
                ": base3(url, init);")
    *_, shared, panel, _, after = day(
        hello(),
        f"later(60000); [gps.watching, gps.fix === null, {SENT}]",
        PANEL,
        f"{switched} byId.checkin.onclick()",
        "[gps.watching, text('dutystate')]",
        boot=f"{CONNECTED} {SERVICES} {me} {GPS} loadMe();",
    )
    status = label("team_status", "available").upper()
    assert shared == [0, True, 0]  # never asked the phone for its position, sent nothing
    assert panel == [said("checked_in_elsewhere", status=status),
                     said("position_not_shared", why=said("shared_by_other_device")),
                     False, False], panel
    assert after == [1, status]


def test_a_fix_refused_as_from_another_device_stops_the_sharing_for_good() -> None:
    # Sharing from the phone, the member checks in on the tablet: volunteers refuses the
    # phone's next fix (409, not_this_device). The sharing stops and the shift, read anew,
    # says it is the tablet's: no fix after it, no read of the shift at every fix.
    refused = ("var base4 = net; net = async (url, init) => url.endsWith('/v1/me/position') "
               "? [409, { error: { code: 'not_this_device', message: 'not the one' } }] "
               f": url === 'https://vol.test/v1/me' ? [200, {json.dumps(ELSEWHERE)}] "
               ": base4(url, init);")
    reads = "fetched.filter((f) => f.url === 'https://vol.test/v1/me').length"
    *_, sharing, _, after, panel = day(
        hello(), "gps.watching",
        f"{refused} var reads = {reads}; {FIX}",
        f"later(60000); {FIX}; later(60000); [gps.watching, {SENT} - before, {reads} - reads]",
        "[text('dutystate'), text('posline')]",
        boot=BOOT,
    )
    assert sharing == 1
    assert after == [0, 0, 1], after  # the one refused fix was before `before`
    assert panel[1] == said("position_not_shared", why=said("shared_by_other_device"))
