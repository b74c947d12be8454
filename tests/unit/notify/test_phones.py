"""A member's phone for SMS: the forms people type, as the gateway gets them (E.164)."""

from __future__ import annotations

import pytest

from services.notify.domain.phones import e164


@pytest.mark.parametrize("typed", [
    "13800138000", "138 0013 8000", "138-0013-8000", "+86 138 0013 8000", "+8613800138000",
    "0086 13800138000", "86 13800138000", "(+86) 138 0013 8000", " 13800138000 ",
])
def test_a_mainland_mobile_number_in_any_form_is_given_to_the_gateway_as_e164(
        typed: str) -> None:
    assert e164(typed) == "+8613800138000"


def test_another_countrys_number_keeps_its_code() -> None:
    assert e164("+852 9123 4567") == "+85291234567"
    assert e164("00852 9123 4567") == "+85291234567"


@pytest.mark.parametrize("typed", [
    "0771-1234567",  # a landline: no SMS
    "12345",  # too short for anything
    "91234567",  # a local number of somewhere: which country?
    "+86 0771 1234567",  # a landline with the country code
    "+86 1380013800",  # a digit short
    "1380013800a", "+", "++8613800138000",
])
def test_what_cannot_be_a_mobile_number_is_refused(typed: str) -> None:
    assert e164(typed) is None
