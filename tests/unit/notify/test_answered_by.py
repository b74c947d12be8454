"""Who of the team answered: the `order_state` frame to the team's own sockets names the
member (their display name, never a phone number), and the member's page shows it on the
order's card, so a leader sees 「已接单 · 张三」 and two teammates do not both set off."""

from __future__ import annotations

from services.notify.domain.orders import state_frame
from shared.labels import label
from tests.unit.notify.test_device_page_day import day, deliver, hello
from tests.unit.test_pages import ORDER


def test_the_state_frame_names_the_member_who_answered_when_known() -> None:
    frame = state_frame("ord_1", state="acknowledged", answered=True,
                        response="acknowledged", member_name="张三")
    assert frame["member_name"] == "张三"
    # none known (an older record, a token without a name): the field is left out
    bare = state_frame("ord_1", state="acknowledged", answered=True, response="acknowledged")
    assert "member_name" not in bare


def _taken(**extra: object) -> dict[str, object]:
    return {"type": "order_state", "order_id": "ord_1", "state": "acknowledged",
            "answered": True, "response": "acknowledged", **extra}


def test_the_card_shows_who_took_the_order() -> None:
    card, = day(f"{hello()}; {deliver(ORDER)}; {deliver(_taken(member_name='张三'))}; "
                "text('o-ord_1')")
    assert f"{label('order_state', 'acknowledged', 'zh')} · 张三" in card


def test_the_card_names_who_answered_in_english_too() -> None:
    card, = day(f"{hello()}; {deliver(ORDER)}; {deliver(_taken(member_name='Li Wei'))}; "
                "text('o-ord_1')", languages=["en-GB"])
    assert f"{label('order_state', 'acknowledged', 'en').upper()} · Li Wei" in card


def test_a_frame_without_a_name_shows_the_state_alone() -> None:
    card, = day(f"{hello()}; {deliver(ORDER)}; {deliver(_taken())}; text('o-ord_1')")
    assert " · " not in card.split(label("order_state", "acknowledged", "zh"))[1][:3]
