"""The member's page when a request of its own does not go (no network, no answer on a weak
signal, a service refusing it): it says so in the member's language, never with the
browser's own untranslated words for a failed fetch, and a request that hangs is given up
where waiting on it would leave the page stuck or the member misled (the page's script runs
in node, as in test_device_page_day)."""

from __future__ import annotations

import json

import pytest

from tests.unit.notify.test_device_page_day import CONNECTED, SERVICES, day, hello, said

# What a browser's fetch says with no network: Chrome, Firefox, Safari (a TypeError each).
BROWSERS = ["Failed to fetch", "NetworkError when attempting to fetch resource.", "Load failed"]
PHONE = "$('phone').value = '+8613800000000'; $('sms').onclick()"
# a request of the page's, what the member is told when it does not go, and the step that
# makes it (the district's services answering everything else)
READS = [
    ("/v1/devices/me", "device_not_read", "loadMe()"),
    ("https://vol.test/v1/me", "shift_not_read", "loadMe()"),
    ("https://intake.test/v1/categories", "categories_not_read", "loadMe()"),
    ("/v1/devices/me/sms", "phone_not_saved", f"loadMe(); {PHONE}"),
]


def failing(url: str, answer: str) -> str:
    """The district's services as they answer (SERVICES), but `url`, answered by `answer`
    (a JS expression: a result, or one that throws)."""
    return (f"{SERVICES} var base = net; net = async (url, init) => url === {json.dumps(url)} "
            f"? {answer} : base(url, init);")


def offline(message: str) -> str:
    return f"(() => {{ throw new TypeError({json.dumps(message)}); }})()"


@pytest.mark.parametrize("browser", BROWSERS)
@pytest.mark.parametrize(("url", "told", "step"), READS)
def test_a_request_without_network_is_said_in_the_members_words(
        url: str, told: str, step: str, browser: str) -> None:
    # A member in a lift read "Failed to fetch" (or Firefox's, or Safari's words), in English
    # on a Chinese page, and nothing of what had not been read or saved.
    _, toasts = day(f"{failing(url, offline(browser))} {step}", "toasts.slice()")
    assert said(told, why=said("no_connection")) in toasts, toasts
    assert not [t for t in toasts if browser in t], toasts


@pytest.mark.parametrize(("url", "told", "step"), READS)
def test_a_request_refused_says_the_services_own_reason(url: str, told: str, step: str) -> None:
    reason = "unknown or revoked token"
    refused = f"[401, {{ error: {{ code: 'unauthorized', message: {json.dumps(reason)} }} }}]"
    _, toasts = day(f"{failing(url, refused)} {step}", "toasts.slice()")
    assert said(told, why=reason) in toasts, toasts


def test_the_devices_read_given_up_is_asked_again_at_the_next_hello() -> None:
    # The page reopened on a weak signal: its read of the device (what shows the duty panel
    # and the report form) hung, and as one read goes at a time, each hello after found it
    # still on its way and asked nothing: no check-in and no report until it gave up, minutes
    # later, if ever.
    hangs = "new Promise(() => {})"
    asked = "fetched.filter((f) => f.url === '/v1/devices/me').length"
    *_, toasts, _, after = day(
        f"{failing('/v1/devices/me', hangs)} loadMe(); null",
        "later(20000)",
        "toasts.slice()",
        f"{SERVICES} {hello()}",  # a signal again, the socket back
        f"[{asked}, fetched.some((f) => f.url === 'https://vol.test/v1/me')]",
    )
    assert said("device_not_read", why=said("no_answer", seconds=20)) in toasts, toasts
    assert after == [2, True]


def test_saving_the_phone_that_gets_no_answer_is_given_up_and_said() -> None:
    hangs = "new Promise(() => {})"
    *_, toasts = day(
        f"{failing('/v1/devices/me/sms', hangs)} loadMe(); {PHONE}; null",
        "later(20000)",
        "toasts.slice()",
    )
    assert said("phone_not_saved", why=said("no_answer", seconds=20)) in toasts, toasts


# The phone's position service, giving a fix as soon as it is watched.
GPS = ("navigator.geolocation = { watchPosition: (ok) => { Promise.resolve().then(() => ok({ "
       "coords: { latitude: 22.8, longitude: 108.3, accuracy: 5 }, timestamp: Date.now() })); "
       "return 7; }, "
       "clearWatch() {}, getCurrentPosition() {} };")


@pytest.mark.parametrize("browser", BROWSERS)
def test_a_position_not_sent_without_network_says_so_in_the_members_words(browser: str) -> None:
    # The duty panel's line stays until the next fix: "Position not sent: Failed to fetch".
    _, line = day(
        f"{GPS} {failing('https://vol.test/v1/me/position', offline(browser))} loadMe()",
        "text('posline')",
    )
    assert line == said("position_not_sent", error=said("no_connection"))


def test_alerts_not_enabled_without_network_say_so_in_the_members_words() -> None:
    push = ("Notification = { requestPermission: async () => 'granted' }; "
            "b64ToBytes = () => new Uint8Array(65); navigator.serviceWorker = { "
            "register: async () => ({ pushManager: { subscribe: async () => ({ "
            "toJSON: () => ({ endpoint: 'https://push.test/1' }) }) } }) };")
    *_, toasts = day(
        f"{failing('/v1/devices/me/webpush', offline('Failed to fetch'))} loadMe()",
        "info.webpush.public_key = 'key'; " + push + " $('push').onclick(); null",
        "toasts.slice()",
    )
    assert said("alerts_failed", error=said("no_connection")) in toasts, toasts


# The browser's push subscription, and whether it was ended.
SUBSCRIBED = ("var unsubscribed = false; navigator.serviceWorker = { getRegistration: async () => "
              "({ pushManager: { getSubscription: async () => ({ unsubscribe: async () => { "
              "unsubscribed = true; return true; } }) } }) };")


def test_forgetting_the_token_ends_the_push_subscription_though_notify_does_not_answer() -> None:
    # A post's shared phone handed on, on a weak signal: notify's DELETE of the device's
    # push subscription hung, and the browser's own subscription, ended only after it, was
    # not: the next holder's phone kept ringing with the former holder's team's orders.
    *_, ended = day(
        f"{SUBSCRIBED} net = () => new Promise(() => {{}}); forgetToken(); null",
        "later(20000)",
        "unsubscribed",
        boot=CONNECTED,
    )
    assert ended is True


# A gateway between the phone and the service answers with an HTML page of its own (no JSON,
# no reason of the service's): a 502 when the service is away, a 500 when it failed.
GATEWAY = ("var through = fetch; fetch = async (url, init) => { const r = await through(url, init); "
           "if (r.status >= 500) r.json = async () => { throw new SyntaxError("
           "\"Unexpected token '<', \\\"<html>\\\" is not valid JSON\"); }; return r; };")
NOT_ANSWERED = [(502, "server_busy_reason"), (503, "server_busy_reason"),
                (500, "server_no_reason")]


@pytest.mark.parametrize(("status", "why"), NOT_ANSWERED)
@pytest.mark.parametrize(("url", "told", "step"), READS)
def test_a_request_refused_with_no_reason_is_said_in_the_members_words(
        url: str, told: str, step: str, status: int, why: str) -> None:
    # The member read "HTTP 502", the page's own debugging words, on a Chinese page.
    _, toasts = day(f"{GATEWAY} {failing(url, f'[{status}, null]')} {step}", "toasts.slice()")
    assert said(told, why=said(why, status=status)) in toasts, toasts
    assert not [t for t in toasts if "HTTP" in t], toasts


def test_a_position_refused_with_no_reason_says_the_server_is_busy() -> None:
    _, line = day(
        f"{GPS} {GATEWAY} {failing('https://vol.test/v1/me/position', '[504, null]')} loadMe()",
        "text('posline')",
    )
    assert line == said("position_not_sent", error=said("server_busy_reason", status=504))
