"""The member's page says how many of the team's live orders notify's replay left out (a
police station's hand-overs waiting to be filed, more than a phone is sent), and says
nothing of it once none is (the page's script run in node, as test_device_page_day runs it)."""

from __future__ import annotations

from tests.unit.notify.test_device_page_day import day, deliver, hello, said

NOTICE = "[text('leftout'), $('leftout').hidden]"


def left_out(count: int, unanswered: int) -> str:
    return deliver({"type": "orders_left_out", "count": count, "unanswered": unanswered})


def test_the_page_says_how_many_live_orders_were_left_out_and_how_many_await_an_answer(
) -> None:
    before, taken, waiting, none = day(
        f"{hello()}; {NOTICE}",
        f"{left_out(101, 0)}; {NOTICE}",
        f"{left_out(103, 2)}; {NOTICE}",
        f"{left_out(0, 0)}; {NOTICE}",  # the station filed them
    )
    assert before == ["", True]
    assert taken == [said("left_out", count=101), False]
    assert waiting == [said("left_out_unanswered", count=103, unanswered=2), False]
    assert none == ["", True]


def test_a_new_socket_takes_the_notice_off_until_its_replay_says_it_again() -> None:
    # notify tells a socket only when some are left out: the socket after a drop, whose
    # replay leaves none out, says nothing of it
    (shown,) = day(f"{hello()}; {left_out(5, 0)}; {hello()}; {NOTICE}")
    assert shown == ["", True]
