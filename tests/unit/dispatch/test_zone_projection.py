"""Dispatch's projection of the zones: a place outside every zone is not a place whose zone
is unknown (the zones could not be loaded), and the two are told apart."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from services.dispatch.zones import ZoneProjection, ZonesUnavailable

ZONES = {"zones": [{"zone_id": "z-1", "name": "Territory", "owner_agency_id": "ag-police",
                    "polygon": [[108.0, 22.0], [108.1, 22.0], [108.1, 22.1], [108.0, 22.1]]}]}


def projection(handler: httpx.MockTransport) -> ZoneProjection:
    return ZoneProjection(http=httpx.AsyncClient(transport=handler),
                          volunteers_url="http://volunteers", key="t",
                          timeout_s=1.0, refresh_s=60.0, retry_after_s=0.0)


async def test_a_place_inside_and_outside_the_loaded_zones() -> None:
    zones = projection(httpx.MockTransport(lambda request: httpx.Response(200, json=ZONES)))
    zone = await zones.lookup("qingxiu", lat=22.05, lon=108.05)
    assert zone is not None and zone.owner_agency_id == "ag-police"
    assert await zones.lookup("qingxiu", lat=23.0, lon=108.05) is None


async def test_zones_that_could_not_be_loaded_are_unavailable_until_they_are() -> None:
    answers = [httpx.Response(503), httpx.Response(200, json=ZONES)]
    zones = projection(httpx.MockTransport(lambda request: answers.pop(0)))
    with pytest.raises(ZonesUnavailable):
        await zones.lookup("qingxiu", lat=22.05, lon=108.05)
    zone = await zones.lookup("qingxiu", lat=22.05, lon=108.05)  # loaded on the next try
    assert zone is not None and zone.zone_id == "z-1"


async def test_a_refresh_that_brings_the_same_zones_builds_nothing_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Every district's zones are fetched every ZONES_REFRESH_S (10 s). Building the index
    # of a district of a thousand detailed zones holds dispatch's event loop for a few
    # tenths of a second (every incident waits): only a change is worth it.
    from services.dispatch import zones as module

    built: list[int] = []
    real = module.ZoneIndex

    def counted(zones: object) -> object:
        built.append(1)
        return real(zones)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "ZoneIndex", counted)
    moved = {"zones": [{**ZONES["zones"][0], "owner_agency_id": "ag-other"}]}
    answers = [ZONES, ZONES, moved]
    zones = projection(httpx.MockTransport(
        lambda request: httpx.Response(200, json=answers.pop(0))))
    first = await zones.lookup("qingxiu", lat=22.05, lon=108.05)
    assert first is not None and first.owner_agency_id == "ag-police"
    await zones._load("qingxiu")  # the refresh: the same zones
    assert len(built) == 1
    await zones._load("qingxiu")  # a re-import gave the zone to another station
    assert len(built) == 2
    now = await zones.lookup("qingxiu", lat=22.05, lon=108.05)
    assert now is not None and now.owner_agency_id == "ag-other"


async def test_a_refresh_without_a_zone_drops_it() -> None:
    # A zone removed at volunteers (drawn by mistake, territory given up) is missing from
    # the next answer: its station must stop getting the place's hand-overs.
    answers = [ZONES, {"zones": []}]
    zones = projection(httpx.MockTransport(
        lambda request: httpx.Response(200, json=answers.pop(0))))
    assert await zones.lookup("qingxiu", lat=22.05, lon=108.05) is not None
    await zones._load("qingxiu")  # the refresh
    assert await zones.lookup("qingxiu", lat=22.05, lon=108.05) is None
    assert await zones.zones_of("qingxiu") == ()



async def test_zones_that_changed_are_judged_once_and_again_after_a_judgement_that_failed() -> None:
    # A re-import may give a zone to another station while its station's car holds the
    # zone's fraud warning: dispatch is told of each change (and of the zones first read,
    # which a change may have come before), once it takes them in; a judgement that failed
    # (Redis away) is made again at the next round, not lost with the digest. Each is
    # made once more at the round after (test_..._judged_once_more_at_the_next_round).
    moved = {"zones": [{**ZONES["zones"][0], "owner_agency_id": "ag-other"}]}
    answers = [ZONES, ZONES, ZONES, moved, moved, moved]
    zones = ZoneProjection(http=httpx.AsyncClient(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json=answers.pop(0) if answers else moved))),
        volunteers_url="http://volunteers", key="t", timeout_s=1.0, refresh_s=0.001)
    assert await zones.lookup("qingxiu", lat=22.05, lon=108.05) is not None  # first read
    told: list[str] = []
    stop = asyncio.Event()

    async def on_changed(district: str) -> None:
        zone = await zones.lookup(district, lat=22.05, lon=108.05)
        assert zone is not None
        told.append(zone.owner_agency_id)
        if told == ["ag-police", "ag-police", "ag-other"]:
            raise ConnectionError("Redis went away")
        if len(told) == 5:
            stop.set()

    await asyncio.wait_for(zones.keep_fresh(stop, on_changed=on_changed), timeout=10)
    assert told == ["ag-police", "ag-police", "ag-other", "ag-other", "ag-other"]


async def test_zones_that_changed_are_judged_once_more_at_the_next_round() -> None:
    # A fraud warning's offer ranked on the zones as they were before a change (by another
    # replica, or by this one mid-search) and written just after the change was judged was
    # never judged: no status comes for it, and the zones do not change again. A change is
    # judged at once and once more at the next round (rezoned timers are set once, so the
    # second judgement only catches what the first could not see), and not again after.
    moved = {"zones": [{**ZONES["zones"][0], "owner_agency_id": "ag-other"}]}
    stop = asyncio.Event()
    asked = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal asked
        asked += 1
        if asked == 6:  # the first read, and five rounds
            stop.set()
        return httpx.Response(200, json=ZONES if asked == 1 else moved)

    zones = ZoneProjection(http=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
                           volunteers_url="http://volunteers", key="t", timeout_s=1.0,
                           refresh_s=0.001)
    assert await zones.lookup("qingxiu", lat=22.05, lon=108.05) is not None  # first read
    told: list[str] = []

    async def on_changed(district: str) -> None:
        zone = await zones.lookup(district, lat=22.05, lon=108.05)
        assert zone is not None
        told.append(zone.owner_agency_id)

    await asyncio.wait_for(zones.keep_fresh(stop, on_changed=on_changed), timeout=10)
    assert told == ["ag-other", "ag-other"]


async def test_the_districts_with_live_orders_are_read_and_judged_at_start_until_they_are() -> None:
    # Back after a stop, dispatch read a district's zones only when an incident wanted them:
    # a change made while it was down was judged hours later on a quiet night. The districts
    # with live orders are read at once (no incident asks), one that volunteers did not
    # answer for tried again the next round; one without live orders is not read.
    answers = [httpx.Response(503), httpx.Response(200, json=ZONES)]
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["district"])
        return answers.pop(0) if answers else httpx.Response(200, json=ZONES)

    zones = ZoneProjection(http=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
                           volunteers_url="http://volunteers", key="t", timeout_s=1.0,
                           refresh_s=0.001)
    told: list[str] = []
    stop = asyncio.Event()

    async def on_changed(district: str) -> None:
        told.append(district)
        stop.set()

    async def districts() -> list[str]:
        return ["qingxiu"]

    await asyncio.wait_for(zones.keep_fresh(stop, on_changed=on_changed, districts=districts),
                           timeout=10)
    assert told == ["qingxiu"]
    assert asked[:2] == ["qingxiu", "qingxiu"] and set(asked) == {"qingxiu"}


async def test_a_refresh_answered_503_while_an_import_re_cuts_keeps_the_zones_it_had() -> None:
    # volunteers answers 503 rather than a map half re-cut (an import's zones written in
    # several steps): the zones dispatch holds stay, and the next round reads the new ones.
    moved = {"zones": [{**ZONES["zones"][0], "owner_agency_id": "ag-other"}]}
    answers = [httpx.Response(200, json=ZONES), httpx.Response(503, headers={"Retry-After": "1"}),
               httpx.Response(200, json=moved)]
    zones = projection(httpx.MockTransport(lambda request: answers.pop(0)))
    assert (await zones.lookup("qingxiu", lat=22.05, lon=108.05)).owner_agency_id == "ag-police"
    await zones.refresh("qingxiu")  # answered 503
    still = await zones.lookup("qingxiu", lat=22.05, lon=108.05)
    assert still is not None and still.owner_agency_id == "ag-police"
    await zones.refresh("qingxiu")
    assert (await zones.lookup("qingxiu", lat=22.05, lon=108.05)).owner_agency_id == "ag-other"
