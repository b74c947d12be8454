"""shared.http: a wrong field is told in the API's own words, never pydantic's. A time sent
without its offset was told "Input should have timezone info", a number for a time "Value
error, must be an ISO 8601 time with its offset, as text" (our own message behind pydantic's
prefix), a limit not a number "Input should be a valid integer, unable to parse string as an
integer"; a 110 system's `reported_at` and a phone's position fix (volunteers' fast path)
alike."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.volunteers.api.positions import parse_fix
from shared.events import IsoTime
from shared.http import ApiError, _field_path, describe_field_error, install_error_handlers


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reported_at: IsoTime


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/reports")
    async def report(body: ReportIn, limit: int = 50) -> dict[str, str]:
        return {"ok": "yes"}

    return app


async def _error(body: object, query: str = "") -> dict[str, str]:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.post(f"/reports{query}", json=body)
    assert r.status_code == 422, r.text
    error: dict[str, str] = r.json()["error"]
    return error


def _in_our_words(message: str) -> None:
    assert "Input should" not in message
    assert "Value error" not in message


@pytest.mark.parametrize("value", ["2026-12-07T10:00:00", 12345])
async def test_a_time_without_its_offset_or_not_text_is_told_it_needs_an_iso_time_with_offset(
        value: object) -> None:
    error = await _error({"reported_at": value})
    assert error["field"] == "reported_at"
    _in_our_words(error["message"])
    assert error["message"].startswith("reported_at must be an ISO 8601 time with its offset")


async def test_a_query_number_that_is_no_number_is_told_it_must_be_a_whole_number() -> None:
    error = await _error({"reported_at": "2026-12-07T10:00:00+08:00"}, "?limit=abc")
    assert error == {"code": "invalid_field", "message": "limit must be a whole number",
                     "field": "limit"}


@pytest.mark.parametrize("value", ["2026-12-07T10:00:00", 12345])
def test_a_phones_fix_with_a_time_without_offset_is_told_so_in_the_apis_words(
        value: object) -> None:
    raw = f'{{"lat": 22.7, "lon": 108.3, "at": {value!r}}}'.replace("'", '"').encode()
    with pytest.raises(ApiError) as caught:
        parse_fix(raw)
    assert caught.value.field == "at"
    _in_our_words(caught.value.message)
    assert caught.value.message.startswith("at must be an ISO 8601 time with its offset")


class Adjustment(BaseModel):
    points: int = Field(ge=-100, le=100)
    reason: str = Field(min_length=2, max_length=5)
    radius_m: float = Field(gt=0, lt=5000)
    teams: list[str] = Field(max_length=2)
    tags: tuple[str, ...] = Field(min_length=1)
    code: str = Field(min_length=1)
    ref: str = Field(default="r", pattern=r"^[a-z]+$")


@pytest.mark.parametrize(("body", "said"), [
    ({"points": 101}, "points must be at most 100"),
    ({"points": -101}, "points must be at least -100"),
    ({"reason": "x"}, "reason must be at least 2 characters long"),
    ({"reason": "abcdef"}, "reason must be at most 5 characters long"),
    ({"radius_m": 0}, "radius_m must be greater than 0"),
    ({"radius_m": 5000}, "radius_m must be less than 5000"),
    ({"teams": ["a", "b", "c"]}, "teams must hold at most 2 items"),
    ({"tags": []}, "tags must hold at least 1 item"),
    ({"code": ""}, "code must be at least 1 character long"),
    ({"ref": "a b"}, "ref has characters or a length that are not allowed"),
])
def test_a_value_out_of_its_bounds_is_told_the_bound(body: dict[str, object], said: str) -> None:
    """A points adjustment of 101 was told "points is too large": the coordinator had to
    guess the limit (100)."""
    whole = {"points": 1, "reason": "ok", "radius_m": 1.0, "teams": [], "tags": ["a"],
             "code": "c"} | body
    with pytest.raises(ValidationError) as caught:
        Adjustment.model_validate(whole)
    err = caught.value.errors(include_url=False, include_input=False)[0]
    assert f"{_field_path(err['loc'])} {describe_field_error(err)}" == said


def test_a_phone_frame_and_a_roster_row_are_told_bounds_in_the_same_words() -> None:
    """The socket's frames and the roster import had tables of their own; they say what the
    HTTP answers say."""
    from services.notify.domain import frames
    from services.volunteers.domain import roster

    err = {"type": "less_than_equal", "loc": ("points",), "msg": "Input should be less than "
           "or equal to 100", "ctx": {"le": 100}}
    assert frames.describe(err) == roster.describe(err) == "must be at most 100"
    pattern = {"type": "string_pattern_mismatch", "loc": ("id",), "msg": "x", "ctx": {}}
    assert frames.describe(pattern) != roster.describe(pattern)  # each says its own ids


class Place(BaseModel):
    lat: float


class Report(BaseModel):
    location: Place


@pytest.mark.parametrize("value", [5, "Zhang San 13800000000", ["a"]])
def test_an_object_field_given_no_object_is_told_it_must_be_an_object(value: object) -> None:
    """A report's `location` sent as a number or text was told pydantic's "Input should be a
    valid dictionary or instance of LocationIn", in our words "must be a valid dictionary or
    instance of ...": a Python class's name where the OpenAPI says object. The table had
    only `model_attributes_type` (objects read from attributes, which no request is)."""
    with pytest.raises(ValidationError) as caught:
        Report.model_validate({"location": value})
    err = caught.value.errors(include_url=False, include_input=False)[0]
    assert describe_field_error(err) == "must be an object"
    from services.notify.domain import frames
    from services.volunteers.domain import roster
    assert frames.describe(err) == roster.describe(err) == "must be an object"
