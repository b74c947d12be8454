"""An answer kept for lack of signal across a reload of the member's page: phones kill a tab
in the background and reload it, browsers restart. The page's script runs in node as in
test_device_page_day, here twice: the second run starts from the first one's localStorage."""

from __future__ import annotations

import json
from typing import Any

from services.notify.page_text import PAGE_TEXT
from tests.unit.notify.test_device_page_day import day, deliver, hello, said
from tests.unit.test_pages import ORDER

# the page opens by itself with the token kept in this browser; its socket opens
SELF_CONNECTED = "ws.readyState = 1; ws.onopen();"
KEPT = {"lf_token": "dev-token"}
POSTED = ("fetched.filter((f) => f.method === 'POST' && f.url.startsWith('/v1/orders/'))"
          ".map((f) => f.body.response)")
ACKNOWLEDGE = {"type": "response", "order_id": "ord_1", "response": "acknowledged"}


def answered_without_signal(response: str = "acknowledged", *then: str) -> list[Any]:
    """The member answers the order with the socket down and no network; the values of
    `then`, and last this browser's localStorage."""
    return day(
        f"{hello()}; {deliver(ORDER)}; sentFrames()",
        f"drop(1006); respond('ord_1', '{response}')",
        *then,
        "({ ...localStorage.items })",
        boot=SELF_CONNECTED, storage=KEPT,
    )


def reloaded(storage: dict[str, str], *steps: str) -> list[Any]:
    """The page loaded again in the same browser, its socket open."""
    return day(*steps, boot=SELF_CONNECTED, storage=storage)


def answers(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("type") == "response"]


def test_an_answer_kept_for_lack_of_signal_is_sent_once_after_a_reload() -> None:
    # Acknowledged in a lift; the phone killed the tab in the background and reloaded it
    # later. The answer lived only in the page's memory: notify never had it, the deadline
    # ran out and dispatch gave the incident to another team while this one went there.
    *_, storage = answered_without_signal()
    taken = {"type": "order_state", "order_id": "ord_1", "state": "acknowledged",
             "answered": True, "response": "acknowledged"}
    held, sent, again, card, left = reloaded(
        storage,
        f"{hello()}; sentFrames()",
        f"{deliver(ORDER)}; sentFrames()",
        f"{deliver(ORDER)}; sentFrames()",  # the order sent again (a receipt asked again)
        "text('o-ord_1')",
        f"{deliver(taken)}; later(60000); [sentFrames(), {POSTED}, localStorage.items.lf_answers]",
    )
    assert {"type": "holding", "order_ids": ["ord_1"]} in held
    assert answers(sent) == [ACKNOWLEDGE]
    assert answers(again) == []
    assert said("not_sent_yet", answer="接单") in card
    assert left == [[], [], None]  # taken: nothing more to send, nothing kept


def test_a_kept_answer_to_an_order_withdrawn_while_the_page_was_away_is_dropped() -> None:
    # The deadline ran out before the page came back: notify does not send the order (it
    # sends a team's live orders); the page names it as held and is told it was withdrawn.
    *_, storage = answered_without_signal()
    held, after = reloaded(
        storage,
        f"{hello()}; sentFrames()",
        f"{deliver({'type': 'order_withdrawn', 'order_id': 'ord_1'})}; later(60000); "
        f"[sentFrames(), {POSTED}, localStorage.items.lf_answers, text('o-ord_1')]",
    )
    assert {"type": "holding", "order_ids": ["ord_1"]} in held
    assert after == [[], [], None, None]  # no card: nothing to answer


def test_a_kept_answer_notify_already_has_is_not_sent_again_after_a_reload() -> None:
    # The answer went on a socket that died before its reply: notify has it, and tells the
    # reloaded page where the order stands, with the order.
    *_, storage = answered_without_signal()
    assert "lf_answers" in storage
    taken = {"type": "order_state", "order_id": "ord_1", "state": "acknowledged",
             "answered": True, "response": "acknowledged", "order": ORDER}
    _, after = reloaded(
        storage,
        f"{hello()}; sentFrames()",
        f"{deliver(taken)}; later(60000); [sentFrames(), {POSTED}, localStorage.items.lf_answers]",
    )
    assert after == [[], [], None]


def test_a_kept_answer_a_teammate_has_overtaken_is_not_sent_after_a_reload() -> None:
    # A teammate's phone said on scene meanwhile: this phone's acknowledgement, a step back,
    # would only be refused.
    *_, storage = answered_without_signal()
    assert "lf_answers" in storage
    ahead = {"type": "order_state", "order_id": "ord_1", "state": "on_scene",
             "answered": True, "response": "on_scene", "order": ORDER}
    _, after = reloaded(
        storage,
        f"{hello()}; sentFrames()",
        f"{deliver(ahead)}; later(60000); [sentFrames(), {POSTED}, localStorage.items.lf_answers]",
    )
    assert after == [[], [], None]


def test_a_kept_call_for_help_is_not_sent_after_a_reload_once_it_would_be_a_second_call(
) -> None:
    *_, storage = answered_without_signal("reinforce")
    _, sent, told = reloaded(
        storage,
        f"{hello()}; later(30000); sentFrames()",
        f"{deliver(ORDER)}; sentFrames()",
        "toasts",
    )
    assert answers(sent) == []
    assert told and told[-1] == said("help_again", button="请求增援")


def test_forgetting_the_token_drops_the_answers_kept_for_it() -> None:
    *_, kept, _, after = answered_without_signal(
        "acknowledged", "({ ...localStorage.items })", "forgetToken()")
    assert "lf_answers" in kept
    assert "lf_answers" not in after


def test_a_refused_token_drops_the_answers_kept_for_it() -> None:
    *_, kept, _, after = answered_without_signal(
        "acknowledged", "({ ...localStorage.items })",
        f"later(1000); ws.readyState = 1; ws.onopen(); {hello()}; drop(4401)")
    assert "lf_answers" in kept
    assert "lf_answers" not in after


def test_another_members_token_on_the_same_phone_does_not_send_the_kept_answer() -> None:
    # A post's shared phone: the next guard pasted their own token (or opened a link with
    # it) without the first one forgetting theirs. The answer is the first guard's.
    *_, storage = answered_without_signal()
    assert "lf_answers" in storage
    _, sent, left = reloaded(
        {**storage, "lf_token": "other-token"},
        f"{hello()}; sentFrames()",
        f"{deliver(ORDER)}; later(60000); sentFrames()",
        f"[{POSTED}, localStorage.items.lf_answers]",
    )
    assert answers(sent) == []
    assert left == [[], None]


def test_another_token_pasted_on_the_same_page_drops_the_kept_answer() -> None:
    *_, after, storage = answered_without_signal(
        "acknowledged",
        f"byId.token.value = 'other-token'; connect(); ws.readyState = 1; ws.onopen(); "
        f"{hello()}; {deliver(ORDER)}; sentFrames()")
    assert answers(after) == []
    assert "lf_answers" not in storage


def test_a_teammates_answer_heard_before_the_order_is_back_keeps_the_restored_answer() -> None:
    # "On scene" pressed in a basement, the tab reloaded. A teammate's "acknowledged" reaches
    # the socket before notify's replay brings the order back: notify tells every socket of
    # the team, also one without the order. The order is live: the answer still goes.
    *_, storage = answered_without_signal("on_scene")
    ahead = {"type": "order_state", "order_id": "ord_1", "state": "acknowledged",
             "answered": True, "response": "acknowledged"}
    _, kept, sent = reloaded(
        storage,
        f"{hello()}; sentFrames()",
        f"{deliver(ahead)}; localStorage.items.lf_answers",
        f"{deliver({**ahead, 'order': ORDER})}; sentFrames()",
    )
    assert kept is not None
    assert answers(sent) == [{"type": "response", "order_id": "ord_1", "response": "on_scene"}]


def test_a_kept_answer_the_page_cannot_read_does_not_stop_the_page_from_starting() -> None:
    # What this browser keeps may be spoilt (by hand, by an extension, by a page of another
    # version): read at every start, before the socket opens, it left the member's page
    # with no connection at each reload, and no order reached the phone.
    *_, storage = answered_without_signal()
    spoilt = json.loads(storage["lf_answers"])
    spoilt["answers"] = {"ord_1": None, "ord_2": {"sentAt": 1}}
    started, sent = reloaded(
        {**storage, "lf_answers": json.dumps(spoilt)},
        "sockets.length",
        f"{hello()}; {deliver(ORDER)}; sentFrames()",
    )
    assert started == 1
    assert answers(sent) == []


# the phone's alarm (each ring vibrates it)
RINGS = "var rang = 0; navigator.vibrate = () => { rang++; return true; };"
CHANGED = PAGE_TEXT["zh"]["changed_since_answer"].split("{what}")[0]


def test_a_kept_answer_is_not_sent_to_an_order_raised_while_the_page_was_away() -> None:
    # "Acknowledged" pressed in a lift on a P2 dispute; the tab reloaded. Meanwhile the
    # command room learnt of a knife: the order comes back P1 with a weapon. Sent as it was,
    # the acknowledgement went unseen and the member walked in expecting a quarrel (without
    # the reload the page had rung and said "order updated").
    *_, storage = answered_without_signal()
    raised = {**ORDER, "priority": "P1", "flags": ["weapon"], "instructions": "knife seen"}
    _, sent, after = reloaded(
        storage,
        f"{RINGS} {hello()}; sentFrames()",
        f"{deliver(raised)}; [sentFrames(), rang, toasts.at(-1), byId['o-ord_1'].className]",
        f"later(60000); [sentFrames(), {POSTED}, localStorage.items.lf_answers, rang]",
    )
    frames, rang, told, card = sent
    assert answers(frames) == []
    assert rang >= 1 and told.startswith(CHANGED) and "alert" in card.split()
    left, posted, kept, rang_on = after
    assert answers(left) == [] and posted == [] and kept is None
    assert rang_on > rang  # it rings on, as an order not answered


def test_a_kept_answer_from_before_versions_were_kept_is_not_sent() -> None:
    # A page of the version before kept no version with the answer: which order the member
    # answered is not known, so it is answered again.
    *_, storage = answered_without_signal()
    old = json.loads(storage["lf_answers"])
    for kept in old["answers"].values():
        kept.pop("version", None)
    _, sent = reloaded(
        {**storage, "lf_answers": json.dumps(old)},
        f"{RINGS} {hello()}; sentFrames()",
        f"{deliver(ORDER)}; later(60000); [sentFrames(), {POSTED}, localStorage.items.lf_answers, rang]",
    )
    frames, posted, kept, rang = sent
    assert answers(frames) == [] and posted == [] and kept is None and rang >= 1


def test_a_kept_answer_to_the_order_as_it_was_is_sent_once_after_a_reload() -> None:
    # The same order back, its flags in another order: the answer goes, once, with no alarm.
    order = {**ORDER, "flags": ["injury", "in_progress"], "instructions": "gate 3"}
    *_, storage = day(
        f"{hello()}; {deliver(order)}; sentFrames()",
        "drop(1006); respond('ord_1', 'declined')",
        "({ ...localStorage.items })",
        boot=f"{SELF_CONNECTED} prompt = () => 'flat tyre';", storage=KEPT,
    )
    _, sent, again = reloaded(
        storage,
        f"{RINGS} {hello()}; sentFrames()",
        f"{deliver({**order, 'flags': ['in_progress', 'injury']})}; [sentFrames(), rang]",
        f"{deliver(order)}; sentFrames()",
    )
    frames, rang = sent
    assert answers(frames) == [{"type": "response", "order_id": "ord_1", "response": "declined",
                                "note": "flat tyre"}]
    assert rang == 0
    assert answers(again) == []
