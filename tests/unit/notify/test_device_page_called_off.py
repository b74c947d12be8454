"""The member's page when the command room takes back an order the team had taken (another
team given it, a weapon reported and volunteers taken off it, the incident closed): the
team may be on its way with the phone in a pocket (the page's script runs in node, as in
test_device_page_day)."""

from __future__ import annotations

import json

from tests.unit.notify.test_device_page_day import day, deliver, hello, said
from tests.unit.test_pages import ORDER

EN_ROUTE = {"type": "order_state", "order_id": "ord_1", "state": "en_route", "answered": True,
            "response": "en_route"}
WITHDRAWN = deliver({"type": "order_withdrawn", "order_id": "ord_1"})
# the phone's alarm and vibration, counted; its screen locked, the page hidden
POCKET = ("var beeps = 0, buzzes = 0; beep = () => { beeps++; }; "
          "navigator.vibrate = () => { buzzes++; }; document.hidden = true;")
UNLOCK = ("document.hidden = false; "
          "(listeners.visibilitychange || []).forEach((fn) => fn());")
# the page names the order as the member reads it: P2, its word, the category's name
TAKEN_BACK = said("withdrawn", what="P2紧急 纠纷")


def test_a_team_on_its_way_is_alerted_when_its_order_is_withdrawn() -> None:
    # Volunteers on their way to a fight; the caller rings back: a knife. The command room
    # takes the volunteers off it. Their card said WITHDRAWN for 15 s, without a sound, and
    # went: the phone in a pocket never said so, and at the scene the page showed "No
    # orders." as if nothing had been sent. They walked into a knife fight alone.
    *_, alerted, card = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(EN_ROUTE)}; {POCKET}",
        f"{WITHDRAWN}; [beeps > 0 || buzzes > 0, toasts.slice()]",
        f"later(600000); {UNLOCK} later(60000); text('o-ord_1')",
    )
    assert alerted[0] is True
    assert [t for t in alerted[1] if t.startswith(TAKEN_BACK) and said("called_off") in t]
    assert card is not None and said("called_off") in card  # still there to be read


def test_a_member_whose_acknowledgement_had_no_signal_is_alerted_too() -> None:
    # Acknowledged in a dead spot: the answer waits for a signal, the deadline runs out and
    # the order goes to another team; the member is on the way all the same.
    *_, alerted = day(
        f"{hello()}; {deliver(ORDER)}; drop(1006); respond('ord_1', 'acknowledged')",
        f"later(2000); ws.readyState = 1; ws.onopen(); {hello()}; {POCKET}",
        f"{WITHDRAWN}; [beeps > 0, toasts.slice()]",
    )
    assert alerted[0] is True and [t for t in alerted[1] if t.startswith(TAKEN_BACK)]


def test_a_withdrawn_card_the_member_has_read_goes_at_their_press() -> None:
    *_, after = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(EN_ROUTE)}; {WITHDRAWN}",
        "$('o-ord_1').children.find((c) => c.tagName === 'button').onclick(); "
        "[text('o-ord_1'), orders.size]",
    )
    assert after == [None, 0]


def test_the_lock_screen_says_the_order_was_withdrawn() -> None:
    locked = ("var shown = []; window.Notification = function () {}; "
              "window.Notification.permission = 'granted'; Notification = window.Notification; "
              "navigator.serviceWorker = { getRegistration: async () => ({ "
              "showNotification: async (title, o) => { shown.push(title); }, "
              "getNotifications: async () => [] }) };")
    *_, shown = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(EN_ROUTE)}; {POCKET} {locked}",
        f"{WITHDRAWN}",
        "shown",
    )
    assert TAKEN_BACK in shown, shown


def test_an_order_withdrawn_before_anyone_took_it_only_stops_ringing() -> None:
    # Nobody answered it (the deadline passed): the team is not on its way. Its card goes as
    # before, without an alarm of its own.
    *_, after = day(
        f"{hello()}; {deliver(ORDER)}; {POCKET} beeps = 0",
        f"{WITHDRAWN}; later(60000); [beeps, text('o-ord_1')]",
    )
    assert after == [0, None]


ON_SCENE = {"type": "order_state", "order_id": "ord_1", "state": "on_scene", "answered": True,
            "response": "on_scene"}
# dispatch took the volunteers off because the incident's flags now bar them (a weapon)
BARRED = deliver({"type": "order_withdrawn", "order_id": "ord_1", "barred_by": ["weapon"]})
LEAVE = said("barred_leave", flags="持械")


def test_a_volunteer_on_scene_taken_off_for_a_weapon_is_told_why_and_to_leave() -> None:
    # Volunteers at a help request, on scene; the caller rings back: the man there has a
    # knife. Dispatch takes the volunteers off. Their page said only "Do not go: the command
    # room withdrew this order", to people already standing there, and nothing of the knife.
    *_, alerted, card = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(ON_SCENE)}; {POCKET}",
        f"{BARRED}; [beeps > 0 || buzzes > 0, toasts.slice()]",
        f"later(600000); {UNLOCK} later(60000); text('o-ord_1')",
    )
    assert alerted[0] is True
    assert [t for t in alerted[1] if LEAVE in t], alerted[1]
    assert card is not None and LEAVE in card and said("called_off") not in card


def test_an_order_nobody_had_answered_taken_off_for_a_weapon_still_says_so() -> None:
    # The member read the order and set off before pressing anything: the knife is told
    # them all the same, and the card stays until read.
    *_, alerted, card = day(
        f"{hello()}; {deliver(ORDER)}; {POCKET} beeps = 0",
        f"{BARRED}; [beeps > 0 || buzzes > 0, toasts.slice()]",
        f"later(60000); {UNLOCK} text('o-ord_1')",
    )
    assert alerted[0] is True and [t for t in alerted[1] if LEAVE in t]
    assert card is not None and LEAVE in card


def test_the_lock_screen_says_a_weapon_took_the_volunteers_off() -> None:
    locked = ("var shown = []; window.Notification = function () {}; "
              "window.Notification.permission = 'granted'; Notification = window.Notification; "
              "navigator.serviceWorker = { getRegistration: async () => ({ "
              "showNotification: async (title, o) => { shown.push(title + ' | ' + o.body); }, "
              "getNotifications: async () => [] }) };")
    *_, shown = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(EN_ROUTE)}; {POCKET} {locked}",
        f"{BARRED}",
        "shown",
    )
    assert [s for s in shown if LEAVE in s], shown


# notify's warning to a page that does not show the order (reloaded with no signal, a browser
# restarted, a teammate's phone connecting later): the withdrawal with the order itself
AWAY_ORDER = {**ORDER, "type": "order", "address": "Minzu Ave 88"}
WARNED = deliver({"type": "order_withdrawn", "order_id": "ord_1", "barred_by": ["weapon"],
                  "order": AWAY_ORDER, "withdrawn_at": "2026-12-07T14:02:00+00:00"})
PRESS_OK = "$('o-ord_1').children.find((c) => c.tagName === 'button').onclick()"
READ = "ws.sent.filter((f) => f.type === 'warning_read').map((f) => f.order_id)"


def test_a_reloaded_page_is_warned_of_a_weapon_at_an_order_it_no_longer_shows() -> None:
    # On scene; the phone lost its signal and the browser reloaded it: the order list is
    # gone. The caller rang back meanwhile (a knife) and volunteers were taken off. notify
    # sent only the team's live orders: the page showed no orders, and no word of the knife.
    *_, alerted, card = day(
        f"{hello()}; {POCKET} beeps = 0",
        f"{WARNED}; [beeps > 0 || buzzes > 0, toasts.slice()]",
        f"later(600000); {UNLOCK} later(60000); text('o-ord_1')",
    )
    assert alerted[0] is True
    assert [t for t in alerted[1] if t.startswith(TAKEN_BACK) and LEAVE in t], alerted[1]
    assert card is not None and LEAVE in card and "Minzu Ave 88" in card  # which scene
    assert said("called_off") not in card


def test_the_member_s_ok_tells_notify_the_warning_was_read() -> None:
    *_, read, after = day(
        f"{hello()}; {WARNED}",
        f"{PRESS_OK}; {READ}",
        "[text('o-ord_1'), orders.size]",
    )
    assert read == ["ord_1"] and after == [None, 0]


def test_ok_on_a_weapon_card_the_page_had_tells_notify_too() -> None:
    # read on the page that had the order: a reload of it is not warned again
    *_, read = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(ON_SCENE)}; {BARRED}",
        f"{PRESS_OK}; {READ}",
    )
    assert read == ["ord_1"]


def test_a_warning_for_an_order_the_page_shows_or_without_a_flag_adds_no_card() -> None:
    plain = deliver({"type": "order_withdrawn", "order_id": "ord_2", "order": {
        **AWAY_ORDER, "order_id": "ord_2"}})
    *_, cards = day(
        f"{hello()}; {deliver(ORDER)}; {deliver(ON_SCENE)}; {BARRED}; {WARNED}; {plain}",
        "[orders.size, text('o-ord_2'), "
        "toasts.filter((t) => t.includes(" + json.dumps(LEAVE) + ")).length]",
    )
    assert cards == [1, None, 1]
