"""The member's page and the phone's position over a shift: shared only on behalf of a
token still good (the page's script runs in node, as in test_device_page_day)."""

from __future__ import annotations

from tests.unit.notify.test_device_page_day import CONNECTED, SERVICES, day, hello

# The phone's position service: what the page asked of it, and a fix it can be given.
GPS = ("var gps = { watching: 0, fix: null }; navigator.geolocation = { "
       "watchPosition: (ok) => { gps.watching++; gps.fix = ok; return 7; }, "
       "clearWatch: () => { gps.watching--; }, getCurrentPosition: (ok) => { gps.fix = ok; } };")
BOOT = f"{CONNECTED} {SERVICES} {GPS} loadMe();"
SENT = "fetched.filter((f) => f.url.endsWith('/v1/me/position')).length"
# the phone gets a fix (one asked for before), a minute goes by; then whether the page still
# watches, and how many fixes it sent meanwhile
FIX = (f"var before = {SENT}; gps.fix({{ coords: {{ latitude: 22.8, longitude: 108.3, "
       "accuracy: 5 }, timestamp: Date.now() }); later(60000)")
AFTER = f"[gps.watching, {SENT} - before]"


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
