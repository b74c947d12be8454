"""The member's page's alarm on a phone's browser, which lets a page make a sound only once
the member has touched it (the page's script runs in node, as in test_device_page_day)."""

from __future__ import annotations

from tests.unit.notify.test_device_page_day import day, deliver, hello
from tests.unit.test_pages import ORDER

# A browser's AudioContext: made before the member touched the page, it stays suspended
# (silent) until resume() is called, which counts only within a touch.
AUDIO = """
var touching = false;
window.AudioContext = class {
  constructor() { this.state = "suspended"; this.currentTime = 0; this.destination = {}; }
  resume() { if (touching) this.state = "running"; return Promise.resolve(); }
  createOscillator() { return { frequency: {}, connect: (g) => g, start() {}, stop() {} }; }
  createGain() { return { gain: { setValueAtTime() {}, exponentialRampToValueAtTime() {} },
                          connect: (d) => d }; }
};
function touch(type) { touching = true; (listeners[type] || []).forEach((fn) => fn({})); touching = false; }
"""


def test_a_page_reopened_with_its_token_rings_once_the_member_has_touched_it() -> None:
    # Android killed the tab; the member reopened it and the page connected by itself with
    # the token it kept. The first order's alarm made the page's sound, suspended for want of
    # a touch, and nothing ever resumed it but the Connect and Test buttons: each order's
    # alarm rang silent for the rest of the shift, though the member had since checked in,
    # acknowledged, tapped about the page.
    *_, hint, after = day(
        f"{AUDIO} ws.readyState = 1; ws.onopen(); {hello()}; {deliver(ORDER)}; "
        "[audio.state, $('sound').hidden]",
        "touch('pointerdown'); [audio.state, $('sound').hidden]",
        boot="", storage={"lf_token": "dev-token"},  # the page connects by itself
    )
    assert hint == ["suspended", False]  # the page says a touch is wanted
    assert after == ["running", True]


def test_a_member_who_pressed_connect_is_not_asked_to_touch_the_page() -> None:
    *_, hidden = day(
        f"{AUDIO} touching = true; $('token').value = 'dev-token'; connect(); "
        "touching = false; $('sound').hidden",
        boot="",
    )
    assert hidden is True
