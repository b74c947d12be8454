"""JSON text in ASCII, encoded by pydantic-core (a quarter of `json`'s cost).

The same text as `json.dumps` up to spacing and float notation: non-ASCII escaped, so a raw
U+2028 or U+0085 never ends a line for readers that split lines as Python does, and Lua's
cjson reads the same values. What pydantic-core cannot encode (a lone surrogate in some
text) goes through `json`, which escapes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticSerializationError, to_json


def ascii_json(value: Any, *, fallback: Callable[[Any], Any] | None = None) -> bytes:
    """`value` as ASCII JSON; `fallback` turns what JSON has no type for into what it has."""
    try:
        return to_json(value, fallback=fallback, ensure_ascii=True)
    except PydanticSerializationError:
        return json.dumps(value, default=fallback).encode()
