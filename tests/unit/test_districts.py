"""A reporting system's key (intake) and a desk's token (dispatch) are made only for districts
volunteers' roster holds: a misspelt one, or one never imported, would scope a key whose
reports land where no team is and no desk looks. Volunteers not saying is no yes."""

from __future__ import annotations

import httpx
import pytest

from shared.districts import require_known_districts
from shared.http import ApiError, TryAgain

ROSTER = {"districts": ["Chaoyang", "Haidian"]}


async def check(districts: list[str], handler: httpx.MockTransport) -> None:
    async with httpx.AsyncClient(transport=handler) as http:
        await require_known_districts(http, districts, volunteers_url="http://volunteers/",
                                      key="the-services-key")


async def test_districts_of_the_roster_pass_and_volunteers_is_asked_with_the_services_key() -> None:
    asked: list[httpx.Request] = []

    def roster(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json=ROSTER)

    await check(["Haidian", "Chaoyang"], httpx.MockTransport(roster))
    (request,) = asked
    assert str(request.url) == "http://volunteers/v1/districts"
    assert request.headers["authorization"] == "Bearer the-services-key"


@pytest.mark.parametrize(("districts", "field"), [(["chaoyang"], "districts.0"),
                                                  (["Haidian", "Xicheng", "x"], "districts.1")])
async def test_a_district_the_roster_does_not_hold_is_a_422_naming_it_and_the_known_ones(
        districts: list[str], field: str) -> None:
    with pytest.raises(ApiError) as refused:
        await check(districts, httpx.MockTransport(lambda _: httpx.Response(200, json=ROSTER)))
    error = refused.value
    assert (error.status, error.code, error.field) == (422, "invalid_field", field)
    assert "Chaoyang, Haidian" in error.message and "POST /v1/roster/import" in error.message
    # DESIGN: a message never echoes the request body
    assert "chaoyang" not in error.message and "Xicheng" not in error.message


async def test_a_city_of_districts_is_named_in_part_with_how_many_more() -> None:
    city = {"districts": [f"district-{n:02}" for n in range(50)]}
    with pytest.raises(ApiError) as refused:
        await check(["d1"], httpx.MockTransport(lambda _: httpx.Response(200, json=city)))
    assert "district-00" in refused.value.message and "and 30 more" in refused.value.message
    assert "district-49" not in refused.value.message


async def test_before_any_import_the_refusal_says_the_roster_holds_no_district() -> None:
    with pytest.raises(ApiError) as refused:
        await check(["d1"], httpx.MockTransport(
            lambda _: httpx.Response(200, json={"districts": []})))
    assert "no district" in refused.value.message
    assert "POST /v1/roster/import" in refused.value.message


def _away(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("volunteers away", request=request)


@pytest.mark.parametrize("answer", [
    httpx.MockTransport(_away),
    httpx.MockTransport(lambda _: httpx.Response(503)),
    httpx.MockTransport(lambda _: httpx.Response(404)),  # a volunteers without the route
    httpx.MockTransport(lambda _: httpx.Response(200, content=b"<html>")),
    httpx.MockTransport(lambda _: httpx.Response(200, json={"districts": "d1"})),
])
async def test_volunteers_not_saying_is_a_try_again_never_a_yes(
        answer: httpx.MockTransport) -> None:
    with pytest.raises(TryAgain) as unknown:
        await check(["d1"], answer)
    assert "volunteers" in str(unknown.value)
