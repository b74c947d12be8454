"""`make demo` closes the incidents an earlier run of it left open (stopped with Ctrl-C, its
teams still busy), through the command room's API of a real dispatch. Where dispatch refuses
to list them (a district the roster does not hold: 422), the demo says so: it returned
silently, the incidents left open and their teams busy, nobody told why."""

from __future__ import annotations

import httpx
import pytest
from faststream.redis import RedisBroker

from tests.helpers import poll_until
from tools import demo

from .test_engine import DISTRICT, orders_for, report, team, wait_for_units
from .test_station_orders_of_a_removed_team import incident

ENV = {"ADMIN_TOKEN": "test-admin-token", "DISPATCH_URL": "http://dispatch"}


def the_demo(console: httpx.AsyncClient) -> demo.Demo:
    run = demo.Demo(ENV, DISTRICT)
    run.client = console
    return run


@pytest.mark.roster(DISTRICT)
async def test_an_earlier_run_s_open_incident_is_closed(
        clean_redis: str, console: httpx.AsyncClient, publisher: RedisBroker,
        capsys: pytest.CaptureFixture[str]) -> None:
    await team(publisher, "guards", kind="security", lat=22.8171, lon=108.3665)
    await wait_for_units(clean_redis, 1)
    incident_id = await report(publisher, "noise", priority="P4")
    await poll_until(lambda: orders_for(clean_redis, incident_id), "the order")
    await the_demo(console).close_leftovers()
    assert incident(clean_redis, incident_id)["status"] == "closed"
    said = capsys.readouterr()
    assert said.out == "closed 1 incident(s) left open by an earlier run\n"
    assert said.err == ""


@pytest.mark.roster("xixiangtang")
async def test_a_refused_list_is_said(console: httpx.AsyncClient,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    await the_demo(console).close_leftovers()
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err.startswith("incidents left open by an earlier run not closed: listing "
                               "them, dispatch answered 422: district: no such district in "
                               "the roster"), said.err
