"""The command room's reads of one district, by the admin token, for a district volunteers'
roster does not hold (a typo, or never imported): a 422 naming `district` and the districts
the roster holds, not an empty board read as "no incidents". Dispatch in this process,
volunteers stood in (`roster_of`), or out of reach (the reads answer as before)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.dispatch import api
from tests.integration.notify.conftest import Volunteers, roster_of
from tests.integration.stream_probes import UNREACHABLE

from .conftest import console_of
from .test_close import ADMIN

# Each district-scoped read as the console asks it: (path, query) with {d} for the district.
READS = [
    ("/v1/incidents", {"district": "{d}"}),
    ("/v1/incidents", {"district": "{d}", "flagged": "true"}),
    ("/v1/incidents", {"district": "{d}", "ref": "110-1"}),
    ("/v1/reports-not-handled", {"district": "{d}"}),
    ("/v1/units", {"district": "{d}"}),
    ("/v1/zones", {"district": "{d}"}),
    ("/v1/kpis", {"district": "{d}"}),
    ("/v1/heatmap", {"district": "{d}"}),
    ("/v1/pipeline", {"district": "{d}"}),
    ("/v1/duty/{d}", {}),
]


async def read(console: httpx.AsyncClient, path: str, query: dict[str, str], district: str,
               headers: dict[str, str]) -> httpx.Response:
    return await console.get(path.format(d=district), headers=headers,
                             params={k: v.format(d=district) for k, v in query.items()})


@pytest.fixture
async def standin(clean_redis: str) -> AsyncIterator[tuple[Volunteers, httpx.AsyncClient]]:
    """Volunteers stood in, its roster holding d1 and d2 (nothing in either), and dispatch
    asking it."""
    async with (roster_of("d1", "d2") as volunteers,
                console_of(clean_redis, volunteers_url=volunteers.url) as console):
        yield volunteers, console


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time dispatch asks volunteers which districts the roster holds; what it read
    held for the whole test (whatever the machine's speed)."""
    monkeypatch.setattr(api, "ROSTER_FRESH_S", 3600.0)
    calls: list[str] = []
    real = api.known_districts

    async def counted(*args: Any, **kwargs: Any) -> list[str]:
        calls.append("asked")
        return await real(*args, **kwargs)

    monkeypatch.setattr(api, "known_districts", counted)
    return calls


@pytest.mark.parametrize(("path", "query"), READS)
async def test_the_admin_s_read_of_a_district_the_roster_does_not_hold_is_a_422_naming_it(
        standin: tuple[Volunteers, httpx.AsyncClient], path: str, query: dict[str, str]
        ) -> None:
    _, console = standin
    r = await read(console, path, query, "D1", ADMIN)  # the roster's names match exactly
    assert r.status_code == 422 and r.json()["error"]["field"] == "district", r.text
    message = r.json()["error"]["message"]
    assert "no such district in the roster" in message and "holds d1, d2 " in message, message
    # a district the roster holds, nothing in it yet: empty, as before (the zones: volunteers'
    # stand-in keeps none, so they are not loaded, as before)
    r = await read(console, path, query, "d2", ADMIN)
    assert r.status_code == (503 if path == "/v1/zones" else 200), r.text


async def test_a_desk_is_refused_another_district_as_before_without_asking_volunteers(
        standin: tuple[Volunteers, httpx.AsyncClient], asked: list[str]) -> None:
    _, console = standin
    r = await console.post("/v1/dispatchers", headers=ADMIN,
                           json={"name": "Wang Lei", "districts": ["d1"]})
    assert r.status_code == 201, r.text
    desk = {"Authorization": f"Bearer {r.json()['token']}"}
    asked.clear()  # (the token's districts were checked when it was made)
    for path, query in READS:
        for other in ("d2", "nowhere"):
            r = await read(console, path, query, other, desk)
            assert r.status_code == 403, (path, query, other, r.text)
        r = await read(console, path, query, "d1", desk)
        assert r.status_code == (503 if path == "/v1/zones" else 200), r.text
    assert asked == []


async def test_the_roster_s_districts_are_asked_once_for_the_admin_s_polls(
        standin: tuple[Volunteers, httpx.AsyncClient], asked: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The console polls every 3 s: volunteers is not asked at each read, only once what
    dispatch read of the roster is no longer fresh."""
    _, console = standin
    for _ in range(3):
        for path, query in READS:
            r = await read(console, path, query, "d1", ADMIN)
            assert r.status_code != 422, r.text
    assert asked == ["asked"]
    monkeypatch.setattr(api, "ROSTER_FRESH_S", 0.0)
    await read(console, "/v1/units", {"district": "{d}"}, "d1", ADMIN)
    assert asked == ["asked", "asked"]


async def test_a_district_imported_after_a_refusal_is_read_at_once(
        standin: tuple[Volunteers, httpx.AsyncClient]) -> None:
    """The console opened on `make run`'s link before `make demo` imports the district: told
    the district is not in the roster, then, once imported, its board at the next refresh
    (not after the list of districts dispatch keeps has gone stale)."""
    volunteers, console = standin
    r = await console.get("/v1/incidents", headers=ADMIN, params={"district": "qingxiu"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "district", r.text
    volunteers.districts.add("qingxiu")  # the roster imported
    for path, query in READS:
        r = await read(console, path, query, "qingxiu", ADMIN)
        assert r.status_code == (503 if path == "/v1/zones" else 200), (path, r.text)


async def test_volunteers_away_the_admin_s_reads_answer_as_before(
        clean_redis: str, asked: list[str]) -> None:
    """Never a board failing because volunteers is away: not checked, answered as before,
    and not asked again at each read (a frozen volunteers would hold back each)."""
    async with console_of(clean_redis, volunteers_url=UNREACHABLE) as console:
        for path, query in READS:
            r = await read(console, path, query, "nowhere", ADMIN)
            # the zones come from volunteers: not loaded, as before
            assert r.status_code == (503 if path == "/v1/zones" else 200), (path, r.text)
            if path == "/v1/incidents":
                assert r.json()["incidents"] == []
    assert asked == ["asked"]
