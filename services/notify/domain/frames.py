"""What a device may send on its socket, and how a bad frame is described (never echoed)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.events import EvidenceRecords, Response, TeamNote
from shared.fieldnames import describe_field_error, is_field_name

from .orders import ORDER_ID_PATTERN, OrderId


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Ping(_Frame):
    type: Literal["ping"]


class Pong(_Frame):
    type: Literal["pong"]


class Received(_Frame):
    type: Literal["received"]
    order_id: OrderId


class RespondFrame(_Frame):
    type: Literal["response"]
    order_id: OrderId
    response: Response
    note: TeamNote = None
    evidence: EvidenceRecords = None


class Holding(_Frame):
    """The orders a page still shows, sent when it (re)connects: those that ended while it
    was away are told to it (withdrawn, or where they ended)."""

    type: Literal["holding"]
    order_ids: list[OrderId] = Field(max_length=100)


class WarningRead(_Frame):
    """The member has read the danger warning of an order the team was taken off (a weapon):
    this device is not warned of it again when it reconnects."""

    type: Literal["warning_read"]
    order_id: OrderId


DeviceFrame = Annotated[Ping | Pong | Received | RespondFrame | Holding | WarningRead,
                        Field(discriminator="type")]
_ADAPTER: TypeAdapter[DeviceFrame] = TypeAdapter(DeviceFrame)
KNOWN_TYPES = ("ping", "pong", "received", "response", "holding", "warning_read")


class FrameError(Exception):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def frame(self, order_id: str | None = None) -> dict[str, str]:
        out = {"type": "error", "code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if order_id is not None:
            out["order_id"] = order_id
        return out


# what frames' ids look like; every other error in the API's words (describe_field_error)
_OWN_WORDS = {"string_pattern_mismatch": "is not an id (letters, digits, _ and - only)"}


def describe(err: Mapping[str, Any]) -> str:
    """What is wrong with a frame's field, as the HTTP answers say it."""
    return describe_field_error(err, _OWN_WORDS)


def parse_frame(raw: str | bytes, *, max_bytes: int) -> DeviceFrame:
    """A valid device frame, or FrameError with a code, a message and the field at fault."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise FrameError("too_large", f"frames are limited to {max_bytes} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise FrameError("bad_json", "the frame is not valid JSON") from None
    except RecursionError:
        # json's decoder recurses once per array or object: `[` * 3000 fits in a frame and
        # exhausts the interpreter's recursion limit.
        raise FrameError("bad_json", "the frame is nested too deeply") from None
    if not isinstance(data, dict):
        raise FrameError("bad_frame", "a frame must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in KNOWN_TYPES:
        raise FrameError(
            "unknown_type", f"type must be one of: {', '.join(KNOWN_TYPES)}", "type"
        )
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = [str(p) for p in first["loc"]]
        if loc and loc[0] == kind:  # the discriminator's tag leads the path
            loc = loc[1:]
        if first["type"] == "extra_forbidden" and loc and not is_field_name(loc[-1]):
            # a key that is no field name (a caller's number, a name) is the sender's data:
            # named by where it is, never echoed (as shared.http answers the same over HTTP)
            field = ".".join(loc[:-1]) or "(frame)"
            raise FrameError("invalid_field", f"{'the frame' if field == '(frame)' else field} "
                             "holds a key that is no known field (not shown: it is not a "
                             "field name)", field) from None
        field = ".".join(loc) or "(frame)"
        message = describe(first)
        raise FrameError("invalid_field", f"{field} {message}", field) from None


def order_id_of(raw: str | bytes) -> str | None:
    """The order a bad frame was about, when it can be read, so the device can match the error."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("order_id"), str):
        value = data["order_id"]
        return value if re.fullmatch(ORDER_ID_PATTERN, value) else None
    return None


class RateLimiter:
    """A token bucket per socket: `burst` frames at once, `rate` per second after that."""

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def allow(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
