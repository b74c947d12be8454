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
from pydantic import BaseModel, ConfigDict

from services.volunteers.api.positions import parse_fix
from shared.events import IsoTime
from shared.http import ApiError, install_error_handlers


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
