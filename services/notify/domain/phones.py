"""A member's phone number for SMS, as the gateway gets it: E.164 (+8613800138000)."""

from __future__ import annotations

import re

# A mainland mobile number: 11 digits, 13x to 19x. Landlines (0771 1234567) take no SMS.
_MAINLAND_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_SEPARATORS = re.compile(r"[\s().-]")

PHONE_RULE = ("a mobile number: 11 digits (13800138000, +86 optional) or + with the "
              "country code (+85291234567)")


def e164(phone: str) -> str | None:
    """The number in E.164, or None when it cannot be a mobile number.

    Members type it as they say it: with spaces or dashes (138 0013 8000), with or without
    +86, 0086 or 86. A gateway given `138 0013 8000` or a local form may refuse it or read
    it as another country's: the SMS would never come. Numbers of other countries need
    their + and country code (a local 8 digits is ambiguous)."""
    digits = _SEPARATORS.sub("", phone.strip())
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if digits.startswith("+"):
        national = digits[1:]
        if not national.isdigit():
            return None
        if national.startswith("86"):
            return digits if _MAINLAND_MOBILE.fullmatch(national[2:]) else None
        return digits if 8 <= len(national) <= 15 and national[0] != "0" else None
    if not digits.isdigit():
        return None
    if _MAINLAND_MOBILE.fullmatch(digits):
        return "+86" + digits
    if digits.startswith("86") and _MAINLAND_MOBILE.fullmatch(digits[2:]):
        return "+" + digits
    return None
