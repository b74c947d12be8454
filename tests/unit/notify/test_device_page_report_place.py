"""Where a member's report from the street says it happened: the phone's fix, only when it
places the scene. A phone indoors or under a flyover knows itself to a kilometre or two (its
cell tower); sent as the place, the team goes where nothing is, the zone's station may be
another, and intake may join the report to another incident of its kind within 200 m of
that wrong place, sending nobody for it. The page runs in node (test_device_page_day)."""

from __future__ import annotations

from tests.unit.notify.test_device_page_day import POSTED, REPORT_SETUP, day, report, said

COARSE_THEN_GPS = (
    "var fixes = [1500, 12]; navigator.geolocation = { watchPosition: () => 1, clearWatch() {},"
    " getCurrentPosition: (ok) => { const accuracy = fixes.shift();"
    " ok({ coords: { latitude: accuracy > 100 ? 22.87 : 22.85, longitude: 108.35, accuracy },"
    " timestamp: Date.now() }); } };")
ALWAYS_COARSE = (
    "navigator.geolocation = { watchPosition: () => 1, clearWatch() {},"
    " getCurrentPosition: (ok) => ok({ coords: { latitude: 22.87, longitude: 108.35,"
    " accuracy: 1800 }, timestamp: Date.now() }) };")
# the position the page shares on shift, ten seconds ago: the cell tower's
SHARED_COARSE = ("onFix({ coords: { latitude: 22.87, longitude: 108.35, accuracy: 1500 },"
                 " timestamp: Date.now() - 10000 }, true)")


def test_a_coarse_fix_is_not_the_reports_place_a_gps_fix_is() -> None:
    *_, posted = day(
        f"{COARSE_THEN_GPS} {REPORT_SETUP}",
        SHARED_COARSE,
        "fixes = [12]; " + report("hazard_report", "manhole cover missing"),
        POSTED,
    )
    (sent,) = posted
    assert sent["location"] == {"lat": 22.85, "lon": 108.35}


def test_a_report_from_a_phone_that_cannot_place_itself_is_not_sent_and_says_why() -> None:
    *_, posted, told = day(
        f"{ALWAYS_COARSE} {REPORT_SETUP}",
        report("hazard_report", "manhole cover missing"),
        POSTED,
        "toasts[toasts.length - 1]",
    )
    assert posted == []
    assert told == said("not_reported", why=said("too_coarse", metres=1800))
