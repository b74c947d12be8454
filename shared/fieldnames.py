"""What a field name looks like: ours are ASCII identifiers. An unknown key unlike one (a
caller's number, a name: a members file exported without its header row) is the sender's
data, not a misspelt field, and no error, log or dead letter's reason names it back.

Apart from shared.http (which says so over HTTP) so that domain code, which imports no
transport, judges keys by the same rule; and what is wrong with a field is said here in the
API's words (`describe_field_error`) for the HTTP answers, the phones' frames and the roster
import alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def is_field_name(key: object) -> bool:
    """Whether `key` may be named back in an error: it looks like a field name."""
    return isinstance(key, str) and FIELD_NAME.match(key) is not None


# What a time must be, as the OpenAPI and the intake docs say it
ISO_TIME = "an ISO 8601 time with its offset (2026-12-05T08:00:00+08:00)"
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "literal_error": "is not one of the allowed values",
    # pydantic's "String should match pattern '^...$'" showed an integrator a regex; the
    # phones' frames and the roster import say what their ids look like (overrides)
    "string_pattern_mismatch": "has characters or a length that are not allowed",
    # pydantic's "Input should be a valid dictionary or instance of LocationIn" (a model's
    # field given a number, text or a list) named a Python class
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    # a field typed tuple[...] (ReviseIn's add_flags, evidence) is an array in the OpenAPI:
    # pydantic's "Input should be a valid tuple" named a Python type
    "tuple_type": "must be a list",
    # pydantic's "Input should have timezone info" (a time sent without its offset)
    "timezone_aware": f"must be {ISO_TIME}",
    "datetime_parsing": f"must be {ISO_TIME}",
    "datetime_from_date_parsing": f"must be {ISO_TIME}",
    "datetime_type": f"must be {ISO_TIME}",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
}
# A bound is told with its value (the schema's, never the caller's input): "points is too
# large" left a coordinator guessing the limit of an adjustment.
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}", "is too small"),
    "less_than_equal": ("le", "must be at most {}", "is too large"),
    "greater_than": ("gt", "must be greater than {}", "is too small"),
    "less_than": ("lt", "must be less than {}", "is too large"),
    "string_too_short": ("min_length", "must be at least {} character{} long", "is too short"),
    "string_too_long": ("max_length", "must be at most {} character{} long", "is too long"),
    # an array (evidence, add_flags are tuples: pydantic said "Tuple should have ...")
    "too_short": ("min_length", "must hold at least {} item{}", "has too few items"),
    "too_long": ("max_length", "must hold at most {} item{}", "has too many items"),
}


def describe_field_error(err: Mapping[str, Any],
                         overrides: Mapping[str, str] | None = None) -> str:
    """What is wrong with a field (one of pydantic's errors), in the API's words:
    pydantic's ("Input should be ...", and "Value error, " before a validator's own
    message) named its types, not the OpenAPI's. `overrides` are a reader's own words for
    some error types (what its ids look like). Pydantic's own messages never include the
    input value; ours neither."""
    kind = err["type"]
    if overrides and kind in overrides:
        return overrides[kind]
    # The choices are the schema's ('officer', 'auxiliary', ...), never the caller's input:
    # a coordinator who wrote a role in Chinese is told the words the roster takes.
    expected = (err.get("ctx") or {}).get("expected")
    if kind in ("literal_error", "enum") and isinstance(expected, str) and expected:
        return f"must be {expected}"
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind in _BOUNDS:
        name, told, untold = _BOUNDS[kind]
        bound = (err.get("ctx") or {}).get(name)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # a schema's 0.0 said as 0
        if not isinstance(bound, int | float):
            return untold
        return told.format(bound, "" if bound == 1 else "s")
    msg = str(err.get("msg") or "is invalid")
    return msg.removeprefix("Value error, ").replace("Input should", "must")
