"""The member's page when an answer crosses the order's end: an order that ended stays ended
(the page's script run in node, as tests/unit/test_pages.py runs it)."""

from __future__ import annotations

from tests.unit.test_pages import ORDER, deliver, run_page

WITHDRAWN = {"type": "order_withdrawn", "order_id": "ord_1"}
# The answering socket's own reply to its `acknowledged`, or a fan-out's: the answer was
# taken in Redis a moment before the deadline's withdrawal.
TAKEN = {"type": "order_state", "order_id": "ord_1", "state": "acknowledged",
         "answered": True, "response": "acknowledged"}
SHOWN = "const o = orders.get('ord_1'); [o.state, allowed(o.state, o.frame.kind)]"


def test_an_answers_reply_that_comes_after_the_withdrawal_does_not_bring_the_order_back(
) -> None:
    # The member pressed Acknowledge as the P1 deadline ran out: the answer went into Redis
    # first, the withdrawal right after, and this replica's fan-out listener told the socket
    # of the withdrawal before the answer's own reply was queued. The page must not show
    # the order live again (Acknowledged, with En route and On scene to press) until its
    # card silently vanishes: the team would drive to an incident given to another.
    *_, shown = run_page(
        f"{deliver(ORDER)}; respond('ord_1', 'acknowledged')",
        f"{deliver(WITHDRAWN)}; {deliver(TAKEN)}",
        SHOWN,
    )
    assert shown == ["withdrawn", []]


def test_an_answer_over_http_that_comes_back_after_the_withdrawal_does_not_bring_it_back(
) -> None:
    # The socket was down, so the page posted the answer; its 200 came back after the
    # withdrawal reached the page over the (re-opened) socket.
    *_, shown = run_page(
        f"{deliver(ORDER)}; {deliver(WITHDRAWN)}",
        "postAnswer('ord_1', { response: 'acknowledged' })",
        SHOWN,
    )
    assert shown == ["withdrawn", []]


def test_a_revision_that_reaches_a_declined_order_does_not_alarm() -> None:
    # The team declined (its reason given); the command room raised the incident to P1 in
    # the same moment. The member who just declined must not hear the order's alarm again.
    declined = {"type": "order_state", "order_id": "ord_1", "state": "declined",
                "answered": True, "response": "declined"}
    raised = {"type": "order_update", "order_id": "ord_1", "priority": "P1",
              "flags": ["weapon"]}
    *_, after = run_page(
        f"{deliver(ORDER)}; var beeps = 0; beep = () => {{ beeps++; }}",
        f"{deliver(declined)}; {deliver(raised)}",
        "const o = orders.get('ord_1'); [o.state, o.frame.priority, beeps]",
    )
    assert after == ["declined", "P2", 0]
