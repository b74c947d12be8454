"""When an amendment raises an order the team has already answered: only what is news to a
member who is on the way (a higher priority, a knife, someone hurt), never a sooner
acknowledge-by, which no longer bounds anything (tests/unit/notify/test_raised_orders.py
has the rule for an order nobody answered)."""

from __future__ import annotations

from datetime import timedelta

from services.notify.domain.orders import raised

from .test_orders import ACK_BY, order


def test_a_sooner_deadline_alone_raises_only_an_order_nobody_answered() -> None:
    before = order("security", priority="P2", flags=())
    sooner = before.model_copy(update={"ack_by": ACK_BY - timedelta(seconds=20)})
    assert raised(before, sooner)
    assert raised(before, sooner, answered=False)
    # acknowledged: its update would say only "本组已接单", nothing the team does not know
    assert not raised(before, sooner, answered=True)


def test_a_higher_priority_or_an_urgent_flag_raises_an_answered_order() -> None:
    before = order("security", priority="P2", flags=())
    sooner = ACK_BY - timedelta(seconds=20)
    assert raised(before, before.model_copy(update={"priority": "P1"}), answered=True)
    assert raised(before, before.model_copy(update={"flags": ("weapon",)}), answered=True)
    assert raised(before, before.model_copy(update={"priority": "P1", "ack_by": sooner}),
                  answered=True)
    assert not raised(before, before.model_copy(update={"flags": ("vip",), "ack_by": sooner}),
                      answered=True)
